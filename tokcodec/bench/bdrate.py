"""Bjøntegaard delta rate (BD-rate) with piecewise cubic Hermite (PCHIP) interpolation.

For each codec, log(rate) is interpolated as a function of quality (PSNR, SSIM, VMAF, ...) with a
shape-preserving PCHIP curve. Both curves are integrated over the quality interval they share and
the mean log-rate difference is turned into a percentage:

    BD-rate = (exp((∫ log R_test - ∫ log R_anchor) / (q_hi - q_lo)) - 1) * 100

Negative means the test codec needs fewer bits than the anchor for the same quality. Nothing is
extrapolated: if the quality ranges do not overlap the result is ``None`` with reason
"no overlap". Uses scipy's PchipInterpolator when scipy is installed, else the equivalent
implementation below (same Fritsch-Butland derivative rule as scipy, integrated exactly).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

__all__ = ["BDRate", "Pchip", "bd_rate", "bd_rate_detail", "prepare_curve"]


@dataclass(frozen=True)
class BDRate:
    """A BD-rate result: ``value`` in percent, or ``None`` with the reason it is undefined."""

    value: Optional[float]
    reason: Optional[str] = None
    q_lo: Optional[float] = None
    q_hi: Optional[float] = None

    def as_text(self, digits: int = 1) -> str:
        if self.value is None:
            return self.reason or "n/a"
        return f"{self.value:+.{digits}f}%"


class Pchip:
    """Monotone piecewise cubic Hermite interpolant through (x, y), x strictly increasing."""

    def __init__(self, x: Sequence[float], y: Sequence[float]) -> None:
        self.x = np.asarray(x, dtype=np.float64)
        self.y = np.asarray(y, dtype=np.float64)
        if self.x.ndim != 1 or self.x.shape != self.y.shape or len(self.x) < 2:
            raise ValueError("need at least two (x, y) points of equal length")
        if np.any(np.diff(self.x) <= 0):
            raise ValueError("x must be strictly increasing")
        self.d = self._derivatives(self.x, self.y)

    @staticmethod
    def _derivatives(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        h = np.diff(x)
        m = np.diff(y) / h
        n = len(x)
        if n == 2:
            return np.array([m[0], m[0]])
        d = np.zeros(n)
        for k in range(1, n - 1):
            if m[k - 1] * m[k] > 0:  # same sign and both non-zero: weighted harmonic mean
                w1 = 2 * h[k] + h[k - 1]
                w2 = h[k] + 2 * h[k - 1]
                d[k] = (w1 + w2) / (w1 / m[k - 1] + w2 / m[k])
        d[0] = Pchip._edge(h[0], h[1], m[0], m[1])
        d[-1] = Pchip._edge(h[-1], h[-2], m[-1], m[-2])
        return d

    @staticmethod
    def _edge(h0: float, h1: float, m0: float, m1: float) -> float:
        """One-sided three-point end derivative, limited to keep the end piece shape-preserving."""
        d = ((2 * h0 + h1) * m0 - h0 * m1) / (h0 + h1)
        if np.sign(d) != np.sign(m0):
            return 0.0
        if np.sign(m0) != np.sign(m1) and abs(d) > abs(3 * m0):
            return 3 * m0
        return float(d)

    def _piece(self, x: np.ndarray) -> np.ndarray:
        return np.clip(np.searchsorted(self.x, x, side="right") - 1, 0, len(self.x) - 2)

    def __call__(self, x: float | np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        k = self._piece(x)
        h = self.x[k + 1] - self.x[k]
        t = (x - self.x[k]) / h
        h00 = 2 * t**3 - 3 * t**2 + 1
        h10 = t**3 - 2 * t**2 + t
        h01 = -2 * t**3 + 3 * t**2
        h11 = t**3 - t**2
        return h00 * self.y[k] + h10 * h * self.d[k] + h01 * self.y[k + 1] + h11 * h * self.d[k + 1]

    def _antiderivative_in_piece(self, k: int, t: float) -> float:
        """∫ from x_k to x_k + t*h of the interpolant (t in [0, 1])."""
        h = self.x[k + 1] - self.x[k]
        a00 = t - t**3 + t**4 / 2
        a10 = t**2 / 2 - 2 * t**3 / 3 + t**4 / 4
        a01 = t**3 - t**4 / 2
        a11 = t**4 / 4 - t**3 / 3
        return h * (a00 * self.y[k] + a10 * h * self.d[k] + a01 * self.y[k + 1] + a11 * h * self.d[k + 1])

    def integrate(self, a: float, b: float) -> float:
        """Exact integral over [a, b], which must lie inside [x_0, x_-1]."""
        if a > b:
            return -self.integrate(b, a)
        lo, hi = self.x[0], self.x[-1]
        if a < lo - 1e-12 * max(1.0, abs(lo)) or b > hi + 1e-12 * max(1.0, abs(hi)):
            raise ValueError(f"[{a}, {b}] is outside the data range [{lo}, {hi}]: no extrapolation")
        total = 0.0
        for k in range(len(self.x) - 1):
            x0, x1 = self.x[k], self.x[k + 1]
            s, e = max(a, x0), min(b, x1)
            if e <= s:
                continue
            h = x1 - x0
            total += self._antiderivative_in_piece(k, (e - x0) / h) - self._antiderivative_in_piece(k, (s - x0) / h)
        return float(total)


def _integral(x: np.ndarray, y: np.ndarray, a: float, b: float, use_scipy: bool) -> float:
    if use_scipy:
        try:
            from scipy.interpolate import PchipInterpolator
        except ImportError:
            pass
        else:
            return float(PchipInterpolator(x, y, extrapolate=False).integrate(a, b))
    return Pchip(x, y).integrate(a, b)


def prepare_curve(rates: Sequence[float], quality: Sequence[Optional[float]]) -> tuple[np.ndarray, np.ndarray]:
    """Sort an RD curve by quality and return (quality, log-rate).

    Points with a missing/non-finite quality or a non-positive rate are dropped; points with equal
    quality are merged (mean log-rate), since log-rate must be a function of quality.
    """
    pts = [
        (float(q), math.log(float(r)))
        for r, q in zip(rates, quality)
        if q is not None and r is not None and math.isfinite(float(q)) and float(r) > 0
    ]
    pts.sort()
    qs: list[float] = []
    lrs: list[list[float]] = []
    for q, lr in pts:
        if qs and q == qs[-1]:
            lrs[-1].append(lr)
        else:
            qs.append(q)
            lrs.append([lr])
    return np.array(qs), np.array([sum(v) / len(v) for v in lrs])


def bd_rate_detail(
    anchor_rates: Sequence[float],
    anchor_quality: Sequence[Optional[float]],
    test_rates: Sequence[float],
    test_quality: Sequence[Optional[float]],
    *,
    use_scipy: bool = True,
) -> BDRate:
    """BD-rate of test vs anchor in percent over the shared quality range (see module doc)."""
    qa, la = prepare_curve(anchor_rates, anchor_quality)
    qt, lt = prepare_curve(test_rates, test_quality)
    if len(qa) < 2 or len(qt) < 2:
        return BDRate(None, "too few points")
    lo = max(qa[0], qt[0])
    hi = min(qa[-1], qt[-1])
    if not hi > lo:
        return BDRate(None, "no overlap")
    ia = _integral(qa, la, lo, hi, use_scipy)
    it = _integral(qt, lt, lo, hi, use_scipy)
    avg = (it - ia) / (hi - lo)
    return BDRate((math.exp(avg) - 1.0) * 100.0, None, float(lo), float(hi))


def bd_rate(
    anchor_rates: Sequence[float],
    anchor_quality: Sequence[Optional[float]],
    test_rates: Sequence[float],
    test_quality: Sequence[Optional[float]],
    *,
    use_scipy: bool = True,
) -> Optional[float]:
    """BD-rate in percent, or None when the curves share no quality range (no extrapolation)."""
    return bd_rate_detail(anchor_rates, anchor_quality, test_rates, test_quality, use_scipy=use_scipy).value
