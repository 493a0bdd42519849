"""encode --ss reads its start by a seek to the key frame before it where the packets' timestamps
allow (tokcodec/io.py): the frames must be exactly those of a decode that counts from the start."""
from __future__ import annotations

import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

import tokcodec.io as io
from conftest import write_clip

FRAMES = 120


def _pictures(n: int = FRAMES) -> np.ndarray:
    """Frames that differ from each other everywhere (a moving pattern and noise)."""
    rng = np.random.default_rng(5)
    y, x = np.mgrid[0:48, 0:64]
    out = np.empty((n, 48, 64, 3), np.uint8)
    for i in range(n):
        base = 128 + 60 * np.sin((x + 3 * i) / 7.0)[..., None] + 40 * np.cos((y - 2 * i) / 5.0)[..., None]
        out[i] = np.clip(base + rng.normal(0, 12, (48, 64, 3)), 0, 255)
    return out


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, Path]:
    """The same pictures as an all-key FFV1 .mkv and, through ffmpeg: H.264 with B-frames and open
    GOPs, variable-rate H.264 with gaps in its timestamps, and an .mp4 cut without re-encoding
    (an edit list: the demuxer discards the packets before the cut)."""
    ffmpeg = pytest.importorskip("imageio_ffmpeg").get_ffmpeg_exe()
    d = tmp_path_factory.mktemp("seek")
    ffv1 = write_clip(d / "ffv1.mkv", _pictures(), Fraction(25))

    def run(*args: str) -> None:
        subprocess.run([ffmpeg, "-v", "error", "-y", "-i", str(ffv1), *args], check=True)

    x264 = ["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p"]
    run(*x264, "-x264-params", "keyint=12:min-keyint=4:open-gop=1:bframes=3", str(d / "bframes.mp4"))
    run("-vf", "setpts='(N+if(gt(N,40),9,0)+if(gt(N,70),4,0))/25/TB'", "-fps_mode", "vfr",
        *x264, "-g", "10", str(d / "vfr.mkv"))
    subprocess.run([ffmpeg, "-v", "error", "-y", "-ss", "1.3", "-i", str(d / "bframes.mp4"), "-c", "copy",
                    str(d / "cut.mp4")], check=True)
    _cut_at_second_key(d / "bframes.mp4", d / "opengop.mkv")
    return {"ffv1": ffv1, "bframes": d / "bframes.mp4", "vfr": d / "vfr.mkv", "cut": d / "cut.mp4",
            "opengop": d / "opengop.mkv"}


def _cut_at_second_key(src: Path, dst: Path) -> None:
    """The packets from the second key frame on, timestamps kept, into .mkv (no edit list): the
    open GOP's leading B-frames after that key frame show before it and never decode, as in a
    stream-copied cut or a .ts segment."""
    import av

    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        stream = inp.streams.video[0]
        copy = out.add_stream_from_template(stream)
        keys = 0
        for packet in inp.demux(stream):
            keys += packet.is_keyframe
            if keys < 2 or not packet.size:
                continue
            packet.stream = copy
            out.mux(packet)


def _first_pts(path: Path) -> int:
    import av

    with av.open(str(path)) as container:
        return next(container.decode(container.streams.video[0])).pts


def _counted(path: Path, max_frames: int | None, skip: int, monkeypatch) -> list[np.ndarray]:
    """The frames as a decode from the start gives them (no seek)."""
    with monkeypatch.context() as m:
        m.setattr(io, "_seek_point", lambda path, skip, first_pts: None)
        return list(io.iter_frames(path, max_frames, skip))


@pytest.mark.parametrize("name", ["ffv1", "bframes", "vfr"])
def test_seek_gives_the_frames_of_a_decode_from_the_start(sources, name, monkeypatch) -> None:
    path = sources[name]
    total = len(_counted(path, None, 0, monkeypatch))
    assert total == FRAMES
    landed: list[bool] = []
    frames_from = io._frames_from

    def spy(*args):
        frames = frames_from(*args)
        landed.append(frames is not None)
        return frames

    monkeypatch.setattr(io, "_frames_from", spy)
    for skip in (1, 11, 12, 13, 37, 41, 50, 71, 100, total - 1, total, total + 5):
        got = list(io.iter_frames(path, 6, skip))
        want = _counted(path, 6, skip, monkeypatch)
        assert len(got) == len(want) == max(0, min(6, total - skip)), (name, skip)
        for a, b in zip(got, want):
            assert np.array_equal(a, b), (name, skip)
    assert sum(landed) >= 6, (name, landed)  # the seek was taken, not only the count


def test_timestamps_that_cannot_be_trusted_are_decoded_and_counted(sources, monkeypatch) -> None:
    """Packets the demuxer discards (an edit list) make frame ranks by timestamp unreliable."""
    path = sources["cut"]
    assert io._seek_point(path, 40, _first_pts(path)) is None
    # the .mp4's own count holds the discarded packets too: the probe counts the packets kept
    # (two of which, B-frames of the open GOP the cut broke, do not decode here)
    import av

    with av.open(str(path)) as container:
        packets = [p for p in container.demux(container.streams.video[0]) if p.size]
    info = io.probe(path)
    assert any(p.is_discard for p in packets)
    assert info.frame_count == sum(not p.is_discard for p in packets)
    assert 0 <= info.frame_count - len(_counted(path, None, 0, monkeypatch)) <= 2 and info.frame_rate == 25
    got = list(io.iter_frames(path, 4, 40))
    assert len(got) == 4
    assert all(np.array_equal(a, b) for a, b in zip(got, _counted(path, 4, 40, monkeypatch)))


def test_a_seek_that_lands_elsewhere_falls_back_to_counting(sources, monkeypatch) -> None:
    path = sources["bframes"]
    point = io._seek_point(path, 50, _first_pts(path))
    assert point is not None and point.key_pts < point.target_pts
    want = _counted(path, 5, 50, monkeypatch)
    real = io._seek_point
    for wrong in (io._SeekPoint(point.key_pts, point.target_pts + 1),       # no frame at that time
                  io._SeekPoint(point.target_pts + 10**6, point.target_pts)):  # lands past it
        monkeypatch.setattr(io, "_seek_point", lambda p, s, f, wrong=wrong: wrong if s == 50 else real(p, s, f))
        got = list(io.iter_frames(path, 5, 50))
        assert len(got) == 5 and all(np.array_equal(a, b) for a, b in zip(got, want))


def test_packets_that_never_decode_do_not_count(sources, monkeypatch) -> None:
    """A file that starts at an open GOP's key frame holds leading B-frames the decoder drops:
    frame N is the N-th timestamp from the first decoded frame's on (the seek was 3 frames early)."""
    import av

    path = sources["opengop"]
    with av.open(str(path)) as container:
        packets = sum(1 for p in container.demux(container.streams.video[0]) if p.size)
    total = len(_counted(path, None, 0, monkeypatch))
    assert packets > total  # the case this is about
    for skip in (1, 3, 10, 20, 40, total - 1):
        got = list(io.iter_frames(path, 4, skip))
        want = _counted(path, 4, skip, monkeypatch)
        assert len(got) == len(want) and all(np.array_equal(a, b) for a, b in zip(got, want)), skip
    assert io._seek_point(path, 20, _first_pts(path)) is not None  # the seek was taken
    assert io.timing_drift(path, Fraction(25)) < 0.001
