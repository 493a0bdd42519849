"""File names as FFmpeg must be given them."""
from __future__ import annotations

from pathlib import Path


def ffmpeg_name(path: Path | str) -> str:
    """``path`` absolute, so that a file named like one of FFmpeg's protocols ("pipe:0.png",
    "concat:a.png|b.png", in the working directory or an image sequence's folder) is opened as
    that file and not through the protocol."""
    return str(Path(path).absolute())
