"""Progress bars and the stats line of the coding commands."""
from __future__ import annotations

import sys
from contextlib import contextmanager

import typer


@contextmanager
def frame_progress(label: str, total: int | None, quiet: bool):
    """A rich progress bar with frames/s on stderr; yields an advance(n) callback."""
    if quiet or not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn,
                               TextColumn, TimeRemainingColumn)

    class FpsColumn(TextColumn):
        def render(self, task):  # type: ignore[override]
            speed = task.finished_speed or task.speed
            from rich.text import Text
            return Text(f"{speed:6.1f} fps" if speed else "   -- fps")

    progress = Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
                        FpsColumn(""), TimeRemainingColumn(), console=Console(stderr=True),
                        transient=True)
    with progress:
        task = progress.add_task(label, total=total or None)
        yield lambda n: progress.advance(task, n)


def stats_line(text: str, quiet: bool) -> None:
    if not quiet:
        typer.echo(text, err=True)
