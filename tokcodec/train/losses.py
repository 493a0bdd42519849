"""Training losses: reconstruction, MS-SSIM (an offline perceptual term), GAN with LeCAM."""
from __future__ import annotations

import torch
import torch.nn.functional as F

_MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def _gaussian_window(size: int = 11, sigma: float = 1.5, device=None) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float32, device=device) - size // 2
    g = torch.exp(-x ** 2 / (2 * sigma ** 2))
    return g / g.sum()


def _ssim_terms(x: torch.Tensor, y: torch.Tensor, win: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean SSIM and contrast-structure terms for (N, C, H, W) images in [0, 1]."""
    c = x.shape[1]
    k = win.numel()
    wx = win.view(1, 1, 1, k).repeat(c, 1, 1, 1)
    wy = win.view(1, 1, k, 1).repeat(c, 1, 1, 1)

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(t, wx, groups=c), wy, groups=c)

    c1, c2 = 0.01 ** 2, 0.03 ** 2
    mx, my = blur(x), blur(y)
    sxx = blur(x * x) - mx * mx
    syy = blur(y * y) - my * my
    sxy = blur(x * y) - mx * my
    cs = (2 * sxy + c2) / (sxx + syy + c2)
    ssim = ((2 * mx * my + c1) / (mx * mx + my * my + c1)) * cs
    return ssim.mean(), cs.mean()


def ms_ssim(x: torch.Tensor, y: torch.Tensor, max_scales: int = 5) -> torch.Tensor:
    """Differentiable MS-SSIM of (N, C, H, W) images in [0, 1]; fewer scales for small images."""
    win = _gaussian_window(device=x.device)
    scales = 1
    while scales < max_scales and min(x.shape[-2:]) // (2 ** scales) >= win.numel():
        scales += 1
    weights = torch.tensor(_MS_SSIM_WEIGHTS[:scales], device=x.device)
    weights = weights / weights.sum()
    values = []
    for i in range(scales):
        ssim, cs = _ssim_terms(x, y, win)
        values.append(F.relu(ssim if i == scales - 1 else cs))
        if i < scales - 1:
            x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
    return torch.prod(torch.stack(values) ** weights)


def video_ms_ssim_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """1 - MS-SSIM over the frames of (B, 3, T, H, W) videos in [-1, 1]."""
    b, c, t, h, w = real.shape
    to_img = lambda v: ((v.float() + 1) / 2).clamp(0, 1).transpose(1, 2).reshape(b * t, c, h, w)
    return 1 - ms_ssim(to_img(real), to_img(fake))


def hinge_d_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    return F.relu(1 - logits_real).mean() + F.relu(1 + logits_fake).mean()


def generator_adv_loss(logits_fake: torch.Tensor) -> torch.Tensor:
    return -logits_fake.mean()


def lecam_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor, ema_real: torch.Tensor,
               ema_fake: torch.Tensor) -> torch.Tensor:
    """LeCAM regulariser (Tseng et al. 2021): keep D's outputs near the EMA of the other side."""
    return (F.relu(logits_real - ema_fake) ** 2).mean() + (F.relu(ema_real - logits_fake) ** 2).mean()
