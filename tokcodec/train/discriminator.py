"""3D convolutional discriminator with blur-pool down-sampling (MAGVIT-v2 / StyleGAN style)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tokcodec.model.layers import space_to_depth


class BlurPool3d(nn.Module):
    """Anti-aliased x2 down-sampling: a [1, 2, 1]/4 binomial blur in space (and time), stride 2.

    The blur is written as sums of strided slices instead of a depthwise conv3d, which is very
    slow on CPU (it made GAN steps ~15x slower than plain steps here).
    """

    def __init__(self, temporal: bool) -> None:
        super().__init__()
        self.temporal = temporal

    @staticmethod
    def _blur_down(x: torch.Tensor, dim: int) -> torch.Tensor:
        """Along one dim: replicate-pad by 1, then taps [1, 2, 1]/4 at every second position."""
        n = x.shape[dim]
        span = 2 * ((n + 1) // 2) - 1
        x = torch.cat([x.narrow(dim, 0, 1), x, x.narrow(dim, n - 1, 1)], dim)
        step = [slice(None)] * x.ndim
        step[dim] = slice(None, None, 2)
        a, b, c = (x.narrow(dim, k, span)[tuple(step)] for k in range(3))
        return (a + 2 * b + c) * 0.25

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.temporal:
            x = self._blur_down(x, 2)
        return self._blur_down(self._blur_down(x, 3), 4)


class DiscBlock(nn.Module):
    def __init__(self, cin: int, cout: int, temporal: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(cin, cout, 3, padding=1)
        self.conv2 = nn.Conv3d(cout, cout, 3, padding=1)
        self.pool = BlurPool3d(temporal)
        self.skip = nn.Sequential(BlurPool3d(temporal), nn.Conv3d(cin, cout, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.leaky_relu(self.conv1(x), 0.2)
        h = self.pool(F.leaky_relu(self.conv2(h), 0.2))
        return (h + self.skip(x)) / 2 ** 0.5


class Discriminator(nn.Module):
    """Maps a (B, 3, T, H, W) clip in [-1, 1] to one logit per clip (patch logits averaged).

    A 2x2 space-to-depth stem keeps it affordable on CPU: at full resolution its first blocks cost
    several times the tokenizer itself (GAN steps ran ~8x slower than plain steps here).
    """

    def __init__(self, channels: tuple[int, ...] = (64, 96, 128, 128), patch: int = 2) -> None:
        super().__init__()
        self.patch = patch
        self.conv_in = nn.Conv3d(3 * patch * patch, channels[0], 3, padding=1)
        blocks = []
        for i in range(len(channels) - 1):
            blocks.append(DiscBlock(channels[i], channels[i + 1], temporal=i >= 1))
        self.blocks = nn.Sequential(*blocks)
        self.conv_out = nn.Conv3d(channels[-1], 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.patch > 1:
            x = space_to_depth(x, self.patch)
        h = self.blocks(F.leaky_relu(self.conv_in(x), 0.2))
        return self.conv_out(h).mean(dim=(1, 2, 3, 4))
