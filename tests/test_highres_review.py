"""What a video engineer's walk-through on 1080p, 4K, 59.94 fps and phone footage found (December
2026): no frames/s or time left on the progress bar of long GOPs, 4:2:0 video read about 1 code
value dark, a decode memory estimate fitted at 360p alone, and an address-space limit that ended
in "unexpected RuntimeError". Each test is one finding, fixed."""
from __future__ import annotations

import sys
import time
from fractions import Fraction

import numpy as np
import pytest
import typer

from conftest import smooth_clip
from tokcodec.codec import memory
from tokcodec.io import FrameWriter, read_frames


def test_four_two_zero_video_is_read_at_its_own_brightness(tmp_path) -> None:
    """swscale's fast 4:2:0 -> RGB path read every frame about 1 code value dark: the mean of an
    .mp4 round trip moved by -1.1 / -1.3 / -1.2; with accurate rounding by a tenth of that."""
    rng = np.random.default_rng(3)
    frames = np.clip(smooth_clip(3, 96, 160, seed=5).astype(int) + rng.integers(-40, 41, (3, 96, 160, 3)),
                     0, 255).astype(np.uint8)
    with FrameWriter(tmp_path / "clip.mp4", 160, 96, Fraction(25), crf=0) as writer:
        for frame in frames:
            writer.write(frame)
    back = read_frames(tmp_path / "clip.mp4")
    shift = (back.astype(np.float64) - frames).mean(axis=(0, 1, 2))
    assert np.abs(shift).max() < 0.4, shift


def _progress_bars(monkeypatch) -> list:
    """The rich progress bars the coding commands make from here on, as on a live terminal."""
    import rich.progress

    made = []

    class Spy(rich.progress.Progress):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(rich.progress, "Progress", Spy)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    monkeypatch.setenv("TERM", "xterm")  # (TERM=dumb takes plain lines)
    return made


def test_the_progress_bar_has_a_speed_after_its_first_step(monkeypatch) -> None:
    """rich measures speed over the last 30 s; a 1080p GOP takes 35-200 s on 2 cores, so the bar
    read "-- fps" and no time left for a whole 3-hour encode."""
    from tokcodec.cli.progress import frame_progress

    made = _progress_bars(monkeypatch)
    with frame_progress("encode", 100, quiet=False) as advance:
        time.sleep(0.05)
        advance(17)
        task = made[0].tasks[0]
        assert task.speed is not None and task.time_remaining is not None
    assert made[0].speed_estimate_period >= 3600


def test_a_stage_after_a_rate_plan_shows_its_true_speed(monkeypatch) -> None:
    """A short input's rate plan may keep its last encode as the file: the encode stage then took
    every frame in one instant after the plan's seconds, and its bar read "7000205.9 fps"."""
    from tokcodec.cli import progress

    made = _progress_bars(monkeypatch)
    monkeypatch.setattr(progress, "MIN_SPEED_SECONDS", 0.2)
    with progress.staged_progress([("rate plan", None), ("encode", 34)], quiet=False) as (plan, encode):
        time.sleep(0.25)
        plan(102)
        encode(34)
        fps = made[0].columns[4]
        shown = [fps.render(task).plain for task in made[0].tasks]
    assert "fps" in shown[0] and "--" not in shown[0]     # the plan's 102 frames over 0.25 s
    assert shown[1].strip() == "-- fps"
    # after a plan that kept nothing, the first GOP's time runs from the plan's end: it read
    # "8527945.4 fps" where 65 frames had taken 13 s
    with progress.staged_progress([("rate plan", None), ("encode", 300)], quiet=False) as (plan, encode):
        plan(51)
        time.sleep(0.3)
        encode(65)
        speed = made[1].tasks[1].speed
    assert speed is not None and 65 / 0.6 < speed < 65 / 0.25


def test_the_decode_estimate_covers_1080p() -> None:
    """Fitted at 640x360 alone (24 B a pixel-frame), it said 1.37 GiB for a 1080p GOP of 17
    frames that peaked at 1.69-2.09 GiB (fp32: 2.8-3.1 GiB)."""
    bf16 = memory.DecodeFootprint(1920, 1088, 17, "bf16").peak_bytes()
    fp32 = memory.DecodeFootprint(1920, 1088, 17, "fp32").peak_bytes()
    assert 2.09 * 2**30 <= bf16 <= 2.6 * 2**30  # (the highest peaks measured: 2.09 and 3.08 GiB)
    assert 3.08 * 2**30 <= fp32 <= 3.6 * 2**30


def test_an_address_space_limit_is_named_when_memory_runs_out(monkeypatch, capsys) -> None:
    """Under `ulimit -v` an allocation fails however much memory is free: the error read
    "unexpected RuntimeError: [enforce fail ...] DefaultCPUAllocator: can't allocate memory"."""
    import resource

    from tokcodec.cli.policy import errors

    monkeypatch.setattr(resource, "getrlimit", lambda which: (2 * 2**30, resource.RLIM_INFINITY))
    with pytest.raises(typer.Exit), errors():
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 4 bytes")
    err = capsys.readouterr().err
    assert err.startswith("tokcodec: error: out of memory (try a smaller --gop")
    assert "at most 2.0 GB of address space (ulimit -v)" in err
    with pytest.raises(typer.Exit), errors():
        raise RuntimeError("something else")
    assert "unexpected RuntimeError: something else" in capsys.readouterr().err


def test_memory_advice_never_says_gop_1_or_less() -> None:
    footprint = memory.EncodeFootprint(1920, 1080, 17, "bf16")
    one = footprint.peak_bytes() // 3
    assert footprint.longest_gop_within(one) == 1
    with pytest.raises(memory.MemoryLimitError, match=r"use --gop 1 or a smaller --scale"):
        memory.check_encode_memory(footprint, available=one, resident=0)
