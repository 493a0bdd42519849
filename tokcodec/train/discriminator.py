"""3D convolutional discriminator with blur-pool down-sampling (MAGVIT-v2 / StyleGAN style)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class BlurPool3d(nn.Module):
    """Anti-aliased x2 down-sampling: a [1, 2, 1] binomial blur in space (and time) then stride 2."""

    def __init__(self, channels: int, temporal: bool) -> None:
        super().__init__()
        k1 = torch.tensor([1.0, 2.0, 1.0])
        kt = k1 if temporal else torch.ones(1)
        kernel = kt.view(-1, 1, 1) * k1.view(1, -1, 1) * k1.view(1, 1, -1)
        kernel = kernel / kernel.sum()
        self.register_buffer("kernel", kernel.expand(channels, 1, *kernel.shape).clone(), persistent=False)
        self.channels, self.temporal = channels, temporal

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pt = 1 if self.temporal else 0
        x = F.pad(x, (1, 1, 1, 1, pt, pt), mode="replicate")
        stride = (2 if self.temporal else 1, 2, 2)
        return F.conv3d(x, self.kernel.to(x.dtype), stride=stride, groups=self.channels)


class DiscBlock(nn.Module):
    def __init__(self, cin: int, cout: int, temporal: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(cin, cout, 3, padding=1)
        self.conv2 = nn.Conv3d(cout, cout, 3, padding=1)
        self.pool = BlurPool3d(cout, temporal)
        self.skip = nn.Sequential(BlurPool3d(cin, temporal), nn.Conv3d(cin, cout, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.leaky_relu(self.conv1(x), 0.2)
        h = self.pool(F.leaky_relu(self.conv2(h), 0.2))
        return (h + self.skip(x)) / 2 ** 0.5


class Discriminator(nn.Module):
    """Maps a (B, 3, T, H, W) clip in [-1, 1] to one logit per clip (patch logits averaged)."""

    def __init__(self, channels: tuple[int, ...] = (32, 64, 128, 128)) -> None:
        super().__init__()
        self.conv_in = nn.Conv3d(3, channels[0], 3, padding=1)
        blocks = []
        for i in range(len(channels) - 1):
            blocks.append(DiscBlock(channels[i], channels[i + 1], temporal=i >= 1))
        self.blocks = nn.Sequential(*blocks)
        self.conv_out = nn.Conv3d(channels[-1], 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.blocks(F.leaky_relu(self.conv_in(x), 0.2))
        return self.conv_out(h).mean(dim=(1, 2, 3, 4))
