"""Progress bars and the stats line of the coding commands."""
from __future__ import annotations

import gc
import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from contextlib import contextmanager

import typer

from tokcodec.codec.outputs import STDIO, stdout_closed
from tokcodec.errors import ArgumentError, OutputError
from tokcodec.text import clock, live_terminal


#: the window of the progress bar's frames/s: a whole stage (a day), not rich's 30 s
WHOLE_STAGE_SECONDS = 86400.0
#: a stage's speed is shown once it has run this long
MIN_SPEED_SECONDS = 0.5
#: how often a run whose standard error is no live terminal (a log file, TERM=dumb) says where it is
LOG_LINE_SECONDS = 60.0


@contextmanager
def frame_progress(label: str, total: int | None, quiet: bool):
    """A rich progress bar with frames/s on stderr; yields an advance(n) callback."""
    with staged_progress([(label, total)], quiet) as (advance,):
        yield advance


@contextmanager
def staged_progress(stages: list[tuple[str, int | None]], quiet: bool):
    """One progress bar that goes through ``stages`` (label, total frames or None) in order:
    yields an advance(n) callback per stage (Nones when quiet); a stage's bar appears at its first
    advance and takes the place of the stage before. Where standard error is no live terminal (a
    log file, TERM=dumb), a plain line every LOG_LINE_SECONDS instead (LogLines)."""
    collect_from_here()
    if quiet:
        yield tuple(None for _ in stages)
        return
    if not live_terminal():
        lines = LogLines(stages)
        yield tuple(lines.advancer(k) for k in range(len(stages)))
        return
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn,
                               TextColumn, TimeRemainingColumn)

    class FpsColumn(TextColumn):
        def render(self, task):  # type: ignore[override]
            # (no speed from a stage's first instant: a rate plan's kept encode is added at once,
            # which read "7000205.9 fps")
            speed = (task.finished_speed or task.speed) if (task.elapsed or 0.0) >= MIN_SPEED_SECONDS else None
            from rich.text import Text
            return Text(f"{speed:6.1f} fps" if speed else "   -- fps")

    # speed (and so the time left) over the whole stage: rich's default, the last 30 s, never held
    # two of the bar's steps at 1080p and 4K, where one GOP takes 35-200 s on 2 cores ("-- fps")
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
                        FpsColumn(""), TimeRemainingColumn(), console=Console(stderr=True),
                        transient=True, speed_estimate_period=WHOLE_STAGE_SECONDS)
    with progress:
        tasks = [progress.add_task(label, total=total or None, visible=k == 0, start=k == 0)
                 for k, (label, total) in enumerate(stages)]  # (a stage's clock starts when it shows)
        progress.advance(tasks[0], 0)  # (a first sample at the start: the speed shows from the first step)
        shown, moved = [0], [progress.get_time()]

        def advancer(k: int):
            def advance(n: int) -> None:
                if shown[0] != k:  # a later stage began: it takes the bar
                    progress.update(tasks[shown[0]], visible=False)
                    progress.update(tasks[k], visible=True)
                    # its clock and first sample from where the stage before last moved, as LogLines
                    # counts: its first step's time is a rate plan's end to the first GOP (started
                    # at that step, the first GOP's frames took no time: "8527945.4 fps")
                    now = progress.get_time
                    progress.get_time = lambda: moved[0]
                    try:
                        progress.start_task(tasks[k])
                        progress.advance(tasks[k], 0)
                    finally:
                        progress.get_time = now
                    shown[0] = k
                progress.advance(tasks[k], n)
                moved[0] = progress.get_time()
            return advance

        yield tuple(advancer(k) for k in range(len(stages)))


def collect_from_here() -> None:
    """The garbage collector back on as a coding command's work begins (the CLI's main turned it
    off for the imports: app.GC_AFTER_IMPORTS), with all that is alive now frozen out of its
    collections: the imports' objects live as long as the process."""
    if not gc.isenabled():
        gc.freeze()
        gc.enable()


class LogLines:
    """Progress for a log: ``encode: 120/472 frames (25%), 8.1 fps, 0:43 left`` on standard error
    every ``every`` seconds, none in a shorter run. A long encode logged to a file said nothing
    until its stats line (hours at 1080p: a run killed meanwhile left an empty log)."""

    def __init__(self, stages: list[tuple[str, int | None]], every: float = LOG_LINE_SECONDS,
                 now: Callable[[], float] = time.monotonic) -> None:
        self.stages, self.every, self.now = stages, every, now
        self.done = [0] * len(stages)
        self.last = self.moved = now()  # the last line's time; the last advance's, of any stage
        self.began: list[float | None] = [self.last] + [None] * (len(stages) - 1)

    def advancer(self, k: int) -> Callable[[int], None]:
        def advance(n: int) -> None:
            t = self.now()
            if self.began[k] is None:  # a stage begins where the one before last moved (its first
                self.began[k] = self.moved  # step's time counts: a rate plan's end, not the GOP's)
            self.moved = t
            self.done[k] += n
            if t - self.last >= self.every:
                self.last = t
                print(self.line(k, t), file=sys.stderr, flush=True)
        return advance

    def line(self, k: int, t: float) -> str:
        label, total = self.stages[k]
        done, began = self.done[k], self.began[k]
        assert began is not None  # (set by the advance that asks for this line)
        fps = done / max(t - began, 1e-9)
        part = f"{done}/{total} frames ({100 * done / total:.0f}%)" if total else f"{done} frames"
        left = f", {clock((total - done) / fps)} left" if total and fps > 0 and done < total else ""
        return f"{label}: {part}, {fps:.1f} fps{left}"


def stats_line(text: str, quiet: bool) -> None:
    if not quiet:
        typer.echo(text, err=True)


def json_checked(as_json: bool, output: Path) -> None:
    """--json takes standard output: refused with -o -, whose output goes there, and where it is
    closed (else the whole job ran, and its output was written, before the JSON could not be)."""
    if as_json and str(output) == STDIO:
        raise ArgumentError("--json prints on standard output, which -o - takes for the output: give -o a file name")
    if as_json and stdout_closed():
        raise OutputError("--json prints on standard output, which is closed (>&-)")


def json_text(doc: object) -> str:
    """``doc`` as strict JSON, on one line: a non-finite number (the PSNR of identical videos) is null."""
    def finite(v: object) -> object:
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: finite(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [finite(x) for x in v]
        return v
    return json.dumps(finite(doc), allow_nan=False)
