"""Rate-distortion optimised token bits: the encoder's sign choice, told what each bit costs.

LFQ stores the sign of each of the encoder's 18 latent channels. Where a latent is close to zero
the encoder barely prefers one sign, yet the entropy coder may find that sign expensive (it
predicted the other one from the neighbours and the previous frame). Classical encoders face the
same choice for quantised coefficients (RDOQ). Here every bit is chosen, in coder 3's own order
and with its own model (the learned prior, recalibrated by the adaptive counts as coding goes),
to minimise

    distortion + lambda * rate,    distortion = |z| / median|z| if the bit differs from sign(z), else 0
                                   rate = -log2 P(bit) under coder 3's model, in bits

so a bit is flipped to the value the coder expects when the bits saved, times lambda, outweigh
how far its latent lies from zero (in units of the GOP's median |z|, so one lambda fits every
model). Cells of one lattice pass do not see each other, so a pass is decided at once, with the
probabilities the coder will then use (the first 9-bit group before the second, which it
conditions). Two things can still differ, rarely: the coder searches each frame's motion on the
final tokens, this on the frame's signs (they agreed on every clip tried); and the coder may then
store a frame raw, or a near-static GOP with coder 2.

Only the encoder changes: the bits are ordinary tokens, coded and decoded as before. The choice
runs inside the closed loop (``tokcodec/model/refine.py``), whose next pass makes up for what the
flipped bits lost. On the colour training windows (2 passes, with the correction on cells of 16
pixels) lambda 0.1 kept 26.88 of 26.98 dB for 17% fewer bits; the default (0.25) spends what it
saves on a finer correction grid (bench/quality.py --split train --rdo; docs/usage.md, and the
held-out figures in docs/results.md).
"""
from __future__ import annotations

import numpy as np

from tokcodec.codec import context_coder3 as c3
from tokcodec.codec import lattice

_P = np.arange(1 << c3.PROB_BITS, dtype=np.float64) / (1 << c3.PROB_BITS)
with np.errstate(divide="ignore"):
    #: bits to code a one / a zero at each 12-bit probability of a one (index 0 is never used)
    _COST_ONE = -np.log2(np.maximum(_P, 1e-12))
    _COST_ZERO = -np.log2(np.maximum(1 - _P, 1e-12))


def choose_bits(z: np.ndarray, p_one: np.ndarray, lam: float) -> np.ndarray:
    """(n, k) bool: per bit, one or zero, whichever has the smaller distortion + lam * rate.
    ``z``: latents in units of the median |z|; ``p_one``: coder probabilities of a one (1/4096)."""
    positive = z > 0
    flip = np.abs(z)
    cost_one = np.where(positive, 0.0, flip) + lam * _COST_ONE[p_one]
    cost_zero = np.where(positive, flip, 0.0) + lam * _COST_ZERO[p_one]
    return cost_one < cost_zero


def rate_aware_tokens(prior: c3.Prior, z: np.ndarray, lam: float, search: int = 4) -> np.ndarray:
    """Tokens (t, h, w) int64 for the latents ``z`` (t, bits, h, w) of one GOP, their bits chosen
    with coder 3's ``prior`` at trade-off ``lam`` (0: the signs of ``z``, as LFQ takes them).
    ``search``: the motion search range the coder uses (ContextCoder3.search)."""
    t, bits, h, w = z.shape
    if bits != prior.bits:
        raise ValueError(f"the prior codes {prior.bits}-bit tokens, the latents have {bits} channels")
    signs = lattice.pack_bits(np.moveaxis(z > 0, 1, -1))
    if lam <= 0 or z.size == 0:
        return signs
    z = z / max(float(np.median(np.abs(z))), 1e-12)
    hw, g = h * w, (bits + 1) // 2
    geo = lattice.geometry(h, w, c3.LEVELS_PER_PASS)
    model = c3.PriorModel(prior, bits)
    cross = model.cross_table()
    plane_base = np.arange(bits, dtype=np.int64) * c3.N_SSE + c3.SSE_HALF
    out = np.empty((t, hw), np.int64)
    prev: np.ndarray | None = None
    for f in range(t):
        # the coder searches motion on the final tokens; those of this frame are not chosen yet,
        # so its signs stand in for them (the choice flips few bits)
        motion = (0, 0) if f == 0 else lattice.search_motion(out[f - 1].reshape(h, w), signs[f], search)
        prev_feats, has = c3.prev_features(geo, bits, prev, motion)
        fr = c3.FrameState(np.zeros((hw + 1, bits), np.float32), np.zeros((hw, bits), np.uint8),
                           model.start_frame(geo, prev_feats, has, prev is None), model.pred_part(prev_feats))
        zf = np.take(z[f].reshape(bits, hw).T, geo.order, axis=0)  # (hw, bits) in pass order
        tok = np.empty(hw, np.int64)
        for i, ps in enumerate(geo.passes):
            cells = slice(ps.start, ps.stop)
            logit = model.logits(fr, ps, i).astype(np.int64)
            base = fr.pred[cells] + plane_base
            ctx = base + np.clip(logit >> c3.SSE_SHIFT, -c3.SSE_HALF, c3.SSE_HALF)
            first = choose_bits(zf[cells, :g], np.take(model.prob, ctx[:, :g]), lam)
            low = lattice.pack_bits(first)
            logit[:, g:] += cross[low]
            ctx[:, g:] = base[:, g:] + np.clip(logit[:, g:] >> c3.SSE_SHIFT, -c3.SSE_HALF, c3.SSE_HALF)
            second = choose_bits(zf[cells, g:], np.take(model.prob, ctx[:, g:]), lam)
            planes = np.concatenate([first, second], 1).astype(np.uint8)
            tok[cells] = low | lattice.pack_bits(second) << g
            fr.planes[cells] = planes
            model.update(ctx, planes)
            fr.signs[cells] = planes * np.float32(2) - np.float32(1)
        prev = np.empty((hw, bits), np.uint8)
        prev[geo.order] = fr.planes
        out[f, geo.order] = tok
    return out.reshape(t, h, w)
