"""Encoder, Decoder and VideoTokenizer (MAGVIT-v2 architecture, sized by a TokenizerConfig).

Encoder: space-to-depth stem -> causal conv -> [ResBlocks -> strided conv] per spatial level ->
ResBlocks + temporal stride-2 convs at the end (temporal down-sampling deferred to the last
blocks) -> 1x1 projection to ``bits`` channels -> LFQ.
Decoder: mirror image with conv + depth-to-space up-sampling and an adaptive GroupNorm,
conditioned on the quantized latent, before the residual blocks of each resolution.
Input and output pixels are in [-1, 1]; frames T = 1 + s*t, H and W multiples of spatial_factor.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tokcodec.model.layers import (AdaptiveGroupNorm, CausalConv3d, Downsample, FrameGroupNorm,
                                   ResBlock, Upsample, depth_to_space, memory_format_of,
                                   space_to_depth)
from tokcodec.model.lfq import LFQ, LFQOutput, indices_to_codes
from tokcodec.model.presets import TokenizerConfig


def match_weight_format(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Give activations the weights' layout: a model moved to channels_last_3d (inference on CPU,
    +10-45% measured here) must also get channels_last activations, or every convolution
    converts layouts back and forth; a contiguous model (GPU, training) gets contiguous ones."""
    return x.contiguous(memory_format=memory_format_of(weight))


class Encoder(nn.Module):
    def __init__(self, cfg: TokenizerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        ch = cfg.channels
        kt = cfg.temporal_kernel
        self.conv_in = CausalConv3d(3 * cfg.patch ** 2, ch[0], (kt, 3, 3))
        self.stages = nn.Sequential(*[self._stage(role) for role in self.stage_roles(cfg)])
        self.norm_out = FrameGroupNorm(ch[-1], cfg.groups)
        self.conv_out = nn.Conv3d(ch[-1], cfg.bits, 1)
        # Per-frame GroupNorm divides out each group's mean and scale, so inside a flat area
        # (sky, a wall, a bus roof) the features reaching the projection are nearly the same for
        # any level or colour and only borders tell them apart: decoded flat areas drifted by up
        # to 30 code values. The level skip adds a projection of each latent cell's mean input
        # colour (over its f x f pixels and its frames). Zero-initialised, so a model grown from
        # weights without it starts as exactly that model.
        self.level_out: nn.Conv3d | None = None
        if cfg.level_skip:
            self.level_out = nn.Conv3d(3, cfg.bits, 1)
            nn.init.zeros_(self.level_out.weight)
            nn.init.zeros_(self.level_out.bias)

    @staticmethod
    def stage_roles(cfg: TokenizerConfig) -> list[tuple[str, int, int]]:
        """What each entry of ``stages`` is, in order: ("down", level, 0), ("res", level, i),
        ("tdown", k, 0), ("tres", k, i). Growing a preset (model/grow.py) maps weights by role."""
        roles: list[tuple[str, int, int]] = []
        for level in range(len(cfg.channels)):
            if level:
                roles.append(("down", level, 0))
            roles.extend(("res", level, i) for i in range(cfg.encoder_depth[level]))
        for k in range(cfg.temporal_downs):
            roles.append(("tdown", k, 0))
            roles.extend(("tres", k, i) for i in range(cfg.temporal_blocks))
        return roles

    def _stage(self, role: tuple[str, int, int]) -> nn.Module:
        ch, groups, kt = self.cfg.channels, self.cfg.groups, self.cfg.temporal_kernel
        kind, index, _ = role
        if kind == "down":
            return Downsample(ch[index - 1], ch[index], spatial=True, temporal=False, kt=kt)
        if kind == "tdown":
            return Downsample(ch[-1], ch[-1], spatial=False, temporal=True, kt=kt)
        c = ch[index] if kind == "res" else ch[-1]
        return ResBlock(c, c, groups, kt)

    def cell_means(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, 1+s*t, H, W) -> (B, 3, 1+t, H/f, W/f): each latent cell's mean input colour;
        latent frame 0 covers frame 0, latent frame j >= 1 frames (j-1)*s+1 .. j*s (causal)."""
        f, s = self.cfg.spatial_factor, self.cfg.temporal_factor
        p = F.avg_pool3d(x.float(), (1, f, f))
        if p.shape[2] == 1:
            return p
        rest = p[:, :, 1:].unflatten(2, (-1, s)).mean(3)
        return torch.cat([p[:, :, :1], rest], dim=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        level = self.level_out(self.cell_means(x).to(x.dtype)) if self.level_out is not None else None
        if self.cfg.patch > 1:
            x = space_to_depth(x, self.cfg.patch)
        x = match_weight_format(x, self.conv_in.conv.weight)
        h = self.stages(self.conv_in(x))
        z = self.conv_out(F.silu(self.norm_out(h)))
        return z if level is None else z + level.to(z.dtype)


class DecoderStage(nn.Module):
    """AdaptiveGroupNorm(cond) -> ResBlocks -> optional up-sampling."""

    def __init__(self, cin: int, cout: int, bits: int, blocks: int, groups: int,
                 up_spatial: bool, up_temporal: bool, kt: int = 3) -> None:
        super().__init__()
        self.adanorm = AdaptiveGroupNorm(cin, bits, groups)
        self.blocks = nn.Sequential(*[ResBlock(cin, cin, groups, kt) for _ in range(blocks)])
        self.up = Upsample(cin, cout, up_spatial, up_temporal, kt) if (up_spatial or up_temporal) else None

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.adanorm(x, cond))
        return self.up(x) if self.up is not None else x


class Decoder(nn.Module):
    def __init__(self, cfg: TokenizerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        ch, kt = cfg.channels, cfg.temporal_kernel
        self.conv_in = CausalConv3d(cfg.bits, ch[-1], (kt, 3, 3))
        self.mid = ResBlock(ch[-1], ch[-1], cfg.groups, kt)
        stages: list[DecoderStage] = []
        for _ in range(cfg.temporal_downs):
            stages.append(DecoderStage(ch[-1], ch[-1], cfg.bits, cfg.temporal_blocks, cfg.groups,
                                       up_spatial=False, up_temporal=True, kt=kt))
        for level in range(len(ch) - 1, -1, -1):
            cout = ch[level - 1] if level else ch[0]
            stages.append(DecoderStage(ch[level], cout, cfg.bits, cfg.blocks[level], cfg.groups,
                                       up_spatial=level > 0, up_temporal=False, kt=kt))
        self.stages = nn.ModuleList(stages)
        self.norm_out = FrameGroupNorm(ch[0], cfg.groups)
        self.conv_out = CausalConv3d(ch[0], 3 * cfg.patch ** 2, (kt, 3, 3))

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        codes = match_weight_format(codes, self.conv_in.conv.weight)
        h = self.mid(self.conv_in(codes))
        for stage in self.stages:
            h = stage(h, codes)
        h = self.conv_out(F.silu(self.norm_out(h)))
        return depth_to_space(h, self.cfg.patch) if self.cfg.patch > 1 else h


class VideoTokenizer(nn.Module):
    """Video <-> 18-bit tokens. ``x``: (B, 3, 1+s*t, H, W) in [-1, 1]; tokens: (B, 1+t, H/f, W/f)."""

    def __init__(self, cfg: TokenizerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.quantizer = LFQ(cfg.bits)
        self.decoder = Decoder(cfg)

    def check_input(self, x: torch.Tensor) -> None:
        s, f = self.cfg.temporal_factor, self.cfg.spatial_factor
        if x.ndim != 5 or x.shape[1] != 3:
            raise ValueError(f"expected (B, 3, T, H, W), got {tuple(x.shape)}")
        t, h, w = x.shape[2:]
        if (t - 1) % s or h % f or w % f:
            raise ValueError(f"need T = 1 + {s}k and H, W multiples of {f}; got T={t}, H={h}, W={w}")

    def latent_shape(self, frames: int, height: int, width: int) -> tuple[int, int, int]:
        s, f = self.cfg.temporal_factor, self.cfg.spatial_factor
        return (1 + (frames - 1) // s, height // f, width // f)

    def quantize(self, x: torch.Tensor, with_losses: bool = True) -> LFQOutput:
        self.check_input(x)
        return self.quantizer(self.encoder(x), with_losses=with_losses)

    @torch.no_grad()
    def encode_indices(self, x: torch.Tensor) -> torch.Tensor:
        return self.quantize(x, with_losses=False).indices

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        return self.decoder(codes)

    @torch.no_grad()
    def decode_indices(self, indices: torch.Tensor) -> torch.Tensor:
        codes = indices_to_codes(indices, self.cfg.bits)
        return self.decoder(codes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, LFQOutput]:
        q = self.quantize(x)
        return self.decoder(q.codes), q
