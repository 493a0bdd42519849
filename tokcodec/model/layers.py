"""Building blocks of the causal 3D CNN tokenizer.

Tensors are (B, C, T, H, W). Every temporal operation is causal: output frame t depends only on
input frames <= t. Normalisation is per frame (statistics over channel groups x H x W of each
frame) because GroupNorm over the whole clip would let later frames change earlier latents.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _triple(v: int | tuple[int, int, int]) -> tuple[int, int, int]:
    return (v, v, v) if isinstance(v, int) else tuple(v)  # type: ignore[return-value]


class CausalConv3d(nn.Module):
    """3D convolution padded with k_t - 1 copies of the first frame in front and none after.

    Spatial padding is symmetric zero padding (k//2), so stride-2 spatial convolutions halve even
    sizes exactly. With temporal stride s, 1 + s*t frames map to 1 + t (for any k_t).
    """

    def __init__(self, cin: int, cout: int, kernel: int | tuple[int, int, int] = 3,
                 stride: int | tuple[int, int, int] = 1, bias: bool = True) -> None:
        super().__init__()
        kt, kh, kw = _triple(kernel)
        self.time_pad = kt - 1
        self.conv = nn.Conv3d(cin, cout, (kt, kh, kw), stride=_triple(stride),
                              padding=(0, kh // 2, kw // 2), bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.time_pad:
            x = pad_front_frames(x, self.time_pad)
        return self.conv(x)


def memory_format_of(x: torch.Tensor) -> torch.memory_format:
    """channels_last_3d when x is laid out that way (and not also plain contiguous), else contiguous."""
    return torch.channels_last_3d if (x.ndim == 5 and not x.is_contiguous()
                                      and x.is_contiguous(memory_format=torch.channels_last_3d)) \
        else torch.contiguous_format


def pad_front_frames(x: torch.Tensor, n: int) -> torch.Tensor:
    """Prepend n copies of frame 0, keeping x's memory format (torch.cat would drop channels_last,
    and every convolution after it would then pay a layout conversion)."""
    if torch.is_grad_enabled() and x.requires_grad and x.device.type == "cpu":
        # with autograd on a CPU, a replicate pad (its backward sums the copies' gradients in one
        # kernel) rather than slice assignments, whose backward copies the gradient slice by
        # slice; in x's dtype (autocast would pad in float32 for the convolution to cast back).
        # (On CUDA that backward adds atomically, so not deterministic: the slices stay there.)
        with torch.autocast(x.device.type, enabled=False):
            return F.pad(x, (0, 0, 0, 0, n, 0), mode="replicate")
    b, c, t, h, w = x.shape
    out = torch.empty((b, c, t + n, h, w), dtype=x.dtype, device=x.device,
                      memory_format=memory_format_of(x))
    out[:, :, n:] = x
    out[:, :, :n] = x[:, :, :1]
    return out


def frame_group_norm(x: torch.Tensor, groups: int, weight: torch.Tensor | None = None,
                     bias: torch.Tensor | None = None, eps: float = 1e-6) -> torch.Tensor:
    """GroupNorm with statistics per frame (never across time).

    Frames are folded into the batch: for a channels_last_3d tensor (B, T, H, W, C in memory) the
    (B*T, C, H, W) view is free and channels_last, so the fused CPU kernel runs without a copy.
    """
    b, c, t, h, w = x.shape
    frames = x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
    if weight is not None:
        weight, bias = weight.to(x.dtype), bias.to(x.dtype)  # type: ignore[union-attr]
    out = F.group_norm(frames, groups, weight, bias, eps)
    return out.reshape(b, t, c, h, w).permute(0, 2, 1, 3, 4)


class FrameGroupNorm(nn.Module):
    def __init__(self, channels: int, groups: int = 8, eps: float = 1e-6) -> None:
        super().__init__()
        self.groups = min(groups, channels)
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return frame_group_norm(x, self.groups, self.weight, self.bias, self.eps)


class AdaptiveGroupNorm(nn.Module):
    """Per-frame GroupNorm whose scale and shift are predicted from the quantized latent.

    The latent (B, bits, t, h, w) is brought to the feature resolution causally: latent frame 0
    drives output frame 0 and latent frame j >= 1 drives frames (j-1)*s+1 .. j*s.
    """

    def __init__(self, channels: int, cond_channels: int, groups: int = 8) -> None:
        super().__init__()
        self.groups = min(groups, channels)
        self.to_scale_shift = nn.Conv3d(cond_channels, 2 * channels, 1)
        nn.init.zeros_(self.to_scale_shift.weight)
        nn.init.zeros_(self.to_scale_shift.bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        t, h, w = x.shape[2:]
        tc = cond.shape[2]
        if cond.shape[3:] != (h, w):
            cond = F.interpolate(cond, size=(tc, h, w), mode="nearest")
        scale, shift = self.to_scale_shift(cond.to(x.dtype)).chunk(2, dim=1)
        y = frame_group_norm(x, self.groups)
        if tc == t:
            return y * (1 + scale) + shift
        # frame 0 <- latent 0; frames (j-1)*s+1 .. j*s <- latent j: broadcast instead of repeating
        s = (t - 1) // (tc - 1)
        if not torch.is_grad_enabled() and y.dtype == torch.result_type(y, scale):
            # inference: modulate y in place, which also keeps its memory format (torch.cat below
            # returns a contiguous tensor that every following convolution would convert back)
            y[:, :, :1].mul_(1 + scale[:, :, :1]).add_(shift[:, :, :1])
            y[:, :, 1:].unflatten(2, (tc - 1, s)).mul_(1 + scale[:, :, 1:, None]).add_(shift[:, :, 1:, None])
            return y
        if memory_format_of(y) == torch.channels_last_3d:
            # with autograd in a channels_last model (the encoder's search): scale and shift
            # repeated to every frame in y's layout, one fused multiply-add. torch.cat below
            # returns a contiguous tensor, and the convolutions after it and their backward then
            # convert layouts: a 640x360 GOP's decoder forward+backward took 1.16 s, now 0.81-0.86
            frames = torch.arange(t, device=y.device).sub_(1).div_(s, rounding_mode="floor").add_(1)  # 0, 1 x s, 2 x s, ...
            scale = scale.index_select(2, frames).contiguous(memory_format=torch.channels_last_3d)
            shift = shift.index_select(2, frames).contiguous(memory_format=torch.channels_last_3d)
            return torch.addcmul(shift, y, scale.add(1))
        head = y[:, :, :1] * (1 + scale[:, :, :1]) + shift[:, :, :1]  # (training: contiguous, and faster so)
        rest = y[:, :, 1:].unflatten(2, (tc - 1, s))
        rest = rest * (1 + scale[:, :, 1:, None]) + shift[:, :, 1:, None]
        return torch.cat([head, rest.flatten(2, 3)], dim=2)


class ResBlock(nn.Module):
    """Pre-activation residual block of two causal (kt)x3x3 convolutions."""

    def __init__(self, cin: int, cout: int, groups: int = 8, kt: int = 3) -> None:
        super().__init__()
        self.norm1 = FrameGroupNorm(cin, groups)
        self.conv1 = CausalConv3d(cin, cout, (kt, 3, 3))
        self.norm2 = FrameGroupNorm(cout, groups)
        self.conv2 = CausalConv3d(cout, cout, (kt, 3, 3))
        nn.init.zeros_(self.conv2.conv.weight)  # blocks start as identity: faster, stabler training
        self.skip = nn.Conv3d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inplace = not torch.is_grad_enabled()  # fresh tensors: no autograd needs their old values
        h = self.conv1(F.silu(self.norm1(x), inplace=inplace))
        h = self.conv2(F.silu(self.norm2(h), inplace=inplace))
        skip = self.skip(x)
        if inplace and h.dtype == torch.result_type(h, skip):
            return h.add_(skip)
        return skip + h


def space_to_depth(x: torch.Tensor, p: int) -> torch.Tensor:
    """(B, C, T, H, W) -> (B, C*p*p, T, H/p, W/p)."""
    b, c, t, h, w = x.shape
    x = x.view(b, c, t, h // p, p, w // p, p)
    return x.permute(0, 1, 4, 6, 2, 3, 5).reshape(b, c * p * p, t, h // p, w // p)


def depth_to_space(x: torch.Tensor, p: int) -> torch.Tensor:
    """Inverse of space_to_depth."""
    b, cpp, t, h, w = x.shape
    c = cpp // (p * p)
    x = x.view(b, c, p, p, t, h, w)
    return x.permute(0, 1, 4, 5, 2, 6, 3).reshape(b, c, t, h * p, w * p)


class Downsample(nn.Module):
    """Strided causal convolution: spatial stride 2 and/or temporal stride 2."""

    def __init__(self, cin: int, cout: int, spatial: bool, temporal: bool, kt: int = 3) -> None:
        super().__init__()
        st, ss = (2 if temporal else 1), (2 if spatial else 1)
        self.conv = CausalConv3d(cin, cout, (kt, 3, 3), stride=(st, ss, ss))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Causal conv + depth-to-space; temporal up-sampling drops the first s-1 frames (1+t -> 1+s*t)."""

    def __init__(self, cin: int, cout: int, spatial: bool, temporal: bool, kt: int = 3) -> None:
        super().__init__()
        self.st, self.ss = (2 if temporal else 1), (2 if spatial else 1)
        self.cout = cout
        self.conv = CausalConv3d(cin, cout * self.st * self.ss * self.ss, (kt, 3, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x)
        b, _, t, hh, ww = h.shape
        st, ss, c = self.st, self.ss, self.cout
        if memory_format_of(h) == torch.channels_last_3d:
            # memory is (b, t, hh, ww, [c, st, ss, ss]): one copy straight into channels_last output
            h = h.permute(0, 2, 3, 4, 1).view(b, t, hh, ww, c, st, ss, ss)
            h = h.permute(0, 1, 5, 2, 6, 3, 7, 4).reshape(b, t * st, hh * ss, ww * ss, c)
            h = h.permute(0, 4, 1, 2, 3)
        else:
            h = h.view(b, c, st, ss, ss, t, hh, ww)
            h = h.permute(0, 1, 5, 2, 6, 3, 7, 4).reshape(b, c, t * st, hh * ss, ww * ss)
        return h[:, :, st - 1:] if st > 1 else h
