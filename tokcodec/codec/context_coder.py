"""Coder 2: context-adaptive entropy coding of LFQ token grids.

A token is ``bits`` sign bits, one per latent channel, so the coder works on bit planes: plane
``i`` of a latent frame is channel ``i``'s sign map. Each bit is predicted from

* time: the same plane of the previous latent frame of the GOP, shifted by a motion vector that
  the encoder picks per frame (camera motion): the bit at the same cell and the count of ones in
  its 3x3 neighbourhood (robust to motion that is not a whole cell);
* space: the same plane at already-coded neighbour cells. Cells are coded in lattice passes
  (a stride-4 grid, its diagonal centres, its edge midpoints, then the same at stride 2), so every
  pass after the first sees up to four coded neighbours around a cell and a whole pass is one
  vectorised numpy step instead of a per-token loop;
* the token itself and its surroundings: how many bits the temporal prediction got wrong at the
  coded neighbour cells (all planes), and, for the second half of the planes, how many of the
  first half's bits broke from their prediction.

These features index adaptive integer counts shared by all planes (a fine table backed off to a
coarse one while a context is young; counts carry over the frames of a GOP and start empty at
each GOP). A count pair gives a 12-bit probability, which is rounded to one of 32 levels; three
planes of a cell form one 8-ary symbol whose probability row is read from a table of products of
level probabilities and coded with constriction's range coder. Every decision on the probability
path is integer arithmetic or a table built from integer literals, so encoder and decoder agree
bit for bit on any machine (given the same constriction version, which turns the rows into its
fixed-point model).

Payload (little-endian)::

    u8  mode             0 = raw (RawBitsCoder packing follows), 1 = context coded
    u32 crc32            of the tokens as little-endian u32: catches corruption and coder mismatch
    mode 1 only:
      (t-1) x (i8 dy, i8 dx)  motion of latent frame f >= 1 against frame f-1, in cells
      t x varint              u32 words of frame f's range-coder segment
      segments                one range-coder stream per latent frame

The encoder stores raw packing when coding would not be smaller (e.g. random tokens).
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Protocol

import numpy as np

from tokcodec.codec.entropy import RawBitsCoder, _check_tokens, register_coder
from tokcodec.errors import FormatError

MODE_RAW = 0
MODE_CONTEXT = 1
HEADER_BYTES = 5            # mode + crc32
PROB_BITS = 12
PROB_ONE = 1 << PROB_BITS
MAX_BITS = 20
MAX_MOTION = 7              # |motion component| in cells a payload may carry
MAX_TOKENS = 1 << 24        # per GOP (16.7 M), checked before any allocation

# Fine context index = ((temporal * N_QUALITY + quality) * N_GROUP + group) * N_SPATIAL + spatial;
# coarse index = temporal * N_SPATIAL + spatial.
N_TEMPORAL = 21             # pred bit * 10 + ones in the pred 3x3 (0..19); 20 = no prediction
NO_TEMPORAL = N_TEMPORAL - 1
N_SPATIAL = 15              # k known neighbours (0..4) and ones among them: k(k+1)/2 + ones
N_QUALITY = 4               # 0 no coded neighbour; 1..3 prediction errors per neighbour cell
N_GROUP = 3                 # 0 first plane group; 1/2 second group, few/many breaks in the first
QUALITY_EDGES = (2, 5)      # errors per neighbour cell separating quality levels 1|2|3
N_LOW = N_QUALITY * N_GROUP
N_COARSE = N_TEMPORAL * N_SPATIAL
N_FINE = N_COARSE * N_LOW
# Plane p's context indices are offset by (p % 3) * STRIDE: three planes share one 8-ary symbol,
# and the offset picks which of the three stacked level tables (x1, x33, x33^2) a plane reads.
# Entry N_FINE of each table is a padding context that is never updated and says "zero".
STRIDE = N_FINE + 1
# Prior of a coarse context before it has counts: a vote of the 3x3 prediction (each one 1, the
# centre cell PRIOR_CENTRE more) and the known spatial neighbours (PRIOR_SPATIAL each), plus one
# for each outcome. It weighs PRIOR_WEIGHT counts against the context's own.
PRIOR_SPATIAL = 2
PRIOR_CENTRE = 4
PRIOR_WEIGHT = 16

# 32 probability levels, 4096 * sin^2((j + 0.5) * pi / 64): even steps in the metric where equal
# steps cost equal coding loss (< 0.002 bit per bit). Level 32 is "certainly zero", for padding.
LEVELS = (
    2, 22, 61, 120, 197, 291, 403, 531, 673, 828, 995, 1172, 1358, 1550, 1747, 1948,
    2148, 2349, 2546, 2738, 2924, 3101, 3268, 3423, 3565, 3693, 3805, 3899, 3976, 4035, 4074, 4094,
)
N_LEVELS = len(LEVELS) + 1
PAD_LEVEL = len(LEVELS)


def _level_of_prob() -> np.ndarray:
    """Map a 12-bit probability (0..4096) to the nearest level, with integer thresholds."""
    reps = np.array(LEVELS, np.int64)
    thresholds = (reps[:-1] + reps[1:] + 1) // 2
    return np.searchsorted(thresholds, np.arange(PROB_ONE + 1), side="right").astype(np.uint8)


def _symbol_rows() -> np.ndarray:
    """Row (l2, l1, l0) -> probabilities of the 8 values b0 | b1 << 1 | b2 << 2 of three bits.

    Entries are products of three integers below 2**36, exact in float64; the float32 cast is a
    correctly rounded IEEE operation, the same everywhere. constriction normalises each row."""
    one = np.array(LEVELS + (0,), np.int64)
    zero = PROB_ONE - one
    b = np.stack([zero, one], -1)                                # (N_LEVELS, 2)
    rows = b[:, None, None, :, None, None] * b[None, :, None, None, :, None] * b[None, None, :, None, None, :]
    # axes: l2, l1, l0, b2, b1, b0
    return rows.reshape(N_LEVELS ** 3, 8).astype(np.float64).astype(np.float32)


LEVEL_OF_PROB = _level_of_prob()
_SYMBOL_BITS = ((np.arange(8)[:, None] >> np.arange(3)) & 1).astype(np.uint8)   # symbol -> 3 bits
SYMBOL_ROWS = _symbol_rows()


@dataclass(frozen=True)
class ContextCoderConfig:
    """Knobs of coder 2. All but ``search`` shape the bitstream, so they are fixed per coder id."""

    levels: int = 2          # lattice levels: 1 + 2 * levels passes per latent frame
    groups: int = 2          # plane groups coded one after the other (token's own bits as context)
    count_limit: int = 1024  # counts are halved past this total, so old statistics fade
    backoff: int = 4         # weight of the coarse estimate in the fine one, in counts
    updates_per_frame: int = 4  # counts are updated after passes covering >= 1/this of a frame
    search: int = 4          # motion search range in cells (encoder only, <= MAX_MOTION)


# --------------------------------------------------------------------------- geometry


@dataclass(frozen=True)
class _Pass:
    start: int               # cells [start, stop) of the pass order
    stop: int
    nbr: np.ndarray          # (4, n) pass-order positions of coded neighbours; hw = "none"
    known: np.ndarray        # (n,) number of coded neighbours
    base: np.ndarray         # (n,) int32 context part of the neighbour count, k(k+1)/2
    has_nbrs: bool


@dataclass(frozen=True)
class _Geometry:
    """Cells of an h x w grid in pass order: state arrays are kept in this order so a pass is a
    contiguous slice; column hw of every state array is a sentinel that reads as zero."""

    h: int
    w: int
    order: np.ndarray        # pass-order position -> row-major cell
    passes: tuple[_Pass, ...]


@lru_cache(maxsize=64)
def _geometry(h: int, w: int, levels: int) -> _Geometry:
    yy, xx = np.mgrid[0:h, 0:w]
    done = np.zeros((h, w), bool)
    stride = 1 << levels
    steps: list[tuple[np.ndarray, list[tuple[int, int]]]] = []
    first = (yy % stride == 0) & (xx % stride == 0)
    steps.append((first, []))
    done |= first
    while stride > 1:
        half = stride // 2
        centre = (yy % stride == half) & (xx % stride == half)
        steps.append((centre, [(-half, -half), (-half, half), (half, -half), (half, half)]))
        done |= centre
        edge = ~done & (yy % half == 0) & (xx % half == 0)
        steps.append((edge, [(-half, 0), (half, 0), (0, -half), (0, half)]))
        done |= edge
        stride = half
    order = np.concatenate([np.flatnonzero(m) for m, _ in steps])
    position = np.empty(h * w + 1, np.int64)
    position[order] = np.arange(h * w)
    position[h * w] = h * w
    passes, start = [], 0
    for mask, offsets in steps:
        cells = np.flatnonzero(mask)
        if cells.size == 0:
            continue
        cy, cx = cells // w, cells % w
        nbr = np.full((4, cells.size), h * w, np.int64)
        for j, (dy, dx) in enumerate(offsets):
            ny, nx = cy + dy, cx + dx
            inside = (ny >= 0) & (ny < h) & (nx >= 0) & (nx < w)
            nbr[j] = position[np.where(inside, ny * w + nx, h * w)]
        known = (nbr < h * w).sum(0).astype(np.int32)
        base = (known * (known + 1) // 2).astype(np.int32)
        passes.append(_Pass(start, start + cells.size, nbr, known, base, bool(known.any())))
        start += cells.size
    return _Geometry(h, w, order, tuple(passes))


# --------------------------------------------------------------------------- motion


def _popcount(x: np.ndarray) -> np.ndarray:
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(x)
    table = np.array([bin(i).count("1") for i in range(256)], np.uint8)
    b = x.view(np.uint8).reshape(x.shape + (x.itemsize,))
    return table[b].sum(-1)


def _search_motion(prev: np.ndarray, cur: np.ndarray, search: int) -> tuple[int, int]:
    """Encoder only: the shift (dy, dx) of prev (h, w tokens) with the fewest differing bits,
    counted over interior cells that every candidate shift keeps inside the frame (every other
    row and column on larger grids). Any choice decodes, since it is stored."""
    h, w = cur.shape
    r = min(search, MAX_MOTION, (h - 1) // 2, (w - 1) // 2)
    if r <= 0:
        return 0, 0
    step = 2 if (h - 2 * r) * (w - 2 * r) >= 512 else 1
    target = cur[r:h - r:step, r:w - r:step].astype(np.uint32)
    win = np.lib.stride_tricks.sliding_window_view(prev.astype(np.uint32), (h - 2 * r, w - 2 * r))
    diff = _popcount(win[:, :, ::step, ::step] ^ target).sum((2, 3), dtype=np.int64)
    d = np.arange(r, -r - 1, -1)                     # window offset i <-> shift r - i
    cost = diff * (4 * r + 1) + np.abs(d)[:, None] + np.abs(d)[None, :]   # ties -> small shifts
    iy, ix = np.unravel_index(int(np.argmin(cost)), cost.shape)
    return int(d[iy]), int(d[ix])


# --------------------------------------------------------------------------- the model


def _spatial_digits() -> tuple[np.ndarray, np.ndarray]:
    """Spatial context s -> (k known neighbours, ones among them)."""
    k = np.concatenate([np.full(j + 1, j) for j in range(5)])
    ones = np.concatenate([np.arange(j + 1) for j in range(5)])
    return k, ones


def _prior() -> np.ndarray:
    """(N_COARSE,) 12-bit prior probability of a one for each coarse context, integers only."""
    t = np.arange(N_COARSE) // N_SPATIAL
    k, ones = (d[np.arange(N_COARSE) % N_SPATIAL] for d in _spatial_digits())
    has_t = (t != NO_TEMPORAL).astype(np.int64)
    num = 1 + PRIOR_SPATIAL * ones + has_t * (t % 10 + PRIOR_CENTRE * (t // 10))
    den = 2 + PRIOR_SPATIAL * k + has_t * (9 + PRIOR_CENTRE)
    return ((2 * num << PROB_BITS) + den) // (2 * den)


_PRIOR = _prior()


@dataclass
class _Counts:
    """Adaptive counts of each fine and coarse context, and the probability level they give."""

    cfg: ContextCoderConfig
    fine: np.ndarray = field(default_factory=lambda: np.zeros((2, N_FINE), np.int64))
    coarse: np.ndarray = field(default_factory=lambda: np.zeros((2, N_COARSE), np.int64))
    table: np.ndarray = field(init=False)    # (3 * STRIDE,) int32 scaled levels, see STRIDE

    def __post_init__(self) -> None:
        if self.cfg.backoff < 1:
            raise ValueError("backoff must be at least 1")
        self._refresh()

    def update(self, ctx: np.ndarray, bits: np.ndarray) -> None:
        """Add (context, bit) pairs; ctx int32 with plane offsets, bits uint8 of the same shape."""
        idx = (bits.astype(np.int32) * np.int32(3 * STRIDE) + ctx).ravel()
        d = np.bincount(idx, minlength=6 * STRIDE).reshape(2, 3, STRIDE)
        delta = (d[:, 0] + d[:, 1] + d[:, 2])[:, :N_FINE]
        self.fine += delta
        self.coarse += np.add.reduce(delta.reshape(2, N_TEMPORAL, N_LOW, N_SPATIAL), axis=2).reshape(2, -1)
        self._refresh()

    def age(self) -> None:
        """Halve the counts of busy contexts (once per frame), so old statistics fade."""
        for table in (self.fine, self.coarse):
            big = table[0] + table[1] > self.cfg.count_limit
            if big.any():
                table[:, big] = (table[:, big] + 1) >> 1

    def _refresh(self) -> None:
        """Levels of all fine contexts: their counts, with the coarse estimate as a prior, whose
        own prior is _PRIOR."""
        c0, c1 = self.coarse
        k = self.cfg.backoff
        prior = k * (((c1 << PROB_BITS) + PRIOR_WEIGHT * _PRIOR) // (c0 + c1 + PRIOR_WEIGHT))
        shape = (N_TEMPORAL, N_LOW, N_SPATIAL)
        f0, f1 = self.fine[0].reshape(shape), self.fine[1].reshape(shape)
        p = ((f1 << PROB_BITS) + prior.reshape(N_TEMPORAL, 1, N_SPATIAL)) // (f0 + f1 + k)
        table = np.empty((3, STRIDE), np.int32)
        table[0, :N_FINE] = np.take(LEVEL_OF_PROB, p.reshape(-1))
        table[0, N_FINE] = PAD_LEVEL
        table[1] = table[0] * N_LEVELS
        table[2] = table[0] * (N_LEVELS * N_LEVELS)
        self.table = table.reshape(-1)

    def rows(self, ctx: np.ndarray) -> np.ndarray:
        """(n, g) contexts -> (n * ceil(g/3), 8) symbol probability rows, planes in threes."""
        n, g = ctx.shape
        if g % 3:
            pad = N_FINE + STRIDE * (np.arange(g, g + 3 - g % 3, dtype=np.int32) % 3)
            ctx = np.concatenate([ctx, np.broadcast_to(pad, (n, pad.size))], 1)
        x = np.take(self.table, ctx)
        index = x[:, 0::3] + x[:, 1::3] + x[:, 2::3]
        return np.take(SYMBOL_ROWS, index.ravel(), axis=0)


class _Side(Protocol):
    """Encoder or decoder: codes one step's symbols with the given probability rows."""

    def start_frame(self, f: int) -> None: ...

    def code(self, cells: slice, planes: slice, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Returns the (n, planes) bits and their part of the token values, (n,) int32."""
        ...

    def end_frame(self, f: int) -> None: ...


@dataclass
class _Frame:
    """What both sides know while coding one latent frame. Arrays are cell-major in pass order;
    row hw of ``planes`` and ``mismatch`` is a sentinel that reads as zero."""

    planes: np.ndarray              # (hw + 1, bits) uint8, filled pass by pass
    tokens: np.ndarray              # (hw,) int32, filled pass by pass
    tctx: np.ndarray                # (hw, bits) int32 temporal context, times N_LOW * N_SPATIAL
    pred: np.ndarray | None         # (hw, bits) uint8 motion-compensated previous planes
    pred_tokens: np.ndarray | None  # (hw,) int32 the same as tokens
    valid: np.ndarray | None        # (hw,) bool: pred comes from inside the previous frame
    mismatch: np.ndarray | None     # (hw + 1,) int32 bits where the frame differs from pred


def _unpack(tokens: np.ndarray, bits: int) -> np.ndarray:
    """int tokens (...,) -> uint8 bit planes (..., bits), LSB first."""
    return ((tokens[..., None] >> np.arange(bits, dtype=tokens.dtype)) & 1).astype(np.uint8)


def _box3(p: np.ndarray) -> np.ndarray:
    """3x3 count of ones around each cell of (h, w, bits) uint8 planes, edges replicated."""
    h, w = p.shape[:2]
    pad = np.empty((h + 2, w + 2) + p.shape[2:], np.uint8)
    pad[1:-1, 1:-1] = p
    pad[0, 1:-1], pad[-1, 1:-1] = p[0], p[-1]
    pad[:, 0], pad[:, -1] = pad[:, 1], pad[:, -2]
    rows = pad[:-2] + pad[1:-1] + pad[2:]
    return rows[:, :-2] + rows[:, 1:-1] + rows[:, 2:]


_TCTX_SCALED = np.arange(N_TEMPORAL, dtype=np.int32) * np.int32(N_SPATIAL * N_LOW)


def _plane_offsets(bits: int) -> np.ndarray:
    return (np.arange(bits, dtype=np.int32) % 3) * np.int32(STRIDE)


def _start_frame(geo: _Geometry, bits: int, prev: tuple[np.ndarray, np.ndarray] | None,
                 motion: tuple[int, int]) -> _Frame:
    """prev: the previous frame's (tokens (hw,) int32, planes (hw, bits) uint8) in row-major
    order, or None for the first frame of the GOP."""
    h, w = geo.h, geo.w
    hw = h * w
    planes = np.zeros((hw + 1, bits), np.uint8)
    tokens = np.zeros(hw, np.int32)
    offsets = _plane_offsets(bits)
    if prev is None:
        tctx = np.broadcast_to(_TCTX_SCALED[NO_TEMPORAL] + offsets, (hw, bits))
        return _Frame(planes, tokens, tctx, None, None, None, None)
    ys, xs = np.arange(h) - motion[0], np.arange(w) - motion[1]
    inside = ((ys >= 0) & (ys < h))[:, None] & ((xs >= 0) & (xs < w))[None, :]
    src = (np.clip(ys, 0, h - 1)[:, None] * w + np.clip(xs, 0, w - 1)[None, :]).reshape(-1)
    pred = np.take(prev[1], src, axis=0)                                      # row-major
    tidx = pred * np.uint8(10) + _box3(pred.reshape(h, w, bits)).reshape(hw, bits)  # 0..19
    order = geo.order
    tidx = np.take(tidx, order, axis=0)                                       # pass order
    inside = inside.reshape(-1)[order]
    if not inside.all():
        tidx[~inside] = NO_TEMPORAL
    return _Frame(
        planes,
        tokens,
        np.take(_TCTX_SCALED, tidx) + offsets,
        np.take(pred, order, axis=0),
        np.take(prev[0], src[order]),
        inside,
        np.zeros(hw + 1, np.int32),
    )


def _neighbour_ones(fr: _Frame, ps: _Pass) -> np.ndarray:
    """(n, bits) uint8: ones among the coded neighbours of each cell of the pass, per plane."""
    nbr, src = ps.nbr, fr.planes
    return (np.take(src, nbr[0], axis=0) + np.take(src, nbr[1], axis=0)
            + np.take(src, nbr[2], axis=0) + np.take(src, nbr[3], axis=0))


def _quality_table(bits: int) -> np.ndarray:
    """(k * (4 * bits + 1) + errors around a cell) -> quality digit times N_GROUP * N_SPATIAL."""
    k = np.arange(5)[:, None]
    total = np.arange(4 * bits + 1)[None, :]
    level = 1 + (total >= QUALITY_EDGES[0] * k).astype(np.int32) + (total >= QUALITY_EDGES[1] * k)
    level = np.where(k > 0, level, 0)
    return (level * (N_GROUP * N_SPATIAL)).astype(np.int32).reshape(-1)


def _quality(fr: _Frame, ps: _Pass, table: np.ndarray, bits: int) -> np.ndarray | int:
    """Per cell: 0 without a coded neighbour, else 1..3 by the prediction errors around it."""
    if fr.mismatch is None or not ps.has_nbrs:
        return 0
    total = np.take(fr.mismatch, ps.nbr).sum(0, dtype=np.int32)
    return np.take(table, ps.known * np.int32(4 * bits + 1) + total)


def _group_level(fr: _Frame, ps: _Pass, first: tuple[int, int], ones: np.ndarray) -> np.ndarray:
    """Second-group context digit (1 or 2, times N_SPATIAL): did many first-group bits break from their reference (the
    temporal prediction where there is one, else the majority of the coded neighbours)?"""
    a, b = first
    cells = slice(ps.start, ps.stop)
    ref = (2 * ones[:, a:b] > ps.known[:, None]).astype(np.uint8)
    if fr.pred is not None:
        ref = np.where(fr.valid[cells, None], fr.pred[cells, a:b], ref)
    breaks = (fr.planes[cells, a:b] ^ ref).astype(np.int32) @ np.ones(b - a, np.int32)
    return (1 + (breaks * 4 > (b - a)).astype(np.int32)) * np.int32(N_SPATIAL)


def _plane_groups(bits: int, groups: int) -> list[tuple[int, int]]:
    """Contiguous plane ranges; the first has a multiple of 3 planes, so each group's symbols
    start at a plane p with p % 3 == 0 (see STRIDE)."""
    if groups <= 1 or bits <= 3:
        return [(0, bits)]
    first = 3 * max(1, round(bits / 6))
    return [(0, first), (first, bits)]


def _run(side: _Side, cfg: ContextCoderConfig, shape: tuple[int, int, int], bits: int,
         motions: list[tuple[int, int]]) -> np.ndarray:
    """The model, shared by encoder and decoder; returns the tokens (t, h, w)."""
    t, h, w = shape
    geo = _geometry(h, w, cfg.levels)
    groups = _plane_groups(bits, cfg.groups)
    counts = _Counts(cfg)
    out = np.empty((t, h * w), np.int64)
    batch = max(1, (h * w) // cfg.updates_per_frame)
    qtable = _quality_table(bits)
    prev = None
    for f in range(t):
        side.start_frame(f)
        fr = _start_frame(geo, bits, prev, motions[f])
        pending: list[np.ndarray] = []
        since = 0
        for i, ps in enumerate(geo.passes):
            cells = slice(ps.start, ps.stop)
            if ps.has_nbrs:
                ones = _neighbour_ones(fr, ps)
            else:
                ones = np.zeros((ps.stop - ps.start, bits), np.uint8)
            base = ps.base + _quality(fr, ps, qtable, bits)
            steps = []
            for gi, (a, b) in enumerate(groups):
                low = base if gi == 0 else base + _group_level(fr, ps, groups[0], ones)
                ctx = (fr.tctx[cells, a:b] + low[:, None]) + ones[:, a:b]
                got, value = side.code(cells, slice(a, b), counts.rows(ctx))
                fr.planes[cells, a:b] = got
                fr.tokens[cells] += value
                steps.append(ctx)
            pending.append(np.concatenate(steps, 1) if len(steps) > 1 else steps[0])
            if f < 2 or ps.stop - since >= batch or i == len(geo.passes) - 1:
                # counts learn after every pass while the spatial (frame 0) and temporal (frame 1)
                # contexts are new, later small passes are batched to save fixed costs
                ctx_all = np.concatenate(pending) if len(pending) > 1 else pending[0]
                counts.update(ctx_all, fr.planes[since:ps.stop])
                pending, since = [], ps.stop
            if fr.mismatch is not None:
                fr.mismatch[cells] = _popcount(fr.tokens[cells] ^ fr.pred_tokens[cells])
        side.end_frame(f)
        counts.age()
        tokens = np.empty(h * w, np.int32)
        tokens[geo.order] = fr.tokens
        planes = np.empty((h * w, bits), np.uint8)
        planes[geo.order] = fr.planes[: h * w]
        out[f] = tokens
        prev = (tokens, planes)
    return out.reshape(t, h, w)


# --------------------------------------------------------------------------- the two sides


class _Encoder:
    def __init__(self, arr: np.ndarray, bits: int, geo: _Geometry) -> None:
        import constriction

        self._cs = constriction.stream
        self._family = constriction.stream.model.Categorical(perfect=False)
        self._arr, self._bits, self._geo = arr, bits, geo
        self.segments: list[np.ndarray] = []

    def start_frame(self, f: int) -> None:
        self._tokens = np.take(self._arr[f].reshape(-1), self._geo.order).astype(np.int32)
        self._planes = _unpack(self._tokens, self._bits)
        self._enc = self._cs.queue.RangeEncoder()

    def code(self, cells: slice, planes: slice, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        a, b = planes.start, planes.stop
        shifts = np.arange(a, b, 3, dtype=np.int32)
        masks = np.minimum(7, (1 << (b - shifts)) - 1).astype(np.int32)
        tokens = self._tokens[cells]
        symbols = (tokens[:, None] >> shifts) & masks
        self._enc.encode(symbols.ravel(), self._family, rows)
        value = tokens & np.int32(((1 << b) - 1) ^ ((1 << a) - 1))
        return self._planes[cells, planes], value

    def end_frame(self, f: int) -> None:
        self.segments.append(self._enc.get_compressed())


class _Decoder:
    def __init__(self, segments: list[np.ndarray]) -> None:
        import constriction

        self._cs = constriction.stream
        self._family = constriction.stream.model.Categorical(perfect=False)
        self._segments = segments

    def start_frame(self, f: int) -> None:
        self._dec = self._cs.queue.RangeDecoder(self._segments[f])
        self._frame = f

    def code(self, cells: slice, planes: slice, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        a, b = planes.start, planes.stop
        try:
            symbols = np.asarray(self._dec.decode(self._family, rows), np.int32)
        except Exception as exc:  # constriction reports bad input as generic errors
            raise FormatError(f"range-coded data of latent frame {self._frame} is invalid: {exc}") from None
        chunks = -(-(b - a) // 3)
        symbols = symbols.reshape(-1, chunks)
        got = np.take(_SYMBOL_BITS, symbols, axis=0).reshape(symbols.shape[0], 3 * chunks)[:, : b - a]
        value = symbols @ (np.int32(1) << np.arange(a, b, 3, dtype=np.int32))
        return got, value

    def end_frame(self, f: int) -> None:
        pass


# --------------------------------------------------------------------------- payload helpers


def _put_varint(out: bytearray, v: int) -> None:
    while True:
        byte, v = v & 0x7F, v >> 7
        out.append(byte | (0x80 if v else 0))
        if not v:
            return


def _get_varint(buf: bytes, pos: int, limit: int, what: str) -> tuple[int, int]:
    v, shift = 0, 0
    while True:
        if pos >= len(buf):
            raise FormatError(f"context-coded payload ends inside the {what}")
        byte = buf[pos]
        pos += 1
        v |= (byte & 0x7F) << shift
        if v > limit:
            raise FormatError(f"{what} is {v}, more than the limit {limit}")
        if not byte & 0x80:
            return v, pos
        shift += 7


def _crc(tokens: np.ndarray) -> int:
    return zlib.crc32(np.ascontiguousarray(tokens, dtype="<u4").tobytes())


def _check_bits(bits: int) -> None:
    if not 1 <= bits <= MAX_BITS:
        raise ValueError(f"bits must be in 1..{MAX_BITS}, got {bits}")


def _check_shape(shape: tuple[int, int, int], payload_len: int, bits: int) -> tuple[int, int, int]:
    """Reject grids no payload of this length could hold, before allocating anything."""
    if len(shape) != 3 or any(int(s) < 0 for s in shape):
        raise FormatError(f"token grid shape must be (t, h, w) with no negative size, got {shape}")
    t, h, w = (int(s) for s in shape)
    n = t * h * w
    # the most likely level costs > 1/1500 bit per bit, so a payload bounds its token count
    if n > MAX_TOKENS or n * bits > (payload_len * 8 + 64) * 2048:
        raise FormatError(f"a {payload_len}-byte payload cannot hold a {t}x{h}x{w} token grid")
    return t, h, w


@dataclass(frozen=True)
class _Header:
    motions: list[tuple[int, int]]
    words: list[int]
    start: int              # byte offset of the first segment in the payload


def _parse_header(payload: bytes, shape: tuple[int, int, int], bits: int) -> _Header:
    t, h, w = shape
    pos = HEADER_BYTES
    need = 2 * max(t - 1, 0)
    if len(payload) < pos + need:
        raise FormatError("context-coded payload ends inside the motion vectors")
    mv = np.frombuffer(payload, np.int8, count=need, offset=pos).reshape(-1, 2).astype(int)
    if mv.size and np.abs(mv).max() > MAX_MOTION:
        raise FormatError(f"context-coded payload has a motion vector beyond {MAX_MOTION} cells")
    pos += need
    limit = h * w * bits + 64          # words per segment: far above any real frame
    words = []
    for f in range(t):
        n, pos = _get_varint(payload, pos, limit, f"segment length of latent frame {f}")
        words.append(n)
    if pos + 4 * sum(words) != len(payload):
        raise FormatError(
            f"context-coded payload has {len(payload) - pos} bytes of segments, "
            f"its header announces {4 * sum(words)}"
        )
    return _Header([(0, 0)] + [(int(a), int(b)) for a, b in mv], words, pos)


# --------------------------------------------------------------------------- the coder


@dataclass(frozen=True)
class ContextCoder:
    """Coder 2: context-modelled bit planes through a range coder (see the module docstring)."""

    coder_id: int = 2
    name: str = "context-lfq"
    config: ContextCoderConfig = ContextCoderConfig()

    def encode(self, tokens: np.ndarray, bits: int) -> bytes:
        _check_bits(bits)
        arr = _check_tokens(tokens, bits)
        crc = _crc(arr).to_bytes(4, "little")
        raw = RawBitsCoder().encode(arr, bits)
        if arr.size == 0:
            return bytes([MODE_RAW]) + crc + raw
        coded = self._encode_context(arr, bits)
        if len(coded) >= len(raw):
            return bytes([MODE_RAW]) + crc + raw
        return bytes([MODE_CONTEXT]) + crc + coded

    def decode(self, payload: bytes, shape: tuple[int, int, int], bits: int) -> np.ndarray:
        _check_bits(bits)
        payload = bytes(payload)
        t, h, w = _check_shape(shape, len(payload), bits)
        mode, crc = self._mode(payload)
        if mode == MODE_RAW:
            out = RawBitsCoder().decode(payload[HEADER_BYTES:], (t, h, w), bits).astype(np.int64)
        else:
            hd = _parse_header(payload, (t, h, w), bits)
            segments, pos = [], hd.start
            for n in hd.words:
                segments.append(np.frombuffer(payload, "<u4", count=n, offset=pos).astype(np.uint32))
                pos += 4 * n
            out = _run(_Decoder(segments), self.config, (t, h, w), bits, hd.motions)
        if _crc(out) != crc:
            raise FormatError("context-coded payload is corrupt (token checksum mismatch)")
        return out

    def frame_bits(self, payload: bytes, shape: tuple[int, int, int], bits: int) -> list[int]:
        """Bits of each latent frame's segment; the payload header is counted in frame 0."""
        _check_bits(bits)
        payload = bytes(payload)
        t, h, w = _check_shape(shape, len(payload), bits)
        mode, _ = self._mode(payload)
        if mode == MODE_RAW:
            per = RawBitsCoder().frame_bits(payload[HEADER_BYTES:], (t, h, w), bits)
            if sum(per) != (len(payload) - HEADER_BYTES) * 8:
                raise FormatError("raw payload length does not match the token grid")
            start = HEADER_BYTES
        else:
            hd = _parse_header(payload, (t, h, w), bits)
            per, start = [32 * n for n in hd.words], hd.start
        if per:
            per[0] += 8 * start
        return per

    @staticmethod
    def _mode(payload: bytes) -> tuple[int, int]:
        if len(payload) < HEADER_BYTES:
            raise FormatError(f"context-coded payload has {len(payload)} bytes, needs at least {HEADER_BYTES}")
        if payload[0] not in (MODE_RAW, MODE_CONTEXT):
            raise FormatError(f"context-coded payload has unknown mode {payload[0]}")
        return payload[0], int.from_bytes(payload[1:HEADER_BYTES], "little")

    def _encode_context(self, arr: np.ndarray, bits: int) -> bytes:
        t, h, w = arr.shape
        motions = [(0, 0)] + [_search_motion(arr[f - 1], arr[f], self.config.search) for f in range(1, t)]
        enc = _Encoder(arr, bits, _geometry(h, w, self.config.levels))
        _run(enc, self.config, (t, h, w), bits, motions)
        out = bytearray(np.array(motions[1:], np.int8).reshape(-1).tobytes())
        for seg in enc.segments:
            _put_varint(out, int(seg.size))
        for seg in enc.segments:
            out += seg.astype("<u4").tobytes()
        return bytes(out)


register_coder(2, ContextCoder)
