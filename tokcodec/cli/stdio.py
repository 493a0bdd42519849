"""Standard input as an input file: `... | tokcodec encode - -o out.tok`, as ffmpeg takes "-".

tokcodec reads its inputs more than once (a probe, the audio, the frames; the rate plan reads
windows of the video), which a pipe cannot give, so standard input is first copied to a
temporary file; messages name it "stdin". Standard output as a video output ("-o -", a Y4M
stream) is the library's (tokcodec.io.FrameWriter).
"""
from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from tokcodec.errors import InputError, TokcodecError
from tokcodec.codec.outputs import STDIO

NPY_MAGIC = b"\x93NUMPY"


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
