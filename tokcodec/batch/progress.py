"""How a batch run reports progress: a rich bar on a terminal (files done/total, frames/s, ETA),
one line per finished file otherwise, nothing for library callers that pass no reporter."""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import IO, Any

from tokcodec.batch.plan import Job, Plan
from tokcodec.batch.work import FileResult
from tokcodec.text import live_terminal, plural


class Reporter:
    """Does nothing; subclasses override what they show."""

    def begin(self, plan: Plan, workers: int, engine: str) -> None: ...
    def started(self, job: Job, total_frames: int) -> None: ...
    def advanced(self, job: Job, frames: int) -> None: ...
    def finished(self, job: Job, result: FileResult) -> None: ...
    def note(self, warning: str) -> None: ...  # about the whole run (e.g. weights without a prior)
    def end(self) -> None: ...


def _rel(path: str, root: Path) -> str:
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return path


def file_line(plan: Plan, job: Job, result: FileResult) -> str:
    if result.status == "failed":
        error = result.error or "failed"
        for prefix in (f"{result.input}: ", f"{job.input}: "):
            error = error.removeprefix(prefix)  # the path is already at the start of the line
        return f"FAILED {job.rel}: {error}"
    fps = result.frames / result.seconds if result.seconds > 0 else 0.0
    bpp = f", {result.bpp:.4f} bpp" if result.bpp is not None else ""
    lost = f", {plural(result.lost_frames, 'frame')} LOST (filled)" if result.lost_frames else ""
    warned = "".join(f"; warning: {w}" for w in result.warnings or ())
    return (f"{job.rel} -> {_rel(result.output, plan.dst)}: {plural(result.frames, 'frame')}, "
            f"{result.bytes} bytes{bpp}, {fps:.1f} fps{lost}{warned}")


def begin_line(plan: Plan, workers: int, engine: str) -> str:
    skipped = f", {len(plan.skipped)} already done" if plan.skipped else ""
    where = plural(workers, "worker") if engine == "local" else "Ray"
    return f"batch {plan.op}: {plural(plan.total, 'file')}{skipped}, {len(plan.todo)} to do ({where})"


class LineReporter(Reporter):
    """For logs and pipes: a start line, then `[k/N] ...` per finished file on stderr."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stderr
        self.count = 0

    def begin(self, plan: Plan, workers: int, engine: str) -> None:
        self.plan = plan
        print(begin_line(plan, workers, engine), file=self.stream, flush=True)

    def note(self, warning: str) -> None:
        print(f"tokcodec: warning: {warning}", file=self.stream, flush=True)

    def finished(self, job: Job, result: FileResult) -> None:
        self.count += 1
        print(f"[{self.count}/{len(self.plan.todo)}] {file_line(self.plan, job, result)}",
              file=self.stream, flush=True)


class RichReporter(Reporter):
    """A bar over the files to do that moves with the frames of the files in flight."""

    def begin(self, plan: Plan, workers: int, engine: str) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        self.plan = plan
        self.files_done = 0
        self.frames = 0
        self.t_first: float | None = None  # the first file started: worker start-up is not coding
        self.total: dict[int, int] = {}
        self.credited: dict[int, float] = {}
        reporter = self

        class Stats(TextColumn):
            def render(self, task: Any) -> Any:
                from rich.text import Text

                elapsed = time.perf_counter() - (reporter.t_first or time.perf_counter())
                fps = reporter.frames / elapsed if elapsed > 0 else 0.0
                return Text(f"{reporter.files_done}/{len(plan.todo)} files  {fps:6.1f} fps")

        console = Console(stderr=True)
        console.print(begin_line(plan, workers, engine))
        self.progress = Progress(TextColumn(f"batch {plan.op}"), BarColumn(), Stats(""),
                                 TextColumn("ETA"), TimeRemainingColumn(), console=console,
                                 transient=True)
        self.progress.start()
        self.task = self.progress.add_task(plan.op, total=max(1, len(plan.todo)))

    def started(self, job: Job, total_frames: int) -> None:
        self.t_first = self.t_first or time.perf_counter()
        self.total[job.index] = total_frames

    def advanced(self, job: Job, frames: int) -> None:
        self.frames += frames
        total = self.total.get(job.index)
        if total:
            step = min(frames / total, 0.99 - self.credited.get(job.index, 0.0))
            if step > 0:
                self.credited[job.index] = self.credited.get(job.index, 0.0) + step
                self.progress.advance(self.task, step)

    def finished(self, job: Job, result: FileResult) -> None:
        self.t_first = self.t_first or time.perf_counter()
        self.files_done += 1
        if job.index not in self.total:  # no per-frame progress (Ray): count the frames now
            self.frames += result.frames
        self.progress.advance(self.task, 1.0 - self.credited.pop(job.index, 0.0))
        if result.status == "failed" or result.warnings:  # (a file's warnings too: not only in logs)
            self.progress.console.print(file_line(self.plan, job, result), markup=False, highlight=False)

    def note(self, warning: str) -> None:
        self.progress.console.print(f"tokcodec: warning: {warning}", markup=False, highlight=False)

    def end(self) -> None:
        if hasattr(self, "progress"):
            self.progress.stop()


class FailuresReporter(Reporter):
    """--quiet: only the failures (path + reason), which are never noise."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stderr

    def begin(self, plan: Plan, workers: int, engine: str) -> None:
        self.plan = plan

    def finished(self, job: Job, result: FileResult) -> None:
        if result.status == "failed":
            print(file_line(self.plan, job, result), file=self.stream, flush=True)


def reporter_line(reporter: Reporter, plan: Plan, path: str, result: FileResult) -> None:
    """A failure found while planning (before any worker runs), shown by every reporter."""
    if type(reporter) is not Reporter:
        print(f"FAILED {_rel(path, plan.src)}: {result.error}", file=sys.stderr, flush=True)


def default_reporter(quiet: bool) -> Reporter:
    if quiet:
        return FailuresReporter()
    return RichReporter() if live_terminal() else LineReporter()
