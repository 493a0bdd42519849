"""Small helpers for what people read, shared by the CLI's, batch's and training's messages."""
from __future__ import annotations

import os
import re
import sys
from typing import IO


def plural(count: int, noun: str) -> str:
    """'1 frame', '2 frames'."""
    return f"{count} {noun}" + ("" if count == 1 else "s")


def live_terminal(stream: IO[str] | None = None) -> bool:
    """Whether ``stream`` (standard error) is a terminal that can redraw a progress bar: not a file
    or pipe, and not TERM=dumb (Emacs shells, some screen-reader set-ups), where rich draws
    nothing at all, so that such a terminal gets the plain lines a log does."""
    stream = stream if stream is not None else sys.stderr
    try:
        return bool(stream.isatty()) and os.environ.get("TERM", "") != "dumb"
    except (AttributeError, ValueError, OSError):  # (no stream, or a closed one)
        return False


def clock(seconds: float) -> str:
    """'1:02:03' or '2:03'."""
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """``text`` with its control characters but newline and tab written as escapes (\\x1b): what
    a file says of itself (a model name, a weights file's metadata) reached the terminal as it was,
    so a crafted file could clear the screen, retitle the window or fake output lines (``\\r``)."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
