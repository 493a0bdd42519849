"""A training pack: a size-capped copy of the real corpus that trains with no video decoder.

Made here, where PyAV is installed, and carried to a machine that has none or that takes only a few
MiB along (a lent GPU: scripts/gpu_train.sh). It is a corpus like any other (the same manifest.jsonl,
read by RealVideos, corpus_photos and holdout_clips), except that:
- photos are scaled to at most ``photo_side`` pixels and re-saved as JPEG;
- each video becomes windows of ``window`` consecutive frames, each a folder of JPEG frames
  (``train/videos/PACKAGE/NAME.wNN/0000.jpg``), scaled to a short side of at most ``video_short``. Windows are
  taken round-robin over the videos, spread evenly through each, until the size cap is reached;
- each held-out video keeps its first validation window (the one holdout_clips takes first, centre
  crop at most 640 x 360) at JPEG quality 92. PSNR on the pack's held-out windows is therefore
  measured against a JPEG copy: compare it within packs, and evaluate shipped weights on the
  corpus itself.

    python -m tokcodec.train.pack data/real data/pack --max-mib 40
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from tokcodec.train.corpus import Entry, read_manifest, summary, write_manifest

PACK_INFO = "pack.json"


@dataclass(frozen=True)
class PackConfig:
    max_mib: float = 40.0     # the whole pack, photos and held-out windows included (40: beside a
    #                           slim tree, 13 MiB, within the 64 MiB that travel to a lent GPU)
    photo_side: int = 512     # long side of photos
    video_short: int = 320    # short side of training video frames (at most): 256-pixel crops at down-scales of 0.8-1
    window: int = 33          # frames per training window (17-frame clips at time stride 2 fit)
    quality: int = 88         # JPEG quality (held-out windows: 92)
    holdout_frames: int = 17  # frames of each held-out window (the trainer validates on 17; 0: none)


def _jpeg(array: np.ndarray, path: Path, quality: int) -> int:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, quality=quality)
    return path.stat().st_size


def _scaled(frames: np.ndarray, short: int) -> np.ndarray:
    """(T, H, W, 3) uint8 scaled (area) so that the short side is at most ``short``."""
    import torch
    import torch.nn.functional as F

    h, w = frames.shape[1:3]
    k = short / min(h, w)
    if k >= 1:
        return frames
    size = (max(8, round(h * k)), max(8, round(w * k)))
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
    out = F.interpolate(x, size=size, mode="area").round().clamp(0, 255).to(torch.uint8)
    return out.permute(0, 2, 3, 1).contiguous().numpy()


def _window_starts(frames: int, window: int) -> list[int]:
    """Non-overlapping windows spread evenly through a video, in the order they are taken:
    the middle first, then ever finer (so a small budget still spans each video)."""
    count = frames // window
    if count == 0:
        return []
    slots = np.linspace(0, frames - window, count).round().astype(int).tolist()
    order: list[int] = []
    step = len(slots)
    while step >= 1:
        for i in range(step // 2, len(slots), step):
            if slots[i] not in order:
                order.append(slots[i])
        step //= 2  # the last pass (step 1) takes whatever is left
    return order


def build_pack(corpus: Path, out: Path, cfg: PackConfig = PackConfig()) -> list[Entry]:
    """Write the pack of ``corpus`` into ``out`` (which must not exist or be empty)."""
    from PIL import Image

    from tokcodec.io import read_frames
    from tokcodec.train.real import centre_crop

    entries = read_manifest(corpus)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out}: not empty; a pack is written into a new folder")
    budget = int(cfg.max_mib * 2**20)
    used = 0
    packed: list[Entry] = []

    for e in (e for e in entries if e.kind == "video" and e.split == "holdout" and cfg.holdout_frames > 0):
        video = read_frames(corpus / e.file, max_frames=cfg.holdout_frames)
        video = centre_crop(video, 360, 640, 8)
        folder = Path(e.file).with_suffix("")
        for i, frame in enumerate(video):
            used += _jpeg(frame, out / folder / f"{i:04d}.jpg", 92)
        packed.append(replace(e, file=str(folder), width=video.shape[2], height=video.shape[1],
                              frames=len(video), origin=f"{e.origin}#0-{len(video) - 1}"))

    for e in (e for e in entries if e.kind == "photo" and e.split == "train"):
        with Image.open(corpus / e.file) as im:
            im = im.convert("RGB")
            k = min(1.0, cfg.photo_side / max(im.size))
            if k < 1:
                im = im.resize((max(1, round(im.size[0] * k)), max(1, round(im.size[1] * k))),
                               Image.Resampling.LANCZOS)
            array = np.asarray(im)
        dest = Path(e.file).with_suffix(".jpg")
        size = _jpeg(array, out / dest, cfg.quality)
        if used + size > budget:
            raise ValueError(f"--max-mib {cfg.max_mib}: the photos alone do not fit; give more, or a "
                             f"smaller --photo-side than {cfg.photo_side}")
        used += size
        packed.append(replace(e, file=str(dest), width=array.shape[1], height=array.shape[0]))

    videos = [e for e in entries if e.kind == "video" and e.split == "train"]
    queues = {e.file: _window_starts(e.frames, cfg.window) for e in videos}
    cache: dict[str, np.ndarray] = {}
    full = False
    while not full and any(queues.values()):
        for e in videos:
            if not queues[e.file]:
                continue
            start = queues[e.file].pop(0)
            if e.file not in cache:
                cache.clear()  # one decoded video in memory at a time
                cache[e.file] = read_frames(corpus / e.file)
            frames = _scaled(cache[e.file][start:start + cfg.window], cfg.video_short)
            if len(frames) < cfg.window:
                continue
            folder = Path(e.file).with_name(f"{Path(e.file).stem}.w{start:05d}")
            sizes = 0
            for i, frame in enumerate(frames):
                sizes += _jpeg(frame, out / folder / f"{i:04d}.jpg", cfg.quality)
            if used + sizes > budget:
                shutil.rmtree(out / folder)
                full = True
                break
            used += sizes
            packed.append(replace(e, file=str(folder), width=frames.shape[2], height=frames.shape[1],
                                  frames=len(frames), origin=f"{e.origin}#{start}-{start + len(frames) - 1}"))
    write_manifest(out, packed)
    (out / PACK_INFO).write_text(json.dumps({"corpus": str(corpus), "bytes": used, **asdict(cfg)}, indent=2))
    return packed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tokcodec.train.pack", description=__doc__.split("\n\n")[0])
    ap.add_argument("corpus", type=Path, help="a corpus made by scripts/training_data.sh")
    ap.add_argument("out", type=Path, help="the pack's folder (new)")
    for field, default in asdict(PackConfig()).items():
        ap.add_argument(f"--{field.replace('_', '-')}", type=type(default), default=default)
    args = ap.parse_args(argv)
    cfg = PackConfig(**{f: getattr(args, f) for f in asdict(PackConfig())})
    entries = build_pack(args.corpus, args.out, cfg)
    used = json.loads((args.out / PACK_INFO).read_text())["bytes"]
    print(f"{args.out}: {used / 2**20:.1f} MiB\n{summary(entries)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
