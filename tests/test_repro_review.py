"""What a reproducibility review found (December 2026): fp16 encodes that wrote all-zero tokens
without a word, and `auto` choosing fp16 to encode on CUDA cards without bf16."""
from __future__ import annotations

from fractions import Fraction

import pytest
import torch

from conftest import smooth_clip, write_clip
from tokcodec.codec.pipeline import encode_video
from tokcodec.device import select_runtime
from tokcodec.errors import ModelError
from tokcodec.model.refine import finite_latents


def test_an_fp16_encode_that_overflows_stops_with_an_error(tmp_path) -> None:
    """The default encoder's activations pass fp16's 65504 on ordinary content: its latents were
    NaN, every token 0, and encode wrote a 0.75 bits/token file and exited 0."""
    clip = write_clip(tmp_path / "clip.mkv", smooth_clip(5, 64, 96, seed=1), Fraction(25))
    with pytest.raises(ModelError, match="not finite.*bf16 or fp32"):
        encode_video(clip, tmp_path / "clip.tok", precision="fp16", gop=5)
    assert not (tmp_path / "clip.tok").exists()
    encode_video(clip, tmp_path / "clip.tok", precision="fp32", gop=5)  # the same clip in fp32 is fine


def test_finite_latents_passes_finite_and_refuses_the_rest() -> None:
    z = torch.randn(1, 18, 2, 3, 4)
    assert finite_latents(z) is z
    for bad in (float("nan"), float("inf"), -float("inf")):
        z2 = z.clone()
        z2[0, 5, 1, 2, 3] = bad
        with pytest.raises(ModelError):
            finite_latents(z2)


def test_auto_encodes_in_fp32_on_a_cuda_card_without_bf16(monkeypatch) -> None:
    """Without native bf16 (before compute capability 8.0: T4, V100), where torch's
    is_bf16_supported() says yes all the same (emulated): it is not asked."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a, **k: (7, 5))
    assert select_runtime("auto").precision == "fp16"  # decode: fp16 keeps the quality
    assert select_runtime("auto", encoding=True).precision == "fp32"
    assert select_runtime("cuda", "fp16", encoding=True).precision == "fp16"  # asked for: as asked
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a, **k: (8, 0))
    assert select_runtime("auto", encoding=True).precision == "bf16"
