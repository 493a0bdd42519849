"""Full-reference image/video quality metrics over uint8 RGB arrays.

Every function takes ``ref`` and ``dist`` as uint8 arrays of shape ``(T, H, W, 3)`` (a video) or
``(H, W, 3)`` (one image) with the same shape, and returns one float for the whole input.

Conventions (chosen once so every codec in the bench is measured the same way):

* PSNR is computed from the mean squared error over *all* pixels (and channels) of *all* frames,
  8-bit peak 255, capped at :data:`PSNR_CAP` dB so identical inputs give a finite number.
* Luma is BT.709 (``Y' = 0.2126 R + 0.7152 G + 0.0722 B``) on the full-range 0..255 RGB values, kept
  in floating point (no rounding, no limited-range offset): the bench converts to YUV with the
  BT.709 matrix too.
* SSIM and MS-SSIM follow Wang et al.: 11x11 Gaussian window with sigma 1.5, K1 = 0.01, K2 = 0.03,
  statistics over the "valid" window positions only, computed on luma; the value of a video is the
  mean of its per-frame values. MS-SSIM uses 5 scales with weights
  (0.0448, 0.2856, 0.3001, 0.2363, 0.1333) and 2x2 average down-sampling; images too small for 5
  scales use fewer (the leading weights, renormalised to sum to 1).

Only numpy is imported, so ``from tokcodec.metrics import psnr`` stays cheap.
"""
from __future__ import annotations

import math

import numpy as np

from tokcodec.errors import ArgumentError

__all__ = [
    "PSNR_CAP",
    "MS_SSIM_WEIGHTS",
    "ErrorTotals",
    "mse",
    "psnr",
    "psnr_from_mse",
    "psnr_y",
    "colour_drift",
    "luma",
    "ssim",
    "ms_ssim",
]

PSNR_CAP = 100.0
"""PSNR reported for identical inputs (and the upper bound of any PSNR returned here)."""

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
BT709 = (0.2126, 0.7152, 0.0722)

_WIN = 11
_SIGMA = 1.5
_K1, _K2 = 0.01, 0.03
_PEAK = 255.0
_CHUNK = 8  # frames processed at once: bounds float64 temporaries to a few hundred MB at 1080p


def _as_video(ref: np.ndarray, dist: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate a ref/dist pair and view both as (T, H, W, 3)."""
    ref = np.asarray(ref)
    dist = np.asarray(dist)
    if ref.shape != dist.shape:
        raise ArgumentError(f"shape mismatch: ref {ref.shape} vs dist {dist.shape}")
    if ref.ndim == 3:
        ref, dist = ref[None], dist[None]
    if ref.ndim != 4 or ref.shape[-1] != 3:
        raise ArgumentError(f"expected (T, H, W, 3) or (H, W, 3) RGB arrays, got {ref.shape}")
    if ref.dtype != np.uint8 or dist.dtype != np.uint8:
        raise ArgumentError(f"expected uint8 arrays, got {ref.dtype} and {dist.dtype}")
    if ref.size == 0:
        raise ArgumentError("empty input")
    return ref, dist


def psnr_from_mse(err: float, peak: float = _PEAK, cap: float = PSNR_CAP) -> float:
    """PSNR in dB of a mean squared error at this peak-to-peak range (8-bit: 255; the
    trainer's [-1, 1] tensors: 2); ``cap`` for no error, NaN for a NaN error."""
    if math.isnan(err):
        return math.nan
    if err <= 0.0:
        return cap
    return min(cap, 10.0 * math.log10(peak * peak / err))


class ErrorTotals:
    """Squared error and per-channel error sums of uint8 RGB frames, accumulated exactly in
    Python/int64 integers (one 1080p frame's squared error can pass 2^31, which an int32 sum
    wrapped: 26.38 dB printed for a true 22.12), so a whole video streams through frame by frame.
    The one accumulator behind :func:`mse`, :func:`psnr`, :func:`colour_drift` and the CLI's
    ``decode --compare``."""

    def __init__(self) -> None:
        self.squared = 0                         # sum of squared differences (exact integer)
        self.channel = np.zeros(3, np.int64)     # per-channel sum of ref - dist
        self.values = 0                          # pixels x channels
        self.frames = 0

    def add(self, ref: np.ndarray, dist: np.ndarray) -> "ErrorTotals":
        ref, dist = _as_video(ref, dist)
        for s in range(0, ref.shape[0], _CHUNK):
            d = ref[s:s + _CHUNK].astype(np.int64) - dist[s:s + _CHUNK]
            flat = d.ravel()
            self.squared += int(np.dot(flat, flat))  # int64: fine to 2^63, i.e. ~10^14 values
            self.channel += d.reshape(-1, 3).sum(0)
        self.values += ref.size
        self.frames += ref.shape[0]
        return self

    @property
    def mse(self) -> float:
        return self.squared / max(self.values, 1)

    def psnr(self, cap: float = PSNR_CAP) -> float:
        return psnr_from_mse(self.mse, cap=cap)

    @property
    def colour_drift(self) -> float:
        return float(np.abs(self.channel).max() / max(self.values // 3, 1))


def mse(ref: np.ndarray, dist: np.ndarray) -> float:
    """Mean squared error over all pixels, channels and frames (8-bit units)."""
    return ErrorTotals().add(ref, dist).mse


def psnr(ref: np.ndarray, dist: np.ndarray, cap: float = PSNR_CAP) -> float:
    """RGB PSNR in dB from the MSE over all pixels of all frames; ``cap`` when identical."""
    return ErrorTotals().add(ref, dist).psnr(cap)


def colour_drift(ref: np.ndarray, dist: np.ndarray) -> float:
    """Largest per-channel difference of the two inputs' mean colours, in 8-bit code values (a
    colour cast or level shift; 0 when the means agree, whatever the detail error)."""
    return ErrorTotals().add(ref, dist).colour_drift


def luma(rgb: np.ndarray) -> np.ndarray:
    """BT.709 luma of uint8 RGB (..., 3) as float64 in 0..255 (not rounded, full range)."""
    x = np.asarray(rgb, dtype=np.float64)
    return x[..., 0] * BT709[0] + x[..., 1] * BT709[1] + x[..., 2] * BT709[2]


def psnr_y(ref: np.ndarray, dist: np.ndarray, cap: float = PSNR_CAP) -> float:
    """PSNR of BT.709 luma (see :func:`luma`), peak 255, over all pixels of all frames."""
    ref, dist = _as_video(ref, dist)
    total = 0.0
    for s in range(0, ref.shape[0], _CHUNK):
        d = (luma(ref[s:s + _CHUNK]) - luma(dist[s:s + _CHUNK])).ravel()
        total += float(np.dot(d, d))
    return psnr_from_mse(total / (ref.size // 3), cap=cap)


def _gaussian(size: int, sigma: float = _SIGMA) -> np.ndarray:
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(x * x) / (2.0 * sigma * sigma))
    return g / g.sum()


def _filter_valid(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Separable 'valid' correlation of (N, H, W) planes with the 1-D window w along H and W."""
    k = len(w)
    h, wd = x.shape[-2], x.shape[-1]
    rows = w[0] * x[:, 0:h - k + 1, :]
    for i in range(1, k):
        rows = rows + w[i] * x[:, i:h - k + 1 + i, :]
    out = w[0] * rows[:, :, 0:wd - k + 1]
    for i in range(1, k):
        out = out + w[i] * rows[:, :, i:wd - k + 1 + i]
    return out


def _ssim_maps(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-plane mean SSIM and mean contrast-structure term for (N, H, W) float planes."""
    c1 = (_K1 * _PEAK) ** 2
    c2 = (_K2 * _PEAK) ** 2
    mx = _filter_valid(x, w)
    my = _filter_valid(y, w)
    sxx = _filter_valid(x * x, w) - mx * mx
    syy = _filter_valid(y * y, w) - my * my
    sxy = _filter_valid(x * y, w) - mx * my
    cs = (2.0 * sxy + c2) / (sxx + syy + c2)
    lum = (2.0 * mx * my + c1) / (mx * mx + my * my + c1)
    return (lum * cs).mean(axis=(1, 2)), cs.mean(axis=(1, 2))


def _window_for(h: int, wd: int) -> np.ndarray:
    """The standard 11-tap window, shrunk (odd size) only for images smaller than 11 pixels."""
    size = min(_WIN, h, wd)
    if size % 2 == 0:
        size -= 1
    return _gaussian(max(size, 1))


def ssim(ref: np.ndarray, dist: np.ndarray) -> float:
    """Mean SSIM of BT.709 luma over frames (Gaussian 11x11, sigma 1.5, valid window positions)."""
    ref, dist = _as_video(ref, dist)
    w = _window_for(ref.shape[1], ref.shape[2])
    vals: list[np.ndarray] = []
    for s in range(0, ref.shape[0], _CHUNK):
        v, _ = _ssim_maps(luma(ref[s:s + _CHUNK]), luma(dist[s:s + _CHUNK]), w)
        vals.append(v)
    return float(np.concatenate(vals).mean())


def _downsample2(x: np.ndarray) -> np.ndarray:
    """2x2 average pooling of (N, H, W); odd sizes repeat the last row/column (symmetric pad)."""
    if x.shape[1] % 2:
        x = np.concatenate([x, x[:, -1:, :]], axis=1)
    if x.shape[2] % 2:
        x = np.concatenate([x, x[:, :, -1:]], axis=2)
    return 0.25 * (x[:, 0::2, 0::2] + x[:, 1::2, 0::2] + x[:, 0::2, 1::2] + x[:, 1::2, 1::2])


def ms_ssim_scales(h: int, w: int, max_scales: int = len(MS_SSIM_WEIGHTS)) -> int:
    """How many scales fit: the coarsest scale must still hold one 11x11 window."""
    n = max_scales
    while n > 1 and min(h, w) / 2 ** (n - 1) < _WIN:
        n -= 1
    return n


def ms_ssim(ref: np.ndarray, dist: np.ndarray) -> float:
    """Mean multi-scale SSIM of BT.709 luma over frames (Wang, Simoncelli & Bovik 2003).

    Negative contrast-structure terms are clamped to 0 before the fractional powers (as common
    implementations do), so the result is in [0, 1].
    """
    ref, dist = _as_video(ref, dist)
    n_scales = ms_ssim_scales(ref.shape[1], ref.shape[2])
    weights = np.asarray(MS_SSIM_WEIGHTS[:n_scales], dtype=np.float64)
    weights = weights / weights.sum()
    vals: list[np.ndarray] = []
    for s in range(0, ref.shape[0], _CHUNK):
        x = luma(ref[s:s + _CHUNK])
        y = luma(dist[s:s + _CHUNK])
        score = np.ones(x.shape[0])
        for j in range(n_scales):
            w = _window_for(x.shape[1], x.shape[2])
            full, cs = _ssim_maps(x, y, w)
            term = full if j == n_scales - 1 else cs
            score = score * np.maximum(term, 0.0) ** weights[j]
            if j < n_scales - 1:
                x, y = _downsample2(x), _downsample2(y)
        vals.append(score)
    return float(np.concatenate(vals).mean())
