"""Compiled (numba) kernels of coder 3's model; see ``context_coder3.py`` for the model itself.

The kernels compute exactly the integers of the numpy path in ``context_coder3.py`` (every value
there is an integer held exactly in float32 / float64, see its docstring), so both paths code
identical bytes; ``tests/test_context_coder3.py`` checks that on real and random tokens.

Speed comes from integer table look-ups instead of matrix products: a feature block whose inputs
are the +-1 signs of a token's planes contributes the sum of the weight rows times the signs, so
it is tabled per 6-plane chunk of the token (64 rows per chunk); a cell's first layer is then a
few table rows added up. The 3x3 sums of the previous frame's signs are linear as well: the sum
of the tabled contributions of the (up to) nine previous-frame cells.

Everything here is imported only when numba is; ``context_coder3`` falls back to numpy without it.
"""
from __future__ import annotations

import numpy as np
from numba import njit

CHUNK = 6                   # planes per table chunk (64 rows)
CHUNK_MASK = (1 << CHUNK) - 1
ACT_SHIFT = 4
ACT_MAX = 1023
SKIP_SCALE = 16.0           # LOGIT_UNIT // W1_UNIT
SSE_SHIFT = 10
SSE_HALF = 32
N_SSE = 2 * SSE_HALF + 1
N_LEVELS = 33
PAD_LEVEL = 32
PROB_BITS = 12
SSE_WEIGHT = 24


@njit(cache=True, nogil=True)
def frame_init(first, prev, h, w, dy, dx, order, kp, kp_table, w_first, w_has, t_centre, t_sum,
               ph, pred, u):
    """First-layer part fixed for a frame (ph, (hw, hidden + bits) int32) and the SSE context
    part of the predicted bits (pred, (hw, bits) int32: 0, none, 1 times bits * N_SSE), in pass
    order. prev: (hw,) row-major tokens of the previous latent frame (ignored when first)."""
    hw = h * w
    hb = ph.shape[1]
    bits = pred.shape[1]
    nch = t_centre.shape[0]
    stride = bits * N_SSE
    if first:
        for c in range(hw):
            k = kp[c]
            for o in range(hb):
                ph[c, o] = kp_table[k, o] + w_first[o]
            for p in range(bits):
                pred[c, p] = stride
        return
    for r in range(hw):
        t = prev[r]
        for o in range(hb):
            u[r, o] = 0
        for ch in range(nch):
            v = (t >> (CHUNK * ch)) & CHUNK_MASK
            for o in range(hb):
                u[r, o] += t_sum[ch, v, o]
    for c in range(hw):
        r = order[c]
        y = r // w
        x = r - y * w
        yp = y - dy
        xp = x - dx
        k = kp[c]
        row = ph[c]
        for o in range(hb):
            row[o] = kp_table[k, o]
        if 0 <= yp < h and 0 <= xp < w:
            t = prev[yp * w + xp]
            for o in range(hb):
                row[o] += w_has[o]
            for ch in range(nch):
                v = (t >> (CHUNK * ch)) & CHUNK_MASK
                for o in range(hb):
                    row[o] += t_centre[ch, v, o]
            for p in range(bits):
                pred[c, p] = ((t >> p) & 1) * (2 * stride)
        else:
            for p in range(bits):
                pred[c, p] = stride
        for a in range(-1, 2):
            yy = yp + a
            if yy < 0 or yy >= h:
                continue
            for b in range(-1, 2):
                xx = xp + b
                if xx < 0 or xx >= w:
                    continue
                src = u[yy * w + xx]
                for o in range(hb):
                    row[o] += src[o]


@njit(cache=True, nogil=True)
def pass_logits(s, e, hw, nbr, tok, ph, t_nbr, w2, b2, logit, z):
    """(e - s, bits) float64 integer logits of cells [s, e) without the cross-group term."""
    hb = ph.shape[1]
    bits = b2.shape[0]
    hidden = hb - bits
    nch = t_nbr.shape[1]
    for c in range(s, e):
        for o in range(hb):
            z[o] = ph[c, o]
        for j in range(4):
            nb = nbr[j, c]
            if nb < hw:
                t = tok[nb]
                for ch in range(nch):
                    v = (t >> (CHUNK * ch)) & CHUNK_MASK
                    tab = t_nbr[j, ch, v]
                    for o in range(hb):
                        z[o] += tab[o]
        lg = logit[c - s]
        for o in range(bits):
            lg[o] = b2[o] + SKIP_SCALE * z[hidden + o]
        for q in range(hidden):
            a = z[q]
            if a > 0:
                a >>= ACT_SHIFT
                if a > ACT_MAX:
                    a = ACT_MAX
                if a:
                    fa = float(a)
                    wr = w2[q]
                    for o in range(bits):
                        lg[o] += fa * wr[o]


@njit(cache=True, nogil=True)
def group_rows(s, e, lo, hi, g, logit, tok, ar, pred, level, sym_rows, ctx, rows, syms, with_syms):
    """Probability rows (and, encoding, the symbols) of planes [lo, hi) of cells [s, e): three
    planes per 8-ary symbol; ctx[c - s, p] gets each bit's SSE context. The second group
    (lo = g) adds the cross term of the cell's first-group bits (already in tok)."""
    n_sym = (hi - lo + 2) // 3
    bits = pred.shape[1]
    k = 0
    for c in range(s, e):
        t = tok[c]
        i = c - s
        for j in range(n_sym):
            idx = 0
            mult = 1
            for b in range(3):
                p = lo + 3 * j + b
                if p < hi:
                    lv = logit[i, p]
                    if lo > 0:
                        for q in range(g):
                            if (t >> q) & 1:
                                lv += ar[q, p - g]
                            else:
                                lv -= ar[q, p - g]
                    bucket = np.int64(lv) >> SSE_SHIFT
                    if bucket < -SSE_HALF:
                        bucket = -SSE_HALF
                    elif bucket > SSE_HALF:
                        bucket = SSE_HALF
                    x = pred[c, p] + p * N_SSE + SSE_HALF + bucket
                    ctx[i, p] = x
                    idx += level[x] * mult
                else:
                    idx += PAD_LEVEL * mult
                mult *= N_LEVELS
            src = sym_rows[idx]
            for m in range(8):
                rows[k, m] = src[m]
            if with_syms:
                hi_b = min(3, hi - lo - 3 * j)
                syms[k] = (t >> (lo + 3 * j)) & ((1 << hi_b) - 1)
            k += 1
    return k


@njit(cache=True, nogil=True)
def put_symbols(s, e, lo, hi, syms, tok):
    """Decoder: the decoded symbols of planes [lo, hi) of cells [s, e) into the tokens."""
    n_sym = (hi - lo + 2) // 3
    k = 0
    for c in range(s, e):
        t = tok[c]
        for j in range(n_sym):
            mask = (1 << min(3, hi - lo - 3 * j)) - 1
            t |= (np.int32(syms[k]) & mask) << (lo + 3 * j)
            k += 1
        tok[c] = t


@njit(cache=True, nogil=True)
def update(s, e, ctx, tok, counts, level, centre, level_of_prob, dirty, todo):
    """Count the pass's bits in their contexts and refresh the levels of the contexts touched."""
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
        prob = ((c1 << PROB_BITS) + SSE_WEIGHT * centre[x]) // (c0 + c1 + SSE_WEIGHT)
        level[x] = level_of_prob[prob]


@njit(cache=True, nogil=True)
def code_frame(passes, hw, nbr, tok, ph, pred, t_nbr, w2, b2, ar, g, level, sym_rows, counts,
               centre, level_of_prob, dirty, todo, logit, z, ctx, rows, syms):
    """Encoder (and decoder of a raw frame): all passes of a frame whose tokens are known; rows
    and symbols in coding order; returns the number of symbols."""
    bits = b2.shape[0]
    k = 0
    for i in range(passes.shape[0] - 1):
        s = passes[i]
        e = passes[i + 1]
        pass_logits(s, e, hw, nbr, tok, ph, t_nbr, w2, b2, logit, z)
        k += group_rows(s, e, 0, g, g, logit, tok, ar, pred, level, sym_rows, ctx, rows[k:], syms[k:], True)
        if g < bits:
            k += group_rows(s, e, g, bits, g, logit, tok, ar, pred, level, sym_rows, ctx, rows[k:],
                            syms[k:], True)
        update(s, e, ctx, tok, counts, level, centre, level_of_prob, dirty, todo)
    return k


@njit(cache=True, nogil=True)
def unorder(tok, order, out):
    """Pass-order tokens -> row-major."""
    for c in range(order.shape[0]):
        out[order[c]] = tok[c]
