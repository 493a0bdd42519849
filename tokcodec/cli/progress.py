"""Progress bars and the stats line of the coding commands."""
from __future__ import annotations

import sys
from contextlib import contextmanager

import typer


#: the window of the progress bar's frames/s: a whole stage (a day), not rich's 30 s
WHOLE_STAGE_SECONDS = 86400.0


@contextmanager
def frame_progress(label: str, total: int | None, quiet: bool):
    """A rich progress bar with frames/s on stderr; yields an advance(n) callback."""
    with staged_progress([(label, total)], quiet) as (advance,):
        yield advance


@contextmanager
def staged_progress(stages: list[tuple[str, int | None]], quiet: bool):
    """One progress bar that goes through ``stages`` (label, total frames or None) in order:
    yields an advance(n) callback per stage (Nones when quiet or not on a terminal); a stage's
    bar appears at its first advance and takes the place of the stage before."""
    if quiet or not sys.stderr.isatty():
        yield tuple(None for _ in stages)
        return
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn,
                               TextColumn, TimeRemainingColumn)

    class FpsColumn(TextColumn):
        def render(self, task):  # type: ignore[override]
            speed = task.finished_speed or task.speed
            from rich.text import Text
            return Text(f"{speed:6.1f} fps" if speed else "   -- fps")

    # speed (and so the time left) over the whole stage: rich's default, the last 30 s, never held
    # two of the bar's steps at 1080p and 4K, where one GOP takes 35-200 s on 2 cores ("-- fps")
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
                        FpsColumn(""), TimeRemainingColumn(), console=Console(stderr=True),
                        transient=True, speed_estimate_period=WHOLE_STAGE_SECONDS)
    with progress:
        tasks = [progress.add_task(label, total=total or None, visible=k == 0)
                 for k, (label, total) in enumerate(stages)]
        progress.advance(tasks[0], 0)  # (a first sample at the start: the speed shows from the first step)
        shown = [0]

        def advancer(k: int):
            def advance(n: int) -> None:
                if shown[0] != k:  # a later stage began: it takes the bar
                    progress.update(tasks[shown[0]], visible=False)
                    progress.update(tasks[k], visible=True)
                    progress.advance(tasks[k], 0)
                    shown[0] = k
                progress.advance(tasks[k], n)
            return advance

        yield tuple(advancer(k) for k in range(len(stages)))


def stats_line(text: str, quiet: bool) -> None:
    if not quiet:
        typer.echo(text, err=True)
