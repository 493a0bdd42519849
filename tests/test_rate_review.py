"""Findings of a target-rate walk-through (December 2026): the advice a missed target gets."""
from __future__ import annotations

from types import SimpleNamespace

from tokcodec.codec.pipeline import _rate_advice


def _missed(bpp: float, target: float, frames: int = 34, cuts: int = 0) -> str:
    return _rate_advice(SimpleNamespace(video_bpp=bpp, target_bpp=target, frames=frames, scene_cuts=cuts))


def test_an_overshoot_is_told_what_moves_the_rate() -> None:
    """"a smaller --scale or a longer --gop goes lower" did not, on a short clip whose correction
    records are most of the file: --no-detail did."""
    advice = _missed(0.0191, 0.015)
    assert "--no-detail" in advice and "--scale alone keeps GOPs of 17" in advice and "--scenecut" not in advice
    assert "--scenecut 0" in _missed(0.0365, 0.03, cuts=1)
    assert "--no-correction" in _missed(0.1206, 0.03, frames=1)


def test_an_undershoot_is_not_told_that_passes_spend_more() -> None:
    advice = _missed(0.0845, 0.2)
    assert "--scale" in advice and "--passes" not in advice and "--refine" not in advice
