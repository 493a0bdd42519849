"""A walk-through with hours-long recordings: what grows with length, what runs blind."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import smooth_clip, write_clip
from tokcodec.cli.app import _bar_total
from tokcodec.codec.scenecut import RecentChanges, marked_cuts
from tokcodec.io import GREY_TOLERANCE, is_grey_frame, probe


def test_the_grey_check_answers_as_the_max_and_min_over_each_pixel_did():
    rng = np.random.default_rng(0)
    for spread in (0, 1, GREY_TOLERANCE, GREY_TOLERANCE + 1, 40):
        for _ in range(20):
            base = rng.integers(0, 256, (36, 64, 1))
            frame = np.clip(base + rng.integers(0, spread + 1, (36, 64, 3)), 0, 255).astype(np.uint8)
            assert is_grey_frame(frame) == (int((frame.max(-1) - frame.min(-1)).max()) <= GREY_TOLERANCE)


def test_a_y4m_input_has_a_frame_count_for_the_progress_bar(tmp_path):
    """The format states none: an encode from a pipe (spooled to a file) had no total,
    percentage or time left."""
    src = write_clip(tmp_path / "in.y4m", smooth_clip(11, 32, 48, seed=1))
    assert probe(src).frame_count == 11
    cut = tmp_path / "cut.y4m"
    cut.write_bytes(src.read_bytes()[:-100])  # a frame cut short: the count is not known, not wrong
    assert probe(cut).frame_count in (0, 10)
    assert _bar_total(0, 500) == 500 and _bar_total(11, 500) == 11 and _bar_total(0, None) is None


def test_scene_cut_detection_holds_a_few_changes_not_one_a_frame():
    changes = RecentChanges()
    for i in range(1000):
        changes.append(float(i))
    assert len(changes) == 1000 and changes[999] == 999.0 and changes[994] == 994.0
    assert len(changes.values) == 6
    with pytest.raises(IndexError):
        changes[10]
    # and cuts are found as before: a jump every 7 frames, one one-frame shot
    frames = [np.full((16, 64, 3), 40 * (i // 7), np.uint8) for i in range(30)]
    frames[24] = np.full((16, 64, 3), 250, np.uint8)
    cuts = [i for i, (_, cut) in enumerate(marked_cuts(iter(frames), 8.0)) if cut]
    assert cuts == [7, 14, 21, 24, 25, 28]

