"""A Y4M stream encoded as it comes: `ffmpeg -i in.mov -f yuv4mpegpipe - | tokcodec encode - -o
out.tok` reads its frames GOP by GOP while the pipe delivers them, in bounded memory.

Other inputs are read more than once (a probe that counts frames, the audio, the tags, the
frames, a rate plan's windows), so a pipe of them is first copied whole to a temporary file
(cli/stdio.py). A raw Y4M stream needs none of that: its header states the size, rate, colour
and interlacing, it holds no audio or tags, and its frames are read once, in order. Copying it
first cost a raw frame's bytes on disk for every frame (an hour of 1080p25: 280 GB in $TMPDIR)
and started the encode only once the pipe had ended. Read as it comes, the program piping in
waits while the encoder catches up (back-pressure, as ffmpeg and x265 reading a pipe do); with
``encode --spool`` a live source that cannot wait (a camera) is copied to a temporary file as
fast as it comes (FileStore), and encoded from there meanwhile.

The frames are converted as a file's are (io.rgb_frames): a Y4M stream and the same stream
saved to a file encode to the same bytes, but for grey frames in a colour pixel format, which a
file's check finds (io.is_grey) and a stream's cannot (StreamedVideo.grey).
"""
from __future__ import annotations

import collections
import errno
import io
import itertools
import select
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, TypeVar

import av
import numpy as np

from tokcodec.defaults import check_deinterlace
from tokcodec.errors import InputError
from tokcodec.ffmpeg_names import TAG_ERRORS
from tokcodec.io import (VideoInfo, check_y4m_header, deinterlaces, info_of, is_grey_frame, nominal_rate, reason,
                         rgb_frames, standard_rate)
from tokcodec.pipes import CHUNK, DRAIN_SECONDS, Y4M_MAGIC, fileno, read_exactly, read_some
from tokcodec.text import plural

#: the most bytes read ahead of the encoder (then the program piping in waits)
READ_AHEAD_BYTES = 64 << 20
#: once the frame size is known, the read-ahead is this many frames (a default GOP: the encoder
#: takes its frames in GOPs), within READ_AHEAD_BYTES and at least MIN_READ_AHEAD_BYTES
READ_AHEAD_FRAMES = 17
MIN_READ_AHEAD_BYTES = 4 << 20
#: the longest Y4M header line read before FFmpeg's (its size is checked first)
Y4M_HEADER_MOST = 4096
#: how often a wait for the pipe looks whether the input was ended (seconds)
POLL_SECONDS = 0.25
#: the signals whose handlers run without raising while PyAV reads the pipe (``_signals_held``)
HELD_SIGNALS = tuple(s for s in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)) if s is not None)

T = TypeVar("T")


class DefaultSignal(BaseException):
    """A signal whose handler is the system's default (SIGTERM in a program that set none),
    received while PyAV read: sent again once PyAV has returned."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class MemoryStore:
    """Bytes read ahead of the reader, in memory."""

    def __init__(self, head: bytes = b"") -> None:
        self._blocks: collections.deque[memoryview] = collections.deque([memoryview(head)] if head else [])
        self.held = len(head)

    def put(self, block: bytes) -> None:
        self._blocks.append(memoryview(block))
        self.held += len(block)

    def take(self, out: memoryview) -> int:
        """Bytes into ``out``, oldest first; how many."""
        n = 0
        while self._blocks and n < len(out):
            block = self._blocks[0]
            k = min(len(block), len(out) - n)
            out[n:n + k] = block[:k]
            n += k
            if k == len(block):
                self._blocks.popleft()
            else:
                self._blocks[0] = block[k:]
        self.held -= n
        return n

    def peek(self, most: int) -> bytes:
        """Up to ``most`` of the oldest bytes, not taken."""
        return b"".join(self._blocks)[:most]

    def close(self) -> None:
        self._blocks.clear()
        self.held = 0


class FileStore:
    """Bytes read ahead of the reader, in a temporary file of their own (``encode --spool``: all
    that come, so that a live source never waits; the file holds the whole stream until
    ``close`` removes it). Unbuffered: a write that fails (a full disk) leaves nothing behind in
    a buffer to fail again at the next read or at the close."""

    def __init__(self, head: bytes = b"") -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="tokcodec-stdin-")
        self.path = Path(self._dir.name) / "stdin"
        self._file = self.path.open("w+b", buffering=0)
        self._written = self._read = self.held = 0
        self.put(head)

    def put(self, block: bytes) -> None:
        """Append ``block``; an OSError (a full disk) keeps what was written before it."""
        view = memoryview(block)
        self._file.seek(self._written)
        while view:
            try:
                n = self._file.write(view)
                if not n:  # (no progress: a file that takes no more)
                    raise OSError(errno.ENOSPC, "No space left on device")
            except OSError as exc:  # (said where, and what to do)
                raise OSError(exc.errno, f"{exc.strerror}: copying it to {self._dir.name} (set TMPDIR to a "
                                         "place with room)") from None
            view = view[n:]
            self._written += n
            self.held += n

    def take(self, out: memoryview) -> int:
        self._file.seek(self._read)
        n = self._file.readinto(out[:self.held]) or 0
        self._read += n
        self.held -= n
        return n

    def peek(self, most: int) -> bytes:
        self._file.seek(self._read)
        return self._file.read(min(most, self.held))

    def close(self) -> None:
        self.held = 0
        self._file.close()
        self._dir.cleanup()


class PipeReader(io.RawIOBase):
    """The bytes of a pipe (``head`` first: bytes already taken from it), read ahead by a thread of
    its own into at most ``limit`` bytes of memory, for PyAV to read as a file; with ``spool``,
    into a temporary file, as many as come (FileStore).

    ``end()`` (Ctrl-C) ends the input: what comes within ``drain`` seconds is still taken, then
    the reads find its end. ``keep(exc)`` ends the reads at once and keeps ``exc`` for the
    caller to raise once PyAV has returned (``raise_interrupt``): the interrupts that arrive
    while PyAV reads (``_signals_held``)."""

    def __init__(self, stream: BinaryIO, head: bytes = b"", limit: int = READ_AHEAD_BYTES,
                 drain: float | None = None, spool: bool = False) -> None:
        super().__init__()
        self._stream, self._fd = stream, fileno(stream)
        self.limit = sys.maxsize if spool else max(1, limit)
        self._drain = DRAIN_SECONDS if drain is None else drain
        self._store: MemoryStore | FileStore = FileStore(head) if spool else MemoryStore(head)
        self._cond = threading.Condition()
        self._done_at: float | None = None     # when the thread stopped: no more bytes will come
        self._ended_at: float | None = None    # when end() was called
        self.error: OSError | None = None      # why the pipe could not be read
        self.store_error: OSError | None = None  # why the store took no more (a full disk): the input ends there
        self.interrupt: BaseException | None = None
        threading.Thread(target=self._run, name="tokcodec-pipe", daemon=True).start()

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    @property
    def ended(self) -> bool:
        """Whether ``end`` (or ``stop``) was called."""
        return self._ended_at is not None

    @property
    def finished(self) -> bool:
        """Whether the reading thread has stopped (it no longer waits on the pipe)."""
        return self._done_at is not None

    def end(self) -> None:
        """End the input: bytes that come within the drain time are still read, then no more."""
        with self._cond:
            if self._ended_at is None:
                self._ended_at = time.monotonic()
            self._cond.notify_all()

    def ended_for(self) -> float:
        """Seconds since the reading thread stopped (0 while it reads)."""
        return time.monotonic() - self._done_at if self._done_at is not None else 0.0

    def stop(self) -> None:
        """Read no more (no drain), and let go of what was read ahead."""
        with self._cond:
            self._ended_at, self._drain = time.monotonic(), -1.0
            self._store.close()
            self._cond.notify_all()

    def keep(self, exc: BaseException) -> None:
        """Keep ``exc`` (the first one kept stays) and end the reads: the next finds the end."""
        with self._cond:
            self.interrupt = self.interrupt or exc
            self._cond.notify_all()

    def raise_interrupt(self) -> None:
        """Raise the interrupt kept, if any; a DefaultSignal is sent again."""
        if isinstance(self.interrupt, DefaultSignal):
            signal.raise_signal(self.interrupt.signum)
        if self.interrupt is not None:
            raise self.interrupt

    def peek_line(self, most: int) -> bytes:
        """The bytes read ahead up to the first newline (at most ``most``), not taken: waits for
        them (or the end)."""
        with self._cond:
            while True:
                held = self._store.peek(most)
                line = held.split(b"\n", 1)[0]
                if len(line) < len(held) or len(held) >= most or self.finished or self._past_drain():
                    return line
                self._cond.wait(POLL_SECONDS)

    def readinto(self, buffer) -> int:  # type: ignore[override]
        with self._cond:
            while not self._store.held and not self.finished and not self._past_drain() and self.interrupt is None:
                self._cond.wait(POLL_SECONDS)  # (past the drain: a writer gone quiet ends it)
            if self.interrupt is not None:
                return 0
            if not self._store.held:
                if self.error is not None:
                    raise self.error
                return 0
            n = self._store.take(memoryview(buffer).cast("B"))
            self._cond.notify_all()
            return n

    def _run(self) -> None:
        try:
            while not self._past_drain():
                with self._cond:
                    while self._store.held >= self.limit and not self._past_drain():
                        self._cond.wait(POLL_SECONDS)
                if self._past_drain():
                    break
                block = self._read()
                if block is None:
                    continue
                if not block:
                    break
                with self._cond:
                    if self._past_drain():  # (stopped meanwhile: the store is closed)
                        break
                    try:
                        self._store.put(block)
                    except OSError as exc:  # (what came before it is kept, and encoded)
                        self.store_error = exc
                        break
                    finally:
                        self._cond.notify_all()
        except OSError as exc:
            self.error = exc
        finally:
            with self._cond:
                self._done_at = time.monotonic()
                self._cond.notify_all()

    def _past_drain(self) -> bool:
        return self._ended_at is not None and time.monotonic() - self._ended_at > self._drain

    def _read(self) -> bytes | None:
        """The next bytes from the pipe (b"" at its end); None where none came within the poll
        time after ``end`` (so that a writer that stops without closing its end does not keep
        this thread past the drain)."""
        if self._ended_at is not None and self._fd is not None:
            try:
                ready = select.select([self._fd], [], [], POLL_SECONDS)[0]
            except (OSError, ValueError):  # (Windows selects sockets only: then read as before)
                ready = [self._fd]
            if not ready:
                return None
        return read_some(self._stream, CHUNK)


@contextmanager
def _signals_held(reader: PipeReader) -> Iterator[None]:
    """While PyAV reads the pipe (in C, calling ``reader.readinto``), SIGINT's, SIGTERM's and
    SIGHUP's handlers run without raising: what one raises (Ctrl-C's KeyboardInterrupt, SIGTERM's
    Terminated) is kept by the reader, which ends the read, and raised once PyAV has returned
    (``PipeReader.raise_interrupt``). PyAV ignores what its read callbacks raise other than an
    Exception: the interrupt was printed ("Exception ignored in pyio_read_gil") and lost, and the
    read waited on; a try inside readinto could not catch one raised at its first instruction. A
    handler that replaces itself (the first Ctrl-C's, SIGTERM's) is followed. Main thread only."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before: dict[int, Callable | int] = {}

    def run(signum: int, frame: object) -> None:
        handler = before[signum]
        if handler == signal.SIG_IGN:
            return
        if not callable(handler):  # (SIG_DFL: sent again to itself once PyAV has returned)
            reader.keep(DefaultSignal(signum))
            return
        try:
            handler(signum, frame)
        except BaseException as exc:  # noqa: BLE001 - raised by the caller, after PyAV
            reader.keep(exc)
        now = signal.getsignal(signum)
        if now is not run:
            before[signum] = signal.SIG_DFL if now is None else now
            signal.signal(signum, run)

    for signum in HELD_SIGNALS:
        previous = signal.signal(signum, run)
        before[signum] = signal.SIG_DFL if previous is None else previous
    try:
        yield
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)


class StreamedVideo:
    """A Y4M stream opened for one read of its frames: ``info`` from its header and first frame
    (frame count 0: unknown until it ends), ``frames`` once. ``name`` names it in messages
    ("stdin", a named pipe's path). ``on_end(frames)``, where set, is called once the input was
    ended (``end``: Ctrl-C), when the next frame is asked for. At most ``read_ahead`` bytes are
    read ahead of the frames taken, and from the first frame on at most READ_AHEAD_FRAMES
    frames' worth (at least MIN_READ_AHEAD_BYTES); with ``spool`` all that comes, as fast as it
    comes, into a temporary file (a live source, which cannot wait for the encoder)."""

    def __init__(self, stream: BinaryIO, name: str = "stream", head: bytes = b"",
                 read_ahead: int = READ_AHEAD_BYTES, spool: bool = False) -> None:
        self.name = name
        self.reader = PipeReader(stream, head, read_ahead, spool=spool)
        self.frames_read = 0
        self.on_end: Callable[[int], None] | None = None
        self._read = False
        try:
            check_y4m_header(self.reader.peek_line(Y4M_HEADER_MOST), name)
            self._container = self._pyav(lambda: av.open(self.reader, "r", format="yuv4mpegpipe",
                                                         metadata_errors=TAG_ERRORS))
        except av.FFmpegError as exc:
            self.reader.stop()
            raise InputError(f"{name}: not a readable Y4M stream ({reason(exc)})") from None
        except BaseException:
            self.reader.stop()
            raise
        try:
            self._stream = self._container.streams.video[0]
            self._decoder = self._decoded(self._container.decode(self._stream))
            try:
                self._first = next(self._decoder, None)
            except av.FFmpegError as exc:
                raise InputError(f"{name}: cannot decode video ({reason(exc)})") from None
            if self._first is None:
                raise InputError(f"{name}: the Y4M stream ended before its first frame")
            if not spool:
                frame_bytes = sum(plane.buffer_size for plane in self._first.planes)
                self.reader.limit = min(read_ahead, max(MIN_READ_AHEAD_BYTES, READ_AHEAD_FRAMES * frame_bytes))
            rate = nominal_rate(self._stream)
            if rate is None:
                raise InputError(f"{name}: the Y4M stream states no frame rate")
            self.info: VideoInfo = info_of(self._container, self._stream, self._first, standard_rate(rate), 0)
        except BaseException:
            self.close()
            raise

    @property
    def grey(self) -> bool:
        """Whether every frame is grey, by the pixel format (Y4M's "Cmono"): the frames to come
        cannot be looked at before the encode, as a file's are (io.is_grey)."""
        try:
            components = av.VideoFormat(self.info.pixel_format).components
        except ValueError:
            return False
        return sum(not c.is_alpha for c in components) == 1

    def grey_in_colour(self) -> bool:
        """Whether the first frame is grey though the pixel format is colour (a black-and-white
        film out of ffmpeg as yuv420p): coded as colour, as later frames might be."""
        if self.grey:
            return False
        return is_grey_frame(next(rgb_frames(iter((self._first,)), self.name, self._first, None)))

    def end(self) -> None:
        """End the input (Ctrl-C): the frames that came are encoded."""
        self.reader.end()

    def notes(self) -> list[str]:
        """What the encode should warn of: an input ended by a full temporary folder (--spool)."""
        full = self.reader.store_error
        if full is None:
            return []
        return [f"the input was ended after {plural(self.frames_read, 'frame')}, where its copy filled the "
                f"temporary folder ({full.strerror}); the frames that came before are encoded"]

    def frames(self, max_frames: int | None = None, skip: int = 0, deinterlace: str = "auto") -> Iterator[np.ndarray]:
        """The frames as RGB uint8, as io.iter_frames reads a file's: the first ``skip`` decoded
        and passed over, at most ``max_frames``, deinterlaced as ``deinterlace`` says. Once only."""
        check_deinterlace(deinterlace)
        if self._read:
            raise InputError(f"{self.name}: a stream is read once, and its frames were read")
        self._read = True
        first = self._first
        interlaced = deinterlaces(deinterlace, self.info.interlaced, False, first.height)
        lead = 1 if interlaced and skip else 0  # (the frame before a part: the deinterlacer's look back)
        decoded = itertools.chain((first,), self._decoder)
        try:
            yield from rgb_frames(itertools.islice(decoded, skip - lead, None), self.name, first,
                                  self._stream.time_base, max_frames,
                                  (deinterlace == "on") if interlaced else None, lead)
        finally:
            self.close()

    def _pyav(self, call: Callable[[], T]) -> T:
        """``call()``, PyAV reading the pipe, with the signals held (``_signals_held``); then the
        interrupt kept, if any, is raised, and a read error of the pipe is an InputError."""
        try:
            with _signals_held(self.reader):
                result = call()
        except av.FFmpegError:
            self.reader.raise_interrupt()  # (a read it ended cut a frame short)
            raise
        except OSError as exc:
            self.reader.raise_interrupt()
            raise InputError(f"{self.name}: reading failed after {plural(self.frames_read, 'frame')} "
                             f"({exc.strerror or exc})") from None
        self.reader.raise_interrupt()
        return result

    def _decoded(self, frames: Iterator[av.VideoFrame]) -> Iterator[av.VideoFrame]:
        """``frames`` as PyAV decodes them (``_pyav``), counted; ``on_end`` told once the input
        was ended."""
        while True:
            frame = self._pyav(lambda: next(frames, None))
            if self.reader.ended and self.on_end is not None:
                self.on_end(self.frames_read)
                self.on_end = None
            if frame is None:
                return
            self.frames_read += 1
            yield frame

    def close(self) -> None:
        """Close the demuxer and stop reading the pipe."""
        if hasattr(self, "_container"):
            self._container.close()
        self.reader.stop()

    def __enter__(self) -> "StreamedVideo":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_y4m(stream: BinaryIO, name: str = "stream", read_ahead: int = READ_AHEAD_BYTES) -> StreamedVideo:
    """A Y4M stream (a pipe, standard input, any readable binary stream) opened to be encoded as
    it comes; an InputError where it is not one. A stream with a file descriptor is read from
    that (pipes.read_some): give one nothing has read from yet (what a buffered object holds
    already is not seen, and the stream then does not start as Y4M)."""
    head = read_exactly(stream, len(Y4M_MAGIC))
    if not head:
        raise InputError(f"{name}: the stream is empty")
    if head != Y4M_MAGIC:
        raise InputError(f"{name}: not a Y4M stream (a stream is read as it comes only as Y4M, "
                         "e.g. ffmpeg ... -f yuv4mpegpipe -; write other formats to a file first)")
    return StreamedVideo(stream, name, head, read_ahead)

