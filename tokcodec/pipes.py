"""Reading a pipe as it comes, without PyAV or torch (the command line imports this at start)."""
from __future__ import annotations

import os
import select
from typing import BinaryIO

#: the most one read takes from a pipe
CHUNK = 1 << 20
#: after Ctrl-C ends a pipe's input, what still comes is taken for at most this long (seconds):
#: the program piping in got the Ctrl-C too (one terminal, one process group) and sends its last
#: frames and its trailer (Matroska's index), then closes the pipe
DRAIN_SECONDS = 2.0
#: how a Y4M stream begins (FFmpeg's yuv4mpegpipe, tokcodec's own `decode -o -`)
Y4M_MAGIC = b"YUV4MPEG2 "


def fileno(stream: BinaryIO) -> int | None:
    """The stream's file descriptor, or None for streams without one."""
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError):  # (io.UnsupportedOperation is both of the last)
        return None


def read_some(stream: BinaryIO, size: int = CHUNK) -> bytes:
    """Up to ``size`` bytes of ``stream`` as they come (b"" at its end): one read of its file
    descriptor where it has one, not of the Python object (a buffered read of 1 MiB waited for
    all of it, which a live stream of small packets gives only after seconds; and a thread
    blocked in a buffered object's read holds its lock, which aborted the interpreter's exit:
    "could not acquire lock for <_io.BufferedReader name='<stdin>'>"); else the object's
    ``read1`` or ``read``. So bytes a buffered object holds already are not seen: give a stream
    nothing has read from. A non-blocking descriptor with nothing yet is waited on (it gave
    "unexpected BlockingIOError")."""
    fd = fileno(stream)
    if fd is None:
        read = getattr(stream, "read1", None) or stream.read
        return read(size) or b""
    while True:
        try:
            return os.read(fd, size)
        except BlockingIOError:
            select.select([fd], [], [])


def read_exactly(stream: BinaryIO, size: int) -> bytes:
    """The first ``size`` bytes of ``stream`` (fewer where it ends first), as a pipe gives them
    (gathered in one buffer: a chunk's megabytes came in 64 KiB reads)."""
    head = bytearray()
    while len(head) < size:
        block = read_some(stream, size - len(head))
        if not block:
            break
        head += block
    return bytes(head)
