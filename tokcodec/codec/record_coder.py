"""Adaptive binary range coding of the correction records' grids (record kind 3, format 2.2).

zstd coded the records' int8 grids (offsets and detail gains, one value per cell and channel)
within about 10% of their zeroth-order entropy; at the defaults the records are a third to a half
of a file. Here each value is binarised (zero?, sign, magnitude in unary up to ``UNARY``, then
``ESCAPE_BITS`` plain bits) and every binary decision is coded with LZMA's binary range coder (the
one coder 3 uses) under a probability that adapts as the GOP's values go by (12 bits, shift 4).
A decision's context is its grid (offsets or gains), channel and bin, and, when the record is
predicted from the previous GOP's record (same cells), the previous value at the same cell
clipped to -2..2: a static camera's records repeat. On the records of six training videos
(136 frames) the ideal code lengths of this scheme were 8-17.5% below zstd's bytes per grid and
channel, 11-19.5% with the previous record; the files of the training videos came out 7.5-13.3%
smaller, those of the held-out clips 4.9-6.9% (with coder 4's linked GOPs; docs/results.md).

The kernels are compiled with numba (cached on disk); without numba the same source runs as
Python, slowly, and writes the same bytes: every step is integer arithmetic.
"""
from __future__ import annotations

import numpy as np

from tokcodec.env_flags import env_flag

try:  # compiled where numba loads (and TOKCODEC_NO_NUMBA is unset), else the same source in Python
    if env_flag("TOKCODEC_NO_NUMBA"):
        raise ImportError("TOKCODEC_NO_NUMBA")
    from tokcodec.compiled import cached_njit as _jit
except Exception:  # noqa: BLE001 - ImportError, or numba refusing this numpy
    def _jit(fn):
        return fn

PROB_BITS = 12
PROB_ONE = 1 << PROB_BITS
PROB_INIT = PROB_ONE >> 1
ADAPT_SHIFT = 4             # on the training videos' records 4 beat 5 by 1.1% and 3 by 1.6%
RC_TOP = 1 << 24
UNARY = 14                  # magnitude - 1 in unary up to this many ones, then ESCAPE_BITS plain bits
ESCAPE_BITS = 7             # int8 magnitudes: at most 128 - 1 - UNARY = 113 < 2**7
BINS = 2 + UNARY            # zero flag, sign, unary magnitude bins
BUCKETS = 6                 # previous value clipped to -2..2 (+2), or 5: no previous record
NO_PREVIOUS = 5
BYTES_PER_VALUE = 24        # bound on the coded size: 2 + UNARY + ESCAPE_BITS decisions of <= 9 bits


@_jit
def _code_bit(state, buf, size, decoding, bit, p):
    """One binary decision with probability ``p`` (of a one, in 1/4096); returns the bit.
    state: [low, range, cache, pending, pos] (encoder) / [code, range, -, -, pos] (decoder)."""
    rng = state[1]
    bound = (rng >> PROB_BITS) * p
    if decoding:
        code = state[0]
        if code < bound:
            rng = bound
            bit = 1
        else:
            code -= bound
            rng -= bound
            bit = 0
        while rng < RC_TOP:
            rng <<= 8
            pos = state[4]
            code = ((code << 8) | (buf[pos] if pos < size else 0)) & 0xFFFFFFFF
            state[4] = pos + 1
        state[0] = code
    else:
        if bit:
            rng = bound
        else:
            state[0] += bound
            rng -= bound
        while rng < RC_TOP:
            rng <<= 8
            _shift_low(state, buf)
    state[1] = rng
    return bit


@_jit
def _shift_low(state, buf):
    """Encoder: shift one byte out of ``low`` through the cache byte and the pending 0xFF count,
    which resolve carries (LZMA's ShiftLow, as coder 3's encoder)."""
    low = state[0]
    if low < 0xFF000000 or low > 0xFFFFFFFF:
        carry = low >> 32
        pos = state[4]
        buf[pos] = (state[2] + carry) & 0xFF
        pos += 1
        for _ in range(state[3] - 1):
            buf[pos] = (0xFF + carry) & 0xFF
            pos += 1
        state[4] = pos
        state[3] = 0
        state[2] = (low >> 24) & 0xFF
    state[3] += 1
    state[0] = (low << 8) & 0xFFFFFFFF


@_jit
def _adapt(probs, c, j, bit):
    q = probs[c, j]
    probs[c, j] = q + ((PROB_ONE - q) >> ADAPT_SHIFT) if bit else q - (q >> ADAPT_SHIFT)


@_jit
def _code_values(decoding, values, ctx, probs, buf, size):
    """Codes (or decodes into) ``values`` (int32, each -128..127) with contexts ``ctx`` (rows of
    ``probs``, int64 (contexts, BINS) starting at PROB_INIT). Encoding returns the bytes written
    to ``buf`` (the first, always 0, is left out by the caller), decoding the bytes read."""
    state = np.zeros(5, np.int64)
    state[1] = 0xFFFFFFFF
    if decoding:
        for k in range(4):
            state[0] = (state[0] << 8) | (buf[k] if k < size else 0)
        state[4] = 4
    else:
        state[3] = 1
    for i in range(values.size):
        c = ctx[i]
        v = values[i]
        nonzero = _code_bit(state, buf, size, decoding, 1 if v != 0 else 0, probs[c, 0])
        _adapt(probs, c, 0, nonzero)
        if not nonzero:
            values[i] = 0
            continue
        negative = _code_bit(state, buf, size, decoding, 1 if v < 0 else 0, probs[c, 1])
        _adapt(probs, c, 1, negative)
        m = (-v if v < 0 else v) - 1
        k = 0
        while k < UNARY:
            more = _code_bit(state, buf, size, decoding, 1 if m > k else 0, probs[c, 2 + k])
            _adapt(probs, c, 2 + k, more)
            if not more:
                break
            k += 1
        if k == UNARY:
            rest = 0
            for b in range(ESCAPE_BITS):
                rest |= _code_bit(state, buf, size, decoding, (m - UNARY) >> b & 1, PROB_INIT) << b
            k = UNARY + rest
        values[i] = -(k + 1) if negative else k + 1
    if decoding:
        return state[4]
    for _ in range(5):  # flush: shift out the rest of low (as coder 3's encoder)
        _shift_low(state, buf)
    return state[4]


def contexts(shape: tuple[int, ...], previous: np.ndarray | None) -> np.ndarray:
    """(values,) int32 context rows for grids of ``shape`` (G, 3, gh, gw) in C order: (grid * 3 +
    channel) * BUCKETS + the previous record's value at the cell (clipped to -2..2, + 2), or
    NO_PREVIOUS."""
    g, c = shape[:2]
    base = (np.arange(g * c, dtype=np.int32) * BUCKETS).reshape(g, c, 1, 1)
    bucket = NO_PREVIOUS if previous is None else np.clip(previous.astype(np.int32), -2, 2) + 2
    return (base + bucket + np.zeros(shape, np.int32)).reshape(-1)


def encode_grids(grids: np.ndarray, previous: np.ndarray | None = None) -> bytes:
    """Range-coded int8 ``grids`` (G, 3, gh, gw); ``previous``: the previous GOP's (same shape)."""
    values = grids.astype(np.int32).reshape(-1)
    probs = np.full((grids.shape[0] * 3 * BUCKETS, BINS), PROB_INIT, np.int64)
    buf = np.zeros(BYTES_PER_VALUE * values.size + 16, np.uint8)
    n = _code_values(False, values.copy(), contexts(grids.shape, previous), probs, buf, buf.size)
    return buf[1:n].tobytes()


def decode_grids(data: bytes, shape: tuple[int, ...], previous: np.ndarray | None = None) -> np.ndarray:
    """Inverse of ``encode_grids``; ValueError unless the data is exactly what the grids need.
    A decision costs at least -log2(4081/4096) > 1/190 bit (probabilities stay in 15..4081), so
    ``data`` bounds how many values it can hold: checked before anything is allocated for them."""
    count = int(np.prod(shape))
    if count > 190 * 8 * (len(data) + 8):
        raise ValueError(f"{len(data)} bytes cannot hold {count} values")
    values = np.zeros(count, np.int32)
    probs = np.full((shape[0] * 3 * BUCKETS, BINS), PROB_INIT, np.int64)
    buf = np.frombuffer(data, np.uint8).copy()  # writable: the kernel is compiled for both directions
    used = _code_values(True, values, contexts(shape, previous), probs, buf, buf.size)
    if used != len(data):
        raise ValueError(f"range-coded grids are corrupt (the decoder read {used} of {len(data)} bytes)")
    if values.size and (values.min() < -128 or values.max() > 127):
        raise ValueError("range-coded grids hold values beyond int8")
    return values.astype(np.int8).reshape(shape)
