"""Procedural natural-statistics video built only from images that installed packages ship.

Clips are camera moves (pan, zoom, rotation with smooth jitter) over a natural photo from
scikit-image / scikit-learn, with independently moving layers cut from other photos (occlusion,
parallax), lighting changes, blur, noise and scene cuts. Some images are held out of training
entirely and used, with fixed trajectories, for validation.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

TRAIN_IMAGES = ("astronaut", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry",
                "retina", "stereo_motorcycle", "colorwheel", "sklearn:flower.jpg", "camera",
                "coins", "brick", "moon", "logo")
VALIDATION_IMAGES = ("chelsea", "sklearn:china.jpg")


def load_image(name: str) -> np.ndarray:
    """A bundled image as uint8 RGB (H, W, 3): a scikit-image name, or 'sklearn:FILE'."""
    if name.startswith("sklearn:"):
        try:
            from sklearn.datasets import load_sample_image
        except ImportError:  # (a plain `pip install tokcodec`: "unexpected ModuleNotFoundError")
            from tokcodec.errors import SetupError
            raise SetupError("the synthetic clips (train, fit-prior, bench) use scikit-learn's sample "
                             "photos: pip install 'tokcodec[train]' (or [bench])") from None
        img = load_sample_image(name.split(":", 1)[1])
    else:
        import skimage.data
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img = getattr(skimage.data, name)()
        if isinstance(img, tuple):
            img = img[0]
    img = np.asarray(img)
    if img.dtype != np.uint8:
        img = (np.clip(img.astype(np.float64), 0, 1) * 255).astype(np.uint8)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    return np.ascontiguousarray(img[..., :3])


@lru_cache(maxsize=None)
def load_images(names: tuple[str, ...]) -> tuple[torch.Tensor, ...]:
    """Images as float tensors (3, H, W) in [0, 1]."""
    return tuple(torch.from_numpy(load_image(n).copy()).permute(2, 0, 1).float().div_(255) for n in names)


@dataclass
class SynthConfig:
    frames: int = 17
    height: int = 128
    width: int = 128
    max_layers: int = 3
    max_speed: float = 6.0        # camera pan, output pixels per frame
    max_zoom_rate: float = 0.03   # relative zoom change per frame
    max_rotation: float = 0.02    # radians per frame
    cut_probability: float = 0.1
    noise_probability: float = 0.3
    blur_probability: float = 0.2
    tint_gray: bool = True


def _camera_theta(n: int, out_hw: tuple[int, int], in_hw: tuple[int, int], center: np.ndarray,
                  velocity: np.ndarray, zoom0: float, zoom_rate: float, angle0: float,
                  spin: float, jitter: np.ndarray) -> torch.Tensor:
    """Affine grids (n, 2, 3) mapping output normalised coords to input normalised coords."""
    h, w = out_hw
    H, W = in_hw
    t = np.arange(n)
    cx = center[0] + velocity[0] * t + jitter[:, 0]
    cy = center[1] + velocity[1] * t + jitter[:, 1]
    z = zoom0 * np.exp(zoom_rate * t)
    a = angle0 + spin * t
    cos, sin = np.cos(a), np.sin(a)
    theta = np.zeros((n, 2, 3))
    theta[:, 0, 0] = z * (w / 2) * cos / (W / 2)
    theta[:, 0, 1] = -z * (h / 2) * sin / (W / 2)
    theta[:, 0, 2] = cx / (W / 2)
    theta[:, 1, 0] = z * (w / 2) * sin / (H / 2)
    theta[:, 1, 1] = z * (h / 2) * cos / (H / 2)
    theta[:, 1, 2] = cy / (H / 2)
    return torch.from_numpy(theta).float()


def _warp(img: torch.Tensor, theta: torch.Tensor, size: tuple[int, int], padding: str) -> torch.Tensor:
    n = theta.shape[0]
    grid = F.affine_grid(theta.to(img.device), [n, img.shape[0], size[0], size[1]], align_corners=False)
    return F.grid_sample(img.unsqueeze(0).expand(n, -1, -1, -1), grid, mode="bilinear",
                         padding_mode=padding, align_corners=False)


def _smooth_jitter(rng: np.random.Generator, n: int, amplitude: float) -> np.ndarray:
    raw = rng.normal(0, amplitude, size=(n + 4, 2))
    kernel = np.array([1, 4, 6, 4, 1], dtype=np.float64) / 16
    return np.stack([np.convolve(raw[:, i], kernel, mode="valid") for i in range(2)], 1)[:n]


def _blob_mask(rng: np.random.Generator, size: int) -> torch.Tensor:
    """A soft random blob (ellipse warped by low-frequency noise), (1, size, size) in [0, 1]."""
    yy, xx = np.mgrid[-1:1:size * 1j, -1:1:size * 1j]
    ax, ay = rng.uniform(0.5, 0.95, 2)
    ang = rng.uniform(0, math.pi)
    xr = xx * math.cos(ang) + yy * math.sin(ang)
    yr = -xx * math.sin(ang) + yy * math.cos(ang)
    r = np.sqrt((xr / ax) ** 2 + (yr / ay) ** 2)
    phi = np.arctan2(yr, xr)
    wobble = sum(rng.uniform(-0.12, 0.12) * np.cos(k * phi + rng.uniform(0, 6.28)) for k in (2, 3, 5))
    edge = rng.uniform(0.01, 0.08)
    mask = np.clip((1 + wobble - r) / edge, 0, 1)
    return torch.from_numpy(mask).float().unsqueeze(0)


def _scene(rng: np.random.Generator, images: tuple[torch.Tensor, ...], cfg: SynthConfig,
           n: int) -> torch.Tensor:
    h, w = cfg.height, cfg.width
    bg = images[rng.integers(len(images))]
    dev = bg.device  # the whole clip renders where the images are (a GPU renders ~3x faster
                     # than 16 CPU processes); every random draw stays in numpy
    if cfg.tint_gray and float((bg[0] - bg[1]).abs().mean()) < 1e-3:
        bg = bg * torch.from_numpy(rng.uniform(0.6, 1.0, 3)).float().view(3, 1, 1).to(dev)
    H, W = bg.shape[1:]
    # zoom = input pixels per output pixel; bounded so the view stays mostly inside the image
    # (camera video has a natural detail density: mostly 0.7-2 source pixels per output pixel)
    max_zoom = min(H / h, W / w, 2.0) * 0.9
    zoom0 = float(np.exp(rng.uniform(np.log(min(0.7, max_zoom)), np.log(max(max_zoom, 0.71)))))
    zoom_rate = rng.uniform(-cfg.max_zoom_rate, cfg.max_zoom_rate) * (rng.random() < 0.5)
    spin = rng.uniform(-cfg.max_rotation, cfg.max_rotation) * (rng.random() < 0.3)
    angle0 = rng.uniform(-0.3, 0.3) * (rng.random() < 0.3)
    speed = rng.uniform(0, cfg.max_speed) * zoom0
    direction = rng.uniform(0, 2 * math.pi)
    velocity = np.array([math.cos(direction), math.sin(direction)]) * speed
    center = np.array([rng.uniform(-0.3, 0.3) * W, rng.uniform(-0.3, 0.3) * H])
    jitter = _smooth_jitter(rng, n, rng.uniform(0, 1.5) * zoom0)
    theta = _camera_theta(n, (h, w), (H, W), center, velocity, zoom0, zoom_rate, angle0, spin, jitter)
    video = _warp(bg, theta, (h, w), "reflection")

    for _ in range(rng.integers(0, cfg.max_layers + 1)):
        src = images[rng.integers(len(images))]
        side = int(rng.integers(24, max(25, min(src.shape[1:]) // 2)))
        y0 = int(rng.integers(0, src.shape[1] - side + 1))
        x0 = int(rng.integers(0, src.shape[2] - side + 1))
        patch = torch.cat([src[:, y0:y0 + side, x0:x0 + side], _blob_mask(rng, side).to(dev)], 0)
        scale = rng.uniform(0.15, 0.6) * min(h, w) / side       # output pixels per patch pixel
        pos = np.array([rng.uniform(-0.5, 0.5) * w, rng.uniform(-0.5, 0.5) * h])
        vel = rng.normal(0, cfg.max_speed / 2, 2)
        spin_l = rng.uniform(-0.05, 0.05) * (rng.random() < 0.4)
        growth = rng.uniform(-0.02, 0.02) * (rng.random() < 0.4)
        # output -> patch mapping is the inverse of the layer's placement
        t = np.arange(n)
        sc = scale * np.exp(growth * t)
        ang = spin_l * t
        px, py = pos[0] + vel[0] * t, pos[1] + vel[1] * t
        theta_l = np.zeros((n, 2, 3))
        cos, sin = np.cos(-ang), np.sin(-ang)
        # patch normalised = R(-a) * (out_px - pos) / (scale * side / 2)
        k = 1.0 / (sc * side / 2)
        theta_l[:, 0, 0] = k * cos * (w / 2)
        theta_l[:, 0, 1] = -k * sin * (h / 2)
        theta_l[:, 0, 2] = -k * (cos * px - sin * py)
        theta_l[:, 1, 0] = k * sin * (w / 2)
        theta_l[:, 1, 1] = k * cos * (h / 2)
        theta_l[:, 1, 2] = -k * (sin * px + cos * py)
        layer = _warp(patch, torch.from_numpy(theta_l).float(), (h, w), "zeros")
        alpha = layer[:, 3:4]
        video = video * (1 - alpha) + layer[:, :3] * alpha

    t = torch.arange(n, dtype=torch.float32, device=dev).view(n, 1, 1, 1)
    if rng.random() < 0.3:  # lighting change
        gain = 1 + rng.uniform(-0.4, 0.4) * t / max(n - 1, 1)
        video = video * gain
    if rng.random() < cfg.blur_probability:
        sigma = rng.uniform(0.5, 1.5)
        radius = int(math.ceil(2 * sigma))
        xs = torch.arange(-radius, radius + 1, dtype=torch.float32, device=dev)
        kern = torch.exp(-xs ** 2 / (2 * sigma ** 2))
        kern = kern / kern.sum()
        video = F.conv2d(F.pad(video, (radius, radius, 0, 0), mode="replicate"),
                         kern.view(1, 1, 1, -1).repeat(3, 1, 1, 1), groups=3)
        video = F.conv2d(F.pad(video, (0, 0, radius, radius), mode="replicate"),
                         kern.view(1, 1, -1, 1).repeat(3, 1, 1, 1), groups=3)
    if rng.random() < cfg.noise_probability:
        video = video + torch.from_numpy(rng.normal(0, rng.uniform(0.005, 0.03), video.shape)).float().to(dev)
    return video.clamp_(0, 1)


def render_clip(rng: np.random.Generator, images: tuple[torch.Tensor, ...], cfg: SynthConfig) -> torch.Tensor:
    """One clip, float (T, 3, H, W) in [0, 1], possibly with a scene cut."""
    n = cfg.frames
    if n > 2 and rng.random() < cfg.cut_probability:
        cut = int(rng.integers(1, n))
        return torch.cat([_scene(rng, images, cfg, cut), _scene(rng, images, cfg, n - cut)], 0)
    return _scene(rng, images, cfg, n)


def validation_clips(frames: int = 17, height: int = 128, width: int = 128, count: int = 8,
                     seed: int = 1234, max_layers: int = 3) -> list[np.ndarray]:
    """Fixed clips from the held-out images with camera motion: uint8 arrays (T, H, W, 3)."""
    images = load_images(VALIDATION_IMAGES)
    cfg = SynthConfig(frames=frames, height=height, width=width, cut_probability=0.0,
                      noise_probability=0.0, blur_probability=0.0, max_layers=max_layers)
    rng = np.random.default_rng(seed)
    clips = []
    for i in range(count):
        clip = _scene(rng, (images[i % len(images)],), cfg, frames)
        clips.append((clip.permute(0, 2, 3, 1).numpy() * 255 + 0.5).astype(np.uint8))
    return clips
