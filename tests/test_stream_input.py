"""A Y4M stream is encoded as it comes (tokcodec/stream_input.py): the same bytes as its file,
GOPs coded while the pipe still delivers, nothing copied to disk, and Ctrl-C / SIGTERM that land
while a read waits on the pipe are raised, not lost inside PyAV."""
from __future__ import annotations

import _thread
import io
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import smooth_clip, write_clip
from tokcodec import stream_input
from tokcodec.cli import stdio
from tokcodec.codec.pipeline import encode_video
from tokcodec.errors import ArgumentError, InputError, Terminated
from tokcodec.interrupts import sigterm_as_interrupt
from tokcodec.stream_input import StreamedVideo, open_y4m

MONO_HEADER = b"YUV4MPEG2 W32 H32 F25:1 Ip A1:1 Cmono\n"


@pytest.fixture(scope="module")
def y4m_file(tmp_path_factory) -> Path:
    """30 frames of 48x64 as a Y4M file (4:4:4, as decode -o - writes)."""
    return write_clip(tmp_path_factory.mktemp("stream") / "clip.y4m", smooth_clip(30, 48, 64))


def _pipe(chunks: list[bytes], close: bool = True) -> tuple[io.FileIO, list[int]]:
    """The read end of a pipe a thread writes ``chunks`` into (then closes it, or holds it open,
    a stream still live), and the count of chunks written so far."""
    read_fd, write_fd = os.pipe()
    written = [0]

    def feed() -> None:
        for chunk in chunks:
            os.write(write_fd, chunk)
            written[0] += 1
        if close:
            os.close(write_fd)
    threading.Thread(target=feed, daemon=True).start()
    return io.FileIO(read_fd, "rb"), written


def _frames_of(data: bytes) -> tuple[bytes, list[bytes]]:
    """A Y4M stream's header line and its frames (each with its FRAME line)."""
    header, _, rest = data.partition(b"\n")
    parts = rest.split(b"FRAME\n")[1:]
    return header + b"\n", [b"FRAME\n" + p for p in parts]


def _interrupt_after(seconds: float, signum: int = signal.SIGINT) -> threading.Timer:
    timer = threading.Timer(seconds, _thread.interrupt_main, args=(signum,))
    timer.start()
    return timer


@pytest.mark.parametrize("options", [{}, {"start": "0.2", "max_frames": 9, "gop": 5}])
def test_a_stream_encodes_to_the_bytes_of_its_file(y4m_file, tiny_model, tmp_path, options) -> None:
    encode_video(y4m_file, tmp_path / "file.tok", model=tiny_model, **options)
    with y4m_file.open("rb") as fh:  # a binary stream: opened and closed by encode_video
        st = encode_video(fh, tmp_path / "object.tok", model=tiny_model, **options)
    stream, _ = _pipe([y4m_file.read_bytes()])
    with open_y4m(stream) as video:
        encode_video(video, tmp_path / "pipe.tok", model=tiny_model, **options)
    expected = (tmp_path / "file.tok").read_bytes()
    assert (tmp_path / "object.tok").read_bytes() == expected and (tmp_path / "pipe.tok").read_bytes() == expected
    assert st.frames == options.get("max_frames", 30) and st.input == str(y4m_file)


def test_gops_are_coded_while_the_pipe_still_delivers(y4m_file, tiny_model, tmp_path) -> None:
    """The program piping in waits for the encoder (back-pressure): at the first GOP's end most of
    the stream is still unwritten, where the copy to a file read all of it first."""
    header, frames = _frames_of(y4m_file.read_bytes())
    frames = frames * 4  # 120 frames of 9 kB: a pipe's 64 kB buffer and the read-ahead hold a few
    stream, written = _pipe([header, *frames])
    seen: list[int] = []
    video = StreamedVideo(stream, read_ahead=1)
    st = encode_video(video, tmp_path / "out.tok", model=tiny_model, gop=5,
                      progress=lambda n: seen.append(written[0]))
    assert st.frames == 120 and len(seen) == 24
    assert seen[0] < 40, seen  # (chunks written when the first GOP was done, of 121)


def test_a_spooled_stream_never_holds_the_source_back(y4m_file) -> None:
    """With --spool a live source is read as fast as it comes, into a temporary file, while the
    frames are taken from there at the encoder's pace: every frame is kept; the file goes at the end."""
    header, frames = _frames_of(y4m_file.read_bytes())
    stream, written = _pipe([header, *frames * 4])
    video = StreamedVideo(stream, read_ahead=1, spool=True)
    deadline = time.monotonic() + 30
    while written[0] < 121 and time.monotonic() < deadline:  # (no frame taken yet)
        time.sleep(0.01)
    assert written[0] == 121
    spooled = video.reader._store.path
    assert spooled.exists()
    assert len(list(video.frames())) == 120 and not spooled.exists()


def test_grey_streams_and_what_a_stream_refuses(tiny_model, tmp_path) -> None:
    grey = MONO_HEADER + b"".join(b"FRAME\n" + bytes([40 + 5 * k]) * (32 * 32) for k in range(6))
    (tmp_path / "grey.y4m").write_bytes(grey)
    st = encode_video(io.BytesIO(grey), tmp_path / "s.tok", model=tiny_model)
    assert st.grey and st.input == "stream"  # (by its pixel format: the frames are not looked at first)
    assert not any("grey" in w for w in st.warnings)
    chroma = bytes([128]) * (2 * 16 * 16)  # the same frames as 4:2:0 colour: coded as colour, and said
    colour = MONO_HEADER.replace(b"Cmono", b"C420jpeg") + b"".join(
        b"FRAME\n" + bytes([40 + 5 * k]) * (32 * 32) + chroma for k in range(6))
    st = encode_video(io.BytesIO(colour), tmp_path / "c.tok", model=tiny_model)
    assert not st.grey and any("first frame is grey, but its pixel format (yuv420p" in w for w in st.warnings), \
        st.warnings
    encode_video(tmp_path / "grey.y4m", tmp_path / "f.tok", model=tiny_model)
    assert (tmp_path / "s.tok").read_bytes() == (tmp_path / "f.tok").read_bytes()
    untouched = io.BytesIO(grey)
    with pytest.raises(ArgumentError, match="read once as it comes"):
        encode_video(untouched, tmp_path / "t.tok", model=tiny_model, bpp=0.1)
    assert untouched.tell() == 0  # (refused before a byte was taken: the caller may still copy it)
    with pytest.raises(ArgumentError, match="^stream: a target rate"), open_y4m(io.BytesIO(grey)) as video:
        encode_video(video, tmp_path / "t.tok", model=tiny_model, bitrate=100_000)
    for data, needle in ((b"", "the stream is empty"), (b"RIFF....WAVEfmt ", "not a Y4M stream"),
                         (MONO_HEADER, "ended before its first frame"),
                         (b"YUV4MPEG2 W0 H32 F25:1 Cmono\nFRAME\n", "invalid frame size 0x32"),
                         (b"YUV4MPEG2 H32 F25:1 Cmono\nFRAME\n", "malformed y4m header"),
                         (b"YUV4MPEG2 W99999 H32 F25:1 Cmono\n", "too large"),
                         (b"YUV4MPEG2 W32 H32 F25:1 Cmono\nFRAME\n" + bytes(1024), "ended after 1 frame, before frame 5")):
        with pytest.raises(InputError, match=needle):
            encode_video(io.BytesIO(data), tmp_path / "x.tok", model=tiny_model, start="0.2")
    assert not (tmp_path / "t.tok").exists() and not (tmp_path / "x.tok").exists()
    video = open_y4m(io.BytesIO(grey))
    assert len(list(video.frames())) == 6
    with pytest.raises(InputError, match="read once"):
        next(video.frames())


@pytest.mark.parametrize("signum, raised", [(signal.SIGINT, KeyboardInterrupt), (signal.SIGTERM, Terminated)])
def test_an_interrupt_while_a_read_waits_on_the_pipe_is_raised(signum, raised) -> None:
    """PyAV ignored a KeyboardInterrupt raised in its read callback (printed "Exception ignored"
    and went on waiting): kept by the reader and raised once PyAV returns."""
    stream, _ = _pipe([MONO_HEADER, b"FRAME\n" + bytes(32 * 32)], close=False)  # then nothing, still open
    video = StreamedVideo(stream)
    started = time.monotonic()
    with sigterm_as_interrupt():
        timer = _interrupt_after(0.5, signum)
        try:
            with pytest.raises(raised):
                list(video.frames())
        finally:
            timer.cancel()
    assert time.monotonic() - started < 10


def test_ctrl_c_ends_a_stream_and_what_came_is_encoded(monkeypatch, capsys) -> None:
    monkeypatch.setattr(stream_input, "DRAIN_SECONDS", 0.2)
    stream, _ = _pipe([MONO_HEADER] + [b"FRAME\n" + bytes(32 * 32)] * 3, close=False)
    video = StreamedVideo(stream)
    timer = _interrupt_after(0.5)
    try:
        with stdio._interrupt_ends(video, "standard input"):
            frames = list(video.frames())
    finally:
        timer.cancel()
    assert len(frames) == 3
    assert "standard input ended by Ctrl-C: encoding the frames that came" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_the_command_line_streams_y4m_and_spools_on_request(y4m_file, tmp_path) -> None:
    """encode - and tokens - of a Y4M stream: nothing in $TMPDIR (the copy was as large as the
    raw stream); --spool copies it there as it comes, as a live source needs; the same bytes each way."""
    env = dict(os.environ, TOKCODEC_NO_REEXEC="1", TMPDIR=str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    seen: list[list[str]] = []

    def run(*args: str) -> subprocess.CompletedProcess:
        watch = subprocess.Popen([sys.executable, "-c", _WATCH, str(tmp_path / "tmp")], stdout=subprocess.PIPE,
                                 stdin=subprocess.PIPE, text=True)
        res = subprocess.run([sys.executable, "-m", "tokcodec", *args], input=y4m_file.read_bytes(),
                             capture_output=True, env=env, timeout=300)
        seen.append(watch.communicate("stop\n", timeout=30)[0].split())
        assert res.returncode == 0, res.stderr
        return res

    common = ["--model", "tiny", "--gop", "5", "-y"]
    run("encode", "-", "-o", str(tmp_path / "a.tok"), *common)
    run("encode", "-", "-o", str(tmp_path / "b.tok"), "--spool", *common)
    run("tokens", "-", "-o", str(tmp_path / "t.npy"), "--model", "tiny", "--gop", "5")
    assert (tmp_path / "a.tok").read_bytes() == (tmp_path / "b.tok").read_bytes()
    assert not any(name.startswith("tokcodec-stdin-") for name in seen[0] + seen[2]), seen
    assert any(name.startswith("tokcodec-stdin-") for name in seen[1]), seen


#: what a folder holds at any moment until told to stop (polled every 20 ms)
_WATCH = r"""
import os, sys, threading
names, stop = set(), threading.Event()
threading.Thread(target=lambda: (sys.stdin.readline(), stop.set()), daemon=True).start()
while not stop.wait(0.02):
    names.update(os.listdir(sys.argv[1]))
print(" ".join(sorted(names)))
"""


@pytest.mark.parametrize("ended_before, aborts", [(0.1, True), (60.0, False)])
def test_ctrl_c_once_the_stream_has_ended(monkeypatch, ended_before, aborts) -> None:
    """Long after the stream's end there is no input left to end: the first Ctrl-C aborts, as it
    did when the stream was copied first (it was taken, and the encode ran on). Soon after, it is
    the Ctrl-C that ended it (the producer got it too and closed the pipe while a computation kept
    Python from the handler: the capture was thrown away): the frames are encoded."""
    monkeypatch.setattr(stdio, "ENDED_BEFORE_SECONDS", ended_before)
    stream, _ = _pipe([MONO_HEADER] + [b"FRAME\n" + bytes(32 * 32)] * 6)  # then closed
    video = StreamedVideo(stream)
    deadline = time.monotonic() + 10
    while not video.reader.finished and time.monotonic() < deadline:
        time.sleep(0.01)
    taken, aborted = 0, False
    timer = _interrupt_after(0.3)
    try:
        with stdio._interrupt_ends(video, "standard input"):
            for _ in video.frames():
                taken += 1
                time.sleep(0.2)  # (an encode's work on each)
    except KeyboardInterrupt:
        aborted = True
    finally:
        timer.cancel()
    assert aborted == aborts and (aborts or taken == 6)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_full_spool_ends_the_input_and_a_failing_pipe_is_an_input_error(monkeypatch, tiny_model, tmp_path) -> None:
    """--spool's copy filling the temporary folder ends the input there, with a warning, and the
    frames that came are encoded (the whole encode was lost); a pipe whose read fails is an
    InputError that says after how many frames."""
    from tokcodec.stream_input import FileStore

    frames = [b"FRAME\n" + bytes([10 * k]) * (32 * 32) for k in range(8)]
    put, room = FileStore.put, [len(MONO_HEADER) + 2 * len(frames[0]) + 100]  # (the disk fills in frame 3)

    def filling(self, block: bytes) -> None:
        put(self, block[:room[0]])
        room[0] -= min(room[0], len(block))
        if not room[0]:
            raise OSError(28, "No space left on device: copying it to /tmp/x (set TMPDIR to a place with room)")
    monkeypatch.setattr(FileStore, "put", filling)
    stream, _ = _pipe([MONO_HEADER] + frames)
    st = encode_video(StreamedVideo(stream, spool=True), tmp_path / "s.tok", model=tiny_model)
    assert st.frames == 2 and any("filled the temporary folder (No space left on device" in w for w in st.warnings)

    class Failing:
        """A stream without a file descriptor whose read fails after three frames."""

        def __init__(self) -> None:
            self.data = MONO_HEADER + b"".join(frames[:3])

        def read(self, size: int) -> bytes:
            if not self.data:
                raise OSError(5, "Input/output error")
            out, self.data = self.data[:size], self.data[size:]
            return out
    with pytest.raises(InputError, match=r"reading failed after 3 frames \(Input/output error\)"):
        encode_video(Failing(), tmp_path / "f.tok", model=tiny_model)
    assert not (tmp_path / "f.tok").exists()


def test_odd_streams_and_sources(tiny_model, tmp_path) -> None:
    """A path of another class (it was taken for a stream), a non-blocking pipe (it gave
    "unexpected BlockingIOError"), and a grey .tok decoded to Y4M: grey, so that its re-encode
    as a stream is grey too (decode wrote 4:4:4)."""
    from pathlib import PurePosixPath

    from tokcodec.codec.pipeline import decode_video

    grey = MONO_HEADER + b"".join(b"FRAME\n" + bytes([60 + 9 * k]) * (32 * 32) for k in range(6))
    (tmp_path / "grey.y4m").write_bytes(grey)
    st = encode_video(PurePosixPath(tmp_path / "grey.y4m"), tmp_path / "g.tok", model=tiny_model)
    assert st.grey and st.input == str(tmp_path / "grey.y4m")
    decode_video(tmp_path / "g.tok", tmp_path / "back.y4m")
    assert (tmp_path / "back.y4m").read_bytes().startswith(b"YUV4MPEG2 W32 H32 F25:1 Ip A0:0 Cmono")
    with (tmp_path / "back.y4m").open("rb") as fh:
        assert encode_video(fh, tmp_path / "again.tok", model=tiny_model).grey
    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)

    def later() -> None:
        time.sleep(0.3)
        os.write(write_fd, grey)
        os.close(write_fd)
    threading.Thread(target=later, daemon=True).start()
    with io.FileIO(read_fd, "rb") as stream:
        assert encode_video(stream, tmp_path / "nb.tok", model=tiny_model).frames == 6
