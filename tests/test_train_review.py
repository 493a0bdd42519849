"""An audit of the training code before GPU time is spent on it (none of these change what the
shipped weights do: they change what the next training run learns)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from test_train import tiny_cfg
from tokcodec.model.lfq import LFQ
from tokcodec.train.corpus import SOURCES
from tokcodec.train.kit import with_corpus
from tokcodec.train.real import RealVideos
from tokcodec.train.trainer import Trainer


def test_the_entropy_penalty_is_computed_in_fp32_under_bf16_autocast():
    """Under the trainer's autocast the soft assignment's einsum ran in bf16: logits of 200 z.c
    lost most of their precision, and the entropy term's gradient pointed elsewhere."""
    lfq = LFQ(18, 9, 0.01)
    z = (torch.randn(2, 18, 2, 6, 6, generator=torch.Generator().manual_seed(0)) * 0.3).requires_grad_()
    exact = lfq(z).entropy_loss
    (g_exact,) = torch.autograd.grad(exact, z)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = lfq(z).entropy_loss
    (g_mixed,) = torch.autograd.grad(mixed, z)
    assert mixed.dtype == torch.float32 and torch.allclose(mixed, exact, rtol=1e-5, atol=1e-6)
    assert torch.nn.functional.cosine_similarity(g_mixed.flatten(), g_exact.flatten(), dim=0) > 0.9999


def test_a_resumed_run_takes_its_optimiser_settings_from_its_config(tmp_path):
    """Loading the optimisers' state brought back the old weight decay, betas and discriminator
    rate, while train_config.json recorded the new ones."""
    first = Trainer(tiny_cfg(tmp_path))
    first.save()
    resumed = Trainer(tiny_cfg(tmp_path, weight_decay=0.1, betas=(0.5, 0.9), disc_lr=1e-5))
    resumed.load()
    assert all(g["weight_decay"] == 0.1 and tuple(g["betas"]) == (0.5, 0.9) for g in resumed.opt.param_groups)
    assert all(g["lr"] == 1e-5 and g["weight_decay"] == 0.1 for g in resumed.opt_d.param_groups)


def test_the_kit_s_data_replaces_a_corpus_the_config_names_even_when_it_is_not_there(tmp_path):
    """configs/gpu.toml names data/pack; a pack carried under another name and given as --data
    kept data/pack in the sources, and the run stopped at its start on the lent machine."""
    folder = tmp_path / "clips"
    folder.mkdir()
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "manifest.jsonl").write_text("")
    sources = ("synthetic", str(tmp_path / "absent_pack"), str(corpus), str(folder))
    assert with_corpus(sources, "mypack") == ("synthetic", str(folder), "mypack")


class Windows(RealVideos):
    """RealVideos over arrays in memory: a pack's windows and a small video."""

    def __init__(self, videos: list[np.ndarray]) -> None:
        self.names = [f"v{i}" for i in range(len(videos))]
        self.videos = videos
        weight = np.sqrt([len(v) for v in videos])
        self.p = weight / weight.sum()
        self._usable_cache = {}


def test_pack_windows_give_stride_2_clips_and_small_videos_are_scaled_up_not_dropped():
    """With configs/gpu.toml's 17-frame, 256-pixel clips and the pack's windows, clips at time
    stride 2 never happened, and videos smaller than the crop were drawn and dropped (3 of the 10
    training videos never used, a third of the draws wasted): those down to 3/4 of it are scaled up,
    smaller ones not drawn."""
    window = np.zeros((33, 320, 400, 3), np.uint8)
    window[::2] = 255  # even frames white: a stride-2 clip is all white
    small = np.full((40, 240, 320, 3), 128, np.uint8)  # OpenCV's tree.avi: 320x240
    videos = Windows([window, small])
    rng = np.random.default_rng(0)
    clips = [videos.sample(rng, 17, 256) for _ in range(400)]
    assert all(c is not None and c.shape == (17, 3, 256, 256) for c in clips)
    grey = [c for c in clips if abs(float(c.mean()) - 128 / 255) < 1e-3]
    stride_2 = [c for c in clips if float(c.min()) == 1.0]
    assert 60 < len(grey) < 250 and 15 < len(stride_2)
    too_small = Windows([np.zeros((40, 144, 176, 3), np.uint8)])  # iscc's demo.mkv: under 3/4 of the crop
    assert too_small.sample(rng, 17, 256) is None


def test_no_near_copy_of_a_held_out_photo_is_trained_on():
    """kphotoalbum's pool_2.jpg is the held-out pool.jpg's pool hall from another angle."""
    names = {name for src in SOURCES for name in src.names}
    assert "pool.jpg" in names and "pool_2.jpg" not in names


def test_the_gpu_config_s_clips_fit_the_pack_s_windows():
    from tokcodec.train.pack import PackConfig
    from tokcodec.train.trainer import TrainConfig

    cfg, pack = TrainConfig.from_file(Path(__file__).parent.parent / "configs" / "gpu.toml"), PackConfig()
    assert pack.window >= 2 * (cfg.frames - 1) + 1  # time stride 2 fits a window
    assert pack.video_short > cfg.size  # crops at a down-scale below 1
    json.dumps(cfg.__dict__, default=list)


def test_the_schedule_ends_with_the_time_budget_when_that_comes_first():
    """configs/gpu.toml's steps were timed for `fast`; it trains `fast-deep`, slower: a run its
    --minutes end early stopped at a high learning rate."""
    from tokcodec.train.trainer import Budget, TrainConfig, lr_at

    cfg = TrainConfig(lr=1e-3, warmup_steps=10, steps=1010, min_lr_ratio=0.1)
    assert lr_at(20, cfg) > 0.99e-3
    assert lr_at(20, cfg, time_spent=0.5) == pytest.approx(lr_at(510, cfg))
    assert lr_at(20, cfg, time_spent=1.0) == pytest.approx(1e-4)
    assert lr_at(1010, cfg, time_spent=0.2) == pytest.approx(1e-4)  # whichever is further
    assert Budget(0).spent(5) == 0.0 and 0 <= Budget(100).spent(10) < 0.01
