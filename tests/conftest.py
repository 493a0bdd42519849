from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from tokcodec.startup import startup_environment

# the CLI's start-up settings (tokcodec/startup.py), as `tokcodec` itself runs: here (before torch
# loads, so that its OpenMP reads them) and in the processes tests start
os.environ.update(startup_environment())

import torch  # noqa: E402

from tokcodec.device import keep_freed_memory  # noqa: E402

os.environ.setdefault("TOKCODEC_NO_REEXEC", "1")
torch.set_num_threads(min(2, os.cpu_count() or 1))
keep_freed_memory()  # (glibc read its variables at start-up: applied to this process by hand)


def smooth_clip(frames: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """A moving smooth colour pattern, uint8 (T, H, W, 3)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    phases = rng.uniform(0, 6.28, 3)
    out = np.empty((frames, height, width, 3), np.uint8)
    for t in range(frames):
        for c in range(3):
            v = np.sin((xx + 2 * t) / (7 + 3 * c) + phases[c]) * np.cos((yy - t) / (9 + c))
            out[t, :, :, c] = (127.5 + 120 * v).astype(np.uint8)
    return out


def write_clip(path: Path, frames: np.ndarray, rate: Fraction = Fraction(25)) -> Path:
    from tokcodec.io import FrameWriter

    with FrameWriter(path, frames.shape[2], frames.shape[1], rate) as w:
        for f in frames:
            w.write(f)
    return path


@pytest.fixture(scope="session")
def tiny_model():
    from tokcodec.model.zoo import load_tokenizer

    return load_tokenizer("tiny")


@pytest.fixture(scope="module")
def linked_file(tmp_path_factory) -> tuple[Path, Path, np.ndarray]:
    """45 frames at 48x64 with a tone from 0.2 s, GOPs of 5 with a key GOP every 3 (chunks 1, 2, 4,
    5, 7, 8 linked: the default model's tokens of a smooth clip link), and its whole decode
    (lossless FFV1): (clip, .tok, frames). For parts of files (decode --ss, cut, concat, split)."""
    from test_audio import make_av_clip
    from tokcodec.codec.pipeline import decode_video, encode_video
    from tokcodec.io import read_frames

    work = tmp_path_factory.mktemp("linked")
    clip = make_av_clip(work / "tone.mkv", frames=45, audio_start=0.2, pictures=smooth_clip(45, 48, 64))
    tok = work / "t.tok"
    st = encode_video(clip, tok, gop=5, key_interval=3, passes=0)
    assert st.linked_gops == 6
    decode_video(tok, work / "whole.mkv")
    return clip, tok, read_frames(work / "whole.mkv")
