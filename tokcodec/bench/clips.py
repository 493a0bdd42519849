"""Small deterministic bench clips made from scikit-image's bundled natural images.

Nothing is downloaded: chelsea (scikit-image) and china (scikit-learn) ship inside the wheels,
and both are held out of tokcodec's training, so the bench measures unseen content. Each clip
is a camera path (pan, zoom) over a still image, sampled with bilinear interpolation at sub-pixel
positions, or moving anti-aliased objects over a background, so motion is smooth and realistic
enough for inter prediction. The same call gives the same pixels on every run; clips are written
as lossless RGB FFV1 .mkv (so the bench's reference is exact) and can be made at any size, e.g.
128x72 for tests or 640x360 for the sweep.
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

__all__ = ["CLIPS", "ClipSpec", "render", "generate"]


@dataclass(frozen=True)
class ClipSpec:
    name: str
    description: str
    render: Callable[[int, int, int], np.ndarray]  # (width, height, frames) -> (T, H, W, 3) uint8


def _image(name: str) -> np.ndarray:
    from tokcodec.train.synthetic import load_image

    return load_image(name).astype(np.float32)


def _prescale(img: np.ndarray, factor: float) -> np.ndarray:
    """Anti-aliased down-scaling when the camera shrinks the image (only for small outputs)."""
    if factor >= 0.999:
        return img
    from skimage.transform import rescale

    return rescale(img, factor, channel_axis=-1, anti_aliasing=True, preserve_range=True, order=1).astype(np.float32)


def _sample(img: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Bilinear samples of img (H, W, 3) on the separable grid ys x xs (edge-clamped)."""
    h, w = img.shape[:2]
    ys = np.clip(ys, 0, h - 1)
    xs = np.clip(xs, 0, w - 1)
    y0 = np.minimum(np.floor(ys).astype(np.int64), h - 2)
    x0 = np.minimum(np.floor(xs).astype(np.int64), w - 2)
    fy = (ys - y0).astype(np.float32)[:, None, None]
    fx = (xs - x0).astype(np.float32)[None, :, None]
    rows = img[y0] * (1 - fy) + img[y0 + 1] * fy
    return rows[:, x0] * (1 - fx) + rows[:, x0 + 1] * fx


def _camera(img: np.ndarray, width: int, height: int, x0: float, y0: float, src_w: float) -> np.ndarray:
    """The output frame showing the source window at (x0, y0) of width src_w (aspect kept)."""
    src_h = src_w * height / width
    xs = x0 + (np.arange(width) + 0.5) * (src_w / width) - 0.5
    ys = y0 + (np.arange(height) + 0.5) * (src_h / height) - 0.5
    return _sample(img, ys, xs)


def _ease(t: np.ndarray | float) -> np.ndarray | float:
    return 0.5 - 0.5 * np.cos(np.pi * np.asarray(t))


def _to_u8(frames: Sequence[np.ndarray]) -> np.ndarray:
    return np.clip(np.rint(np.stack(frames)), 0, 255).astype(np.uint8)


def _pan_china(width: int, height: int, frames: int) -> np.ndarray:
    """A diagonal pan over scikit-learn's china photo (640x427), window 400 source pixels wide."""
    src_w = 400.0
    img = _image("sklearn:china.jpg")
    f = min(1.0, width / src_w)
    img = _prescale(img, f)
    s = img.shape[1] / 640.0
    src_h = src_w * height / width
    out = []
    for i in range(frames):
        t = _ease(i / max(frames - 1, 1))
        x0 = (10 + 200 * t) * s
        y0 = (10 + (427 - src_h - 20) * t) * s
        out.append(_camera(img, width, height, x0, y0, src_w * s))
    return _to_u8(out)


def _zoom_chelsea(width: int, height: int, frames: int) -> np.ndarray:
    """A slow zoom into the cat's face (chelsea, 451x300), from the full width to 1/1.6 of it."""
    img = _image("chelsea")
    W, H = 451.0, 300.0
    f = min(1.0, width / W)
    img = _prescale(img, f)
    s = img.shape[1] / W
    cx, cy = 200.0, 120.0
    out = []
    for i in range(frames):
        t = _ease(i / max(frames - 1, 1))
        src_w = W / (1.0 + 0.6 * t)
        src_h = src_w * height / width
        x0 = np.clip(cx - src_w / 2, 0, W - src_w)
        y0 = np.clip(cy - src_h / 2, 0, H - src_h)
        out.append(_camera(img, width, height, x0 * s, y0 * s, src_w * s))
    return _to_u8(out)


def _objects(width: int, height: int, frames: int) -> np.ndarray:
    """Anti-aliased moving objects over a slowly panning background (chelsea, 451x300).

    A bouncing orange disc, a rotating blue square and a textured patch (a crop of the china photo)
    sliding across; sizes are relative to the frame so any resolution looks the same.
    """
    bg_img = _image("chelsea")
    bg_img = _prescale(bg_img, min(1.0, width / 400.0))
    bs = bg_img.shape[1] / 451.0
    face = _image("sklearn:china.jpg")[60:260, 200:380]  # 200x180 (the pagoda)
    fh = 0.35 * height
    face = _prescale(face, min(1.0, fh / face.shape[0]))
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32) + 0.5
    unit = height / 360.0
    out = []
    for i in range(frames):
        t = i / max(frames - 1, 1)
        frame = _camera(bg_img, width, height, (20 + 30 * t) * bs, 10 * bs, 400 * bs).copy()
        # disc: bouncing along a parabola
        r = 38 * unit
        cx = width * (0.15 + 0.6 * t)
        cy = height * (0.75 - 0.9 * t * (1 - t) * 2)
        a = np.clip(r - np.hypot(xx - cx, yy - cy) + 0.5, 0, 1)[..., None]
        frame = frame * (1 - a) + np.array([235, 140, 40], np.float32) * a
        # rotating square (signed distance to a box in its own frame)
        ang = 1.2 * np.pi * t
        qx, qy = width * (0.8 - 0.25 * t), height * 0.3
        u = (xx - qx) * np.cos(ang) + (yy - qy) * np.sin(ang)
        v = -(xx - qx) * np.sin(ang) + (yy - qy) * np.cos(ang)
        half = 30 * unit
        sd = np.maximum(np.abs(u), np.abs(v)) - half
        a = np.clip(0.5 - sd, 0, 1)[..., None]
        frame = frame * (1 - a) + np.array([40, 90, 220], np.float32) * a
        # textured patch sliding right to left at a sub-pixel speed
        ph, pw = face.shape[:2]
        px = width * (0.95 - 0.75 * t) - pw
        py = height * 0.08
        lx, ly = xx - px - 0.5, yy - py - 0.5  # patch coordinates of each output pixel
        inside = np.clip(np.minimum.reduce([lx + 0.5, pw - 0.5 - lx, ly + 0.5, ph - 0.5 - ly]), 0, 1)[..., None]
        y0, y1 = int(max(0, np.floor(py))), int(min(height, np.ceil(py + ph)))
        x0, x1 = int(max(0, np.floor(px))), int(min(width, np.ceil(px + pw)))
        if y1 > y0 and x1 > x0:
            patch = _sample(face, ly[y0:y1, 0], lx[0, x0:x1])
            al = inside[y0:y1, x0:x1]
            frame[y0:y1, x0:x1] = frame[y0:y1, x0:x1] * (1 - al) + patch * al
        out.append(frame)
    return _to_u8(out)


CLIPS: dict[str, ClipSpec] = {
    "pan_china": ClipSpec("pan_china", "diagonal camera pan over scikit-learn's china photo", _pan_china),
    "zoom_chelsea": ClipSpec("zoom_chelsea", "zoom into skimage chelsea (the cat)", _zoom_chelsea),
    "objects": ClipSpec("objects", "moving disc, rotating square and sliding textured patch over chelsea", _objects),
}


def render(name: str, width: int = 640, height: int = 360, frames: int = 65) -> np.ndarray:
    """The frames of clip ``name`` as (T, H, W, 3) uint8."""
    if name not in CLIPS:
        raise KeyError(f"unknown clip {name!r}; choose from {', '.join(CLIPS)}")
    return CLIPS[name].render(width, height, frames)


def generate(out_dir: Path, names: Optional[Sequence[str]] = None, *, width: int = 640, height: int = 360,
             frames: int = 65, fps: Fraction = Fraction(30), overwrite: bool = False) -> list[Path]:
    """Write the clips as lossless RGB FFV1 ``<name>.mkv`` into ``out_dir``; returns their paths."""
    from tokcodec.bench.reference import write_ffv1_rgb

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in names or list(CLIPS):
        path = out_dir / f"{name}.mkv"
        if overwrite or not path.exists():
            write_ffv1_rgb(render(name, width, height, frames), path, fps)
        paths.append(path)
    return paths
