"""Standard input as an input file: `... | tokcodec encode - -o out.tok`, as ffmpeg takes "-".

tokcodec reads its inputs more than once (a probe, the audio, the frames; the rate plan reads
windows of the video), which a pipe cannot give, so standard input is first copied to a
temporary file; messages name it "stdin". Standard output as a video output ("-o -", a Y4M
stream) is the library's (tokcodec.io.FrameWriter).
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from tokcodec.errors import InputError, TokcodecError
from tokcodec.codec.outputs import CLOSED_STDIO, STDIO

NPY_MAGIC = b"\x93NUMPY"


def cli_path(text: str) -> Path:
    """A path as the command line gives it (typer's parser for the paths that may be "-"): only a
    bare "-" is standard input or output. pathlib makes "./-", the shell's way to name a file
    called "-", "-" again: such a name is made absolute, so that it stays that file."""
    path = Path(text)
    return Path.cwd() / path if str(path) == STDIO and text != STDIO else path


@contextmanager
def input_file(path: Path, what: str = "a video", stream: BinaryIO | None = None,
               check_output: Callable[[], None] | None = None) -> Iterator[Path]:
    """``path``, or for "-" the bytes of standard input (``stream``) in a temporary file, removed
    afterwards; ``check_output`` runs first, so that a refused output does not wait for the
    whole input. A token file read this way gets the suffix its first bytes call for."""
    if str(path) != STDIO:
        yield path
        return
    if check_output is not None:
        check_output()
    if stream is None and 0 in CLOSED_STDIO:
        raise InputError(f"-: standard input is closed (<&-); pipe {what} in, or give a file name")
    stream = stream or sys.stdin.buffer
    if stream.isatty():
        raise InputError(f"-: standard input is a terminal; pipe {what} in (e.g. ... | tokcodec encode - -o out.tok)")
    with tempfile.TemporaryDirectory(prefix="tokcodec-stdin-") as tmp:
        spooled = Path(tmp) / "stdin"
        try:
            with spooled.open("wb") as out:
                shutil.copyfileobj(stream, out, 1 << 20)
        except OSError as exc:
            raise InputError(f"stdin: cannot copy it to a temporary file in {tempfile.gettempdir()} "
                             f"({exc.strerror or exc}; set TMPDIR to a place with room)") from None
        with spooled.open("rb") as f:
            head = f.read(len(NPY_MAGIC))
        if not head:
            raise InputError("-: standard input is empty")
        if what == "tokens":
            spooled = spooled.rename(spooled.with_suffix(".npy" if head == NPY_MAGIC else ".safetensors"))
        try:
            yield spooled
        except TokcodecError as exc:  # name the input as the user gave it
            raise type(exc)(str(exc).replace(str(spooled), "stdin")) from None


def reopen_closed_streams() -> None:
    """Stand-ins for the standard streams a command was started without (`2>&-`, `>&-`, `<&-`,
    some daemons'), recorded in CLOSED_STDIO. Python leaves sys.stderr None then: the progress
    bar's check crashed on it, and encode, decode and batch failed without a word. And the first
    file opened would take the free number: whatever writes "to stderr" (FFmpeg's log) would
    have written into it. Standard input and error become /dev/null (no messages were wanted);
    standard output a pipe no one reads, so that writing to it fails (EPIPE) rather than vanish:
    `tokcodec info X >&-` exited 0 with its output lost."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            CLOSED_STDIO.add(fd)
    for fd in sorted(CLOSED_STDIO):
        if fd == 1:
            read_end, stand_in = os.pipe()
            os.close(read_end)
        else:
            stand_in = os.open(os.devnull, os.O_RDONLY if fd == 0 else os.O_WRONLY)
        if stand_in != fd:
            os.dup2(stand_in, fd)
            os.close(stand_in)
    if 0 in CLOSED_STDIO:
        sys.stdin = open(0, closefd=False)  # noqa: SIM115 - the process's own, for its whole life
    if 1 in CLOSED_STDIO:
        sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
    if 2 in CLOSED_STDIO:
        sys.stderr = open(2, "w", buffering=1, errors="backslashreplace", closefd=False)  # noqa: SIM115
