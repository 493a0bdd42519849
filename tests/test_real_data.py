"""The real corpus (manifest, splits, sequences), its clip sampler and the real-video validation."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import smooth_clip, write_clip
from tokcodec.train.corpus import Source, build_corpus, read_manifest, summary
from tokcodec.train.real import RealVideos, corpus_photos, flat_clip, holdout_clips, holdout_photos


def _fake_raw(raw: Path) -> tuple[Source, ...]:
    """A package tree with one photo, two videos (one held out) and a grey image sequence."""
    from PIL import Image

    pkg = raw / "x_pkg" / "share"
    pkg.mkdir(parents=True)
    Image.fromarray(smooth_clip(1, 90, 140, seed=1)[0]).save(pkg / "photo.png")
    write_clip(pkg / "cam.mkv", smooth_clip(21, 48, 64, seed=2))
    write_clip(pkg / "held.mkv", smooth_clip(19, 40, 72, seed=3))
    seq = pkg / "seq"
    seq.mkdir()
    for i in range(6):
        Image.fromarray(smooth_clip(1, 32, 48, seed=i)[0][..., 0]).save(seq / f"image.{i:04d}.pgm")
    return (Source("pkg", "apt", "GPL-2", "photo", "x_pkg/share", ("photo.png",)),
            Source("pkg", "apt", "GPL-2", "video", "x_pkg/share", ("cam.mkv", "held.mkv")),
            Source("pkg", "apt", "GPL-2", "sequence", "x_pkg/share", ("seq",)))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    sources = _fake_raw(root / ".raw")
    build_corpus(root, sources=sources, holdout=frozenset({"held.mkv"}))
    return root


def test_manifest_lists_every_file_with_licence_size_frames_and_split(corpus):
    entries = {Path(e.file).name: e for e in read_manifest(corpus)}
    assert set(entries) == {"photo.png", "cam.mkv", "held.mkv", "seq.mkv"}
    photo, cam, held, seq = (entries[n] for n in ("photo.png", "cam.mkv", "held.mkv", "seq.mkv"))
    assert (photo.kind, photo.width, photo.height, photo.frames, photo.split) == ("photo", 140, 90, 1, "train")
    assert (cam.kind, cam.width, cam.height, cam.frames, cam.split) == ("video", 64, 48, 21, "train")
    assert (held.split, held.frames) == ("holdout", 19)
    assert held.file.startswith("holdout/videos/pkg/")
    assert (seq.kind, seq.frames, seq.grayscale, seq.width, seq.height) == ("video", 6, True, 48, 32)
    assert not cam.grayscale and all(e.licence == "GPL-2" and e.package == "pkg" for e in entries.values())
    for e in entries.values():
        assert (corpus / e.file).is_file()
    rows = (corpus / "manifest.csv").read_text().splitlines()
    assert len(rows) == 5 and rows[0].startswith("file,package,manager,licence,kind")
    assert "1 photos" in summary(read_manifest(corpus)) and "1 videos, 19 frames" in summary(read_manifest(corpus))


def test_a_listed_file_missing_from_the_packages_is_an_error(tmp_path):
    sources = (Source("pkg", "apt", "MIT", "photo", "nowhere", ("gone.jpg",)),)
    with pytest.raises(FileNotFoundError, match="gone.jpg"):
        build_corpus(tmp_path, raw=tmp_path, sources=sources)


def test_real_clips_are_random_windows_of_the_training_videos_only(corpus):
    videos = RealVideos(corpus)
    assert sorted(Path(n).name for n in videos.names) == ["cam.mkv", "seq.mkv"]
    rng = np.random.default_rng(0)
    clips = [videos.sample(rng, 5, 32) for _ in range(20)]
    assert all(c is None or (c.shape == (5, 3, 32, 32) and 0 <= c.min() and c.max() <= 1) for c in clips)
    assert sum(c is not None for c in clips) >= 10
    # a crop larger than a video, up to 4/3 of its short side, scales it up; larger ones, or too
    # long a window, give None instead of a stretched clip
    assert videos.sample(np.random.default_rng(0), 5, 64).shape == (5, 3, 64, 64)
    assert videos.sample(np.random.default_rng(0), 5, 100) is None
    assert all(videos.sample(np.random.default_rng(s), 40, 16) is None for s in range(5))
    # same seed, same clip
    a, b = (videos.sample(np.random.default_rng(7), 5, 24) for _ in range(2))
    assert a is not None and torch.equal(a, b)


def test_holdout_clips_and_photos_are_cropped_to_multiples_of_8(corpus):
    clips = holdout_clips(corpus, frames=9, windows=2)
    assert [n for n, _ in clips] == ["held#0", "held#1"]
    assert all(c.shape == (9, 40, 72, 3) and c.dtype == np.uint8 for _, c in clips)
    assert not np.array_equal(clips[0][1], clips[1][1])
    photos = corpus_photos(corpus, max_side=100)
    assert len(photos) == 1 and photos[0].shape == (3, 64, 100)
    assert holdout_photos(corpus) == []


def test_flat_clips_are_nearly_flat_colour_fields():
    clip = flat_clip(np.random.default_rng(3), 5, 32)
    assert clip.shape == (5, 3, 32, 32) and 0 <= clip.min() and clip.max() <= 1
    assert float(clip.std(dim=(2, 3)).max()) < 0.15


def test_sampler_and_trainer_use_a_corpus(corpus, tmp_path):
    from tokcodec.train.data import ClipSampler, DataConfig
    from tokcodec.train.trainer import TrainConfig, Trainer

    sampler = ClipSampler(DataConfig(("synthetic", str(corpus)), frames=5, size=32), seed=0)
    assert len(sampler.images) == 14 + 1  # the shipped images and the corpus's training photo
    x = sampler.batch(6)
    assert x.shape == (6, 3, 5, 32, 32) and -1 <= float(x.min()) and float(x.max()) <= 1
    assert sampler.batch(3, 1).shape == (3, 3, 1, 32, 32)
    cfg = TrainConfig(preset="tiny", out_dir=str(tmp_path / "run"), sources=("synthetic", str(corpus)),
                      steps=2, batch_size=2, frames=5, size=32, val_clips=1, val_height=32, val_width=32,
                      lowpass_weight=1.0, gan_weight=0.0, image_every=2, image_batch_mult=1)
    trainer = Trainer(cfg)
    metrics = trainer.train_step()
    assert metrics["lowpass_mse"] > 0
    val = trainer.validate()
    assert {"psnr", "colour_drift", "real_psnr", "real_colour_drift"} <= set(val)
    assert len(trainer._val_real) == 2 and trainer._val_real[0].shape == (3, 17, 32, 32)


def test_colour_jitter_casts_one_tint_over_a_whole_clip():
    from tokcodec.train.data import tint

    clip = torch.rand(5, 3, 16, 16) * 0.5 + 0.25  # away from the clamp
    out = tint(np.random.default_rng(1), clip)
    # per channel, every pixel of every frame maps through the same gain and offset
    for c in range(3):
        a, b = np.polyfit(clip[:, c].flatten().numpy(), out[:, c].flatten().numpy(), 1)
        assert 0.8 <= a <= 1.2 and -0.08 <= b <= 0.08
        assert torch.allclose(out[:, c], clip[:, c] * float(a) + float(b), atol=1e-4)
    assert not torch.allclose(out, clip, atol=1e-3)
