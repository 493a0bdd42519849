"""Training data: procedural clips from shipped images, clips cut from a folder of videos, and/or
the real corpus (a folder with a manifest.jsonl made by scripts/training_data.sh; see real.py).

Every source yields float clips (T, 3, H, W) in [0, 1] of the requested size; random crops and
horizontal flips are applied here. Still images are 1-frame clips (joint image-video training).
"""
from __future__ import annotations

import copy
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from tokcodec.errors import InputError
from tokcodec.train.real import RealVideos, corpus_photos, flat_clip, is_corpus
from tokcodec.train.synthetic import (TRAIN_IMAGES, SynthConfig, load_images, render_clip,
                                      validation_clips)

__all__ = ["ClipSampler", "DataConfig", "heldout_clips", "validation_clips"]

@dataclass
class DataConfig:
    sources: tuple[str, ...] = ("synthetic",)  # "synthetic" and/or folders of videos/images
    frames: int = 17
    size: int = 128
    folder_probability: float = 0.5            # share of folder clips when both kinds are given
    real_probability: float = 0.5              # with a corpus: share of clips cut from its videos
    flat_probability: float = 0.05             # with a corpus: share of nearly flat colour fields
    colour_jitter: float = 0.0                 # share of clips given one random tint (per-channel
                                               # gain and offset, the same on every frame)


def random_window(path: Path, frames: int, rng: np.random.Generator,
                  lengths: dict[Path, int]) -> tuple[list[np.ndarray], int]:
    """Up to ``frames`` frames of ``path`` from a random start (reached by a seek), and that
    start. ``lengths`` keeps each file's frame count (probed once); a window that comes back empty
    past the true end (a container that overstates its length) records the start as the count,
    so later draws stay inside."""
    from tokcodec.io import iter_frames, probe

    if path not in lengths:
        lengths[path] = max(1, probe(path).frame_count or 1)
    start = int(rng.integers(0, max(1, lengths[path] - frames + 1)))
    read = list(iter_frames(path, frames, start))
    if not read and start:
        lengths[path] = start
    return read, start


class FolderSource:
    """Random windows of 1+4k frames from the videos (and images) under a folder (or one file).

    A video is read a window of ``cache_frames`` frames at a time, from a random start (reached
    by a seek), and a window is redrawn after ``uses`` samples, so long videos are seen whole, not
    only their first seconds. Frames smaller than the crop are scaled up to it. On a video step
    an image is moved by the synthetic camera (as the corpus's photos are); a file that cannot be
    read is dropped with a word, and only a folder with no usable file left stops training."""

    def __init__(self, root: Path, cache_frames: int = 64, uses: int = 8) -> None:
        from tokcodec.io import media_files

        self.root = root
        self.files = media_files((root,))
        self.cache_frames, self.uses = cache_frames, uses
        self._cache: dict[Path, list] = {}     # path -> [frames, samples left]
        self._lengths: dict[Path, int] = {}
        self.dropped: list[str] = []

    def _frames_of(self, path: Path, rng: np.random.Generator) -> np.ndarray:
        entry = self._cache.get(path)
        if entry is None or entry[1] <= 0:
            from tokcodec.io import iter_frames

            frames, start = random_window(path, self.cache_frames, rng, self._lengths)
            if not frames and start:  # (fewer frames than the container said)
                frames = list(iter_frames(path, self.cache_frames))
            if not frames:
                raise ValueError("no frames decoded")
            if len(self._cache) > 32:
                self._cache.pop(next(iter(self._cache)))
            entry = self._cache[path] = [np.stack(frames), self.uses]
        entry[1] -= 1
        return entry[0]

    def sample(self, rng: np.random.Generator, frames: int, size: int) -> torch.Tensor:
        while self.files:
            path = self.files[rng.integers(len(self.files))]
            try:
                video = self._frames_of(path, rng)
            except Exception as exc:  # noqa: BLE001 - a broken file must not stop training
                self.files.remove(path)
                self.dropped.append(f"{path}: {exc}")
                print(f"training data: left out {path} ({exc})", file=sys.stderr)
                continue
            t, h, w, _ = video.shape
            n = min(frames, 1 + 4 * ((t - 1) // 4))
            if (t == 1 and frames > 1) or (n != frames and frames != 1):
                # a still on a video step (or a video shorter than the window): the synthetic
                # camera moves over its first frame
                still = _as_float(video[:1], size)[0]
                return render_clip(rng, (still,), SynthConfig(frames=frames, height=size, width=size))
            t0 = int(rng.integers(0, t - n + 1))
            if min(h, w) < size:  # scaled up to the crop (only this window's frames)
                video = _as_float(video[t0:t0 + n], size)
                _, _, h, w = video.shape
                y0, x0 = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
                return video[:, :, y0:y0 + size, x0:x0 + size].contiguous()
            y0, x0 = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
            crop = np.ascontiguousarray(video[t0:t0 + n, y0:y0 + size, x0:x0 + size])  # (uint8: crop first)
            return torch.from_numpy(crop).permute(0, 3, 1, 2).float() / 255
        raise RuntimeError(f"{self.root}: no usable video or image left for training "
                           f"({len(self.dropped)} could not be read; the first: {self.dropped[0] if self.dropped else '-'})")


def heldout_clips(paths: tuple[str, ...], frames: int = 17, windows: int = 2, max_height: int = 360,
                  max_width: int = 640, multiple: int = 8) -> list[np.ndarray]:
    """uint8 (T, H, W, 3) validation clips of your own held-out videos and images (``paths``:
    files or folders): ``windows`` evenly spaced windows of ``frames`` frames per video (an image:
    itself), centre-cropped to at most max_height x max_width in multiples of ``multiple``. A file
    that cannot be read is left out with a line on stderr."""
    from tokcodec.errors import TokcodecError
    from tokcodec.io import iter_frames, media_files, probe
    from tokcodec.train.real import centre_crop

    out = []
    for path in media_files([Path(p) for p in paths]):
        try:
            count = max(1, probe(path).frame_count or 1)
            starts = sorted({round(x) for x in np.linspace(0, max(0, count - frames), windows)})
            for start in starts:
                clip = list(iter_frames(path, frames, start))
                if len(clip) == frames or (len(clip) == 1 and count == 1):
                    clip = centre_crop(np.stack(clip), max_height, max_width, multiple)
                    if min(clip.shape[1:3]) >= multiple:
                        out.append(np.ascontiguousarray(clip))
        except TokcodecError as exc:
            print(f"validation data: left out {path} ({exc})", file=sys.stderr)
    if not out:
        raise InputError(f"no validation clip of {frames} frames (or image) in {', '.join(paths)}")
    return out


def _as_float(frames: np.ndarray, size: int) -> torch.Tensor:
    """uint8 (T, H, W, 3) -> float (T, 3, H, W) in [0, 1], scaled up so that both sides are at
    least ``size``."""
    clip = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 255
    h, w = clip.shape[-2:]
    if min(h, w) < size:
        k = size / min(h, w)
        clip = F.interpolate(clip, size=(max(size, round(h * k)), max(size, round(w * k))),
                             mode="bilinear", align_corners=False).clamp_(0, 1)
    return clip


def tint(rng: np.random.Generator, clip: torch.Tensor) -> torch.Tensor:
    """One random colour cast over a whole clip (T, 3, H, W) in [0, 1]: per-channel gain 0.8-1.2
    and offset -0.08..0.08. Per-frame GroupNorm hides such a global shift from the encoder's main
    path, so clips that differ only by it give the level skip a consistent reason to learn."""
    gain = torch.from_numpy(rng.uniform(0.8, 1.2, 3)).float().view(1, 3, 1, 1).to(clip.device)
    offset = torch.from_numpy(rng.uniform(-0.08, 0.08, 3)).float().view(1, 3, 1, 1).to(clip.device)
    return (clip * gain + offset).clamp_(0, 1)


class ClipSampler:
    """Draws training batches (B, 3, T, H, W) in [-1, 1] from the configured sources, on
    ``device``: there the synthetic engine renders (its random draws stay on the CPU, in numpy,
    so a batch does not depend on the device beyond float rounding) and real clips are scaled."""

    def __init__(self, cfg: DataConfig, seed: int | list[int],
                 device: torch.device = torch.device("cpu")) -> None:
        self.cfg = cfg
        self.device = torch.device(device)
        self.rng = np.random.default_rng(seed)
        missing = [s for s in cfg.sources if s != "synthetic" and not Path(s).exists()]
        if missing:  # (else taken for a folder, whose reader imports PyAV: "No module named 'av'" on a GPU box)
            raise InputError(f"training source {missing[0]}: no such file or folder (a training pack is made "
                             "where PyAV is installed: python -m tokcodec.train.pack data/real data/pack)")
        self.synthetic = "synthetic" in cfg.sources
        self.images = load_images(TRAIN_IMAGES) if self.synthetic else ()
        corpora = [Path(s) for s in cfg.sources if s != "synthetic" and is_corpus(Path(s))]
        self.folders = [FolderSource(Path(s)) for s in cfg.sources
                        if s != "synthetic" and not is_corpus(Path(s))]
        self.real: list[RealVideos] = [RealVideos(c) for c in corpora]
        if corpora:  # the synthetic camera engine runs over the corpus's photos too
            self.images = tuple(self.images) + tuple(p for c in corpora for p in corpus_photos(c))
            self.synthetic = True
        self.images = tuple(img.to(self.device) for img in self.images)

    def reseeded(self, seed: int | list[int]) -> "ClipSampler":
        """A sampler over the same loaded data with its own random stream (for worker processes)."""
        twin = copy.copy(self)
        twin.rng = np.random.default_rng(seed)
        return twin

    def _one(self, frames: int) -> torch.Tensor:
        if self.real:
            clip = self._real_or_synthetic(frames)
        else:
            clip = self._folder_or_synthetic(frames)
        if self.rng.random() < 0.5:
            clip = clip.flip(-1)
        if self.cfg.colour_jitter > 0 and self.rng.random() < self.cfg.colour_jitter:
            clip = tint(self.rng, clip)
        return clip

    def _real_or_synthetic(self, frames: int) -> torch.Tensor:
        u = self.rng.random()
        if u < self.cfg.flat_probability:
            return flat_clip(self.rng, frames, self.cfg.size).to(self.device)
        if u < self.cfg.flat_probability + self.cfg.real_probability:
            for _ in range(20):
                clip = self.real[self.rng.integers(len(self.real))].sample(self.rng, frames, self.cfg.size,
                                                                            self.device)
                if clip is not None:
                    return clip
        scfg = SynthConfig(frames=frames, height=self.cfg.size, width=self.cfg.size)
        return render_clip(self.rng, self.images, scfg)

    def _folder_or_synthetic(self, frames: int) -> torch.Tensor:
        use_folder = self.folders and (not self.synthetic or self.rng.random() < self.cfg.folder_probability)
        if use_folder:
            src = self.folders[self.rng.integers(len(self.folders))]
            clip = src.sample(self.rng, frames, self.cfg.size).to(self.device)
        else:
            scfg = SynthConfig(frames=frames, height=self.cfg.size, width=self.cfg.size)
            clip = render_clip(self.rng, self.images, scfg)
        return clip

    def batch(self, batch_size: int, frames: int | None = None) -> torch.Tensor:
        n = self.cfg.frames if frames is None else frames
        clips = [self._one(n) for _ in range(batch_size)]
        return torch.stack(clips).permute(0, 2, 1, 3, 4).mul_(2).sub_(1).contiguous()

    def state(self) -> dict:
        return self.rng.bit_generator.state

    def set_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state
