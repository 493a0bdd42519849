"""Standard input as an input file: `... | tokcodec encode - -o out.tok`, as ffmpeg takes "-".

tokcodec reads its inputs more than once (a probe, the audio, the frames; the rate plan reads
windows of the video), which a pipe cannot give, so standard input is first copied to a
temporary file; messages name it "stdin". A Y4M stream piped into encode is the exception: it is
encoded as it comes (stream_input.py; with --spool, from a copy made as fast as it comes), unless
a target rate asks for the copy first; another is a .tok piped into decode, decoded as it comes
(codec/tok_stream.py) unless its audio or tags go into the output (they come after its video). For
encode, Ctrl-C ends the input there (a live capture piped in: `ffmpeg -f v4l2 -i /dev/video0 -f
yuv4mpegpipe - | tokcodec encode - -o cam.tok --spool`), and what came is encoded, as ffmpeg's
first Ctrl-C finishes its output; Ctrl-C again aborts as anywhere else. Standard output as a
video output ("-o -", a Y4M stream) is the library's (tokcodec.io.FrameWriter).
"""
from __future__ import annotations

import contextlib
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from tokcodec.errors import FormatError, InputError, Terminated, TokcodecError
from tokcodec.codec.outputs import CLOSED_STDIO, STDIO, is_pipe
from tokcodec.pipes import DRAIN_SECONDS, Y4M_MAGIC, read_exactly, read_some
from tokcodec.text import live_terminal, plural

if TYPE_CHECKING:
    from tokcodec.codec.container import Header
    from tokcodec.codec.tok_stream import TokStream
    from tokcodec.stream_input import StreamedVideo

NPY_MAGIC = b"\x93NUMPY"
TOK_MAGIC = b"TOKCODEC"  # (container.MAGIC, without importing the codec at start)
#: a Ctrl-C handled this long (seconds) after the stream's end aborts, as there is no input left
#: to end; one handled sooner is the one that ended it: the program piping in, which got it too,
#: closed the pipe while a long computation (a GOP's convolutions) kept Python from the handler
ENDED_BEFORE_SECONDS = 5.0
#: a copy of standard input still running after this long (seconds) says how to end it, on a terminal
NOTICE_AFTER_SECONDS = 2.0


def cli_path(text: str) -> Path:
    """A path as the command line gives it (typer's parser for the paths that may be "-"): only a
    bare "-" is standard input or output. pathlib makes "./-", the shell's way to name a file
    called "-", "-" again: such a name is made absolute, so that it stays that file."""
    path = Path(text)
    return Path.cwd() / path if str(path) == STDIO and text != STDIO else path


@contextmanager
def input_file(path: Path, what: str = "a video", stream: BinaryIO | None = None,
               check_output: Callable[[], None] | None = None, ends_at_interrupt: bool = False,
               y4m_as_it_comes: bool = False, spool: bool = False,
               tok_as_it_comes: Callable[[Header], bool] | None = None) -> Iterator[Path | StreamedVideo | TokStream]:
    """``path``, or for "-" the bytes of standard input (``stream``) in a temporary file, removed
    afterwards; ``check_output`` runs first, so that a refused output does not wait for the
    whole input. A token file read this way gets the suffix its first bytes call for. With
    ``ends_at_interrupt`` (encode) Ctrl-C during the copy ends the input there (``_spool``).
    A named pipe (``mkfifo``, ``<(ffmpeg ...)``'s /dev/fd/N) is copied as standard input is: read
    in place, the probe took its first bytes and the next open waited for ever for a writer.
    With ``y4m_as_it_comes`` (encode) a pipe that begins as a Y4M stream is not copied first: a
    StreamedVideo reads it as it comes (Ctrl-C then ends it, with ``ends_at_interrupt``), with
    ``spool`` copying all of it to a temporary file as fast as it comes and reading that. With
    ``tok_as_it_comes`` (decode) a pipe that begins as a .tok is not copied first where that
    says yes to its header: a TokStream reads it as it comes."""
    piped = str(path) != STDIO and is_pipe(path)
    if str(path) != STDIO and not piped:
        yield path
        return
    if check_output is not None:
        check_output()
    if piped:
        try:
            stream = open(path, "rb", buffering=0)  # noqa: SIM115 - closed below (a FIFO: waits for its writer)
        except OSError as exc:
            raise InputError(f"{path}: cannot open ({exc.strerror or exc})") from None
    elif stream is None and 0 in CLOSED_STDIO:
        raise InputError(f"-: standard input is closed (<&-); pipe {what} in, or give a file name")
    stream = stream or sys.stdin.buffer
    if not piped and stream.isatty():
        raise InputError(f"-: standard input is a terminal; pipe {what} in (e.g. ... | tokcodec encode - -o out.tok)")
    shown = str(path) if piped else "stdin"  # (in messages)
    source = f"{path} (a pipe)" if piped else "standard input"
    try:
        head = read_exactly(stream, len(Y4M_MAGIC) if y4m_as_it_comes else len(TOK_MAGIC) if tok_as_it_comes else 0)
        tok = tok_as_it_comes is not None and head == TOK_MAGIC
        if tok:
            from tokcodec.codec.container import HEADER_SIZE
            head += read_exactly(stream, HEADER_SIZE - len(head))
    except OSError as exc:
        raise InputError(f"{shown}: cannot read it ({exc.strerror or exc})") from None
    if tok and _takes(tok_as_it_comes, head, shown):
        from tokcodec.codec.tok_stream import TokStream

        try:
            with TokStream(stream, shown, head) as tokens:
                yield tokens
        finally:
            if piped:
                stream.close()
        return
    if head == Y4M_MAGIC:
        from tokcodec.stream_input import StreamedVideo

        video = StreamedVideo(stream, shown, head, spool=spool)
        try:
            with _interrupt_ends(video, source) if ends_at_interrupt else contextlib.nullcontext():
                yield video
        finally:
            video.close()
            if piped and video.reader.finished:  # (else its thread may still wait on it)
                stream.close()
        return
    whole = False
    try:
        with tempfile.TemporaryDirectory(prefix="tokcodec-stdin-") as tmp:
            spooled = Path(tmp) / "stdin"
            try:
                whole = _spool(stream, spooled, ends_at_interrupt, source, head)
            except OSError as exc:
                raise InputError(f"{shown}: cannot copy it to a temporary file in {tempfile.gettempdir()} "
                                 f"({exc.strerror or exc}; set TMPDIR to a place with room)") from None
            with spooled.open("rb") as f:
                head = f.read(len(NPY_MAGIC))
            if not head:
                raise InputError(f"{path}: the pipe gave nothing" if piped else "-: standard input is empty")
            if what == "tokens":
                spooled = spooled.rename(spooled.with_suffix(".npy" if head == NPY_MAGIC else ".safetensors"))
            try:
                yield spooled
            except TokcodecError as exc:  # name the input as the user gave it
                raise type(exc)(str(exc).replace(str(spooled), shown)) from None
    finally:
        if piped and whole:  # (else the copy's thread may still wait on it: the process's end closes it)
            stream.close()


def _takes(as_it_comes: Callable[[Header], bool], head: bytes, shown: str) -> bool:
    """Whether ``as_it_comes`` takes the .tok whose header is ``head``; not where the header does not
    read: the copy's reader then says why, as for a file (--salvage: that it needs the header)."""
    from tokcodec.codec.container import Header

    try:
        return as_it_comes(Header.unpack(head, shown))
    except FormatError:
        return False


def _spool(stream: BinaryIO, spooled: Path, ends_at_interrupt: bool, source: str = "standard input",
           head: bytes = b"") -> bool:
    """Copy ``head`` (bytes already read from it), then ``stream``, to ``spooled`` to its end, or
    with ``ends_at_interrupt`` until Ctrl-C:
    then what comes within DRAIN_SECONDS is taken too (Ctrl-C again stops that wait), and the
    file holds what came, whole blocks as read (the demuxers end a stream cut within a frame or
    packet there: Y4M, Matroska, MPEG-TS). Nothing read before the Ctrl-C: interrupted, as
    before. SIGTERM always aborts. Whether the stream was read to its end."""
    copy = _StdinCopy(stream, spooled, head)
    started, noticed = time.monotonic(), not (ends_at_interrupt and live_terminal())
    try:
        while not copy.finished.wait(0.25):
            if not noticed and time.monotonic() - started > NOTICE_AFTER_SECONDS:
                noticed = True
                print(f"tokcodec: reading {source} (Ctrl-C ends it there, and what came is encoded)",
                      file=sys.stderr, flush=True)
    except KeyboardInterrupt as exc:
        if isinstance(exc, Terminated) or not ends_at_interrupt:
            copy.stop()
            raise
        try:  # the rest of what the program piping in sends as it stops, or a second Ctrl-C
            copy.finished.wait(DRAIN_SECONDS)
        except KeyboardInterrupt as again:
            if isinstance(again, Terminated):
                copy.stop()
                raise
        written = copy.stop()
        if written == 0 or copy.error is not None:
            raise exc from None
        print(f"tokcodec: {source} ended by Ctrl-C after {_size(written)}: encoding what came "
              "(Ctrl-C again aborts)", file=sys.stderr, flush=True)
        return copy.finished.is_set()
    if copy.error is not None:
        raise copy.error
    return True


class _StdinCopy:
    """Standard input copied to a file by a thread of its own (signals reach only the main
    thread, which waits and takes Ctrl-C). Each block read is written under a lock, and ``stop``
    closes the file under it: from then on nothing more is written (a block the thread still
    waits for on the pipe is never taken), so the file is never cut within a write."""

    def __init__(self, stream: BinaryIO, path: Path, head: bytes = b"") -> None:
        self.stream = stream
        self.lock, self.finished = threading.Lock(), threading.Event()
        self.written, self.stopped = len(head), False
        self.error: BaseException | None = None
        self.out = path.open("wb")
        self.out.write(head)
        threading.Thread(target=self._run, name="tokcodec-stdin", daemon=True).start()

    def _run(self) -> None:
        try:
            while True:
                block = read_some(self.stream)
                with self.lock:
                    if self.stopped or not block:
                        break
                    self.out.write(block)
                    self.written += len(block)
            self.stop()
        except BaseException as exc:  # (an OSError: the caller says where; nothing else is expected)
            self.error = exc
            with contextlib.suppress(OSError):  # (the flush of a full disk's last block fails again)
                self.stop()
        finally:
            self.finished.set()

    def stop(self) -> int:
        """Write no more and close the file; the bytes written."""
        with self.lock:
            self.stopped = True
            self.out.close()
            return self.written


@contextmanager
def _interrupt_ends(video: StreamedVideo, source: str) -> Iterator[None]:
    """The first Ctrl-C ends ``video``'s input (what came is encoded) and says so when the next
    frame is asked for; the handler before it is back for the next Ctrl-C, which aborts. Only
    where Ctrl-C raises KeyboardInterrupt in this (main) thread: a run that ignores it stays so."""
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield
        return

    def ended(signum: int, frame: object) -> None:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        if video.reader.ended_for() > ENDED_BEFORE_SECONDS:  # (nothing left to end: Ctrl-C aborts)
            raise KeyboardInterrupt
        video.end()

    def said(frames: int) -> None:  # (frames taken so far: those read ahead are encoded too)
        print(f"tokcodec: {source} ended by Ctrl-C: encoding the frames that came (Ctrl-C again aborts)",
              file=sys.stderr, flush=True)
    video.on_end = said
    signal.signal(signal.SIGINT, ended)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _size(count: int) -> str:
    return f"{count / 1e6:.1f} MB" if count >= 100_000 else plural(count, "byte")


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
