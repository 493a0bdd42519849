"""Coder 3: a small learned prior per tokenizer (integer MLP), recalibrated adaptively per GOP.

Coder 2's adaptive counts start from nothing in every GOP and see each plane's own neighbours
only. The tokenizer's bits are predictable from much more: the other planes of the neighbouring
cells, the other planes of the motion-compensated cell in the previous latent frame, and, for the
second 9-bit LFQ group, the first group of the same cell (the entropy penalty decorrelates the
bits within a group, not across groups). Coder 3 predicts every bit with a small MLP fitted
offline on tokens of the tokenizer's training data (``tokcodec/codec/prior_fit.py``) and shipped
beside the weights (``tokcodec/weights/<model>.coder3.safetensors``, with the weights' SHA-256 in
its metadata). The payload names the prior by the first four bytes of the prior file's SHA-256,
so a decoder without that exact prior (other weights, or a re-fitted prior) refuses the payload
(``FormatError``) instead of decoding garbage; a shipped prior file is used only if its SHA-256
matches its line in ``tokcodec/weights/SHA256SUMS``.

Order (the same lattice passes as coder 2, see ``context_coder.py``, with 2 levels: 5 passes per
latent frame): latent frames in order; in a frame, the passes; in a pass, its cells in coder 2's
pass order; in a cell, planes 0 .. bits-1, one binary decision each. A cell's features are the
signs (+1 / -1, 0 where unknown) of all planes of its up-to-four coded neighbours; per plane, the
sign at its motion-compensated position in the previous latent frame and the sum of the signs of
the 3x3 cells around it (0 in the first frame and outside); and one-hots of the pass, the number
of coded neighbours, first frame and "has a prediction". Each bit's logit is a linear function
of the features plus an MLP of them (``hidden`` ReLU units); the logits of the second group,
planes ``[g, bits)`` with ``g = ceil(bits / 2)``, also get a linear term in the signs of the
cell's first-group planes (coded just before them).

Bit exactness: weights are integers; features are -1, 0, 1 (the 3x3 sums -9..9), so every
partial sum of the first layer is an integer below 2**24 (checked when a prior is loaded) and
every one of the second layer an integer below 2**53: the numpy path (float32 / float64 matrix
products, any BLAS, any summation order) and the compiled path (``context_kernels.py``, int32
table sums) compute the same integers. The activation is ``min(relu(z) // 16, 1023)``. Logits
are in 1/4096 nat.

Probabilities (secondary estimation): a bit's context is ``pred * bits * 65 + plane * 65 + 32 +
clip(logit >> 10, -32, 32)`` (``pred``: the predicted bit, the centre sign in the previous frame:
0 for a zero, 1 for none, 2 for a one; the logit bucket is 1/4 nat); its probability of a one, in
1/4096, is ``clip(((ones << 12) + 24 * p0) // (zeros + ones + 24), 1, 4095)`` with the context's
counts (updated after every pass, reset at each GOP) and ``p0`` the prior file's ``prob`` table
at the bucket's centre logit, ``prob[((2 * bucket + 1) << 3) + 1023]`` (clipped to 1..4095).

Range coder (LZMA's binary coder, one stream per latent frame): 32-bit ``range`` (initially
2**32 - 1) and ``low`` (initially 0, 33 bits with the carry); a bit with probability ``p`` of a
one splits ``bound = (range >> 12) * p``: a one keeps ``range = bound``, a zero does ``low +=
bound; range -= bound``; while ``range < 2**24``: ``range <<= 8`` and one byte shifts out of
``low`` through LZMA's cache byte and pending 0xFF count, which resolve carries. The encoder
ends with five shifts and drops the first byte of its output (always 0). The decoder starts with
``code`` = the segment's first 4 bytes, big-endian; a bit is a one iff ``code < bound`` (then
``range = bound``, else ``code -= bound; range -= bound``), renormalising alike with the next
byte. The encoder's bytes are exactly those the decoder reads (4 plus one per renormalisation):
a decoder that reads fewer or more (past the end, bytes read as 0) has a corrupt segment
(FormatError).

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
      segments                per latent frame: its range-coder bytes, or, where those would not
                              be fewer, the frame's raw bit packing (the decoder runs the model
                              over a raw frame too: the counts learn from it)
"""
from __future__ import annotations

import glob
import hashlib
import stat
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tokcodec.codec import context_coder as c2
from tokcodec.codec import lattice
from tokcodec.codec.lattice import (HEADER_BYTES, MAX_BITS, MAX_MOTION, MODE_CONTEXT, MODE_RAW, PROB_ONE,
                                    Geometry, Pass)
from tokcodec.codec.segments import append_segments, pack_motion, read_mode, read_motion, read_segments
from tokcodec.codec.raw import RawBitsCoder, check_tokens as _check_tokens
from tokcodec.env_flags import env_flag
from tokcodec.errors import FormatError, MissingPriorError

if TYPE_CHECKING:
    from tokcodec.codec.entropy import CoderContext

MODE_CODER2 = 2
KEY_BYTES = 4
PRIOR_FORMAT = "tokcodec-coder3-prior-v1"
WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"

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
PROB_BITS = 12              # coded probabilities: P(one) in 1/4096, 1..4095
RC_TOP = 1 << 24            # range coder: renormalise (shift out a byte) below this range


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
    def kernel(self) -> _KernelPrior | None:
        """The same weights as int32 tables for the compiled kernels (built once per prior), or
        None if they do not fit int32."""
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
    prob = _as_int(arrays["prob"], PROB_ONE, "prob")
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
        prob=np.clip(prob, 1, PROB_ONE - 1),
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
    try:
        return prior_from_arrays(arrays, meta["model_sha256"].lower(), key)
    except (IndexError, ValueError, TypeError, KeyError) as exc:  # arrays of the wrong shape or kind
        raise FormatError(f"{path}: malformed coder-3 prior ({type(exc).__name__}: {exc})") from None


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
    """The prior a tokenizer (by its weights' SHA-256) codes with: its shipped one, else the
    current one beside its weights file (``use_priors_beside``), or None."""
    if not model_sha256:
        return None
    for prior in shipped_priors().values():
        if prior.model_sha256 == model_sha256.lower():
            return prior
    return _CURRENT_BESIDE.get(model_sha256.lower())


def known_prior(key: bytes) -> Prior | None:
    """The prior a payload names by ``key``: a shipped one, or one found beside weights."""
    return shipped_priors().get(key) or _BESIDE.get(key)


# Priors of weights that are not shipped (a model you trained) live beside the weights file:
# MODEL.coder3.safetensors is the one to code with (``tokcodec fit-prior`` writes it), and
# MODEL.coder3-KEY.safetensors are earlier fits kept so that files coded with them still decode.
PRIOR_SUFFIX = ".coder3.safetensors"
MAX_PRIOR_BYTES = 1 << 22       # shipped priors take 44 KB; a bigger file is not read
_BESIDE: dict[bytes, Prior] = {}            # key -> prior, of every weights file loaded so far
_CURRENT_BESIDE: dict[str, Prior] = {}      # weights SHA-256 -> the prior to code with
_LOOKED_BESIDE: list[Path] = []             # weights files whose priors were looked for (for errors)


def prior_path(weights: Path) -> Path:
    """Where the prior of a weights file (not shipped) is looked for and written: beside it."""
    return weights.with_name(weights.name.removesuffix(".safetensors") + PRIOR_SUFFIX)


def kept_prior_path(weights: Path, key: bytes) -> Path:
    """Where an earlier prior of a weights file is kept when it is re-fitted."""
    return weights.with_name(f"{weights.name.removesuffix('.safetensors')}.coder3-{key.hex()}.safetensors")


def prior_files_beside(weights: Path) -> list[Path]:
    """The current prior's path beside ``weights`` (whether or not it exists), then the kept
    earlier fits there."""
    stem = weights.name.removesuffix(".safetensors")
    return [prior_path(weights), *sorted(weights.parent.glob(glob.escape(stem) + ".coder3-*.safetensors"))]


def read_prior_file(path: Path) -> Prior:
    """A prior file not checked against SHA256SUMS (one beside weights of your own): a regular
    file of at most MAX_PRIOR_BYTES, else FormatError; OSError when it cannot be read."""
    st = path.stat()
    if not stat.S_ISREG(st.st_mode):
        raise FormatError(f"{path}: not a regular file")
    if st.st_size > MAX_PRIOR_BYTES:
        raise FormatError(f"{path}: {st.st_size} bytes, larger than any coder-3 prior")
    return load_prior(path)


def use_priors_beside(weights: Path, model_sha256: str) -> list[str]:
    """Make the priors beside a weights file known to this process: the current one (used to
    code) and kept earlier ones (to decode files coded with them), each only if it was fitted
    for these very weights. Returns what could not be used, and why (for the caller to warn).
    The package's own weights folder is left to ``shipped_priors`` (checked against SHA256SUMS)."""
    if weights.resolve().parent == WEIGHTS_DIR:
        return []
    if weights not in _LOOKED_BESIDE:
        _LOOKED_BESIDE.append(weights)
    current, *_ = files = prior_files_beside(weights)
    problems = []
    for path in files:
        try:
            prior = read_prior_file(path)
        except FileNotFoundError:
            continue  # (no prior beside these weights)
        except (FormatError, OSError) as exc:
            problems.append(str(exc) if isinstance(exc, FormatError) else f"{path}: unreadable ({exc})")
            continue
        if prior.model_sha256 != model_sha256.lower():
            if path == current:  # (a kept fit of earlier weights of that name is simply not used)
                problems.append(f"{path} was fitted for other weights (sha256 {prior.model_sha256[:16]}...), "
                                f"not for {weights.name} ({model_sha256[:16]}...)")
            continue
        _BESIDE[prior.key] = prior
        if path == current:
            _CURRENT_BESIDE[prior.model_sha256] = prior
    return problems


# --------------------------------------------------------------------------- features and model


def prev_features(geo: Geometry, bits: int, prev: np.ndarray | None, motion: tuple[int, int]
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
class FrameState:
    signs: np.ndarray        # (hw + 1, bits) float32 +-1 of coded cells, 0 elsewhere (row hw: sentinel)
    planes: np.ndarray       # (hw, bits) uint8 coded bits, pass order
    prev_hidden: np.ndarray  # (hw, hidden + bits) float32 first-layer part fixed for the frame
    pred: np.ndarray         # (hw, bits) int64 SSE context part of the predicted bit (0, none, 1)


def _neighbour_signs(signs: np.ndarray, ps: Pass) -> np.ndarray:
    """(n, 4 * bits) signs of the coded neighbours of a pass's cells, neighbour-major."""
    n, bits = ps.stop - ps.start, signs.shape[1]
    out = np.empty((n, 4, bits), np.float32)
    for j in range(4):
        np.take(signs, ps.nbr[j], axis=0, out=out[:, j])
    return out.reshape(n, 4 * bits)


def features(geo: Geometry, ps: Pass, index: int, signs: np.ndarray, prev_feats: np.ndarray,
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
class PriorModel:
    """Static MLP logits and the adaptive per-context recalibration (numpy path; the compiled
    kernels compute the same integers)."""

    prior: Prior
    bits: int
    counts: np.ndarray = field(init=False)      # (2, N_PRED * bits * N_SSE) int64

    def __post_init__(self) -> None:
        bits = self.bits
        self.n_ctx = N_PRED * bits * N_SSE
        self.counts = np.zeros((2, self.n_ctx), np.int64)
        self._constant: np.ndarray | None = None
        centre = (np.arange(-SSE_HALF, SSE_HALF + 1) * 2 + 1) << (SSE_SHIFT - LOGIT_SHIFT - 1)
        self._centre = np.tile(np.take(self.prior.prob, centre + LOGIT_RANGE), N_PRED * bits)
        self._refresh()

    def _cell_constant(self, geo: Geometry) -> np.ndarray:
        """(hw, hidden + bits) first-layer part of the pass and known-neighbour one-hots and the
        bias, per cell in pass order (fixed by the grid, so built once per GOP)."""
        p = self.prior
        out = np.empty((geo.h * geo.w, p.b1.size), np.float32)
        for i, ps in enumerate(geo.passes):
            out[ps.start:ps.stop] = np.take(p.w_known, ps.known, axis=0)
            out[ps.start:ps.stop] += p.w_pass[min(i, N_PASS_SLOTS - 1)] + p.b1
        return out

    def start_frame(self, geo: Geometry, prev_feats: np.ndarray, has: np.ndarray, first: bool) -> np.ndarray:
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

    def logits(self, fr: FrameState, ps: Pass, index: int) -> np.ndarray:
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

    def cross_table(self) -> np.ndarray:
        """(2**g, bits - g) int64: the second group's cross term for each value of the first
        group's bits (integer sums below 2**53, exact)."""
        g = (self.bits + 1) // 2
        first = (np.arange(1 << g)[:, None] >> np.arange(g)) & 1
        return ((first * 2.0 - 1.0) @ self.prior.ar.reshape(g, self.bits - g)).astype(np.int64)

    def pred_part(self, prev_feats: np.ndarray) -> np.ndarray:
        """(hw, bits) SSE context part of the predicted bits: 0, none, 1 (centre sign -1, 0, 1)."""
        return (prev_feats[:, :self.bits].astype(np.int64) + 1) * (self.bits * N_SSE)

    def update(self, ctx: np.ndarray, bits: np.ndarray) -> None:
        d = np.bincount((bits.astype(np.int64) * self.n_ctx + ctx).ravel(), minlength=2 * self.n_ctx)
        self.counts += d.reshape(2, -1)
        self._refresh()

    def _refresh(self) -> None:
        c0, c1 = self.counts
        p = ((c1 << PROB_BITS) + SSE_WEIGHT * self._centre) // (c0 + c1 + SSE_WEIGHT)
        self.prob = np.clip(p, 1, PROB_ONE - 1)


# --------------------------------------------------------------------------- the range coder


class _PyRangeEncoder:
    """The binary range coder of the docstring (LZMA's), in plain Python (numpy path)."""

    def __init__(self) -> None:
        self.low, self.rng, self.cache, self.pending = 0, 0xFFFFFFFF, 0, 1
        self.out = bytearray()

    def _shift(self) -> None:
        low = self.low
        if low < 0xFF000000 or low > 0xFFFFFFFF:
            carry = low >> 32
            self.out.append((self.cache + carry) & 0xFF)
            self.out += bytes([(0xFF + carry) & 0xFF]) * (self.pending - 1)
            self.pending = 0
            self.cache = (low >> 24) & 0xFF
        self.pending += 1
        self.low = (low << 8) & 0xFFFFFFFF

    def code_many(self, bits: list[int], probs: list[int]) -> None:
        """code() for each (bit, probability), with the state in locals (the numpy path's loop)."""
        low, rng, cache, pending, out = self.low, self.rng, self.cache, self.pending, self.out
        for bit, p in zip(bits, probs):
            bound = (rng >> PROB_BITS) * p
            if bit:
                rng = bound
            else:
                low += bound
                rng -= bound
            while rng < RC_TOP:
                rng <<= 8
                if low < 0xFF000000 or low > 0xFFFFFFFF:
                    carry = low >> 32
                    out.append((cache + carry) & 0xFF)
                    if pending > 1:
                        out += bytes([(0xFF + carry) & 0xFF]) * (pending - 1)
                    pending = 0
                    cache = (low >> 24) & 0xFF
                pending += 1
                low = (low << 8) & 0xFFFFFFFF
        self.low, self.rng, self.cache, self.pending = low, rng, cache, pending

    def finish(self) -> bytes:
        for _ in range(5):
            self._shift()
        return bytes(self.out[1:])          # the first byte is always 0


class _PyRangeDecoder:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos, self.rng, self.low = data, 4, 0xFFFFFFFF, int.from_bytes(data[:4].ljust(4, b"\0"), "big")

    def code_many(self, probs: list[int]) -> int:
        """The bits (LSB first) of len(probs) decisions, with the state in locals."""
        low, rng, pos, data = self.low, self.rng, self.pos, self.data
        size = len(data)
        value = 0
        for i, p in enumerate(probs):
            bound = (rng >> PROB_BITS) * p
            if low < bound:
                rng = bound
                value |= 1 << i
            else:
                low -= bound
                rng -= bound
            while rng < RC_TOP:
                rng <<= 8
                low = ((low << 8) | (data[pos] if pos < size else 0)) & 0xFFFFFFFF
                pos += 1
        self.low, self.rng, self.pos = low, rng, pos
        return value


def _run(prior: Prior, shape: tuple[int, int, int], bits: int, motions: list[tuple[int, int]],
         known: np.ndarray | None, segments: list[tuple[bool, bytes]] | None,
         previous: np.ndarray | None = None) -> tuple[np.ndarray, list[tuple[bool, bytes]]]:
    """The numpy path, shared by encoder (``known``: the tokens; returns the coded segments) and
    decoder (``segments``; returns the tokens (t, h, w)). ``previous`` (h, w): the latent frame
    before frame 0 (coder 4's linked GOPs), which frame 0 is then predicted from."""
    t, h, w = shape
    hw = h * w
    g = (bits + 1) // 2
    gmask = (1 << g) - 1
    geo = lattice.geometry(h, w, LEVELS_PER_PASS)
    model = PriorModel(prior, bits)
    cross_np = model.cross_table()
    cross = cross_np.tolist()
    planes_idx = np.arange(bits, dtype=np.int64)
    plane_base = planes_idx * N_SSE + SSE_HALF
    out = np.empty((t, hw), np.int64)
    coded: list[tuple[bool, bytes]] = []
    raw_len = lattice.raw_frame_bytes(h, w, bits)
    prev = None if previous is None else lattice.unpack_bits(previous.reshape(-1).astype(np.int64), bits)
    for f in range(t):
        prev_feats, has = prev_features(geo, bits, prev, motions[f])
        fr = FrameState(np.zeros((hw + 1, bits), np.float32), np.zeros((hw, bits), np.uint8),
                     model.start_frame(geo, prev_feats, has, prev is None), model.pred_part(prev_feats))
        decoding = False
        if known is not None:
            tok = np.take(known[f].reshape(-1), geo.order).astype(np.int64)
        elif segments[f][0]:
            grid = RawBitsCoder().decode(segments[f][1], (1, h, w), bits)[0]
            tok = np.take(grid.reshape(-1), geo.order).astype(np.int64)
        else:
            tok, decoding = np.zeros(hw, np.int64), True
        rc = _PyRangeDecoder(segments[f][1]) if decoding else _PyRangeEncoder()
        for i, ps in enumerate(geo.passes):
            cells = slice(ps.start, ps.stop)
            logit = model.logits(fr, ps, i).astype(np.int64)
            base = fr.pred[cells] + plane_base
            if not decoding:
                logit[:, g:] += cross_np[tok[cells] & gmask]
                ctx = base + np.clip(logit >> SSE_SHIFT, -SSE_HALF, SSE_HALF)
                rc.code_many(((tok[cells, None] >> planes_idx) & 1).ravel().tolist(),
                             np.take(model.prob, ctx).ravel().tolist())
            else:
                ctx = base + np.clip(logit >> SSE_SHIFT, -SSE_HALF, SSE_HALF)     # second group: below
                p1 = np.take(model.prob, ctx[:, :g]).tolist()
                lg2, base2, prob = logit[:, g:].tolist(), base[:, g:].tolist(), model.prob.tolist()
                toks, ctx2 = [], []
                for k in range(ps.stop - ps.start):
                    first = rc.code_many(p1[k])
                    row = [b + min(max((v + c) >> SSE_SHIFT, -SSE_HALF), SSE_HALF)
                           for b, v, c in zip(base2[k], lg2[k], cross[first])]
                    toks.append(first | rc.code_many([prob[x] for x in row]) << g)
                    ctx2.append(row)
                if g < bits:
                    ctx[:, g:] = ctx2
                tok[cells] = toks
            fr.planes[ps.start:ps.stop] = lattice.unpack_bits(tok[ps.start:ps.stop], bits)
            model.update(ctx, fr.planes[ps.start:ps.stop])
            fr.signs[ps.start:ps.stop] = fr.planes[ps.start:ps.stop] * np.float32(2) - np.float32(1)
        if decoding and rc.pos != len(segments[f][1]):
            raise FormatError(f"range-coded data of latent frame {f} is corrupt (the decoder read "
                              f"{rc.pos} of its {len(segments[f][1])} bytes)")
        if known is not None:
            data = rc.finish()
            coded.append((True, RawBitsCoder().encode(known[f:f + 1], bits)) if len(data) >= raw_len
                         else (False, data))
        planes = np.empty((hw, bits), np.uint8)
        planes[geo.order] = fr.planes
        out[f, geo.order] = tok
        prev = planes
        if f == 0 and previous is not None:
            # a linked frame 0 agrees less with its predecessor (another GOP's) than later frames
            # do: counts learnt on it would miscalibrate theirs, so they start afresh, as in coder 3
            model.counts[:] = 0
            model._refresh()
    return out.reshape(t, h, w), coded


# --------------------------------------------------------------------------- compiled path

CHUNK = 9                   # planes per sign-table chunk (context_kernels.CHUNK)
_KERNELS = None             # the context_kernels module, False without numba, None: not tried yet


def _kernels():
    """The compiled kernels, or None (numba missing or broken, or TOKCODEC_NO_NUMBA set): the
    numpy path then codes the same bytes, more slowly."""
    global _KERNELS
    if _KERNELS is None:
        _KERNELS = False
        if not env_flag("TOKCODEC_NO_NUMBA"):
            try:
                from tokcodec.codec import context_kernels
            except Exception:  # noqa: BLE001 - ImportError, or numba refusing this numpy
                pass
            else:
                _KERNELS = context_kernels
    return _KERNELS or None


LANES = 64                  # context_kernels' padding of first-layer rows (context_kernels.LANES)


@dataclass(frozen=True)
class _KernelPrior:
    """A prior's weights as the compiled kernels use them: first-layer rows of hidden + bits
    integers padded with zeros to whole LANES; sign tables have 2**CHUNK rows per chunk."""

    t_nbr: np.ndarray        # (4, chunks, rows, padded) int16: neighbour j's planes of one chunk
    t_centre: np.ndarray     # (chunks, rows, padded) int16: previous frame's centre (+ w_has in chunk 0)
    t_sum: np.ndarray        # (chunks, rows, padded) int16: one cell of the previous frame's 3x3
    kp_table: np.ndarray     # (N_PASS_SLOTS * 5, padded) int32: pass and known one-hots, and b1
    w_first: np.ndarray      # (padded,) int32
    w2t: np.ndarray          # (bits, hidden) int32, the transposed second layer
    b2: np.ndarray           # (bits,) int32
    cross: np.ndarray        # (2**g * (bits - g),) int32: first-group bits -> second-group logits
    centre: np.ndarray       # (n_ctx,) int64 static probability of each SSE context
    prob0: np.ndarray        # (n_ctx,) int64 probability of each SSE context before any count


def _pad(a: np.ndarray, lanes: int, dtype) -> np.ndarray:
    n = a.shape[-1]
    out = np.zeros(a.shape[:-1] + (-(-n // lanes) * lanes,), dtype)
    out[..., :n] = a
    return out


def _sign_table(wb: np.ndarray) -> np.ndarray:
    """(bits, n) integer weight rows -> (chunks, 2**CHUNK, n) int64: per chunk of CHUNK planes and
    each value of its bits, the sum of the rows times the planes' signs (+1 for a one, -1 for a
    zero)."""
    bits, n = wb.shape
    chunks = -(-bits // CHUNK)
    v = np.arange(1 << CHUNK)
    out = np.zeros((chunks, 1 << CHUNK, n), np.int64)
    for p in range(bits):
        ch, b = divmod(p, CHUNK)
        out[ch] += np.where((v >> b) & 1, 1, -1)[:, None] * wb[p].astype(np.int64)[None, :]
    return out


def _kernel_prior(p: Prior) -> _KernelPrior | None:
    """The kernels' tables, or None where a logit could leave int32 (the numpy path codes it)."""
    bits = p.bits
    i32 = np.int32
    b1 = p.b1.astype(np.int64)
    kp = (p.w_pass.astype(np.int64)[:, None, :] + p.w_known.astype(np.int64)[None, :, :] + b1)
    model = PriorModel(p, bits)
    centre = _sign_table(p.w_prev[:bits]).astype(np.int64)
    centre[0] += p.w_has.astype(np.int64)          # added with the centre: only where there is one
    # |first-layer sums| < 2**24 (checked when loading): skip logits < 2**28, activations <= ACT_MAX
    bound = (np.abs(p.b2) + (1 << 28) + ACT_MAX * np.abs(p.w2).sum(0)).max() + np.abs(p.ar).sum(0).max()
    if bound >= 1 << 31:
        return None
    return _KernelPrior(
        # sums of at most CHUNK + 1 weights within +-2047 (checked on loading): int16 halves the cache
        t_nbr=_pad(np.stack([_sign_table(p.w_nbr[j * bits:(j + 1) * bits]) for j in range(4)]), LANES, np.int16),
        t_centre=_pad(centre, LANES, np.int16),
        t_sum=_pad(_sign_table(p.w_prev[bits:2 * bits]), LANES, np.int16),
        kp_table=_pad(kp.reshape(N_PASS_SLOTS * 5, -1), LANES, i32),
        w_first=_pad(p.w_first, LANES, i32),
        w2t=np.ascontiguousarray(p.w2.T.astype(i32)), b2=p.b2.astype(i32),
        cross=model.cross_table().astype(i32).reshape(-1),
        centre=np.ascontiguousarray(model._centre, np.int64),
        prob0=model.prob.astype(np.int64),
    )


@dataclass(frozen=True)
class _KGeometry:
    order: np.ndarray        # (hw,) int64 pass-order position -> row-major cell
    pos: np.ndarray          # (hw,) int64 row-major cell -> pass-order position
    passes: np.ndarray       # (passes + 1,) int64 pass starts, then hw
    nbr: np.ndarray          # (4, hw) int64 pass-order neighbours, hw = none
    kp: np.ndarray           # (hw,) int64 row of _KernelPrior.kp_table: pass slot * 5 + known


@lru_cache(maxsize=16)
def _kgeometry(h: int, w: int) -> _KGeometry:
    geo = lattice.geometry(h, w, LEVELS_PER_PASS)
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
    order = np.ascontiguousarray(geo.order, np.int64)
    pos = np.empty(hw, np.int64)
    pos[order] = np.arange(hw)
    return _KGeometry(order, pos, np.array(starts, np.int64), nbr, kp)


class _KState:
    """Buffers of the compiled path for one GOP."""

    def __init__(self, kp: _KernelPrior, h: int, w: int, bits: int) -> None:
        self.geo = _kgeometry(h, w)
        hw = h * w
        hb = kp.kp_table.shape[1]
        n_ctx = kp.centre.size
        most = max(int(np.diff(self.geo.passes).max()) if hw else 0, 1)
        self.h, self.w, self.hw, self.bits, self.g = h, w, hw, bits, (bits + 1) // 2
        self.ph = np.empty((hw, hb), np.int32)
        self.pred = np.empty((hw, bits), np.int32)
        self.u = np.empty((hw, hb), np.int32)
        self.v = np.empty(((h + 2) * w, hb), np.int32)
        self.z = np.empty(hb, np.int32)
        self.act = np.empty(kp.w2t.shape[1], np.int32)
        self.logit = np.empty((most, bits), np.int32)
        self.ctx = np.empty((most, bits), np.int64)
        self.counts = np.zeros((2, n_ctx), np.int64)
        self.prob = kp.prob0.copy()
        self.dirty = np.zeros(n_ctx, np.uint8)
        self.todo = np.empty(n_ctx, np.int64)
        self.buf = np.empty(lattice.raw_frame_bytes(h, w, bits) + 16, np.uint8)
        self.prev = np.zeros(hw, np.int32)

    def forget(self, kp: _KernelPrior) -> None:
        """Drop the adaptive counts (after a linked frame 0: see ``_run``)."""
        self.counts[:] = 0
        self.prob[:] = kp.prob0

    def frame(self, K, kp: _KernelPrior, first: bool, motion: tuple[int, int], decoding: bool, tok: np.ndarray,
              data: np.ndarray | None = None) -> int:
        """Code a latent frame (see context_kernels.code_frame), ``first``: with no frame before it
        (else ``self.prev``); tok: pass-order int32 tokens."""
        g = self.geo
        K.frame_init(first, self.prev, self.h, self.w, motion[0], motion[1], g.pos, g.kp, kp.kp_table,
                     kp.w_first, kp.t_centre, kp.t_sum, self.ph, self.pred, self.u, self.v)
        buf = self.buf if data is None else data
        return K.code_frame(decoding, g.passes, self.hw, g.nbr, tok, self.ph, self.pred, kp.t_nbr, kp.w2t, kp.b2,
                            kp.cross, self.g, self.prob, self.counts, kp.centre, self.dirty, self.todo,
                            self.logit, self.z, self.act, self.ctx, buf, buf.size)


def _encode_fast(K, arr: np.ndarray, bits: int, prior: Prior, motions: list[tuple[int, int]],
                 previous: np.ndarray | None = None) -> list[tuple[bool, bytes]]:
    """Encoder, compiled path: one kernel call per latent frame (``previous``: as ``_run``'s)."""
    t, h, w = arr.shape
    kp = prior.kernel
    st = _KState(kp, h, w, bits)
    if previous is not None:
        st.prev = previous.reshape(-1).astype(np.int32)
    raw_len = lattice.raw_frame_bytes(h, w, bits)
    segments = []
    for f in range(t):
        flat = arr[f].reshape(-1).astype(np.int32)
        n = st.frame(K, kp, f == 0 and previous is None, motions[f], False, np.take(flat, st.geo.order))
        if n < 0 or n - 1 >= raw_len:
            segments.append((True, RawBitsCoder().encode(arr[f:f + 1], bits)))
        else:
            segments.append((False, st.buf[1:n].tobytes()))     # the first byte is always 0
        st.prev = flat
        if f == 0 and previous is not None:
            st.forget(kp)
    return segments


def _decode_fast(K, segments: list[tuple[bool, bytes]], prior: Prior, shape: tuple[int, int, int], bits: int,
                 motions: list[tuple[int, int]], previous: np.ndarray | None = None) -> np.ndarray:
    """Decoder, compiled path: one kernel call per latent frame (``previous``: as ``_run``'s)."""
    t, h, w = shape
    kp = prior.kernel
    st = _KState(kp, h, w, bits)
    if previous is not None:
        st.prev = previous.reshape(-1).astype(np.int32)
    out = np.empty((t, h * w), np.int32)
    for f in range(t):
        first = f == 0 and previous is None
        raw, data = segments[f]
        if raw:
            flat = RawBitsCoder().decode(data, (1, h, w), bits)[0].reshape(-1).astype(np.int32)
            st.frame(K, kp, first, motions[f], False, np.take(flat, st.geo.order))   # the model learns it
            out[f] = flat
        else:
            tok = np.zeros(h * w, np.int32)
            buf = np.frombuffer(data, np.uint8).copy()
            used = st.frame(K, kp, first, motions[f], True, tok, buf)
            if used != buf.size:
                raise FormatError(f"range-coded data of latent frame {f} is corrupt (the decoder read "
                                  f"{used} of its {buf.size} bytes)")
            K.unorder(tok, st.geo.order, out[f])
        st.prev = out[f]
        if f == 0 and previous is not None:
            st.forget(kp)
    return out.astype(np.int64).reshape(t, h, w)


def coded_segments(arr: np.ndarray, bits: int, prior: Prior, motions: list[tuple[int, int]],
                   previous: np.ndarray | None = None) -> list[tuple[bool, bytes]]:
    """(raw?, bytes) of each latent frame of ``arr`` (t, h, w), by the compiled path where the
    prior has one, else the numpy path (the same bytes); ``previous``: as ``_run``'s."""
    K = _kernels() if prior.kernel is not None else None
    if K is not None:
        return _encode_fast(K, arr, bits, prior, motions, previous)
    return _run(prior, arr.shape, bits, motions, arr, None, previous)[1]


def decode_segments(payload: bytes, key: bytes, spans: list[tuple[bool, int]], start: int,
                    shape: tuple[int, int, int], bits: int, motions: list[tuple[int, int]],
                    previous: np.ndarray | None = None, coder: str = "coder-3") -> np.ndarray:
    """Tokens (t, h, w) of the segments ``spans`` (raw?, length) laid out from ``start`` in
    ``payload``, with the shipped prior named by ``key`` (a FormatError if there is none);
    ``previous``: as ``_run``'s. The caller checks the tokens' CRC."""
    prior = known_prior(key)
    if prior is None or prior.bits != bits:
        skipped = "; ".join(f"{k}: {v}" for k, v in SKIPPED_PRIORS.items())
        looked = "; ".join(f"{prior_path(w)} (or {kept_prior_path(w, key).name})" for w in _LOOKED_BESIDE[-1:])
        where = (f"; it is not at {looked}" if looked else "; a prior fitted for weights of your own is found "
                 "beside the weights file given with --model")
        raise MissingPriorError(f"{coder} payload needs the prior with key {key.hex()}, which this tokcodec does "
                                f"not ship{where}" + (f" (skipped priors: {skipped})" if skipped else ""))
    segments, pos = [], start
    for raw, n in spans:
        segments.append((raw, payload[pos:pos + n]))
        pos += n
    K = _kernels() if prior.kernel is not None else None
    if K is not None:
        return _decode_fast(K, segments, prior, shape, bits, motions, previous)
    return _run(prior, shape, bits, motions, None, segments, previous)[0]


# --------------------------------------------------------------------------- header


@dataclass(frozen=True)
class _Header3:
    key: bytes
    motions: list[tuple[int, int]]
    segments: list[tuple[bool, int]]
    start: int


def _parse_header(payload: bytes, shape: tuple[int, int, int], bits: int) -> _Header3:
    t = shape[0]
    pos = HEADER_BYTES
    if len(payload) < pos + KEY_BYTES:
        raise FormatError("coder-3 payload ends inside the prior key")
    key = payload[pos:pos + KEY_BYTES]
    motions, pos = read_motion(payload, pos + KEY_BYTES, t)
    segments, pos = read_segments(payload, pos, shape, bits, word_aligned=False)
    return _Header3(key, motions, segments, pos)


# --------------------------------------------------------------------------- the coder


def _check_bits_format(bits: int) -> None:
    """Decoding side: a bit width no payload can have is a format error (not a caller's
    ValueError), e.g. from a damaged container header."""
    if not isinstance(bits, (int, np.integer)) or not 1 <= bits <= MAX_BITS:
        raise FormatError(f"token bit width must be in 1..{MAX_BITS}, got {bits!r}")


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
            diffs.append(float(lattice.popcount((a ^ b).astype(np.uint32)).mean()))
    return bool(diffs) and sum(diffs) / len(diffs) < STATIC_BITS


@dataclass(frozen=True)
class ContextCoder3:
    """Coder 3: learned per-tokenizer prior (see the module docstring). ``model_sha256`` picks
    the prior the encoder uses; decoding reads it from the payload. Where no shipped prior
    belongs to the model (or fits the tokens' bit width), the payload is coder 2's (mode 2)."""

    coder_id: int = 3
    name: str = "context-lfq-prior"
    model_sha256: str | None = None  # the tokenizer's weights, whose prior the encoder uses
    search: int = 4                  # motion search range in cells (encoder only)

    @classmethod
    def from_context(cls, context: CoderContext | None = None) -> "ContextCoder3":
        return cls(model_sha256=context.model_sha256 if context else None)

    def encode(self, tokens: np.ndarray, bits: int, previous: np.ndarray | None = None) -> bytes:
        # ``previous`` (the GOP before's last latent frame) is for coder 4: this coder ignores it
        lattice.check_bits(bits)
        arr = _check_tokens(tokens, bits)
        prior = prior_for_model(self.model_sha256)
        if prior is None or prior.bits != bits:
            return bytes([MODE_CODER2]) + c2.ContextCoder().encode(arr, bits)
        crc = lattice.token_crc(arr).to_bytes(4, "little")
        if arr.size == 0:
            return bytes([MODE_RAW]) + crc + RawBitsCoder().encode(arr, bits)
        motions = [(0, 0)] + [lattice.search_motion(arr[f - 1], arr[f], self.search) for f in range(1, arr.shape[0])]
        coded = prior.key + self._encode_context(arr, bits, prior, motions)
        if len(coded) >= arr.shape[0] * lattice.raw_frame_bytes(arr.shape[1], arr.shape[2], bits):
            best = bytes([MODE_RAW]) + crc + RawBitsCoder().encode(arr, bits)
        else:
            best = bytes([MODE_CONTEXT]) + crc + coded
        if _near_static(arr, motions):
            # the prior was fitted on moving video; adaptive coder 2 wins on (near-)repeated frames
            other = bytes([MODE_CODER2]) + c2.ContextCoder().encode(arr, bits)
            if len(other) < len(best):
                return other
        return best

    def links(self, payload: bytes) -> bool:
        """Whether ``payload`` needs the previous GOP's tokens to decode: never, here."""
        return False

    def decode(self, payload: bytes, shape: tuple[int, int, int], bits: int,
               previous: np.ndarray | None = None) -> np.ndarray:
        _check_bits_format(bits)
        payload = bytes(payload)
        if payload[:1] == bytes([MODE_CODER2]):
            return c2.ContextCoder().decode(payload[1:], shape, bits)
        t, h, w = lattice.check_shape(shape, len(payload), bits)
        mode, crc = read_mode(payload)
        if mode == MODE_RAW:
            out = RawBitsCoder().decode(payload[HEADER_BYTES:], (t, h, w), bits).astype(np.int64)
        else:
            hd = _parse_header(payload, (t, h, w), bits)
            out = decode_segments(payload, hd.key, hd.segments, hd.start, (t, h, w), bits, hd.motions)
        if lattice.token_crc(out) != crc:
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
        t, h, w = lattice.check_shape(shape, len(payload), bits)
        mode, _ = read_mode(payload)
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
        out = pack_motion(motions)
        append_segments(out, coded_segments(arr, bits, prior, motions))
        return bytes(out)

