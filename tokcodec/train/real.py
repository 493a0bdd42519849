"""Training and validation data from the real corpus (tokcodec/train/corpus.py).

- :class:`RealVideos`: every training video decoded once into memory (uint8); clips are random
  windows (time stride 1 or 2), random crops at a random down-scale (0.5-1: detail as in a larger
  video shown smaller; a video smaller than the crop, down to 3/4 of it, scaled up), flips are
  added by the sampler. Grayscale sequences are used as they are
  (neutral clips teach the model that grey stays grey).
- :func:`corpus_photos`: the training photos as float tensors for the synthetic camera engine
  and as still images (joint image-video training), downscaled to at most ``max_side``.
- :func:`holdout_clips`: fixed windows of the held-out videos, at their own size cropped to
  multiples of 8 (the real-video validation set; never trained on).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from tokcodec.train.corpus import read_manifest


def is_corpus(path: Path) -> bool:
    return (path / "manifest.jsonl").exists()


def _load_video(path: Path, max_frames: int | None) -> np.ndarray:
    """A video file (PyAV), or a folder of same-sized frames (a training pack: no decoder needed)."""
    if path.is_dir():
        return _load_frame_folder(path, max_frames)
    from tokcodec.io import read_frames

    return read_frames(path, max_frames=max_frames)


def _load_frame_folder(folder: Path, max_frames: int | None) -> np.ndarray:
    from PIL import Image

    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".png"))[:max_frames]
    if not files:
        raise FileNotFoundError(f"{folder}: no frames")
    frames = []
    for f in files:
        with Image.open(f) as im:
            frames.append(np.asarray(im.convert("RGB")))
    if any(fr.shape != frames[0].shape for fr in frames):
        raise ValueError(f"{folder}: frames of different sizes")
    return np.stack(frames)


class RealVideos:
    """Random clips (T, 3, size, size) in [0, 1] from the corpus's training videos."""

    def __init__(self, corpus: Path, max_frames: int = 2000, split: str = "train") -> None:
        entries = [e for e in read_manifest(corpus) if e.kind == "video" and e.split == split]
        if not entries:
            raise FileNotFoundError(f"{corpus}: no {split} videos in the manifest")
        self.names = [e.file for e in entries]
        self.videos = [_load_video(corpus / e.file, max_frames) for e in entries]
        # draw videos by the square root of their length: long ones count more, without one
        # 4,800-frame clip of a single face taking half of every batch
        weight = np.sqrt([len(v) for v in self.videos])
        self.p = weight / weight.sum()
        self._usable_cache: dict[tuple[int, int], np.ndarray] = {}

    def sample(self, rng: np.random.Generator, frames: int, size: int,
               device: torch.device = torch.device("cpu")) -> torch.Tensor | None:
        """A clip, or None when no video can give one (long and large enough). Drawn among the videos
        that can give one: a pack's windows of 25 frames could never give a 17-frame clip at time
        stride 2, and videos smaller than the crop were drawn and dropped (3 of 10, a third of
        the draws, with 256-pixel crops). A video down to 3/4 of the crop is scaled up to it (no
        more: a softer picture than the videos' own)."""
        usable = self._usable(frames, size)
        if not usable.any():
            return None
        p = np.where(usable, self.p, 0.0)
        video = self.videos[rng.choice(len(self.videos), p=p / p.sum())]
        t, h, w, _ = video.shape
        stride = 2 if frames > 1 and rng.random() < 0.25 and t >= 2 * (frames - 1) + 1 else 1
        span = (frames - 1) * stride + 1
        low = max(0.5, size / min(h, w))
        if low <= 1.0:
            scale = float(np.exp(rng.uniform(np.log(low), 0.0))) if rng.random() < 0.5 else 1.0
        else:  # a video smaller than the crop: all of its short side, scaled up
            scale = low
        side = min(int(round(size / scale)), h, w)
        t0 = int(rng.integers(0, t - span + 1))
        y0, x0 = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        clip = video[t0:t0 + span:stride, y0:y0 + side, x0:x0 + side]
        out = torch.from_numpy(np.ascontiguousarray(clip)).to(device).permute(0, 3, 1, 2).float().div_(255)
        if side > size:
            out = F.interpolate(out, size=(size, size), mode="area")
        elif side < size:
            out = F.interpolate(out, size=(size, size), mode="bilinear", align_corners=False)
        return out

    def _usable(self, frames: int, size: int) -> np.ndarray:
        """Which videos hold ``frames`` frames and at least 3/4 of ``size`` on their short side."""
        key = (frames, size)
        if key not in self._usable_cache:
            self._usable_cache[key] = np.array([len(v) >= frames and 4 * min(v.shape[1:3]) >= 3 * size
                                                for v in self.videos])
        return self._usable_cache[key]


def corpus_photos(corpus: Path, max_side: int = 1280, split: str = "train") -> tuple[torch.Tensor, ...]:
    """The corpus's photos as float (3, H, W) tensors in [0, 1], long side at most ``max_side``."""
    from PIL import Image

    out = []
    for e in read_manifest(corpus):
        if e.kind != "photo" or e.split != split:
            continue
        with Image.open(corpus / e.file) as im:
            im = im.convert("RGB")
            if max(im.size) > max_side:
                k = max_side / max(im.size)
                im = im.resize((max(1, round(im.size[0] * k)), max(1, round(im.size[1] * k))),
                               Image.Resampling.LANCZOS)
            out.append(torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1).float().div_(255))
    if not out:
        raise FileNotFoundError(f"{corpus}: no {split} photos in the manifest")
    return tuple(out)


def centre_crop(video: np.ndarray, max_height: int, max_width: int, multiple: int) -> np.ndarray:
    """The centre of (T, H, W, C) frames, at most max_height x max_width, in multiples of ``multiple``."""
    h, w = video.shape[1:3]
    ch, cw = min(h, max_height) // multiple * multiple, min(w, max_width) // multiple * multiple
    y0, x0 = (h - ch) // 2, (w - cw) // 2
    return video[:, y0:y0 + ch, x0:x0 + cw]


def holdout_clips(corpus: Path, frames: int = 17, windows: int = 2, multiple: int = 8,
                  max_height: int = 360, max_width: int = 640) -> list[tuple[str, np.ndarray]]:
    """(name, uint8 (T, H, W, 3)) windows of the held-out videos: ``windows`` evenly spaced
    windows of ``frames`` frames per video, centre-cropped to at most max_height x max_width
    and to multiples of ``multiple``."""
    return corpus_clips(corpus, "holdout", frames, windows, multiple, max_height, max_width)


def corpus_clips(corpus: Path, split: str, frames: int = 17, windows: int = 2, multiple: int = 8,
                 max_height: int = 360, max_width: int = 640) -> list[tuple[str, np.ndarray]]:
    """``holdout_clips`` of the videos of ``split`` ("holdout" or "train"; grayscale training
    sequences are left out: a setting tuned on the training videos is tuned on colour ones)."""
    out = []
    for e in read_manifest(corpus):
        if e.kind != "video" or e.split != split or (split == "train" and e.grayscale):
            continue
        video = centre_crop(_load_video(corpus / e.file, max_frames=None), max_height, max_width, multiple)
        t = len(video)
        starts = np.unique(np.linspace(0, t - frames, windows).round().astype(int)) if t >= frames else []
        for k, s in enumerate(starts):
            out.append((f"{Path(e.file).stem}#{k}", np.ascontiguousarray(video[s:s + frames])))
    return out


def holdout_photos(corpus: Path, max_height: int = 360, max_width: int = 640,
                   multiple: int = 8) -> list[tuple[str, np.ndarray]]:
    """(name, uint8 (1, H, W, 3)): each held-out photo scaled to fit max_height x max_width
    (cover, then centre crop), cropped to multiples of ``multiple``."""
    from PIL import Image

    out = []
    for e in read_manifest(corpus):
        if e.kind != "photo" or e.split != "holdout":
            continue
        with Image.open(corpus / e.file) as im:
            im = im.convert("RGB")
            k = max(max_width / im.size[0], max_height / im.size[1])
            im = im.resize((max(max_width, round(im.size[0] * k)), max(max_height, round(im.size[1] * k))),
                           Image.Resampling.LANCZOS)
            a = np.asarray(im)
        out.append((Path(e.file).stem, np.ascontiguousarray(centre_crop(a[None], max_height, max_width, multiple))))
    return out


def flat_clip(rng: np.random.Generator, frames: int, size: int) -> torch.Tensor:
    """A nearly flat field: one random colour, a gentle gradient, slow drift and a little noise
    (T, 3, size, size) in [0, 1]. Real video is full of such areas (sky, walls, roads) and the
    photos behind the synthetic engine have few; a codec must keep their colour exactly."""
    base = torch.from_numpy(rng.uniform(0.05, 0.95, 3)).float().view(1, 3, 1, 1)
    if rng.random() < 0.4:  # neutral grey: the commonest flat colour, and the least forgiving
        base = base[:, :1].expand(1, 3, 1, 1)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    g = torch.from_numpy(rng.normal(0, 0.06, (2, 3))).float()
    grad = g[0].view(3, 1, 1) * xx + g[1].view(3, 1, 1) * yy
    t = torch.linspace(0, 1, frames).view(frames, 1, 1, 1)
    drift = torch.from_numpy(rng.normal(0, 0.03, 3)).float().view(1, 3, 1, 1) * t
    clip = base + grad.unsqueeze(0) + drift
    noise = rng.uniform(0, 0.02)
    clip = clip + torch.from_numpy(rng.normal(0, noise, (frames, 3, size, size))).float()
    return clip.clamp_(0, 1)
