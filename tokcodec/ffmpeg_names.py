"""File names as FFmpeg must be given them, and how its tags are read."""
from __future__ import annotations

from pathlib import Path


def ffmpeg_name(path: Path | str) -> str:
    """``path`` absolute, so that a file named like one of FFmpeg's protocols ("pipe:0.png",
    "concat:a.png|b.png", in the working directory or an image sequence's folder) is opened as
    that file and not through the protocol."""
    return str(Path(path).absolute())


#: how PyAV decodes an input's tags (``av.open(..., metadata_errors=TAG_ERRORS)``): tags that are
#: not UTF-8 (an old camcorder's Latin-1 AVI INFO) come with U+FFFD for what is not, where PyAV's
#: default, "strict", made the whole file unreadable ("'utf-8' codec can't decode byte 0xe9")
TAG_ERRORS = "replace"
