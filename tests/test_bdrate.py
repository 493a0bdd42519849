"""BD-rate against hand-computed cases, with both the scipy and the built-in PCHIP."""
from __future__ import annotations

import math

import numpy as np
import pytest

from tokcodec.bench.bdrate import Pchip, bd_rate, bd_rate_detail, prepare_curve

try:
    import scipy  # noqa: F401

    BACKENDS = [False, True]
except ImportError:  # pragma: no cover - scipy comes with scikit-image
    BACKENDS = [False]

ANCHOR_RATES = [0.02, 0.05, 0.11, 0.25]
ANCHOR_PSNR = [29.0, 32.5, 35.1, 38.4]


@pytest.mark.parametrize("use_scipy", BACKENDS)
def test_identical_is_zero(use_scipy: bool) -> None:
    assert bd_rate(ANCHOR_RATES, ANCHOR_PSNR, ANCHOR_RATES, ANCHOR_PSNR, use_scipy=use_scipy) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("use_scipy", BACKENDS)
def test_half_rate_is_minus_50(use_scipy: bool) -> None:
    half = [r * 0.5 for r in ANCHOR_RATES]
    assert bd_rate(ANCHOR_RATES, ANCHOR_PSNR, half, ANCHOR_PSNR, use_scipy=use_scipy) == pytest.approx(-50.0, abs=1e-9)
    double = [r * 2 for r in ANCHOR_RATES]
    assert bd_rate(ANCHOR_RATES, ANCHOR_PSNR, double, ANCHOR_PSNR, use_scipy=use_scipy) == pytest.approx(100.0, abs=1e-9)


@pytest.mark.parametrize("use_scipy", BACKENDS)
def test_no_overlap_is_none(use_scipy: bool) -> None:
    r = bd_rate_detail(ANCHOR_RATES, ANCHOR_PSNR, [0.3, 0.6], [40.0, 44.0], use_scipy=use_scipy)
    assert r.value is None and r.reason == "no overlap"
    assert r.as_text() == "no overlap"
    # touching at one point is still no overlap (zero-length interval)
    assert bd_rate(ANCHOR_RATES, ANCHOR_PSNR, [0.3, 0.6], [38.4, 44.0], use_scipy=use_scipy) is None


def test_too_few_points() -> None:
    r = bd_rate_detail(ANCHOR_RATES, ANCHOR_PSNR, [0.1], [33.0])
    assert r.value is None and r.reason == "too few points"
    # missing / non-finite qualities and non-positive rates are dropped before counting
    r = bd_rate_detail(ANCHOR_RATES, ANCHOR_PSNR, [0.1, 0.2, 0.0], [33.0, None, 36.0])
    assert r.reason == "too few points"


@pytest.mark.parametrize("use_scipy", BACKENDS)
def test_two_points_linear_by_hand(use_scipy: bool) -> None:
    # Two points -> PCHIP is the straight line. Anchor log R goes 0 -> 2, test 0 -> 1 over [30, 40]:
    # the log difference falls linearly from 0 to -1, mean -0.5 -> exp(-0.5) - 1 = -39.3469 %.
    anchor_r = [1.0, math.e**2]
    test_r = [1.0, math.e]
    q = [30.0, 40.0]
    assert bd_rate(anchor_r, q, test_r, q, use_scipy=use_scipy) == pytest.approx((math.exp(-0.5) - 1) * 100, abs=1e-9)


@pytest.mark.parametrize("use_scipy", BACKENDS)
def test_partial_overlap_by_hand(use_scipy: bool) -> None:
    # Anchor: log R = 0.2 (q - 30) on [30, 40]; test: the same curve 5 dB better, on [35, 45].
    # Shared range [35, 40], where test - anchor = -1 everywhere -> exp(-1) - 1 = -63.21 %.
    anchor = ([1.0, math.e**2], [30.0, 40.0])
    test = ([1.0, math.e**2], [35.0, 45.0])
    r = bd_rate_detail(*anchor, *test, use_scipy=use_scipy)
    assert (r.q_lo, r.q_hi) == (35.0, 40.0)
    assert r.value == pytest.approx((math.exp(-1) - 1) * 100, abs=1e-9)


@pytest.mark.parametrize("use_scipy", BACKENDS)
def test_cubic_integral_by_hand(use_scipy: bool) -> None:
    # Anchor log R at q = 0, 1, 2 is 0, 1, 1. Secants m = (1, 0), so PCHIP slopes are:
    #   d1 = 0 (a zero secant), d0 = ((2h0 + h1) m0 - h0 m1) / (h0 + h1) = 3/2,
    #   d2 = (3*0 - 1) / 2 = -1/2, whose sign differs from m1 = 0 -> 0.
    # Hermite piece integral = h (y0 + y1) / 2 + h^2 (d0 - d1) / 12:
    #   [0, 1]: 1/2 + 1.5/12 = 0.625;  [1, 2]: 1.   Total 1.625 over a width of 2.
    # Test log R = 0 everywhere -> BD-rate = exp(-1.625 / 2) - 1 = -55.62 %.
    q = [0.0, 1.0, 2.0]
    anchor_r = [1.0, math.e, math.e]
    test_r = [1.0, 1.0, 1.0]
    p = Pchip(q, np.log(anchor_r))
    assert p.d == pytest.approx([1.5, 0.0, 0.0])
    assert p.integrate(0.0, 2.0) == pytest.approx(1.625, abs=1e-12)
    expected = (math.exp(-1.625 / 2) - 1) * 100
    assert bd_rate(anchor_r, q, test_r, q, use_scipy=use_scipy) == pytest.approx(expected, abs=1e-9)


def test_own_pchip_matches_scipy() -> None:
    scipy_interp = pytest.importorskip("scipy.interpolate")
    rng = np.random.default_rng(1)
    for _ in range(20):
        x = np.cumsum(rng.uniform(0.2, 3.0, 6))
        y = np.cumsum(rng.uniform(-0.5, 1.5, 6))
        ours = Pchip(x, y)
        theirs = scipy_interp.PchipInterpolator(x, y)
        xs = np.linspace(x[0], x[-1], 57)
        assert ours(xs) == pytest.approx(theirs(xs), abs=1e-10)
        a, b = sorted(rng.uniform(x[0], x[-1], 2))
        assert ours.integrate(a, b) == pytest.approx(theirs.integrate(a, b), abs=1e-10)


def test_no_extrapolation_in_integrate() -> None:
    with pytest.raises(ValueError):
        Pchip([0.0, 1.0], [0.0, 1.0]).integrate(-0.5, 1.0)


def test_prepare_curve_sorts_and_merges() -> None:
    q, lr = prepare_curve([0.4, 0.1, 0.2, 0.8], [36.0, 30.0, 33.0, 36.0])
    assert list(q) == [30.0, 33.0, 36.0]
    assert lr[-1] == pytest.approx((math.log(0.4) + math.log(0.8)) / 2)
