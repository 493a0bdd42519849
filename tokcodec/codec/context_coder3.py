"""Coder 3: a small learned prior per tokenizer (integer MLP), recalibrated adaptively per GOP.

Coder 2's adaptive counts start from nothing in every GOP and see each plane's own neighbours
only. The tokenizer's bits are predictable from much more: the other planes of the neighbouring
cells, the other planes of the motion-compensated cell in the previous latent frame, and, for the
second 9-bit LFQ group, the first group of the same cell (the entropy penalty decorrelates the
bits within a group, not across groups). Coder 3 predicts every bit with a small MLP fitted
offline on tokens of the tokenizer's training data (``bench/fit_coder_prior.py``) and shipped
beside the weights (``tokcodec/weights/<model>.coder3.safetensors``, with the weights' SHA-256 in
its metadata). The payload names the prior by the first four bytes of the prior file's SHA-256,
so a decoder without that exact prior (other weights, or a re-fitted prior) refuses the payload
(``FormatError``) instead of decoding garbage.

Order and features (the same lattice passes as coder 2, see ``context_coder.py``): each pass is
coded in two steps, planes ``[0, g)`` then ``[g, bits)`` with ``g = ceil(bits / 2)``. A cell's
features are the signs (+1 / -1, 0 where unknown) of all planes of its up-to-four coded
neighbours; per plane, the sign at its motion-compensated position in the previous latent frame
and the sum of the signs of the 3x3 cells around it (0 in the first frame and outside); and
one-hots of the pass, the number of coded neighbours, first frame and "has a prediction". Each bit's logit is a linear function of the
features plus an MLP of them (``hidden`` ReLU units); the second group's logits also get a linear
term in the first group's signs of the cell.

Bit exactness: weights are integers; features are -1, 0, 1, so the first layer's float32 matrix
product holds integers below 2**24 and the second layer's float64 product integers below 2**53:
every partial sum is exact, so any BLAS, any summation order, with or without FMA, gives the same
integers. The activation is ``min(relu(z) // 16, 1023)``. The logit (1/4096 nat) picks a 12-bit
probability from an integer table shipped in the prior file.

Adaptation (secondary estimation): a bit's context is (predicted bit: 0 / none / 1, plane, logit
bucket of 1/4 nat, clipped to +-8 nats); its probability is ``((ones << 12) + SSE_WEIGHT * p0)
// (zeros + ones + SSE_WEIGHT)`` with the context's adaptive counts (updated after every pass,
reset at each GOP) and ``p0`` the table's probability at the bucket's centre logit. ``p`` is
rounded to coder 2's 32 levels and three planes form one 8-ary symbol of coder 2's symbol rows,
coded with constriction's range coder.

The encoder also codes a GOP with coder 2 when its motion-compensated frames change by fewer
than STATIC_BITS bits per token (near-static content, which the prior never saw), and keeps the
smaller payload.

Payload (little-endian)::

    u8  mode             0 = raw (RawBitsCoder packing follows), 1 = MLP prior coded,
                         2 = coder 2's payload follows (no prior for this tokenizer or bit
                             width, or coder 2 was smaller on near-static content)
    u32 crc32            of the tokens as little-endian u32 (modes 0 and 1)
    mode 1 only:
      4 bytes                 prior key: the first 4 bytes of the prior file's SHA-256
      (t-1) x u8              motion of latent frame f >= 1 against frame f-1, as coder 2
      t x varint              segment f: (byte length << 1) | raw flag
      segments                per latent frame: a range-coder stream (u32 words), or, where that
                              would not be smaller, the frame's raw bit packing
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path

import numpy as np

from tokcodec.codec import context_coder as c2
from tokcodec.codec.context_coder import (
    HEADER_BYTES,
    MAX_MOTION,
    MODE_CONTEXT,
    MODE_RAW,
    _Geometry,
    _Pass,
)
from tokcodec.codec.entropy import RawBitsCoder, _check_tokens, register_coder
from tokcodec.errors import FormatError

MODE_CODER2 = 2
KEY_BYTES = 4
PRIOR_FORMAT = "tokcodec-coder3-prior-v1"
WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
DEFAULT_MODEL_SHA256 = "d387875b7e296e83e43ac07bba798a0ae1ef2e5d8d51a017823f5af9e7b20772"  # small

LEVELS_PER_PASS = 2         # lattice levels (coder 2's default): 5 passes
N_PASS_SLOTS = 5
PREV_PER_PLANE = 2          # previous-frame features per plane: centre sign, 3x3 sum of signs
W1_UNIT = 256               # first-layer weights in 1/256; logits in 1/LOGIT_UNIT nat
LOGIT_UNIT = 4096
ACT_SHIFT = 4               # hidden activation = min(relu(z) >> 4, ACT_MAX)
ACT_MAX = 1023
LOGIT_SHIFT = 6             # probability table index: logit (1/4096 nat) >> 6, i.e. 1/64 nat
LOGIT_RANGE = 1023          # table covers +-LOGIT_RANGE / 64 nats
SSE_SHIFT = 10              # SSE bucket: logit >> 10 (1/4 nat), clipped to +-SSE_HALF
SSE_HALF = 32
N_SSE = 2 * SSE_HALF + 1
STATIC_BITS = 1.5           # encoder: below this mean change per token, also try coder 2
N_PRED = 3                  # SSE contexts also split by the predicted bit: none, 0, 1
SSE_WEIGHT = 24             # weight of the static probability against a bucket's counts


def n_features(bits: int) -> int:
    """Feature vector length: 4 neighbours' signs, the previous frame's centre signs and 3x3 sums
    (all planes), one-hots."""
    return (4 + PREV_PER_PLANE) * bits + N_PASS_SLOTS + 5 + 2


# --------------------------------------------------------------------------- the prior


@dataclass(frozen=True)
class Prior:
    """A fitted MLP for one tokenizer; integer weights as float arrays (exact, see docstring)."""

    key: bytes                  # first KEY_BYTES of the prior file's SHA-256 (stored in payloads)
    model_sha256: str           # the tokenizer weights it was fitted for
    bits: int
    w_nbr: np.ndarray           # (4 * bits, hidden) float32, rows neighbour-major
    w_prev: np.ndarray          # (2 * bits, hidden + bits) float32: centre signs, then 3x3 sums
    w_pass: np.ndarray          # (N_PASS_SLOTS, hidden) float32
    w_known: np.ndarray         # (5, hidden) float32
    w_first: np.ndarray         # (hidden + bits,) float32
    w_has: np.ndarray           # (hidden + bits,) float32
    b1: np.ndarray              # (hidden + bits,) float32: ReLU units, then linear (skip) logits
    w2: np.ndarray              # (hidden, bits) float64
    b2: np.ndarray              # (bits,) float64
    ar: np.ndarray              # (g, bits - g) float64: first-group signs -> second-group logits
    prob: np.ndarray            # (2 * LOGIT_RANGE + 1,) int64 12-bit P(one) per logit >> 6

    @property
    def hidden(self) -> int:
        return self.w2.shape[0]

    @cached_property
    def kernel(self) -> _KernelPrior:
        """The same weights as integer tables for the compiled kernels (built once per prior)."""
        return _kernel_prior(self)


def _as_int(a: np.ndarray, limit: int, name: str) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype.kind not in "iu" or (a.size and np.abs(a.astype(np.int64)).max() > limit):
        raise FormatError(f"coder-3 prior: {name} must be integers within +-{limit}")
    return a.astype(np.int64)


def prior_from_arrays(arrays: dict[str, np.ndarray], model_sha256: str, key: bytes) -> Prior:
    """Check and convert the integer arrays of a prior file."""
    w1 = _as_int(arrays["w1"], 2047, "w1")                  # (features, hidden + bits)
    bits = int(_as_int(arrays["bits"], 64, "bits")[0])
    hidden = w1.shape[1] - bits
    if w1.shape[0] != n_features(bits) or not 1 <= hidden <= 256:
        raise FormatError(f"coder-3 prior: w1 has shape {w1.shape}, expected ({n_features(bits)}, <=256 + bits)")
    g = (bits + 1) // 2
    w2 = _as_int(arrays["w2"], 1 << 20, "w2")
    b1 = _as_int(arrays["b1"], 1 << 22, "b1")
    b2 = _as_int(arrays["b2"], 1 << 30, "b2")
    ar = _as_int(arrays["ar"], 1 << 24, "ar")
    prob = _as_int(arrays["prob"], c2.PROB_ONE, "prob")
    if (w2.shape != (hidden, bits) or b1.shape != (hidden + bits,) or b2.shape != (bits,)
            or ar.shape != (g, bits - g) or prob.shape != (2 * LOGIT_RANGE + 1,)):
        raise FormatError("coder-3 prior: array shapes do not match")
    # every first-layer partial sum must stay an exact float32 integer (|z| < 2**24): features are
    # +-1 (0) except the 3x3 sums (+-9), and a cell has at most one pass / known / first / has one-hot
    nb, npv = 4 * bits, PREV_PER_PLANE * bits
    scale = np.ones(w1.shape[0], np.int64)
    scale[nb + bits:nb + npv] = 9
    if int((np.abs(w1) * scale[:, None]).sum(0).max() + np.abs(b1).max()) >= 1 << 24:
        raise FormatError("coder-3 prior: first-layer sums could exceed 2**24")
    f32 = np.float32
    return Prior(
        key=key, model_sha256=model_sha256, bits=bits,
        w_nbr=w1[:nb].astype(f32), w_prev=w1[nb:nb + npv].astype(f32),
        w_pass=w1[nb + npv:nb + npv + N_PASS_SLOTS].astype(f32),
        w_known=w1[nb + npv + N_PASS_SLOTS:nb + npv + N_PASS_SLOTS + 5].astype(f32),
        w_first=w1[-2].astype(f32), w_has=w1[-1].astype(f32), b1=b1.astype(f32),
        w2=w2.astype(np.float64), b2=b2.astype(np.float64), ar=ar.astype(np.float64),
        prob=np.clip(prob, 1, c2.PROB_ONE - 1),
    )


def load_prior(path: Path, data: bytes | None = None) -> Prior:
    """The prior in a ``.coder3.safetensors`` file (``data``: its bytes, if already read); its
    key is the file's SHA-256 prefix, so a re-fitted prior never decodes payloads coded with an
    older one."""
    import json
    import struct

    from safetensors.numpy import load

    try:
        if data is None:
            data = path.read_bytes()
        arrays = load(data)
        (n,) = struct.unpack("<Q", data[:8])
        meta = json.loads(data[8:8 + n]).get("__metadata__") or {}
    except Exception as exc:  # noqa: BLE001 - safetensors raises several error types
        raise FormatError(f"{path}: unreadable coder-3 prior: {exc}") from None
    if meta.get("format") != PRIOR_FORMAT or len(meta.get("model_sha256", "")) != 64:
        raise FormatError(f"{path}: not a {PRIOR_FORMAT} file")
    missing = {"w1", "b1", "w2", "b2", "ar", "prob", "bits"} - set(arrays)
    if missing:
        raise FormatError(f"{path}: coder-3 prior lacks {sorted(missing)}")
    key = hashlib.sha256(data).digest()[:KEY_BYTES]
    return prior_from_arrays(arrays, meta["model_sha256"].lower(), key)


def _shipped_digests() -> dict[str, str]:
    """File name -> SHA-256 from weights/SHA256SUMS (as ``tokcodec.model.zoo.shipped_digests``,
    without importing torch)."""
    try:
        text = (WEIGHTS_DIR / "SHA256SUMS").read_text()
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and len(parts[0]) == 64:
            out[parts[1].lstrip("*")] = parts[0].lower()
    return out


#: shipped prior files that were not used, and why (damaged, unlisted, unreadable)
SKIPPED_PRIORS: dict[str, str] = {}


@lru_cache(maxsize=1)
def shipped_priors() -> dict[bytes, Prior]:
    """Priors shipped beside the weights, by key, each checked against weights/SHA256SUMS; read
    once per process. A damaged, unlisted or unreadable file is skipped (see SKIPPED_PRIORS): the
    encoder then falls back to coder 2, and decoding a payload that needs it raises FormatError."""
    out = {}
    digests = _shipped_digests()
    SKIPPED_PRIORS.clear()
    for path in sorted(WEIGHTS_DIR.glob("*.coder3.safetensors")):
        try:
            data = path.read_bytes()
        except OSError as exc:
            SKIPPED_PRIORS[path.name] = f"unreadable: {exc}"
            continue
        digest = hashlib.sha256(data).hexdigest()
        expected = digests.get(path.name)
        if expected is None:
            SKIPPED_PRIORS[path.name] = "not listed in weights/SHA256SUMS"
            continue
        if digest != expected:
            SKIPPED_PRIORS[path.name] = f"damaged (sha256 {digest[:16]}..., expected {expected[:16]}...)"
            continue
        try:
            prior = load_prior(path, data)
        except FormatError as exc:
            SKIPPED_PRIORS[path.name] = str(exc)
            continue
        out[prior.key] = prior
    return out


def prior_for_model(model_sha256: str | None) -> Prior | None:
    """The shipped prior of a tokenizer (by its weights' SHA-256), or None."""
    if not model_sha256:
        return None
    for prior in shipped_priors().values():
        if prior.model_sha256 == model_sha256.lower():
            return prior
    return None


# --------------------------------------------------------------------------- features and model


def _prev_features(geo: _Geometry, bits: int, prev: np.ndarray | None, motion: tuple[int, int]
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(hw, 2 * bits) float32: the sign of each plane at a cell's motion-compensated position in
    the previous frame and the sum of the signs over the 3x3 cells around it (0 outside the
    frame or without a previous frame), and (hw,) bool "has a prediction" (the centre is
    inside), both in pass order. prev: (hw, bits) row-major 0/1."""
    h, w = geo.h, geo.w
    hw = h * w
    if prev is None:
        return np.zeros((hw, PREV_PER_PLANE * bits), np.float32), np.zeros(hw, bool)
    o = 1 + MAX_MOTION
    pm = np.zeros((h + 2 * o, w + 2 * o, bits), np.float32)
    pm[o:o + h, o:o + w] = prev.reshape(h, w, bits).astype(np.float32) * 2 - 1
    dy, dx = motion
    win = pm[o - dy - 1:o - dy + h + 1, o - dx - 1:o - dx + w + 1]
    rows = win[:-2] + win[1:-1] + win[2:]
    out = np.empty((h, w, PREV_PER_PLANE, bits), np.float32)
    out[:, :, 0] = win[1:-1, 1:-1]
    out[:, :, 1] = rows[:, :-2] + rows[:, 1:-1] + rows[:, 2:]
    ys, xs = np.arange(h) - dy, np.arange(w) - dx
    has = (((ys >= 0) & (ys < h))[:, None] & ((xs >= 0) & (xs < w))[None, :]).reshape(-1)
    return np.take(out.reshape(hw, PREV_PER_PLANE * bits), geo.order, axis=0), has[geo.order]


@dataclass
class _Frame3:
    signs: np.ndarray        # (hw + 1, bits) float32 +-1 of coded cells, 0 elsewhere (row hw: sentinel)
    planes: np.ndarray       # (hw, bits) uint8 coded bits, pass order
    prev_hidden: np.ndarray  # (hw, hidden + bits) float32 first-layer part fixed for the frame
    pred: np.ndarray         # (hw, bits) int64 SSE context part of the predicted bit (none, 0, 1)


def _neighbour_signs(signs: np.ndarray, ps: _Pass) -> np.ndarray:
    """(n, 4 * bits) signs of the coded neighbours of a pass's cells, neighbour-major."""
    n, bits = ps.stop - ps.start, signs.shape[1]
    out = np.empty((n, 4, bits), np.float32)
    for j in range(4):
        np.take(signs, ps.nbr[j], axis=0, out=out[:, j])
    return out.reshape(n, 4 * bits)


def features(geo: _Geometry, ps: _Pass, index: int, signs: np.ndarray, prev_feats: np.ndarray,
             has: np.ndarray, first: bool) -> np.ndarray:
    """Fitting only: the (n, n_features) float32 features of one pass, as the coder sees them."""
    n = ps.stop - ps.start
    nbr = _neighbour_signs(signs, ps)
    oh = np.zeros((n, N_PASS_SLOTS + 5 + 2), np.float32)
    oh[:, min(index, N_PASS_SLOTS - 1)] = 1
    oh[np.arange(n), N_PASS_SLOTS + ps.known] = 1
    oh[:, -2] = first
    oh[:, -1] = has[ps.start:ps.stop]
    return np.concatenate([nbr, prev_feats[ps.start:ps.stop], oh], 1)


@dataclass
class _Model:
    """Static MLP logits and the adaptive per-(plane, bucket) recalibration."""

    prior: Prior
    bits: int
    counts: np.ndarray = field(init=False)      # (2, N_PRED * bits * N_SSE) int64

    def __post_init__(self) -> None:
        bits, g = self.bits, (self.bits + 1) // 2
        self.n_ctx = N_PRED * bits * N_SSE
        self.counts = np.zeros((2, self.n_ctx), np.int64)
        self._constant: np.ndarray | None = None
        plane = np.arange(bits, dtype=np.int64)
        self._ctx_base = (plane * N_SSE + SSE_HALF)[None, :]
        size = self.n_ctx + 1                    # three stacked level tables, each with a pad entry
        self._sym_offset = ((np.where(plane < g, plane, plane - g) % 3) * size)[None, :]
        self._pad = size - 1 + size * np.arange(3, dtype=np.int64)
        self.table = np.zeros(3 * size, np.int32)
        self.table[self._pad] = c2.PAD_LEVEL * np.array([1, c2.N_LEVELS, c2.N_LEVELS ** 2], np.int32)
        centre = (np.arange(-SSE_HALF, SSE_HALF + 1) * 2 + 1) << (SSE_SHIFT - LOGIT_SHIFT - 1)
        self._centre = np.tile(np.take(self.prior.prob, centre + LOGIT_RANGE), N_PRED * bits)
        self._refresh()

    def _cell_constant(self, geo: _Geometry) -> np.ndarray:
        """(hw, hidden + bits) first-layer part of the pass and known-neighbour one-hots and the
        bias, per cell in pass order (fixed by the grid, so built once per GOP)."""
        p = self.prior
        out = np.empty((geo.h * geo.w, p.b1.size), np.float32)
        for i, ps in enumerate(geo.passes):
            out[ps.start:ps.stop] = np.take(p.w_known, ps.known, axis=0)
            out[ps.start:ps.stop] += p.w_pass[min(i, N_PASS_SLOTS - 1)] + p.b1
        return out

    def start_frame(self, geo: _Geometry, prev_feats: np.ndarray, has: np.ndarray, first: bool) -> np.ndarray:
        p = self.prior
        if self._constant is None or self._constant.shape[0] != has.size:
            self._constant = self._cell_constant(geo)
        if first:
            return self._constant + p.w_first
        out = prev_feats @ p.w_prev
        out += self._constant
        out += p.w_has
        out[~has] -= p.w_has             # few cells: those the motion moved in from outside
        return out

    def logits(self, fr: _Frame3, ps: _Pass, index: int) -> np.ndarray:
        """(n, bits) float64 integer logits (1/4096 nat) without the cross-group term."""
        p = self.prior
        if ps.has_nbrs:
            z = _neighbour_signs(fr.signs, ps) @ p.w_nbr
            z += fr.prev_hidden[ps.start:ps.stop]
        else:
            z = fr.prev_hidden[ps.start:ps.stop].copy()
        hid = z[:, :p.hidden]
        np.maximum(hid, 0, out=hid)
        act = np.minimum(np.floor(hid * np.float32(1 / (1 << ACT_SHIFT))), ACT_MAX).astype(np.float64)
        return act @ p.w2 + (p.b2 + z[:, p.hidden:] * (LOGIT_UNIT // W1_UNIT))

    def cross(self, first_bits: np.ndarray) -> np.ndarray:
        return (first_bits.astype(np.float64) * 2 - 1) @ self.prior.ar

    def pred_part(self, prev_feats: np.ndarray) -> np.ndarray:
        """(hw, bits) SSE context part of the predicted bits: 0, none, 1 (centre sign -1, 0, 1)."""
        return (prev_feats[:, :self.bits].astype(np.int64) + 1) * (self.bits * N_SSE)

    def rows(self, logit: np.ndarray, lo: int, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Logits (n, k) of planes lo.. -> (symbol rows (n * ceil(k / 3), 8), SSE contexts)."""
        n, k = logit.shape
        ctx = np.clip(logit.astype(np.int64) >> SSE_SHIFT, -SSE_HALF, SSE_HALF)
        ctx += self._ctx_base[:, lo:lo + k]
        ctx += pred
        x = np.take(self.table, ctx + self._sym_offset[:, lo:lo + k])
        if k % 3:
            pad = self._pad[k % 3:3]
            x = np.concatenate([x, np.broadcast_to(pad, (n, pad.size))], 1)
        return np.take(c2.SYMBOL_ROWS, (x[:, 0::3] + x[:, 1::3] + x[:, 2::3]).ravel(), axis=0), ctx

    def update(self, ctx: np.ndarray, bits: np.ndarray) -> None:
        d = np.bincount((bits.astype(np.int64) * self.n_ctx + ctx).ravel(), minlength=2 * self.n_ctx)
        self.counts += d.reshape(2, -1)
        self._refresh()

    def _refresh(self) -> None:
        c0, c1 = self.counts
        p = ((c1 << c2.PROB_BITS) + SSE_WEIGHT * self._centre) // (c0 + c1 + SSE_WEIGHT)
        level = np.take(c2.LEVEL_OF_PROB, p).astype(np.int32)
        size = level.size + 1
        self.table[:level.size] = level
        self.table[size:size + level.size] = level * c2.N_LEVELS
        self.table[2 * size:2 * size + level.size] = level * (c2.N_LEVELS * c2.N_LEVELS)


def _run(side, prior: Prior, shape: tuple[int, int, int], bits: int,
         motions: list[tuple[int, int]]) -> np.ndarray:
    """The model, shared by encoder and decoder; returns the tokens (t, h, w)."""
    t, h, w = shape
    g = (bits + 1) // 2
    geo = c2._geometry(h, w, LEVELS_PER_PASS)
    model = _Model(prior, bits)
    hw = h * w
    out = np.empty((t, hw), np.int64)
    weights = np.int64(1) << np.arange(bits, dtype=np.int64)
    prev = None
    for f in range(t):
        side.start_frame(f)
        prev_feats, has = _prev_features(geo, bits, prev, motions[f])
        fr = _Frame3(np.zeros((hw + 1, bits), np.float32), np.zeros((hw, bits), np.uint8),
                     model.start_frame(geo, prev_feats, has, prev is None), model.pred_part(prev_feats))
        for i, ps in enumerate(geo.passes):
            cells = slice(ps.start, ps.stop)
            logit = model.logits(fr, ps, i)
            rows, ca = model.rows(logit[:, :g], 0, fr.pred[cells, :g])
            first = side.code(cells, 0, g, rows)
            fr.planes[cells, :g] = first
            if g < bits:
                rows, cb = model.rows(logit[:, g:] + model.cross(first), g, fr.pred[cells, g:])
                fr.planes[cells, g:] = side.code(cells, g, bits, rows)
                model.update(np.concatenate([ca, cb], 1), fr.planes[cells])
            else:
                model.update(ca, first)
            fr.signs[cells] = fr.planes[cells] * np.float32(2) - np.float32(1)
        side.end_frame(f)
        planes = np.empty((hw, bits), np.uint8)
        planes[geo.order] = fr.planes
        out[f] = planes @ weights
        prev = planes
    return out.reshape(t, h, w)


# --------------------------------------------------------------------------- compiled path

CHUNK = 6                   # planes per sign-table chunk (context_kernels.CHUNK)
_KERNELS = None             # the context_kernels module, False without numba, None: not tried yet


def _kernels():
    """The compiled kernels, or None (numba missing or broken, or TOKCODEC_NO_NUMBA set): the
    numpy path then codes the same bytes, more slowly."""
    global _KERNELS
    if _KERNELS is None:
        _KERNELS = False
        if not os.environ.get("TOKCODEC_NO_NUMBA"):
            try:
                from tokcodec.codec import context_kernels
            except Exception:  # noqa: BLE001 - ImportError, or numba refusing this numpy
                pass
            else:
                _KERNELS = context_kernels
    return _KERNELS or None


@dataclass(frozen=True)
class _KernelPrior:
    t_nbr: np.ndarray        # (4, chunks, 64, hidden + bits) int32: neighbour j's planes in a chunk
    t_centre: np.ndarray     # (chunks, 64, hidden + bits) int32: previous frame's centre signs
    t_sum: np.ndarray        # (chunks, 64, hidden + bits) int32: one cell of the previous 3x3
    kp_table: np.ndarray     # (N_PASS_SLOTS * 5, hidden + bits) int32: pass, known count and b1
    w_first: np.ndarray      # (hidden + bits,) int32
    w_has: np.ndarray        # (hidden + bits,) int32
    w2: np.ndarray           # (hidden, bits) float64 (integers)
    b2: np.ndarray           # (bits,) float64
    ar: np.ndarray           # (g, bits - g) float64
    centre: np.ndarray       # (n_ctx,) int64 static probability of each SSE context
    level0: np.ndarray       # (n_ctx,) int32 level of each SSE context before any count


def _sign_table(wb: np.ndarray) -> np.ndarray:
    """(bits, n) integer weight rows -> (chunks, 64, n) int32: per chunk of CHUNK planes and each
    value of its bits, the sum of the rows times the planes' signs (+1 for a one, -1 for a zero)."""
    bits, n = wb.shape
    chunks = -(-bits // CHUNK)
    v = np.arange(1 << CHUNK)
    out = np.zeros((chunks, 1 << CHUNK, n), np.int64)
    for p in range(bits):
        ch, b = divmod(p, CHUNK)
        out[ch] += np.where((v >> b) & 1, 1, -1)[:, None] * wb[p].astype(np.int64)[None, :]
    return out.astype(np.int32)


def _kernel_prior(p: Prior) -> _KernelPrior:
    bits, g = p.bits, (p.bits + 1) // 2
    i32 = np.int32
    b1 = p.b1.astype(np.int64)
    kp = (p.w_pass.astype(np.int64)[:, None, :] + p.w_known.astype(np.int64)[None, :, :] + b1)
    model = _Model(p, bits)
    return _KernelPrior(
        t_nbr=np.ascontiguousarray(np.stack([_sign_table(p.w_nbr[j * bits:(j + 1) * bits]) for j in range(4)])),
        t_centre=_sign_table(p.w_prev[:bits]), t_sum=_sign_table(p.w_prev[bits:2 * bits]),
        kp_table=np.ascontiguousarray(kp.reshape(N_PASS_SLOTS * 5, -1).astype(i32)),
        w_first=p.w_first.astype(i32), w_has=p.w_has.astype(i32),
        w2=np.ascontiguousarray(p.w2, np.float64), b2=np.ascontiguousarray(p.b2, np.float64),
        ar=np.ascontiguousarray(p.ar, np.float64).reshape(g, bits - g),
        centre=np.ascontiguousarray(model._centre, np.int64),
        level0=np.take(c2.LEVEL_OF_PROB, model._centre).astype(i32),
    )


@dataclass(frozen=True)
class _KGeometry:
    order: np.ndarray        # (hw,) int64 pass-order position -> row-major cell
    passes: np.ndarray       # (passes + 1,) int64 pass starts, then hw
    nbr: np.ndarray          # (4, hw) int64 pass-order neighbours, hw = none
    kp: np.ndarray           # (hw,) int64 row of _KernelPrior.kp_table: pass slot * 5 + known


@lru_cache(maxsize=16)
def _kgeometry(h: int, w: int) -> _KGeometry:
    geo = c2._geometry(h, w, LEVELS_PER_PASS)
    hw = h * w
    nbr = np.full((4, hw), hw, np.int64)
    kp = np.zeros(hw, np.int64)
    for i, ps in enumerate(geo.passes):
        nbr[:, ps.start:ps.stop] = ps.nbr
        kp[ps.start:ps.stop] = min(i, N_PASS_SLOTS - 1) * 5 + ps.known
        # the tables assume every neighbour is coded before the cell (true of the lattice)
        if not np.all((ps.nbr == hw) | (ps.nbr < ps.start)):
            raise AssertionError("coder 3: a neighbour is not coded before its cell")
    starts = [ps.start for ps in geo.passes] + [hw]
    return _KGeometry(np.ascontiguousarray(geo.order, np.int64), np.array(starts, np.int64), nbr, kp)


class _KState:
    """Buffers of the compiled path for one GOP."""

    def __init__(self, kp: _KernelPrior, h: int, w: int, bits: int) -> None:
        self.geo = _kgeometry(h, w)
        hw = h * w
        hb = kp.kp_table.shape[1]
        n_ctx = kp.centre.size
        most = int(np.diff(self.geo.passes).max()) if hw else 0
        per_cell = 2 * -(-bits // 3) + 1
        self.hw, self.bits, self.g = hw, bits, (bits + 1) // 2
        self.ph = np.empty((hw, hb), np.int32)
        self.pred = np.empty((hw, bits), np.int32)
        self.u = np.empty((hw, hb), np.int32)
        self.z = np.empty(hb, np.int32)
        self.logit = np.empty((most, bits), np.float64)
        self.ctx = np.empty((most, bits), np.int64)
        self.counts = np.zeros((2, n_ctx), np.int64)
        self.level = kp.level0.copy()
        self.dirty = np.zeros(n_ctx, np.uint8)
        self.todo = np.empty(n_ctx, np.int64)
        self.rows = np.empty((hw * per_cell, 8), np.float32)
        self.syms = np.empty(hw * per_cell, np.int32)
        self.prev = np.zeros(hw, np.int32)

    def start_frame(self, K, kp: _KernelPrior, f: int, h: int, w: int, motion: tuple[int, int]) -> None:
        g = self.geo
        K.frame_init(f == 0, self.prev, h, w, motion[0], motion[1], g.order, g.kp, kp.kp_table, kp.w_first,
                     kp.w_has, kp.t_centre, kp.t_sum, self.ph, self.pred, self.u)

    def code_known(self, K, kp: _KernelPrior, tok: np.ndarray) -> int:
        """All passes of a frame whose tokens (pass order, int32) are known; returns the symbols."""
        g = self.geo
        return K.code_frame(g.passes, self.hw, g.nbr, tok, self.ph, self.pred, kp.t_nbr, kp.w2, kp.b2, kp.ar,
                            self.g, self.level, c2.SYMBOL_ROWS, self.counts, kp.centre, c2.LEVEL_OF_PROB,
                            self.dirty, self.todo, self.logit, self.z, self.ctx, self.rows, self.syms)


def _encode_fast(K, arr: np.ndarray, bits: int, prior: Prior, motions: list[tuple[int, int]]
                 ) -> list[tuple[bool, bytes]]:
    """Encoder, compiled path: one kernel call and one range-coder call per latent frame."""
    import constriction

    t, h, w = arr.shape
    kp = prior.kernel
    st = _KState(kp, h, w, bits)
    family = constriction.stream.model.Categorical(perfect=False)
    raw_len = c2._raw_frame_bytes(h, w, bits)
    segments = []
    for f in range(t):
        flat = arr[f].reshape(-1).astype(np.int32)
        st.start_frame(K, kp, f, h, w, motions[f])
        n = st.code_known(K, kp, np.take(flat, st.geo.order))
        enc = constriction.stream.queue.RangeEncoder()
        enc.encode(st.syms[:n], family, st.rows[:n])
        coded = enc.get_compressed().astype("<u4").tobytes()
        if len(coded) >= raw_len:
            segments.append((True, RawBitsCoder().encode(arr[f:f + 1], bits)))
        else:
            segments.append((False, coded))
        st.prev = flat
    return segments


def _decode_fast(K, segments: list[tuple[bool, bytes]], prior: Prior, shape: tuple[int, int, int], bits: int,
                 motions: list[tuple[int, int]]) -> np.ndarray:
    """Decoder, compiled path: kernel calls around one range-decoder call per pass and group."""
    import constriction

    t, h, w = shape
    kp = prior.kernel
    st = _KState(kp, h, w, bits)
    geo, hw, g = st.geo, h * w, st.g
    family = constriction.stream.model.Categorical(perfect=False)
    out = np.empty((t, hw), np.int32)
    for f in range(t):
        st.start_frame(K, kp, f, h, w, motions[f])
        raw, data = segments[f]
        if raw:
            flat = RawBitsCoder().decode(data, (1, h, w), bits)[0].reshape(-1).astype(np.int32)
            st.code_known(K, kp, np.take(flat, geo.order))
            out[f] = flat
        else:
            dec = constriction.stream.queue.RangeDecoder(np.frombuffer(data, "<u4").astype(np.uint32))
            tok = np.zeros(hw, np.int32)
            for i in range(geo.passes.size - 1):
                s, e = int(geo.passes[i]), int(geo.passes[i + 1])
                K.pass_logits(s, e, hw, geo.nbr, tok, st.ph, kp.t_nbr, kp.w2, kp.b2, st.logit, st.z)
                for lo, hi in ((0, g), (g, bits)) if g < bits else ((0, g),):
                    n = K.group_rows(s, e, lo, hi, g, st.logit, tok, kp.ar, st.pred, st.level, c2.SYMBOL_ROWS,
                                     st.ctx, st.rows, st.syms, False)
                    try:
                        symbols = np.asarray(dec.decode(family, st.rows[:n]), np.int32)
                    except Exception as exc:  # noqa: BLE001 - constriction reports bad input as generic errors
                        raise FormatError(f"range-coded data of latent frame {f} is invalid: {exc}") from None
                    K.put_symbols(s, e, lo, hi, symbols, tok)
                K.update(s, e, st.ctx, tok, st.counts, st.level, kp.centre, c2.LEVEL_OF_PROB, st.dirty, st.todo)
            K.unorder(tok, geo.order, out[f])
        st.prev = out[f]
    return out.astype(np.int64).reshape(t, h, w)


# --------------------------------------------------------------------------- the two sides


class _Encoder:
    def __init__(self, arr: np.ndarray, bits: int, geo: _Geometry) -> None:
        import constriction

        self._cs = constriction.stream
        self._family = constriction.stream.model.Categorical(perfect=False)
        self._arr, self._bits, self._geo = arr, bits, geo
        self.segments: list[tuple[bool, bytes]] = []

    def start_frame(self, f: int) -> None:
        self._tokens = np.take(self._arr[f].reshape(-1), self._geo.order).astype(np.int32)
        self._planes = c2._unpack(self._tokens, self._bits)
        self._enc = self._cs.queue.RangeEncoder()

    def code(self, cells: slice, lo: int, hi: int, rows: np.ndarray) -> np.ndarray:
        tokens = self._tokens[cells]
        if tokens.size:
            part = (tokens >> np.int32(lo)) & np.int32((1 << (hi - lo)) - 1)
            self._enc.encode(c2._symbols(part, hi - lo), self._family, rows)
        return self._planes[cells, lo:hi]

    def end_frame(self, f: int) -> None:
        coded = self._enc.get_compressed().astype("<u4").tobytes()
        _, h, w = self._arr.shape
        if len(coded) >= c2._raw_frame_bytes(h, w, self._bits):
            self.segments.append((True, RawBitsCoder().encode(self._arr[f:f + 1], self._bits)))
        else:
            self.segments.append((False, coded))


class _Decoder:
    def __init__(self, segments: list[tuple[bool, bytes]], shape: tuple[int, int, int], bits: int,
                 geo: _Geometry) -> None:
        import constriction

        self._cs = constriction.stream
        self._family = constriction.stream.model.Categorical(perfect=False)
        self._segments, self._shape, self._b, self._geo = segments, shape, bits, geo

    def start_frame(self, f: int) -> None:
        self._frame = f
        raw, data = self._segments[f]
        if raw:
            _, h, w = self._shape
            grid = RawBitsCoder().decode(data, (1, h, w), self._b)[0]
            tokens = np.take(grid.reshape(-1), self._geo.order).astype(np.int32)
            self._planes = c2._unpack(tokens, self._b)
            self._dec = None
        else:
            self._dec = self._cs.queue.RangeDecoder(np.frombuffer(data, "<u4").astype(np.uint32))

    def code(self, cells: slice, lo: int, hi: int, rows: np.ndarray) -> np.ndarray:
        if self._dec is None:
            return self._planes[cells, lo:hi]
        if rows.shape[0] == 0:
            return np.zeros((0, hi - lo), np.uint8)
        try:
            symbols = np.asarray(self._dec.decode(self._family, rows), np.int32)
        except Exception as exc:  # noqa: BLE001 - constriction reports bad input as generic errors
            raise FormatError(f"range-coded data of latent frame {self._frame} is invalid: {exc}") from None
        chunks = -(-(hi - lo) // 3)
        return np.take(c2._SYMBOL_BITS, symbols, axis=0).reshape(-1, 3 * chunks)[:, : hi - lo]

    def end_frame(self, f: int) -> None:
        pass


# --------------------------------------------------------------------------- header


@dataclass(frozen=True)
class _Header3:
    key: bytes
    motions: list[tuple[int, int]]
    segments: list[tuple[bool, int]]
    start: int


def _parse_header(payload: bytes, shape: tuple[int, int, int], bits: int) -> _Header3:
    t, h, w = shape
    pos = HEADER_BYTES
    if len(payload) < pos + KEY_BYTES:
        raise FormatError("coder-3 payload ends inside the prior key")
    key = payload[pos:pos + KEY_BYTES]
    pos += KEY_BYTES
    need = max(t - 1, 0)
    if len(payload) < pos + need:
        raise FormatError("context-coded payload ends inside the motion vectors")
    packed = np.frombuffer(payload, np.uint8, count=need, offset=pos).astype(int)
    mv = np.stack([(packed >> 4) - 8, (packed & 15) - 8], 1)
    if mv.size and np.abs(mv).max() > MAX_MOTION:
        raise FormatError(f"context-coded payload has a motion vector beyond {MAX_MOTION} cells")
    pos += need
    raw_len = c2._raw_frame_bytes(h, w, bits)
    limit = 2 * (4 * (h * w * bits + 64)) + 1
    segments = []
    for f in range(t):
        v, pos = c2._get_varint(payload, pos, limit, f"segment length of latent frame {f}")
        raw, n = bool(v & 1), v >> 1
        if raw and n != raw_len:
            raise FormatError(f"raw segment of latent frame {f} has {n} bytes, expected {raw_len}")
        if not raw and n % 4:
            raise FormatError(f"range-coded segment of latent frame {f} has {n} bytes, not whole words")
        segments.append((raw, n))
    if pos + sum(n for _, n in segments) != len(payload):
        raise FormatError(
            f"context-coded payload has {len(payload) - pos} bytes of segments, "
            f"its header announces {sum(n for _, n in segments)}"
        )
    return _Header3(key, [(0, 0)] + [(int(a), int(b)) for a, b in mv], segments, pos)


# --------------------------------------------------------------------------- the coder


def _check_bits_format(bits: int) -> None:
    """Decoding side: a bit width no payload can have is a format error (not a caller's
    ValueError), e.g. from a damaged container header."""
    if not isinstance(bits, (int, np.integer)) or not 1 <= bits <= c2.MAX_BITS:
        raise FormatError(f"token bit width must be in 1..{c2.MAX_BITS}, got {bits!r}")


def _near_static(arr: np.ndarray, motions: list[tuple[int, int]]) -> bool:
    """Encoder only: do motion-compensated later frames differ from their predecessors in fewer
    than STATIC_BITS bits per token on average (the validation clips: 2.5 to 7)?"""
    t, h, w = arr.shape
    diffs = []
    for f in range(1, t):
        dy, dx = motions[f]
        a = arr[f, max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)]
        b = arr[f - 1, max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
        if a.size:
            diffs.append(float(c2._popcount((a ^ b).astype(np.uint32)).mean()))
    return bool(diffs) and sum(diffs) / len(diffs) < STATIC_BITS


@dataclass(frozen=True)
class ContextCoder3:
    """Coder 3: learned per-tokenizer prior (see the module docstring). ``model_sha256`` picks
    the prior the encoder uses (default: the default tokenizer's); decoding reads it from the
    payload. Where no prior fits the tokens' bit width, the payload is coder 2's (mode 2)."""

    coder_id: int = 3
    name: str = "context-lfq-prior"
    model_sha256: str | None = DEFAULT_MODEL_SHA256
    search: int = 4                 # motion search range in cells (encoder only)

    def encode(self, tokens: np.ndarray, bits: int) -> bytes:
        c2._check_bits(bits)
        arr = _check_tokens(tokens, bits)
        prior = prior_for_model(self.model_sha256)
        if prior is None or prior.bits != bits:
            return bytes([MODE_CODER2]) + c2.ContextCoder().encode(arr, bits)
        crc = c2._crc(arr).to_bytes(4, "little")
        if arr.size == 0:
            return bytes([MODE_RAW]) + crc + RawBitsCoder().encode(arr, bits)
        motions = [(0, 0)] + [c2._search_motion(arr[f - 1], arr[f], self.search) for f in range(1, arr.shape[0])]
        coded = prior.key + self._encode_context(arr, bits, prior, motions)
        if len(coded) >= arr.shape[0] * c2._raw_frame_bytes(arr.shape[1], arr.shape[2], bits):
            best = bytes([MODE_RAW]) + crc + RawBitsCoder().encode(arr, bits)
        else:
            best = bytes([MODE_CONTEXT]) + crc + coded
        if _near_static(arr, motions):
            # the prior was fitted on moving video; adaptive coder 2 wins on (near-)repeated frames
            other = bytes([MODE_CODER2]) + c2.ContextCoder().encode(arr, bits)
            if len(other) < len(best):
                return other
        return best

    def decode(self, payload: bytes, shape: tuple[int, int, int], bits: int) -> np.ndarray:
        _check_bits_format(bits)
        payload = bytes(payload)
        if payload[:1] == bytes([MODE_CODER2]):
            return c2.ContextCoder().decode(payload[1:], shape, bits)
        t, h, w = c2._check_shape(shape, len(payload), bits)
        mode, crc = c2.ContextCoder._mode(payload)
        if mode == MODE_RAW:
            out = RawBitsCoder().decode(payload[HEADER_BYTES:], (t, h, w), bits).astype(np.int64)
        else:
            hd = _parse_header(payload, (t, h, w), bits)
            prior = shipped_priors().get(hd.key)
            if prior is None or prior.bits != bits:
                skipped = "; ".join(f"{k}: {v}" for k, v in SKIPPED_PRIORS.items())
                raise FormatError(f"coder-3 payload needs the prior with key {hd.key.hex()}, which this "
                                  "tokcodec does not ship" + (f" (skipped priors: {skipped})" if skipped else ""))
            segments, pos = [], hd.start
            for raw, n in hd.segments:
                segments.append((raw, payload[pos:pos + n]))
                pos += n
            K = _kernels()
            if K is not None:
                out = _decode_fast(K, segments, prior, (t, h, w), bits, hd.motions)
            else:
                geo = c2._geometry(h, w, LEVELS_PER_PASS)
                out = _run(_Decoder(segments, (t, h, w), bits, geo), prior, (t, h, w), bits, hd.motions)
        if c2._crc(out) != crc:
            raise FormatError("context-coded payload is corrupt (token checksum mismatch)")
        return out

    def frame_bits(self, payload: bytes, shape: tuple[int, int, int], bits: int) -> list[int]:
        """Bits of each latent frame's segment; the payload header is counted in frame 0."""
        _check_bits_format(bits)
        payload = bytes(payload)
        if payload[:1] == bytes([MODE_CODER2]):
            per = c2.ContextCoder().frame_bits(payload[1:], shape, bits)
            if per:
                per[0] += 8
            return per
        t, h, w = c2._check_shape(shape, len(payload), bits)
        mode, _ = c2.ContextCoder._mode(payload)
        if mode == MODE_RAW:
            per = RawBitsCoder().frame_bits(payload[HEADER_BYTES:], (t, h, w), bits)
            if sum(per) != (len(payload) - HEADER_BYTES) * 8:
                raise FormatError("raw payload length does not match the token grid")
            start = HEADER_BYTES
        else:
            hd = _parse_header(payload, (t, h, w), bits)
            per, start = [8 * n for _, n in hd.segments], hd.start
        if per:
            per[0] += 8 * start
        return per

    def _encode_context(self, arr: np.ndarray, bits: int, prior: Prior, motions: list[tuple[int, int]]) -> bytes:
        t, h, w = arr.shape
        K = _kernels()
        if K is not None:
            segments = _encode_fast(K, arr, bits, prior, motions)
        else:
            enc = _Encoder(arr, bits, c2._geometry(h, w, LEVELS_PER_PASS))
            _run(enc, prior, (t, h, w), bits, motions)
            segments = enc.segments
        out = bytearray(((dy + 8) << 4 | (dx + 8)) for dy, dx in motions[1:])
        for raw, data in segments:
            c2._put_varint(out, (len(data) << 1) | int(raw))
        for _, data in segments:
            out += data
        return bytes(out)


register_coder(3, ContextCoder3)
