"""Coder 2: context-adaptive entropy coding of LFQ token grids.

A token is ``bits`` sign bits, one per latent channel, so the coder works on bit planes: plane
``i`` of a latent frame is channel ``i``'s sign map. Cells are coded in lattice passes (a stride-4
grid, its diagonal centres, its edge midpoints, then the same at stride 2), so every pass after
the first sees up to four coded neighbours around a cell, and a whole pass is one vectorised
numpy step instead of a per-token loop. The context of bit ``i`` of a cell is

* time (latent frames after the first): the previous latent frame, shifted by one motion vector
  per frame that the encoder picks (camera motion), predicts the cell; the context holds the
  predicted bit ``i`` and the count of ones of plane ``i`` in the 3x3 around it (robust to motion
  that is not a whole cell), and how many bits (all planes) the prediction got wrong at the coded
  neighbour cells, which tells static from changing regions;
* space: plane ``i`` at the coded neighbour cells (how many are known, how many are 1);
* the token itself: three planes of a cell form one 8-ary symbol, and in the first latent frame
  (or where the motion leaves no prediction) the plane index, so each channel learns its own
  spatial statistics and bias.

Contexts hold adaptive integer counts, shared by the planes, backed off to a coarser table and
that to a fixed prior while a context is young; counts carry over the latent frames of a GOP and
start afresh at each GOP (GOPs decode independently). A count pair gives a 12-bit probability,
rounded to one of 32 levels; the symbol's probability row is read from a table of products of
three level probabilities and coded with constriction's range coder. Everything that decides a
probability is integer arithmetic or a table built from integer literals, so encoder and decoder
agree bit for bit on any machine (given the same constriction version, which turns rows into its
fixed-point model).

Payload (little-endian)::

    u8  mode             0 = raw (RawBitsCoder packing follows), 1 = context coded
    u32 crc32            of the tokens as little-endian u32: catches corruption and coder mismatch
    mode 1 only:
      (t-1) x u8              motion of latent frame f >= 1 against frame f-1, in cells:
                              (dy + 8) << 4 | (dx + 8), |dy|, |dx| <= 7
      flips                   ((passes - 1) * bits) bits, LSB first: plane p's neighbours in
                              pass i vote the other way (k - ones replaces ones)
      t x varint              segment f: (byte length << 1) | raw flag
      segments                per latent frame: a range-coder stream (u32 words), or, where that
                              would not be smaller, the frame's raw bit packing

The encoder stores the whole GOP raw when coding would not be smaller (e.g. random tokens).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Protocol

import numpy as np

from tokcodec.codec.lattice import (HEADER_BYTES, MAX_BITS, MODE_CONTEXT, MODE_RAW, PROB_BITS, PROB_ONE,
                                    Geometry, Pass, check_bits, check_shape, geometry, popcount,
                                    raw_frame_bytes, search_motion, token_crc, unpack_bits)
from tokcodec.codec.raw import RawBitsCoder, check_tokens as _check_tokens
from tokcodec.codec.segments import append_segments, pack_motion, read_mode, read_motion, read_segments
from tokcodec.errors import FormatError


# Bit contexts: fine = (T * N_Q + q) * N_SPATIAL + s, with
#   T = pred bit * 10 + ones in the pred 3x3 (0..19) for a predicted cell;
#   T * N_Q + q = NO_PRED_BASE + plane where there is no prediction (first frame, motion edge);
#   q = prediction errors per coded neighbour cell, 0 (no coded neighbour) or 1..N_Q-1;
#   s = k(k+1)/2 + ones for k coded neighbours of which ``ones`` are 1.
N_SPATIAL = 15
QUALITY_EDGES = (1, 2, 4, 7)        # errors per coded neighbour cell between q levels 1|2|3|4|5
N_Q = len(QUALITY_EDGES) + 2
N_T = 20
NO_PRED_BASE = N_T * N_Q            # room for MAX_BITS planes after it
N_FINE = (NO_PRED_BASE + MAX_BITS) * N_SPATIAL
N_COARSE = (N_T + 1) * N_SPATIAL    # fine without q (and without the plane where no prediction)
# Plane p's context indices are offset by (p % 3) * STRIDE: three planes share one 8-ary symbol,
# and the offset picks which of the three stacked level tables (x1, x33, x33^2) a plane reads.
# Entry N_FINE of each table is a padding context that is never updated and says "zero".
STRIDE = N_FINE + 1

# Prior of a coarse context before it has counts (12-bit): a vote of the 3x3 prediction (each
# one 1, the centre PRIOR_CENTRE more) and the k coded spatial neighbours (PRIOR_SPATIAL each),
# plus one for each outcome. It weighs PRIOR_WEIGHT counts against the context's own.
PRIOR_SPATIAL = 1
PRIOR_CENTRE = 8
PRIOR_WEIGHT = 32

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
SYMBOL_ROWS = _symbol_rows()
_SYMBOL_BITS = ((np.arange(8)[:, None] >> np.arange(3)) & 1).astype(np.uint8)   # symbol -> 3 bits


@dataclass(frozen=True)
class ContextCoderConfig:
    """Knobs of coder 2. All but ``search`` shape the bitstream, so they are fixed per coder id."""

    levels: int = 2             # lattice levels: 1 + 2 * levels passes per latent frame
    backoff: int = 8            # weight of the coarse estimate in the fine one, in counts
    eager_frames: int = 1       # counts are updated after every pass in the first frames,
    updates_per_frame: int = 4  # then after passes that cover >= 1/this of a frame
    search: int = 4             # motion search range in cells (encoder only, <= MAX_MOTION)


# --------------------------------------------------------------------------- geometry


# --------------------------------------------------------------------------- motion


# --------------------------------------------------------------------------- the model


def _coarse_of_fine() -> np.ndarray:
    f = np.arange(N_FINE)
    tq = f // N_SPATIAL
    return np.where(tq < NO_PRED_BASE, tq // N_Q, N_T) * N_SPATIAL + f % N_SPATIAL


def _prior() -> np.ndarray:
    """(N_COARSE,) 12-bit prior probability of a one for each coarse context, integers only."""
    c = np.arange(N_COARSE)
    s, t = c % N_SPATIAL, c // N_SPATIAL
    k = np.concatenate([np.full(j + 1, j) for j in range(5)])[s]
    ones = np.concatenate([np.arange(j + 1) for j in range(5)])[s]
    has_t = (t < N_T).astype(np.int64)
    num = 1 + PRIOR_SPATIAL * ones + has_t * (t % 10 + PRIOR_CENTRE * (t // 10))
    den = 2 + PRIOR_SPATIAL * k + has_t * (9 + PRIOR_CENTRE)
    return ((2 * num << PROB_BITS) + den) // (2 * den)


_COARSE_OF_FINE = _coarse_of_fine()
_PRIOR = _prior()


@dataclass
class _Counts:
    """Adaptive counts of the bit contexts, fine and coarse, and the probability levels."""

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
        if ctx.size == 0:
            return
        idx = (bits.astype(np.int32) * np.int32(3 * STRIDE) + ctx).ravel()
        d = np.bincount(idx, minlength=6 * STRIDE).reshape(2, 3, STRIDE)
        delta = (d[:, 0] + d[:, 1] + d[:, 2])[:, :N_FINE]
        self.fine += delta
        split = N_T * N_Q * N_SPATIAL
        coarse = self.coarse.reshape(2, N_T + 1, N_SPATIAL)
        coarse[:, :N_T] += np.add.reduce(delta[:, :split].reshape(2, N_T, N_Q, N_SPATIAL), axis=2)
        coarse[:, N_T] += np.add.reduce(delta[:, split:].reshape(2, MAX_BITS, N_SPATIAL), axis=1)
        self._refresh()

    def _refresh(self) -> None:
        """Levels of all fine contexts: their counts, with the coarse estimate as a prior, whose
        own prior is _PRIOR."""
        c0, c1 = self.coarse
        k = self.cfg.backoff
        coarse = ((c1 << PROB_BITS) + PRIOR_WEIGHT * _PRIOR) // (c0 + c1 + PRIOR_WEIGHT)
        f0, f1 = self.fine
        p = ((f1 << PROB_BITS) + k * np.take(coarse, _COARSE_OF_FINE)) // (f0 + f1 + k)
        table = np.empty((3, STRIDE), np.int32)
        table[0, :N_FINE] = np.take(LEVEL_OF_PROB, p)
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

    def bits(self, cells: np.ndarray | slice, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(n, bits) uint8 bits of the cells and their tokens (n,) int32."""
        ...

    def end_frame(self, f: int) -> None: ...


@dataclass
class _Frame:
    """What both sides know while coding one latent frame. Arrays are cell-major in pass order;
    row hw of ``planes`` and ``mismatch`` is a sentinel that reads as zero."""

    planes: np.ndarray              # (hw + 1, bits) uint8, filled pass by pass
    tokens: np.ndarray              # (hw,) int32, filled pass by pass
    tctx: np.ndarray                # (hw, bits) int32 fine-context part fixed for the frame
    pred: np.ndarray | None         # (hw, bits) uint8 motion-compensated previous planes
    pred_tokens: np.ndarray | None  # (hw,) int32 motion-compensated previous tokens
    valid: np.ndarray | None        # (hw,) bool: pred comes from inside the previous frame
    mismatch: np.ndarray | None     # (hw + 1,) int32 bits where the frame differs from pred
    all_valid: bool = True


def _box3(p: np.ndarray) -> np.ndarray:
    """3x3 count of ones around each cell of (h, w, bits) uint8 planes, edges replicated."""
    h, w = p.shape[:2]
    pad = np.empty((h + 2, w + 2) + p.shape[2:], np.uint8)
    pad[1:-1, 1:-1] = p
    pad[0, 1:-1], pad[-1, 1:-1] = p[0], p[-1]
    pad[:, 0], pad[:, -1] = pad[:, 1], pad[:, -2]
    rows = pad[:-2] + pad[1:-1] + pad[2:]
    return rows[:, :-2] + rows[:, 1:-1] + rows[:, 2:]


@lru_cache(maxsize=32)
def _plane_parts(bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Per plane: the fine-context part of an unpredicted bit, and of a predicted one before t."""
    p = np.arange(bits, dtype=np.int32)
    offset = (p % 3) * np.int32(STRIDE)
    return (NO_PRED_BASE + p) * N_SPATIAL + offset, offset


def _start_frame(geo: Geometry, bits: int, prev: tuple[np.ndarray, np.ndarray] | None,
                 motion: tuple[int, int]) -> _Frame:
    """prev: the previous frame's (tokens (hw,) int32, planes (hw, bits) uint8) in row-major
    order, or None for the first frame of the GOP."""
    h, w = geo.h, geo.w
    hw = h * w
    planes = np.zeros((hw + 1, bits), np.uint8)
    tokens = np.zeros(hw, np.int32)
    unpredicted, offsets = _plane_parts(bits)
    if prev is None:
        return _Frame(planes, tokens, np.broadcast_to(unpredicted, (hw, bits)), None, None, None, None)
    ys, xs = np.arange(h) - motion[0], np.arange(w) - motion[1]
    inside = ((ys >= 0) & (ys < h))[:, None] & ((xs >= 0) & (xs < w))[None, :]
    src = (np.clip(ys, 0, h - 1)[:, None] * w + np.clip(xs, 0, w - 1)[None, :]).reshape(-1)
    pred = np.take(prev[1], src, axis=0)                                      # row-major
    tidx = pred * np.uint8(10) + _box3(pred.reshape(h, w, bits)).reshape(hw, bits)  # 0..19
    order = geo.order
    tctx = np.take(tidx, order, axis=0).astype(np.int32)                     # pass order
    tctx *= np.int32(N_Q * N_SPATIAL)
    tctx += offsets
    inside = inside.reshape(-1)[order]
    if not inside.all():
        tctx[~inside] = unpredicted
    return _Frame(planes, tokens, tctx, np.take(pred, order, axis=0), np.take(prev[0], src[order]),
                  inside, np.zeros(hw + 1, np.int32), bool(inside.all()))


def _neighbour_ones(fr: _Frame, ps: Pass) -> np.ndarray:
    """(n, bits) uint8: ones among the coded neighbours of each cell of the pass, per plane."""
    nbr, src = ps.nbr, fr.planes
    return (np.take(src, nbr[0], axis=0) + np.take(src, nbr[1], axis=0)
            + np.take(src, nbr[2], axis=0) + np.take(src, nbr[3], axis=0))


@lru_cache(maxsize=32)
def _quality_table(bits: int) -> np.ndarray:
    """(k * (4 * bits + 1) + errors at the k coded neighbours) -> q part of a bit context."""
    k = np.arange(5)[:, None]
    total = np.arange(4 * bits + 1)[None, :]
    q = 1 + sum((total >= e * k).astype(np.int32) for e in QUALITY_EDGES)
    return (np.where(k > 0, q, 0) * N_SPATIAL).astype(np.int32).reshape(-1)


def _contexts(fr: _Frame, ps: Pass, flips: np.ndarray, q_table: np.ndarray, bits: int) -> np.ndarray:
    """(n, bits) int32 fine contexts (with plane offsets) of the cells of one pass."""
    n = ps.stop - ps.start
    ones = _neighbour_ones(fr, ps) if ps.has_nbrs else np.zeros((n, bits), np.uint8)
    if flips.any():
        ones = np.where(flips, ps.known_u8[:, None] - ones, ones)
    low = ps.base
    if fr.pred is not None and ps.has_nbrs:
        total = np.take(fr.mismatch, ps.nbr).sum(0, dtype=np.int32)
        q = np.take(q_table, ps.known * np.int32(4 * bits + 1) + total)
        low = low + (q if fr.all_valid else q * fr.valid[ps.start:ps.stop])
    ctx = fr.tctx[ps.start:ps.stop] + low[:, None]
    ctx += ones
    return ctx


def _run(side: _Side, cfg: ContextCoderConfig, shape: tuple[int, int, int], bits: int,
         motions: list[tuple[int, int]], flips: np.ndarray) -> np.ndarray:
    """The model, shared by encoder and decoder; returns the tokens (t, h, w).
    flips: (passes, bits) bool, planes whose neighbours in that pass vote the other way."""
    t, h, w = shape
    geo = geometry(h, w, cfg.levels)
    counts = _Counts(cfg)
    out = np.empty((t, h * w), np.int64)
    batch = max(1, (h * w) // cfg.updates_per_frame)
    q_table = _quality_table(bits)
    prev = None
    for f in range(t):
        side.start_frame(f)
        fr = _start_frame(geo, bits, prev, motions[f])
        pending: list[np.ndarray] = []
        since = 0
        for i, ps in enumerate(geo.passes):
            cells = slice(ps.start, ps.stop)
            ctx = _contexts(fr, ps, flips[i], q_table, bits)
            fr.planes[cells], fr.tokens[cells] = side.bits(cells, counts.rows(ctx))
            pending.append(ctx)
            # counts learn after every pass while the contexts are new (first eager_frames
            # frames), later small passes are batched to save the fixed cost of an update
            if f < cfg.eager_frames or ps.stop - since >= batch or i == len(geo.passes) - 1:
                ctx_all = pending[0] if len(pending) == 1 else np.concatenate(pending)
                counts.update(ctx_all, fr.planes[since:ps.stop])
                pending, since = [], ps.stop
            if fr.mismatch is not None:
                fr.mismatch[cells] = popcount(fr.tokens[cells] ^ fr.pred_tokens[cells])
        side.end_frame(f)
        tokens = np.empty(h * w, np.int32)
        tokens[geo.order] = fr.tokens
        planes = np.empty((h * w, bits), np.uint8)
        planes[geo.order] = fr.planes[: h * w]
        out[f] = tokens
        prev = (tokens, planes)
    return out.reshape(t, h, w)


# --------------------------------------------------------------------------- the two sides


def _symbols(tokens: np.ndarray, bits: int) -> np.ndarray:
    """Tokens (n,) -> their 8-ary symbols, (n * ceil(bits / 3),) int32: planes 3j..3j+2."""
    shifts = np.arange(0, bits, 3, dtype=np.int32)
    masks = np.minimum(7, (1 << (bits - shifts)) - 1).astype(np.int32)
    return ((tokens[:, None] >> shifts) & masks).ravel()


def _choose_flips(arr: np.ndarray, bits: int, geo: Geometry) -> np.ndarray:
    """Encoder only: per pass and plane, whether the coded neighbours of a cell disagree with it
    more often than they agree (channels whose signs alternate between neighbouring cells, e.g.
    checkerboard-like ones); the decoder reads the choice from the payload."""
    sample = arr[:: max(1, (arr.shape[0] + 1) // 2)]      # a channel property: two frames do
    t = sample.shape[0]
    planes = np.zeros((t, arr[0].size + 1, bits), np.uint8)
    planes[:, :-1] = unpack_bits(np.take(sample.reshape(t, -1), geo.order, axis=1).astype(np.int32), bits)
    flips = np.zeros((len(geo.passes), bits), bool)
    for i, ps in enumerate(geo.passes):
        if not ps.has_nbrs:
            continue
        ones = np.take(planes, ps.nbr, axis=1).sum(1, dtype=np.int32)       # (t, n, bits)
        k = ps.known[None, :, None]
        vote = np.sign(2 * ones - k)                                         # neighbours' majority
        sign = 2 * planes[:, ps.start:ps.stop].astype(np.int32) - 1
        flips[i] = (vote * sign).sum((0, 1)) < 0
    return flips


class _Encoder:
    def __init__(self, arr: np.ndarray, bits: int, geo: Geometry) -> None:
        import constriction

        self._cs = constriction.stream
        self._bits_family = constriction.stream.model.Categorical(perfect=False)
        self._arr, self._bits, self._geo = arr, bits, geo
        self.segments: list[tuple[bool, bytes]] = []     # (raw?, bytes) per frame

    def start_frame(self, f: int) -> None:
        self._tokens = np.take(self._arr[f].reshape(-1), self._geo.order).astype(np.int32)
        self._planes = unpack_bits(self._tokens, self._bits)
        self._enc = self._cs.queue.RangeEncoder()

    def bits(self, cells: np.ndarray | slice, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        tokens = self._tokens[cells]
        if tokens.size:
            self._enc.encode(_symbols(tokens, self._bits), self._bits_family, rows)
        return self._planes[cells], tokens

    def end_frame(self, f: int) -> None:
        coded = self._enc.get_compressed().astype("<u4").tobytes()
        _, h, w = self._arr.shape
        if len(coded) >= raw_frame_bytes(h, w, self._bits):
            self.segments.append((True, RawBitsCoder().encode(self._arr[f:f + 1], self._bits)))
        else:
            self.segments.append((False, coded))


class _Decoder:
    def __init__(self, segments: list[tuple[bool, bytes]], shape: tuple[int, int, int], bits: int,
                 geo: Geometry) -> None:
        import constriction

        self._cs = constriction.stream
        self._bits_family = constriction.stream.model.Categorical(perfect=False)
        self._segments, self._shape, self._b, self._geo = segments, shape, bits, geo

    def start_frame(self, f: int) -> None:
        self._frame = f
        raw, data = self._segments[f]
        if raw:
            _, h, w = self._shape
            grid = RawBitsCoder().decode(data, (1, h, w), self._b)[0]
            self._tokens = np.take(grid.reshape(-1), self._geo.order).astype(np.int32)
            self._planes = unpack_bits(self._tokens, self._b)
            self._dec = None
        else:
            self._dec = self._cs.queue.RangeDecoder(np.frombuffer(data, "<u4").astype(np.uint32))

    def _decode(self, rows: np.ndarray) -> np.ndarray:
        try:
            return np.asarray(self._dec.decode(self._bits_family, rows), np.int32)
        except Exception as exc:  # noqa: BLE001 - constriction reports bad input as generic errors
            raise FormatError(f"range-coded data of latent frame {self._frame} is invalid: {exc}") from None

    def bits(self, cells: np.ndarray | slice, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self._dec is None:
            return self._planes[cells], self._tokens[cells]
        chunks = -(-self._b // 3)
        if rows.shape[0] == 0:
            return np.zeros((0, self._b), np.uint8), np.zeros(0, np.int32)
        symbols = self._decode(rows).reshape(-1, chunks)
        got = np.take(_SYMBOL_BITS, symbols, axis=0).reshape(symbols.shape[0], 3 * chunks)[:, : self._b]
        tokens = symbols @ (np.int32(1) << np.arange(0, self._b, 3, dtype=np.int32))
        return got, tokens

    def end_frame(self, f: int) -> None:
        pass


# --------------------------------------------------------------------------- payload helpers


@dataclass(frozen=True)
class _Header:
    motions: list[tuple[int, int]]
    flips: np.ndarray                    # (passes, bits) bool
    segments: list[tuple[bool, int]]     # (raw?, byte length) per latent frame
    start: int                           # byte offset of the first segment in the payload


def _flip_bytes(passes: int, bits: int) -> int:
    return ((passes - 1) * bits + 7) // 8          # pass 0 has no neighbours


def _parse_header(payload: bytes, shape: tuple[int, int, int], bits: int, levels: int) -> _Header:
    t, h, w = shape
    motions, pos = read_motion(payload, HEADER_BYTES, t)
    passes = len(geometry(h, w, levels).passes) if h * w else 1
    nflip = _flip_bytes(passes, bits)
    if len(payload) < pos + nflip:
        raise FormatError("context-coded payload ends inside the neighbour flips")
    flips = np.zeros((passes, bits), bool)
    flips[1:] = np.unpackbits(np.frombuffer(payload, np.uint8, count=nflip, offset=pos),
                              count=(passes - 1) * bits, bitorder="little").reshape(passes - 1, bits).astype(bool)
    pos += nflip
    segments, pos = read_segments(payload, pos, shape, bits, word_aligned=True)
    return _Header(motions, flips, segments, pos)


# --------------------------------------------------------------------------- the coder


@dataclass(frozen=True)
class ContextCoder:
    """Coder 2: context-modelled bit planes through a range coder (see the module docstring)."""

    coder_id: int = 2
    name: str = "context-lfq"
    config: ContextCoderConfig = ContextCoderConfig()

    @classmethod
    def from_context(cls, context: object = None) -> "ContextCoder":
        return cls()  # adaptive: needs nothing of the model

    def encode(self, tokens: np.ndarray, bits: int, previous: np.ndarray | None = None) -> bytes:
        # ``previous`` (the GOP before's last latent frame) is for coder 4: this coder ignores it
        check_bits(bits)
        arr = _check_tokens(tokens, bits)
        crc = token_crc(arr).to_bytes(4, "little")
        if arr.size == 0:
            return bytes([MODE_RAW]) + crc + RawBitsCoder().encode(arr, bits)
        coded = self._encode_context(arr, bits)
        if len(coded) >= arr.shape[0] * raw_frame_bytes(arr.shape[1], arr.shape[2], bits):
            return bytes([MODE_RAW]) + crc + RawBitsCoder().encode(arr, bits)
        return bytes([MODE_CONTEXT]) + crc + coded

    def links(self, payload: bytes) -> bool:
        """Whether ``payload`` needs the previous GOP's tokens to decode: never, here."""
        return False

    def decode(self, payload: bytes, shape: tuple[int, int, int], bits: int,
               previous: np.ndarray | None = None) -> np.ndarray:
        check_bits(bits)
        payload = bytes(payload)
        t, h, w = check_shape(shape, len(payload), bits)
        mode, crc = read_mode(payload)
        if mode == MODE_RAW:
            out = RawBitsCoder().decode(payload[HEADER_BYTES:], (t, h, w), bits).astype(np.int64)
        else:
            hd = _parse_header(payload, (t, h, w), bits, self.config.levels)
            segments, pos = [], hd.start
            for raw, n in hd.segments:
                segments.append((raw, payload[pos:pos + n]))
                pos += n
            geo = geometry(h, w, self.config.levels)
            out = _run(_Decoder(segments, (t, h, w), bits, geo), self.config, (t, h, w), bits,
                       hd.motions, hd.flips)
        if token_crc(out) != crc:
            raise FormatError("context-coded payload is corrupt (token checksum mismatch)")
        return out

    def frame_bits(self, payload: bytes, shape: tuple[int, int, int], bits: int) -> list[int]:
        """Bits of each latent frame's segment; the payload header is counted in frame 0."""
        check_bits(bits)
        payload = bytes(payload)
        t, h, w = check_shape(shape, len(payload), bits)
        mode, _ = read_mode(payload)
        if mode == MODE_RAW:
            per = RawBitsCoder().frame_bits(payload[HEADER_BYTES:], (t, h, w), bits)
            if sum(per) != (len(payload) - HEADER_BYTES) * 8:
                raise FormatError("raw payload length does not match the token grid")
            start = HEADER_BYTES
        else:
            hd = _parse_header(payload, (t, h, w), bits, self.config.levels)
            per, start = [8 * n for _, n in hd.segments], hd.start
        if per:
            per[0] += 8 * start
        return per

    def _encode_context(self, arr: np.ndarray, bits: int) -> bytes:
        t, h, w = arr.shape
        motions = [(0, 0)] + [search_motion(arr[f - 1], arr[f], self.config.search) for f in range(1, t)]
        geo = geometry(h, w, self.config.levels)
        flips = _choose_flips(arr, bits, geo)
        enc = _Encoder(arr, bits, geo)
        _run(enc, self.config, (t, h, w), bits, motions, flips)
        out = pack_motion(motions)
        out += np.packbits(flips[1:].reshape(-1), bitorder="little").tobytes()
        append_segments(out, enc.segments)
        return bytes(out)

