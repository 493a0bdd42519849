"""Unit tests of tokcodec.metrics against hand-computed values and scikit-image."""
from __future__ import annotations

import math

import numpy as np
import pytest

from tokcodec.metrics import (PSNR_CAP, ErrorTotals, colour_drift, luma, ms_ssim, ms_ssim_scales, mse, psnr,
                              psnr_from_mse, psnr_y, ssim)


def _natural(t: int = 3, h: int = 96, w: int = 128) -> np.ndarray:
    """A small deterministic natural-ish video: a crop of skimage's astronaut, shifted per frame."""
    from skimage import data

    img = data.astronaut()
    return np.stack([img[10 + 2 * i:10 + 2 * i + h, 20 + 3 * i:20 + 3 * i + w] for i in range(t)])


def _noisy(x: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(x + rng.normal(0, sigma, x.shape), 0, 255).round().astype(np.uint8)


def test_identical_is_capped() -> None:
    x = _natural()
    assert psnr(x, x) == PSNR_CAP
    assert psnr_y(x, x) == PSNR_CAP
    assert ssim(x, x) == pytest.approx(1.0, abs=1e-12)
    assert ms_ssim(x, x) == pytest.approx(1.0, abs=1e-12)


def test_known_mse() -> None:
    ref = np.zeros((2, 8, 8, 3), np.uint8)
    dist = np.full_like(ref, 10)
    assert mse(ref, dist) == 100.0
    expected = 10 * math.log10(255**2 / 100)  # 28.1308... dB
    assert psnr(ref, dist) == pytest.approx(expected, abs=1e-12)
    # luma weights sum to 1, so a uniform +10 on R, G and B is +10 on Y as well
    assert psnr_y(ref, dist) == pytest.approx(expected, abs=1e-9)


def test_mse_over_all_pixels_not_mean_of_frames() -> None:
    ref = np.zeros((2, 4, 4, 3), np.uint8)
    dist = ref.copy()
    dist[1] = 2  # frame 0 exact, frame 1 off by 2 -> MSE over all = 4 / 2 = 2
    assert mse(ref, dist) == 2.0
    assert psnr(ref, dist) == pytest.approx(10 * math.log10(255**2 / 2), abs=1e-12)


def test_psnr_y_uses_bt709() -> None:
    ref = np.zeros((4, 4, 3), np.uint8)  # a single image (H, W, 3) is accepted
    dist = ref.copy()
    dist[..., 1] = 100  # green only: Y error = 0.7152 * 100
    assert luma(dist)[0, 0] == pytest.approx(71.52)
    assert psnr_y(ref, dist) == pytest.approx(10 * math.log10(255**2 / 71.52**2), abs=1e-9)
    assert psnr(ref, dist) == pytest.approx(10 * math.log10(255**2 / (100**2 / 3)), abs=1e-9)


def test_bad_inputs() -> None:
    x = np.zeros((2, 8, 8, 3), np.uint8)
    with pytest.raises(ValueError):
        psnr(x, x[:1])
    with pytest.raises(ValueError):
        psnr(x.astype(np.float32), x.astype(np.float32))
    with pytest.raises(ValueError):
        ssim(x[..., :1], x[..., :1])


def test_ssim_matches_skimage_on_luma() -> None:
    from skimage.metrics import structural_similarity

    ref = _natural()
    dist = _noisy(ref, 12.0)
    ours = ssim(ref, dist)
    theirs = np.mean([
        structural_similarity(luma(r), luma(d), data_range=255, gaussian_weights=True, sigma=1.5,
                              use_sample_covariance=False)
        for r, d in zip(ref, dist)
    ])
    assert ours == pytest.approx(theirs, abs=1e-6)
    assert 0.0 < ours < 1.0


def test_ms_ssim_decreases_with_noise() -> None:
    ref = _natural(t=2, h=192, w=192)  # 192 px holds all 5 scales (192 / 16 = 12 >= 11)
    assert ms_ssim_scales(192, 192) == 5
    values = [ms_ssim(ref, _noisy(ref, s)) for s in (2.0, 8.0, 20.0, 50.0)]
    assert all(a > b for a, b in zip(values, values[1:])), values
    assert values[0] < 1.0 and values[-1] > 0.0


def test_ms_ssim_small_images_use_fewer_scales() -> None:
    assert ms_ssim_scales(64, 96) == 3  # 64 / 4 = 16 >= 11, 64 / 8 = 8 < 11
    assert ms_ssim_scales(12, 12) == 1
    ref = _natural(t=2, h=64, w=96)
    dist = _noisy(ref, 10.0)
    v = ms_ssim(ref, dist)
    assert 0.0 < v < 1.0
    assert ms_ssim(ref, ref) == pytest.approx(1.0)
    tiny = ref[:, :7, :9]  # smaller than the 11x11 window: the window shrinks instead of failing
    assert 0.0 < ms_ssim(tiny, dist[:, :7, :9]) <= 1.0


def test_colour_drift_is_the_largest_shift_of_a_channel_mean():
    from tokcodec.metrics import colour_drift

    rng = np.random.default_rng(0)
    ref = rng.integers(20, 230, (3, 16, 24, 3), dtype=np.uint8)
    assert colour_drift(ref, ref) == 0.0
    shifted = ref.copy()
    shifted[..., 1] += 10
    shifted[..., 2] -= 3
    assert colour_drift(ref, shifted) == 10.0
    # detail error with equal means is no drift
    swapped = ref[:, :, ::-1].copy()
    assert colour_drift(ref, swapped) == 0.0


def test_psnr_of_errors_past_2_to_the_31_matches_a_float64_reference():
    """One 1080p frame far from its reference: the squared error passes 2^31 (an int32 sum
    wrapped and printed 26.38 dB for a true 22.12), and streaming frame by frame gives the
    same numbers as one call over the whole video."""
    rng = np.random.default_rng(5)
    ref = rng.integers(0, 256, (3, 1080, 1920, 3), dtype=np.uint8)
    dist = (255 - ref).astype(np.uint8)
    d = ref.astype(np.float64) - dist.astype(np.float64)
    assert float((d[0] ** 2).sum()) > 2 ** 31
    expected = 10 * np.log10(255.0 ** 2 / np.mean(d ** 2))
    assert abs(psnr(ref, dist) - expected) < 1e-9
    totals = ErrorTotals()
    for a, b in zip(ref, dist):
        totals.add(a, b)
    assert totals.frames == 3 and totals.squared == int((d ** 2).sum())
    assert totals.psnr() == psnr(ref, dist) and totals.colour_drift == colour_drift(ref, dist)
    assert psnr_from_mse(0.0, cap=float("inf")) == float("inf") and psnr_from_mse(4.0, peak=2.0) == 0.0
    assert np.isnan(psnr_from_mse(float("nan")))  # a broken run must not read as a perfect one
