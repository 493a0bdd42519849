"""Findings of a live-pipeline walk-through (December 2026): Matroska written to a pipe with PCM
audio, named pipes as inputs, a stalled reader of `decode -o -`, a file still being written,
`verify -`."""
from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import threading
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from tokcodec.errors import InputError

posix_only = pytest.mark.skipif(os.name != "posix", reason="named pipes and signals as on Unix")


def _cli(*args: object) -> list[str]:
    return [sys.executable, "-m", "tokcodec", *map(str, args)]


def _env() -> dict[str, str]:
    return dict(os.environ, TOKCODEC_NO_REEXEC="1")


def _clip(path: Path, frames: int = 21, size: tuple[int, int] = (48, 32)) -> Path:
    from tokcodec.io import FrameWriter
    rng = np.random.default_rng(0)
    w, h = size
    with FrameWriter(path, w, h, Fraction(25)) as out:
        for i in range(frames):
            out.write(np.clip(rng.normal(128, 30, (h, w, 3)) + i, 0, 255).astype(np.uint8))
    return path


def test_matroska_from_a_pipe_with_pcm_audio_keeps_its_rate(tmp_path) -> None:
    """Written to a pipe, Matroska states no duration; FFmpeg's estimate from the PCM audio's bit
    rate (4.16 s for 1.4 s) made a 25 fps stream 8.4 fps, 2 s out of step with its sound."""
    ffmpeg = pytest.importorskip("imageio_ffmpeg").get_ffmpeg_exe()
    piped = subprocess.run([ffmpeg, "-loglevel", "error", "-f", "lavfi", "-i", "testsrc2=s=64x48:r=25:d=1.4",
                            "-f", "lavfi", "-i", "sine=r=48000:d=1.4", "-c:v", "ffv1", "-c:a", "pcm_s16le",
                            "-f", "matroska", "-"], capture_output=True, check=True).stdout
    (tmp_path / "piped.mkv").write_bytes(piped)
    from tokcodec.io import probe
    info = probe(tmp_path / "piped.mkv")
    assert info.frame_rate == 25 and info.frame_count == 35


@posix_only
def test_a_named_pipe_is_copied_as_standard_input_is(tmp_path) -> None:
    src = _clip(tmp_path / "in.y4m")
    fifo = tmp_path / "in.fifo"
    os.mkfifo(fifo)

    def feed() -> None:
        with open(fifo, "wb") as out:
            out.write(src.read_bytes())
    threading.Thread(target=feed, daemon=True).start()
    res = subprocess.run(_cli("encode", fifo, "-o", tmp_path / "f.tok", "--model", "tiny", "--gop", "9"),
                         capture_output=True, text=True, env=_env(), timeout=300)
    assert res.returncode == 0, res.stderr
    import tokcodec
    assert tokcodec.file_info(tmp_path / "f.tok").header.frame_count == 21
    # the library, which reads a path in place, says why it cannot, instead of waiting for ever
    os.unlink(fifo)
    os.mkfifo(fifo)
    with pytest.raises(InputError, match="a pipe, not a file"):
        tokcodec.encode_video(fifo, tmp_path / "g.tok", model="tiny")


@posix_only
def test_sigterm_stops_a_decode_whose_reader_stalled(tmp_path) -> None:
    """The reader holds the pipe and reads nothing (a paused player): the write waits, and SIGTERM
    (a supervisor) must still stop the command, with 143 and its word, not wait for the reader."""
    src = _clip(tmp_path / "in.mkv", frames=21, size=(96, 64))  # 21 Y4M frames: 390 kB, past a pipe's 64 kB
    assert subprocess.run(_cli("encode", src, "-o", tmp_path / "a.tok", "--model", "tiny", "--gop", "9"),
                          env=_env(), capture_output=True, timeout=300).returncode == 0
    read_end, write_end = os.pipe()
    proc = subprocess.Popen(_cli("decode", tmp_path / "a.tok", "-o", "-"), stdout=write_end,
                            stderr=subprocess.PIPE, text=True, env=_env())
    os.close(write_end)
    try:
        assert select.select([read_end], [], [], 120)[0]  # the first bytes are in the pipe
        time.sleep(1.0)  # the pipe fills; the decode waits on it
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
        os.close(read_end)
    assert proc.returncode == 143 and "tokcodec: terminated" in err, err


def test_y4m_to_standard_output_is_written_as_before(tmp_path) -> None:
    """The Y4M stream is FFmpeg's muxer's bytes, as when FFmpeg wrote it to fd 1 itself."""
    src = _clip(tmp_path / "in.mkv")
    assert subprocess.run(_cli("encode", src, "-o", tmp_path / "a.tok", "--model", "tiny", "--gop", "9"),
                          env=_env(), capture_output=True, timeout=300).returncode == 0
    streamed = subprocess.run(_cli("decode", tmp_path / "a.tok", "-o", "-"), capture_output=True, env=_env(),
                              timeout=300)
    assert streamed.returncode == 0, streamed.stderr
    assert subprocess.run(_cli("decode", tmp_path / "a.tok", "-o", tmp_path / "b.y4m"), env=_env(),
                          capture_output=True, timeout=300).returncode == 0
    assert streamed.stdout == (tmp_path / "b.y4m").read_bytes()


def test_an_input_that_grows_while_it_is_read_is_said(tmp_path, monkeypatch) -> None:
    import tokcodec
    from tokcodec.codec import pipeline
    src = _clip(tmp_path / "in.mkv", frames=9)
    real = pipeline.file_state
    calls = []

    def growing(path: Path):  # the second look, after the encode, sees a longer file
        calls.append(path)
        state = real(path)
        return state if len(calls) == 1 else (state[0] + 1000, state[1] + 1)
    monkeypatch.setattr(pipeline, "file_state", growing)
    st = tokcodec.encode_video(src, tmp_path / "a.tok", model="tiny", gop=9)
    assert any("changed while it was read" in w for w in st.warnings), st.warnings
    monkeypatch.setattr(pipeline, "file_state", real)
    st = tokcodec.encode_video(src, tmp_path / "b.tok", model="tiny", gop=9)
    assert not any("changed while it was read" in w for w in st.warnings)


def test_verify_of_standard_input_says_to_give_paths() -> None:
    res = subprocess.run(_cli("verify", "-"), input="x", capture_output=True, text=True, env=_env(), timeout=120)
    assert res.returncode == 2 and "verify reads files, not standard input" in res.stderr, res.stderr
