"""A live stream piped into `tokcodec encode -` ends where Ctrl-C ends it, and what came is encoded
(as ffmpeg's first Ctrl-C finishes its output); elsewhere Ctrl-C still aborts and leaves nothing."""
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

from tokcodec.cli import stdio
from tokcodec.errors import Terminated
from tokcodec.interrupts import sigterm_as_interrupt

posix_only = pytest.mark.skipif(os.name != "posix", reason="process groups and signals as a Unix terminal sends them")

#: a camera as a pipe sees it: a Y4M stream of 64x64 frames, 25 a second, until it is stopped
PRODUCER = r"""
import sys, time
out = sys.stdout.buffer
out.write(b"YUV4MPEG2 W64 H64 F25:1 Ip A1:1 C420jpeg\n")
n = 0
while True:
    out.write(b"FRAME\n" + bytes([(3 * n) % 256]) * (64 * 64) + bytes([128]) * (2 * 32 * 32))
    out.flush()
    n += 1
    time.sleep(0.04)
"""


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "tokcodec", *args]


def _env() -> dict[str, str]:
    return dict(os.environ, TOKCODEC_NO_REEXEC="1")


def _interrupt_after(seconds: float, signum: int = signal.SIGINT) -> threading.Timer:
    """This (main) thread gets ``signum``'s handler run after ``seconds``, as Ctrl-C would."""
    timer = threading.Timer(seconds, _thread.interrupt_main, args=(signum,))
    timer.start()
    return timer


def _pipe_fed(chunks: list[bytes], then_wait: bool = True) -> io.FileIO:
    """The read end of a pipe into which ``chunks`` are written, held open (a stream still
    live) unless ``then_wait`` is False (then it ends)."""
    read_fd, write_fd = os.pipe()

    def feed() -> None:
        for chunk in chunks:
            os.write(write_fd, chunk)
        if not then_wait:
            os.close(write_fd)
    threading.Thread(target=feed, daemon=True).start()
    return io.FileIO(read_fd, "rb")


def test_ctrl_c_ends_a_live_standard_input_and_keeps_what_came(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(stdio, "DRAIN_SECONDS", 0.2)
    stream = _pipe_fed([b"a" * 1000, b"b" * 500])  # and then nothing more, the pipe left open
    timer = _interrupt_after(0.5)
    try:
        stdio._spool(stream, tmp_path / "spool", ends_at_interrupt=True)
    finally:
        timer.cancel()
    assert (tmp_path / "spool").read_bytes() == b"a" * 1000 + b"b" * 500


def test_ctrl_c_aborts_where_the_input_does_not_end_there(tmp_path) -> None:
    """decode / tokens from standard input, nothing read yet, or SIGTERM: interrupted, as before."""
    for ends, chunks, signum, raised in ((False, [b"x" * 100], signal.SIGINT, KeyboardInterrupt),
                                         (True, [], signal.SIGINT, KeyboardInterrupt),
                                         (True, [b"x" * 100], signal.SIGTERM, Terminated)):
        stream = _pipe_fed(chunks)
        with sigterm_as_interrupt():
            timer = _interrupt_after(0.3, signum)
            try:
                with pytest.raises(raised):
                    stdio._spool(stream, tmp_path / "spool", ends_at_interrupt=ends)
            finally:
                timer.cancel()


def test_a_stream_that_ends_is_copied_whole(tmp_path) -> None:
    data = [bytes([i]) * 70_000 for i in range(20)]
    stdio._spool(_pipe_fed(data, then_wait=False), tmp_path / "spool", ends_at_interrupt=True)
    assert (tmp_path / "spool").read_bytes() == b"".join(data)
    stdio._spool(io.BytesIO(b"no file descriptor"), tmp_path / "spool2", ends_at_interrupt=False)
    assert (tmp_path / "spool2").read_bytes() == b"no file descriptor"


def _started(tmp_path: Path, *args: str) -> tuple[subprocess.Popen, subprocess.Popen]:
    """The producer piped into ``tokcodec ARGS``, the two in a process group of their own (as a
    shell's pipeline is, which the terminal's Ctrl-C reaches whole)."""
    producer = subprocess.Popen([sys.executable, "-c", PRODUCER], stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, process_group=0)
    consumer = subprocess.Popen(_cli(*args), stdin=producer.stdout, stderr=subprocess.PIPE, text=True,
                                env=_env(), cwd=tmp_path, process_group=producer.pid)
    producer.stdout.close()
    return producer, consumer


@posix_only
@pytest.mark.parametrize("spool", [[], ["--spool"]])
def test_ctrl_c_on_a_piped_capture_encodes_what_came(tmp_path, spool) -> None:
    """`producer | tokcodec encode - -o cam.tok`, Ctrl-C at the terminal (SIGINT to both): the
    producer stops, tokcodec encodes the frames that came and exits 0 with a file that decodes;
    the Y4M stream read as it comes, or (--spool) copied to a temporary file as it comes."""
    producer, consumer = _started(tmp_path, "encode", "-", "-o", "cam.tok", "--model", "tiny", "--gop", "5", *spool)
    try:
        time.sleep(4)  # start-up, then about 1-3 s of frames
        os.killpg(producer.pid, signal.SIGINT)
        _, err = consumer.communicate(timeout=120)
    finally:
        producer.kill()
        consumer.kill()
    assert consumer.returncode == 0, err
    assert "standard input ended by Ctrl-C: encoding the frames that came" in err and "Traceback" not in err
    import tokcodec
    info = tokcodec.file_info(tmp_path / "cam.tok")
    assert info.header.frame_count >= 5 and info.header.width == 64


@posix_only
def test_ctrl_c_while_decode_reads_standard_input_still_aborts(tmp_path) -> None:
    producer, consumer = _started(tmp_path, "decode", "-", "-o", "out.mkv")
    try:
        time.sleep(4)
        consumer.send_signal(signal.SIGINT)
        _, err = consumer.communicate(timeout=60)
    finally:
        producer.kill()
        consumer.kill()
    assert consumer.returncode == 130 and "tokcodec: interrupted" in err, err
    assert not list(tmp_path.iterdir())


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_full_disk_while_copying_is_an_error_not_a_short_input() -> None:
    for size in (100, 3_000_000):  # (written at the close, or at a write)
        with pytest.raises(OSError):
            stdio._spool(_pipe_fed([b"z" * size], then_wait=False), Path("/dev/full"), ends_at_interrupt=True)


def test_a_terminal_is_told_how_to_end_a_long_copy(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(stdio, "NOTICE_AFTER_SECONDS", 0.1)
    monkeypatch.setattr(stdio, "live_terminal", lambda: True)
    monkeypatch.setattr(stdio, "DRAIN_SECONDS", 0.1)
    stream = _pipe_fed([b"x"])
    timer = _interrupt_after(0.8)
    try:
        stdio._spool(stream, tmp_path / "spool", ends_at_interrupt=True)
    finally:
        timer.cancel()
    err = capsys.readouterr().err
    assert err.count("reading standard input (Ctrl-C ends it there") == 1
    assert "standard input ended by Ctrl-C after 1 byte:" in err
    stdio._spool(_pipe_fed([b"y"], then_wait=False), tmp_path / "quick", ends_at_interrupt=True)
    assert "reading standard input" not in capsys.readouterr().err  # (over before the notice is due)


@posix_only
@pytest.mark.parametrize("ignored", [False, True])
def test_a_hang_up_stops_a_spooled_capture_and_leaves_nothing(tmp_path, ignored) -> None:
    """SIGHUP (a closed terminal, a dropped ssh session) during `producer | tokcodec encode -
    --spool`: exit 129, the copy in $TMPDIR and the partial .tok removed (SIGHUP's default had
    left the whole capture there); under nohup (SIGHUP ignored) the encode goes on."""
    env = dict(_env(), TMPDIR=str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    producer = subprocess.Popen([sys.executable, "-c", PRODUCER], stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, process_group=0)
    args = _cli("encode", "-", "-o", "cam.tok", "--model", "tiny", "--gop", "5", "--spool")
    if ignored:  # (nohup's way: the program starts with SIGHUP ignored)
        args = [sys.executable, "-c", "import signal, sys, os; signal.signal(signal.SIGHUP, signal.SIG_IGN); "
                "os.execv(sys.executable, [sys.executable] + sys.argv[1:])", *args[1:]]
    consumer = subprocess.Popen(args, stdin=producer.stdout, stderr=subprocess.PIPE, text=True, env=env,
                                cwd=tmp_path)
    producer.stdout.close()
    try:
        time.sleep(4)
        consumer.send_signal(signal.SIGHUP)
        time.sleep(1)
        if ignored:
            assert consumer.poll() is None  # (still encoding)
            producer.kill()  # (the stream ends: what came is encoded)
        _, err = consumer.communicate(timeout=120)
    finally:
        producer.kill()
        consumer.kill()
    if ignored:
        assert consumer.returncode == 0 and (tmp_path / "cam.tok").exists(), err
    else:
        assert consumer.returncode == 129 and "tokcodec: hung up (SIGHUP)" in err, err
        assert not [p for p in tmp_path.iterdir() if p.name != "tmp"]
    assert not list((tmp_path / "tmp").iterdir())
