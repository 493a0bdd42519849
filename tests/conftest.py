from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from tokcodec.device import allocator_environment, keep_freed_memory

os.environ.setdefault("TOKCODEC_NO_REEXEC", "1")
torch.set_num_threads(min(2, os.cpu_count() or 1))
keep_freed_memory()  # the CLI's allocator policy, as `tokcodec` itself runs (faster tests),
os.environ.update(allocator_environment())  # here and in the processes tests start


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
