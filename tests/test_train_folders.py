"""Training on a plain folder of your own videos and images (`tokcodec train --data DIR`): every
part of a long video is seen, stills and small files are used, a single file is a source, and an
unreadable file is left out instead of stopping the run."""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from conftest import smooth_clip, write_clip
from tokcodec.io import FrameWriter
from tokcodec.train.data import FolderSource


def _numbered(path, frames: int):
    """A video whose frame k is flat at grey level 2k (lossless FFV1): a window's start is readable."""
    with FrameWriter(path, 32, 32, Fraction(25)) as w:
        for k in range(frames):
            w.write(np.full((32, 32, 3), 2 * k, np.uint8))
    return path


def test_windows_come_from_the_whole_video(tmp_path):
    video = _numbered(tmp_path / "long.mkv", 100)
    source = FolderSource(tmp_path, cache_frames=9, uses=1)
    rng = np.random.default_rng(0)
    starts = {round(float(source.sample(rng, 9, 16)[0].mean()) * 255 / 2) for _ in range(30)}
    assert max(starts) >= 64  # (the first 64 frames were all a run ever saw)
    assert min(starts) >= 0 and max(starts) <= 100 - 9 and video.exists()


def test_stills_small_files_and_single_files_feed_video_steps(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    write_clip(photos / "a.png", smooth_clip(1, 40, 60))
    rng = np.random.default_rng(1)
    clip = FolderSource(photos).sample(rng, 9, 64)  # an image folder on a video step; smaller than the crop
    assert clip.shape == (9, 3, 64, 64) and 0 <= float(clip.min()) and float(clip.max()) <= 1
    small = write_clip(tmp_path / "small.mkv", smooth_clip(9, 24, 40))
    assert FolderSource(small).sample(rng, 9, 32).shape == (9, 3, 32, 32)  # one file as the source
    assert FolderSource(small).sample(rng, 1, 32).shape == (1, 3, 32, 32)


def test_an_unreadable_file_is_left_out(tmp_path, capsys):
    write_clip(tmp_path / "good.mkv", smooth_clip(9, 32, 32))
    (tmp_path / "bad.mp4").write_bytes(b"not a video")
    source = FolderSource(tmp_path)
    rng = np.random.default_rng(2)
    for _ in range(6):
        assert source.sample(rng, 5, 16).shape == (5, 3, 16, 16)
    assert [p.name for p in source.files] == ["good.mkv"] and "bad.mp4" in capsys.readouterr().err
    only_bad = tmp_path / "bad"
    only_bad.mkdir()
    (only_bad / "x.mp4").write_bytes(b"nothing")
    with pytest.raises(RuntimeError, match="no usable video or image left"):
        FolderSource(only_bad).sample(rng, 5, 16)


def test_a_run_that_fails_before_a_step_exports_no_weights(tmp_path):
    from test_train import tiny_cfg  # noqa: E402  (the tiny run settings of the trainer's tests)
    from tokcodec.train.trainer import Trainer

    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.mp4").write_bytes(b"not a video")
    cfg = tiny_cfg(tmp_path, steps=5, export_at_end=True, sources=(str(bad),))
    with pytest.raises(RuntimeError, match="no usable video or image left"):
        Trainer(cfg).fit(progress=False)
    assert not list((tmp_path / "run").glob("*.safetensors"))  # (a checkpoint at step 0 may stay: --resume)


def test_init_from_a_checkpoint_says_what_to_do(tmp_path):
    from test_train import tiny_cfg  # noqa: E402
    from tokcodec.train.trainer import Trainer

    with pytest.raises(ValueError, match="is a training checkpoint: --resume"):
        Trainer(tiny_cfg(tmp_path)).init_from_weights(str(tmp_path / "run" / "checkpoint.pt"))


def test_your_own_held_out_videos_are_validated(tmp_path):
    from test_train import tiny_cfg  # noqa: E402
    from tokcodec.train.data import heldout_clips
    from tokcodec.train.trainer import Trainer

    held = tmp_path / "held"
    held.mkdir()
    _numbered(held / "v.mkv", 40)
    write_clip(held / "still.png", smooth_clip(1, 40, 60))
    clips = heldout_clips((str(held),), frames=9, max_height=32, max_width=48)
    assert sorted(c.shape for c in clips) == [(1, 32, 48, 3), (9, 32, 32, 3), (9, 32, 32, 3)]
    firsts = sorted(int(c[0, 0, 0, 0]) // 2 for c in clips if len(c) == 9)
    assert firsts == [0, 31]  # evenly spaced windows: the first and the last 9 frames
    val = Trainer(tiny_cfg(tmp_path, val_data=(str(held),), val_height=32, val_width=32, frames=9)).validate()
    assert {"heldout_psnr", "heldout_colour_drift"} <= set(val) and np.isfinite(val["heldout_psnr"])
