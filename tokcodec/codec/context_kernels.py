"""Compiled (numba) kernels of coder 3: its model and its range coder, one call per latent frame.

``context_coder3.py`` holds the normative description and the numpy path; the kernels compute
exactly the same integers (every model value there is an integer held exactly in float32 /
float64), so both paths write identical bytes; ``tests/test_context_coder3.py`` checks that on
real, synthetic and random tokens.

Speed comes from integer table look-ups instead of matrix products: a feature block whose inputs
are the +-1 signs of a token's planes contributes the sum of its weight rows times the signs, so
it is tabled per CHUNK-plane chunk of the token (2**CHUNK rows per chunk, int16); a cell's first
layer is then a few table rows added up (int32). The 3x3 sums of the previous frame's signs are
linear as well: the sum of the tabled contributions of the (up to) nine previous-frame cells,
summed as vertical then horizontal 3-sums. The second layer is an int32 dot product (the prior's
bound is checked when its tables are built, see ``context_coder3._kernel_prior``).

Imported only when numba is; ``context_coder3`` falls back to its numpy path without it. The
kernels are cached on disk (``tokcodec.compiled``): the first use in a process loads them (~0.4 s),
and the first use ever compiles them (~3 s).
"""
from __future__ import annotations

import numpy as np
from tokcodec.compiled import cached_njit

CHUNK = 9                   # planes per table chunk (512 rows)
CHUNK_MASK = (1 << CHUNK) - 1
ACT_SHIFT = 4
ACT_MAX = 1023
SKIP_SCALE = 16             # LOGIT_UNIT // W1_UNIT
SSE_SHIFT = 10
SSE_HALF = 32
N_SSE = 2 * SSE_HALF + 1
PROB_BITS = 12
SSE_WEIGHT = 24
PROB_ONE = 1 << PROB_BITS
LANES = 64                  # first-layer rows are padded with zeros to whole LANES int32, so
#                             the row loops run whole SIMD blocks (LLVM's vector loop is 64 wide)


@cached_njit
def frame_init(first, prev, h, w, dy, dx, pos, kp, kp_table, w_first, t_centre, t_sum,
               ph, pred, u, v):
    """First-layer part fixed for a frame (ph, (hw, padded hidden + bits) int32) and the SSE
    context of each bit but its logit bucket (pred, (hw, bits) int32: predicted bit 0, none, 1
    times bits * N_SSE, plus plane * N_SSE + SSE_HALF), in pass order. prev: (hw,) row-major
    tokens of the previous latent frame (unused if first);
    pos: (hw,) pass-order position of each row-major cell; u (hw, padded) and v ((h + 2) * w,
    padded) are scratch: each previous cell's 3x3-sum part, and its vertical 3-sums."""
    hw = h * w
    hb = ph.shape[1]
    bits = pred.shape[1]
    nch = t_centre.shape[0]
    stride = bits * N_SSE
    if first:
        for c in range(hw):
            row = ph[c]
            src = kp_table[kp[c]]
            for o in range(hb):
                row[o] = src[o] + w_first[o]
            for p in range(bits):
                pred[c, p] = stride + p * N_SSE + SSE_HALF
        return
    for r in range(hw):
        t = prev[r]
        row = u[r]
        src = t_sum[0, t & CHUNK_MASK]
        for o in range(hb):
            row[o] = src[o]
        for ch in range(1, nch):
            src = t_sum[ch, (t >> (CHUNK * ch)) & CHUNK_MASK]
            for o in range(hb):
                row[o] += src[o]
    for yv in range(h + 2):         # v: the vertical 3-sums of u for rows -1..h
        for x in range(w):
            row = v[yv * w + x]
            for o in range(hb):
                row[o] = 0
            for yy in range(max(yv - 2, 0), min(yv + 1, h)):
                src = u[yy * w + x]
                for o in range(hb):
                    row[o] += src[o]
    for r in range(hw):             # row-major: the reads of v stay in cache
        c = pos[r]
        y = r // w
        x = r - y * w
        yp = y - dy
        xp = x - dx
        row = ph[c]
        src = kp_table[kp[c]]
        for o in range(hb):
            row[o] = src[o]
        if 0 <= yp < h and 0 <= xp < w:
            t = prev[yp * w + xp]
            for ch in range(nch):           # chunk 0's rows include w_has

                src = t_centre[ch, (t >> (CHUNK * ch)) & CHUNK_MASK]
                for o in range(hb):
                    row[o] += src[o]
            for p in range(bits):
                pred[c, p] = ((t >> p) & 1) * (2 * stride) + p * N_SSE + SSE_HALF
        else:
            for p in range(bits):
                pred[c, p] = stride + p * N_SSE + SSE_HALF
        if -1 <= yp <= h:
            for b in range(-1, 2):
                xx = xp + b
                if 0 <= xx < w:
                    src = v[(yp + 1) * w + xx]
                    for o in range(hb):
                        row[o] += src[o]


@cached_njit
def pass_logits(s, e, hw, nbr, tok, ph, t_nbr, w2t, b2, logit, z, act):
    """(e - s, bits) int32 logits of cells [s, e) without the cross-group term."""
    hb = ph.shape[1]
    nch = t_nbr.shape[1]
    bits, hidden = w2t.shape
    for c in range(s, e):
        src = ph[c]
        for o in range(hb):
            z[o] = src[o]
        for j in range(4):
            nb = nbr[j, c]
            if nb < hw:
                t = tok[nb]
                for ch in range(nch):
                    src = t_nbr[j, ch, (t >> (CHUNK * ch)) & CHUNK_MASK]
                    for o in range(hb):
                        z[o] += src[o]
        for q in range(hidden):
            a = max(z[q], 0) >> ACT_SHIFT
            act[q] = min(a, ACT_MAX)
        lg = logit[c - s]
        for o in range(bits):
            acc = b2[o] + SKIP_SCALE * z[hidden + o]
            wr = w2t[o]
            for q in range(hidden):
                acc += act[q] * wr[q]
            lg[o] = acc


@cached_njit
def update(s, e, ctx, tok, counts, prob, centre, dirty, todo):
    """Count the pass's bits in their contexts and refresh the probabilities of those touched."""
    bits = ctx.shape[1]
    n = 0
    for c in range(s, e):
        t = tok[c]
        row = ctx[c - s]
        for p in range(bits):
            x = row[p]
            counts[(t >> p) & 1, x] += 1
            if not dirty[x]:
                dirty[x] = 1
                todo[n] = x
                n += 1
    for i in range(n):
        x = todo[i]
        dirty[x] = 0
        c0 = counts[0, x]
        c1 = counts[1, x]
        q = ((c1 << PROB_BITS) + SSE_WEIGHT * centre[x]) // (c0 + c1 + SSE_WEIGHT)
        prob[x] = min(max(q, 1), PROB_ONE - 1)


@cached_njit
def code_frame(decoding, passes, hw, nbr, tok, ph, pred, t_nbr, w2t, b2, cross, g, prob, counts,
               centre, dirty, todo, logit, z, act, ctx, buf, size):
    """Code all passes of one latent frame, bit by bit, with the binary range coder (see
    context_coder3's docstring). Encoding (decoding False): tok (hw,) int32 pass-order tokens
    in, buf the output; returns the byte count, or -1 if the bytes did not fit in buf (the
    model still learns the whole frame). Decoding: buf[:size] the segment, tok (zeros) out;
    returns the bytes the decoder read, beyond size if the segment was short (as if it went on
    with zero bytes)."""
    bits = pred.shape[1]
    gmask = (1 << g) - 1
    top = np.int64(1) << 24
    mask32 = (np.int64(1) << 32) - 1
    rng = mask32
    low = np.int64(0)           # encoder: 33 bits; decoder: the code value
    cache = np.int64(0)
    pending = np.int64(1)       # encoder: bytes held back (cache and following 0xFF) for a carry
    n = 0                       # encoder: bytes out (the leading byte, always 0, is dropped later)
    cap = buf.shape[0]
    full = False
    pos = 0
    if decoding:
        for _ in range(4):
            low = (low << 8) | (buf[pos] if pos < size else 0)
            pos += 1
    for i in range(passes.shape[0] - 1):
        s = passes[i]
        e = passes[i + 1]
        pass_logits(s, e, hw, nbr, tok, ph, t_nbr, w2t, b2, logit, z, act)
        for c in range(s, e):
            k = c - s
            t = tok[c] if not decoding else 0
            base = 0
            for p in range(bits):
                lv = logit[k, p]
                if p >= g:
                    if p == g:
                        base = (t & gmask) * (bits - g)
                    lv += cross[base + p - g]
                bucket = lv >> SSE_SHIFT
                if bucket < -SSE_HALF:
                    bucket = -SSE_HALF
                elif bucket > SSE_HALF:
                    bucket = SSE_HALF
                x = pred[c, p] + bucket
                ctx[k, p] = x
                bound = (rng >> PROB_BITS) * prob[x]
                if decoding:
                    one = np.int64(low < bound)     # selects, not branches: bits are unpredictable
                    low = low if one else low - bound
                    rng = bound if one else rng - bound
                    t |= one << p
                    while rng < top:
                        rng <<= 8
                        low = ((low << 8) | (buf[pos] if pos < size else 0)) & mask32
                        pos += 1
                else:
                    if (t >> p) & 1:
                        rng = bound
                    else:
                        low += bound
                        rng -= bound
                    while rng < top:
                        rng <<= 8
                        # shift_low
                        if low < 0xFF000000 or low > mask32:
                            carry = low >> 32
                            if n + pending > cap:
                                full = True         # raw frame: go on modelling, stop writing
                            if not full:
                                buf[n] = (cache + carry) & 0xFF
                                n += 1
                                for _ in range(pending - 1):
                                    buf[n] = (0xFF + carry) & 0xFF
                                    n += 1
                            pending = 0
                            cache = (low >> 24) & 0xFF
                        pending += 1
                        low = (low << 8) & mask32
            if decoding:
                tok[c] = t
        update(s, e, ctx, tok, counts, prob, centre, dirty, todo)
    if decoding:
        return pos
    for _ in range(5):
        if low < 0xFF000000 or low > mask32:
            carry = low >> 32
            if n + pending > cap:
                full = True
            if not full:
                buf[n] = (cache + carry) & 0xFF
                n += 1
                for _ in range(pending - 1):
                    buf[n] = (0xFF + carry) & 0xFF
                    n += 1
            pending = 0
            cache = (low >> 24) & 0xFF
        pending += 1
        low = (low << 8) & mask32
    return -1 if full else n


@cached_njit
def unorder(tok, order, out):
    """Pass-order tokens -> row-major."""
    for c in range(order.shape[0]):
        out[order[c]] = tok[c]
