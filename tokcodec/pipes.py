"""Reading a pipe as it comes, without PyAV or torch (the command line imports this at start)."""
from __future__ import annotations

import os
from typing import BinaryIO

#: after Ctrl-C ends a pipe's input, what still comes is taken for at most this long (seconds):
#: the program piping in got the Ctrl-C too (one terminal, one process group) and sends its last
#: frames and its trailer (Matroska's index), then closes the pipe
DRAIN_SECONDS = 2.0
#: how a Y4M stream begins (FFmpeg's yuv4mpegpipe, tokcodec's own `decode -o -`)
Y4M_MAGIC = b"YUV4MPEG2 "


def fileno(stream: BinaryIO) -> int | None:
    """The stream's file descriptor, read unbuffered (a buffered read of 1 MiB waits for all of it,
    which a live stream of small packets gives only after seconds); None for streams without one."""
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError):  # (io.UnsupportedOperation is both of the last)
        return None


def read_exactly(stream: BinaryIO, size: int) -> bytes:
    """The first ``size`` bytes of ``stream`` (fewer where it ends first), as a pipe gives them."""
    fd = fileno(stream)
    head = b""
    while len(head) < size:
        block = os.read(fd, size - len(head)) if fd is not None else stream.read(size - len(head))
        if not block:
            break
        head += block
    return head
