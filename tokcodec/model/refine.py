"""Decoder-in-the-loop encoding: search for tokens the decoder turns into a closer picture.

The encoder is a fast one-shot guess of the tokens. Given the frames, we can do better at encode
time by asking the decoder itself: keep the encoder's pre-quantisation latent ``z`` (token bits are
its signs), decode sign(z), and move ``z`` down the gradient of the reconstruction error (the
sign's gradient passed straight through, as in training) with Adam. Bits whose latent crosses zero
flip. The decoder and the file format do not change, so refined files decode anywhere, at the
same speed; only encoding gets slower (each step is one decoder forward and backward pass).

On the shipped ``medium`` model and held-out clips it adds +2.4 dB PSNR at 8 steps and +3.4 dB at
32 (``python bench/quality.py --refine N``; the README has the table).

Before that search, and by default, the encoder runs in a closed loop (``passes``): it sees what
the decoder missed and is asked again. The encoder and decoder together are close to the identity
but blur and shift; feeding the encoder the source plus a share of the decoder's miss
(``u += gain_k * smooth(x - decode(encode(u)))``, a fixed-point iteration on ``decode(encode(u)) = x``)
pre-compensates that blur the way a classical encoder's pre-emphasis would. It costs one encoder
and one decoder pass per pass, plus one decode of the encoder's own tokens (which the correction
layer needs anyway: the pipeline reuses the chosen pass's decode), and no gradient, so it is
several times cheaper per dB than the search; the pass with the lowest error is kept (never worse
than the encoder's own tokens).
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from functools import partial
from typing import Callable, ContextManager

import torch
import torch.nn.functional as F

from tokcodec.defaults import DEFAULT_PASSES, MAX_PASSES
from tokcodec.errors import ArgumentError, ModelError
from tokcodec.model.lfq import indices_to_codes
from tokcodec.model.tokenizer import VideoTokenizer

PASS_GAIN = 0.5
FEEDBACK_SIGMA = 1.5  # pixels


@dataclass(frozen=True)
class RefineConfig:
    """``steps``: decoder forward+backward passes per GOP (0 = no search).
    ``step_size``: Adam's learning rate as a fraction of the median |z| of the latents the search
    starts from (the closed loop's best, or the encoder's own with no passes),
    so the search moves the latents of any model by the same relative amount. None: by the
    number of steps, ``0.02 * sqrt(steps)`` up to 0.08 (a short search takes shorter steps; on
    training clips with the correction this beat a fixed 0.08 by +0.1 dB at 2 steps and
    matched it at 8 and 16). ``passes``: closed-loop encoder passes before the search (0 = the
    encoder's one-shot tokens, the fastest encode)."""
    steps: int = 0
    step_size: float | None = None
    passes: int = DEFAULT_PASSES

    def __post_init__(self) -> None:
        if self.steps < 0:
            raise ArgumentError(f"refine steps must be >= 0, got {self.steps}")
        if not 0 <= self.passes <= MAX_PASSES:
            raise ArgumentError(f"closed-loop passes must be in 0..{MAX_PASSES}, got {self.passes}")
        if self.step_size is not None and not self.step_size > 0:
            raise ArgumentError(f"refine step size must be > 0, got {self.step_size}")

    @property
    def lr(self) -> float:
        """The step size in use (relative to the median |z|)."""
        return self.step_size if self.step_size is not None else min(0.08, 0.02 * math.sqrt(self.steps))


ResidualFilter = Callable[[torch.Tensor], torch.Tensor]
#: latents (B, bits, t, h, w) -> tokens (B, t, h, w); None: their signs, as LFQ takes them (the
#: pipeline passes coder 3's rate-aware choice, codec/rdo.py)
Quantize = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class FoundTokens:
    """Tokens (B, 1+t, h, w) and, when the closed loop or the search's last step chose them, the
    decoder's output for them (the raw ``tokenizer.decoder`` output, what ``decode_indices``
    gives), which saves the caller a decoder pass; None when it was not computed (no passes and
    no search, or a search that kept an earlier step's tokens)."""
    indices: torch.Tensor
    decoded: torch.Tensor | None = None


def pass_gain(k: int) -> float:
    """Share of the decoder's miss added before closed-loop pass ``k`` (1-based): 0.5 / k. Chosen
    on six windows of the training videos with the correction (not the held-out clips): a fixed
    0.4 or 0.5 overshot from the second pass on; shrinking gains (0.5, 0.25, 0.2 or 0.6, 0.3,
    0.2) gained most at 2 and 3 passes, and 0.5 / k is the simple rule between them."""
    return PASS_GAIN / k


def refine_indices(tokenizer: VideoTokenizer, x: torch.Tensor, config: RefineConfig, *,
                   frames: int | None = None, height: int | None = None, width: int | None = None,
                   autocast: Callable[[], ContextManager] = contextlib.nullcontext,
                   residual_filter: ResidualFilter | None = None,
                   quantize: Quantize | None = None) -> torch.Tensor:
    """Tokens (B, 1+t, h, w) for ``x`` (B, 3, T, H, W in [-1, 1]): see ``find_tokens``."""
    return find_tokens(tokenizer, x, config, frames=frames, height=height, width=width,
                       autocast=autocast, residual_filter=residual_filter, quantize=quantize).indices


def find_tokens(tokenizer: VideoTokenizer, x: torch.Tensor, config: RefineConfig, *,
                frames: int | None = None, height: int | None = None, width: int | None = None,
                autocast: Callable[[], ContextManager] = contextlib.nullcontext,
                residual_filter: ResidualFilter | None = None,
                quantize: Quantize | None = None) -> FoundTokens:
    """Tokens for ``x`` (B, 3, T, H, W in [-1, 1]) after ``config.passes`` closed-loop encoder
    passes and then ``config.steps`` steps of search. The error counts only the first ``frames``
    frames and the top-left ``height`` x ``width`` pixels (the rest is padding that decode crops).
    Each stage keeps the best tokens it has seen, so the result is never worse than the encoder's
    own tokens in that error (at the coded size; a --scale below 1 then resizes the picture, and
    the rate may grow). ``residual_filter`` maps the residual (decoded minus source) to the part
    that counts: with the correction layer, what its grid cannot remove (codec/correction.py
    ``uncorrectable``). ``quantize`` turns latents into tokens wherever this does (default: their
    signs): the closed loop then decodes, and makes up for, what it chose."""
    tokenizer.check_input(x)
    if quantize is None:
        quantize = partial(sign_indices, tokenizer)
    with torch.inference_mode(), autocast():  # no passes and no steps: the plain encode, as fast
        z = finite_latents(tokenizer.encoder(x).float())
    if not config.passes and not config.steps:
        return FoundTokens(quantize(z))
    if config.passes:
        z, indices, decoded = closed_loop_latents(tokenizer, x, z, config.passes, frames=frames, height=height,
                                                  width=width, autocast=autocast,
                                                  residual_filter=residual_filter, quantize=quantize)
    if not config.steps:
        return FoundTokens(indices, decoded)
    return search_tokens(tokenizer, z, x, config, frames=frames, height=height, width=width,
                         autocast=autocast, residual_filter=residual_filter, quantize=quantize)


def sign_indices(tokenizer: VideoTokenizer, z: torch.Tensor) -> torch.Tensor:
    """Tokens (B, t, h, w) of latents ``z``: their signs, as the tokenizer's LFQ takes them."""
    return tokenizer.quantizer(z, with_losses=False).indices


@torch.inference_mode()
def closed_loop_latents(tokenizer: VideoTokenizer, x: torch.Tensor, z0: torch.Tensor, passes: int, *,
                        frames: int | None = None, height: int | None = None, width: int | None = None,
                        autocast: Callable[[], ContextManager] = contextlib.nullcontext,
                        residual_filter: ResidualFilter | None = None, quantize: Quantize | None = None
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(latents, their tokens, the decoder's output for them) of the best of the encoder's own
    latents ``z0`` for ``x`` and ``passes`` re-encodings of ``u``, where ``u`` starts at ``x`` and
    each pass adds ``pass_gain(k)`` times what the decoder missed (filtered by
    ``residual_filter``, averaged over each latent step's frames and blurred by
    ``feedback_blur``, inside the window that counts; padding is left as it is), clamped to
    [-1, 1]. "Best" is the lowest error in the window (filtered, not averaged or blurred). The
    decoder sees ``quantize``'s tokens of each latent."""
    if quantize is None:
        quantize = partial(sign_indices, tokenizer)
    window = (slice(None), slice(None), slice(None, frames), slice(None, height), slice(None, width))
    target = x[window].float()

    def decode(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        indices = quantize(z)
        codes = indices_to_codes(indices, tokenizer.cfg.bits)
        with autocast():
            return indices, tokenizer.decoder(codes)

    def missed(decoded: torch.Tensor) -> torch.Tensor:
        residual = decoded[window].float().sub_(target) if decoded.dtype != torch.float32 \
            else decoded[window] - target  # (a float32 decode's view must not be changed)
        if residual_filter is not None:
            residual = residual_filter(residual)
        return residual.neg_()

    indices, decoded = decode(z0)
    miss = missed(decoded)
    best_err, best = float(miss.square().sum()), (z0, indices, decoded)
    u = x.clone()  # keeps x's memory format
    step = tokenizer.cfg.temporal_factor
    for k in range(1, passes + 1):
        feedback = feedback_blur(latent_step_means_(miss, step))
        u[window] += pass_gain(k) * feedback.to(u.dtype)
        u.clamp_(-1, 1)
        del miss, decoded  # (best keeps the one still wanted) before the networks' peak
        with autocast():
            z = finite_latents(tokenizer.encoder(u).float())
        indices, decoded = decode(z)
        miss = missed(decoded)
        err = float(miss.square().sum())
        if err < best_err:
            best_err, best = err, (z, indices, decoded)
    return best


def finite_latents(z: torch.Tensor) -> torch.Tensor:
    """``z``, the encoder's latents, if every one is finite; else a ModelError. In fp16 (range
    +-65504) the shipped encoders' activations overflow on ordinary video (fast-deep's reach
    85,837 in fp32 on a face clip): inf, then NaN, whose sign bits all read 0, so every token was
    0 and encode wrote a tiny, worthless file without a word."""
    if not bool(torch.isfinite(z).all()):
        raise ModelError("the encoder's output is not finite (inf or NaN): in fp16 these weights' activations "
                         "overflow, so encode with --precision bf16 or fp32 (in those, the weights are broken)")
    return z


def latent_step_means_(miss: torch.Tensor, step: int) -> torch.Tensor:
    """``miss`` (B, C, T, H, W) with each latent step's frames replaced by their mean, in place:
    frame 0 (latent frame 0) alone, then frames 1..step, step+1..2*step, ... (the last group as
    long as the frames go). One latent frame codes each group, so a miss that varies within it
    made the tokens busier for nothing: on the training windows (2 passes) the same 26.98 dB for
    2.3% fewer bits; one mean over the whole GOP lost 0.15 dB for 2% fewer."""
    t = miss.shape[2]
    for start in range(1, t, step):
        group = miss[:, :, start:start + step]
        group.copy_(group.mean(2, keepdim=True).expand_as(group))
    return miss


def feedback_blur(miss: torch.Tensor, sigma: float = FEEDBACK_SIGMA) -> torch.Tensor:
    """``miss`` (B, C, T, H, W) blurred in space by a Gaussian of ``sigma`` pixels (edges
    replicated). The decoder cannot rebuild the source's grain and noise; fed back, they made the
    tokens busier for nothing. On the training windows (2 passes) sigma 1.5 gave +0.03 dB for
    1% fewer bits than no blur; 3 and 5 saved 2.4% and 4.3% of the bits for -0.02 and -0.09 dB."""
    if sigma <= 0:
        return miss
    if miss.dtype != torch.float32:  # (the closed loop's misses are float32 already)
        return feedback_blur(miss.float(), sigma).to(miss.dtype)
    r = math.ceil(2.5 * sigma)
    taps = torch.exp(-torch.arange(-r, r + 1, dtype=torch.float32) ** 2 / (2 * sigma * sigma))
    taps = (taps / taps.sum()).tolist()
    h, w = miss.shape[-2:]
    out = torch.empty_like(miss)
    for i in range(miss.shape[2]):  # frame by frame: the padded copies stay small
        # separable, as shifted multiply-adds over all channels at once: 3-4x faster on a CPU
        # than the depthwise convolutions this replaced (the same sums: equal to the bit on the
        # host that measured it, and the same encoded files)
        padded = F.pad(miss[:, :, i], (r, r, 0, 0), mode="replicate")
        across = padded[..., :w] * taps[0]
        for k in range(1, 2 * r + 1):
            across.add_(padded[..., k:k + w], alpha=taps[k])
        padded = F.pad(across, (0, 0, r, r), mode="replicate")
        frame = out[:, :, i].copy_(padded[..., :h, :]).mul_(taps[0])
        for k in range(1, 2 * r + 1):
            frame.add_(padded[..., k:k + h, :], alpha=taps[k])
    return out


def search_indices(tokenizer: VideoTokenizer, z0: torch.Tensor, x: torch.Tensor, config: RefineConfig, *,
                   frames: int | None = None, height: int | None = None, width: int | None = None,
                   autocast: Callable[[], ContextManager] = contextlib.nullcontext,
                   residual_filter: ResidualFilter | None = None, quantize: Quantize | None = None
                   ) -> torch.Tensor:
    """The search of ``refine_indices`` from latents ``z0`` the encoder already gave for ``x``
    (training has them from its own forward pass): ``search_tokens``'s tokens, as an ordinary
    tensor (an inference-mode one could not be saved for a loss's backward)."""
    indices = search_tokens(tokenizer, z0, x, config, frames=frames, height=height, width=width,
                            autocast=autocast, residual_filter=residual_filter, quantize=quantize).indices
    return indices.clone() if indices.is_inference() else indices


@torch.inference_mode(False)  # a caller may hold inference mode; the search needs autograd
def search_tokens(tokenizer: VideoTokenizer, z0: torch.Tensor, x: torch.Tensor, config: RefineConfig, *,
                  frames: int | None = None, height: int | None = None, width: int | None = None,
                  autocast: Callable[[], ContextManager] = contextlib.nullcontext,
                  residual_filter: ResidualFilter | None = None, quantize: Quantize | None = None
                  ) -> FoundTokens:
    """The search from latents ``z0``: each step decodes the tokens ``quantize`` (default: the
    signs) makes of the latents and passes the gradient straight through to them, so the error
    that picks the best latents is that of the tokens returned. The last step's latents are
    decoded once more, without autograd, to score them; when they are the best, that decode (what
    ``decode_indices`` gives for the tokens) comes back with them and saves the caller one."""
    if quantize is None:
        quantize = partial(sign_indices, tokenizer)
    if config.steps == 0:
        return FoundTokens(quantize(z0))
    # clone: an inference-mode tensor cannot be saved for backward
    target = x[:, :, :frames, :height, :width].float().clone()

    def error_of(recon: torch.Tensor) -> torch.Tensor:
        residual = recon[:, :, :frames, :height, :width].float() - target
        if residual_filter is not None:
            residual = residual_filter(residual)
        # a sum, not a mean: Adam ignores the loss scale, and fp16 gradients then do not underflow
        return residual.square().sum()

    def error(z: torch.Tensor) -> torch.Tensor:
        chosen = indices_to_codes(quantize(z.detach()), tokenizer.cfg.bits)
        codes = z + (chosen - z).detach()  # the chosen tokens forward, straight through backward
        with autocast():
            return error_of(tokenizer.decoder(codes))

    lr = config.lr * float(z0.abs().median().clamp_min(1e-6))
    z = z0.clone().requires_grad_(True)
    opt = torch.optim.Adam([z], lr=lr)
    best_err, best_z = float("inf"), z0
    with torch.enable_grad():
        for _ in range(config.steps):
            err = error(z)
            if float(err.detach()) < best_err:
                best_err, best_z = float(err.detach()), z.detach().clone()
            (grad,) = torch.autograd.grad(err, [z])
            if not torch.isfinite(grad).all():  # fp16 overflow: stop with the best tokens so far
                break
            z.grad = grad
            opt.step()
    with torch.inference_mode():  # as encode decodes (a compiled decoder keeps one graph per mode)
        last = quantize(z.detach())
        with autocast():
            decoded = tokenizer.decoder(indices_to_codes(last, tokenizer.cfg.bits))
        if float(error_of(decoded)) < best_err:
            return FoundTokens(last, decoded)
    return FoundTokens(quantize(best_z))
