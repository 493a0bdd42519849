"""Scene cuts (codec/scenecut.py, --scenecut): a GOP ends before a cut to another shot, so that no
GOP blends two shots; steady motion and one-frame flashes make no cut; input without cuts is
coded exactly as before."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import smooth_clip, write_clip
from tokcodec.cli.app import app
from tokcodec.codec.container import open_tok
from tokcodec.codec.pipeline import decode_video, encode_video
from tokcodec.codec.scenecut import marked_cuts, split_gops
from tokcodec.defaults import DEFAULT_SCENECUT
from tokcodec.errors import ArgumentError
from tokcodec.io import iter_frames
from tokcodec.metrics import psnr


def _pan(frames: int, step: int = 9, height: int = 64, width: int = 96, seed: int = 0) -> np.ndarray:
    """A fast pan over a random texture: every frame changes about as much as the one before."""
    rng = np.random.default_rng(seed)
    canvas = rng.integers(0, 256, (height, width + step * frames, 3), dtype=np.uint8)
    return np.stack([canvas[:, step * i:step * i + width] for i in range(frames)])


def _shots(cut: int, frames: int, height: int = 64, width: int = 96) -> np.ndarray:
    """Two shots of smooth moving pattern, cut at frame ``cut``."""
    a = smooth_clip(frames, height, width, seed=1)
    b = 255 - smooth_clip(frames, height, width, seed=7)
    return np.concatenate([a[:cut], b[cut:]])


def _cuts(frames: np.ndarray, threshold: float = DEFAULT_SCENECUT) -> list[int]:
    return [i for i, (_, cut) in enumerate(marked_cuts(frames, threshold)) if cut]


def test_a_hard_cut_is_found_where_it_is():
    assert _cuts(_shots(10, 30)) == [10]
    assert _cuts(_shots(29, 30)) == [29]  # (the last frame: no change after it to compare)
    assert _cuts(_shots(10, 30), threshold=200.0) == []


def test_steady_motion_is_not_a_cut():
    assert _cuts(_pan(30)) == []
    assert _cuts(smooth_clip(30, 64, 96)) == []


def test_a_one_frame_shot_is_a_shot_of_its_own():
    """Its two jumps, each as large as the other, cancelled each other in the isolated-jump rule:
    a frame of bars between two shots, a flash, decoded as a smear of the frames around them."""
    flash = smooth_clip(30, 64, 96)
    flash[12] = 255
    assert _cuts(flash) == [12, 13]
    a, b = smooth_clip(30, 64, 96, seed=1), 255 - smooth_clip(30, 64, 96, seed=7)
    assert _cuts(np.concatenate([a[:17], a[17:18] // 3, b[18:]])) == [17, 18]  # A, one frame of X, B
    assert _cuts(np.concatenate([a[:17], b[17:19], a[19:]])) == [17, 19]        # two frames: two isolated jumps
    assert [len(g) for g in split_gops(flash, 17, DEFAULT_SCENECUT)] == [12, 1, 17]


def test_gops_end_before_a_cut():
    clip = _shots(10, 40)
    assert [len(g) for g in split_gops(clip, 17, DEFAULT_SCENECUT)] == [10, 17, 13]
    assert [len(g) for g in split_gops(clip, 17, 0.0)] == [17, 17, 6]
    assert [len(g) for g in split_gops(_shots(17, 40), 17, DEFAULT_SCENECUT)] == [17, 17, 6]  # on a boundary already
    assert [len(g) for g in split_gops(iter(clip), 17, DEFAULT_SCENECUT)] == [10, 17, 13]  # a stream, a frame late


@pytest.fixture(scope="module")
def cut_clip(tmp_path_factory) -> Path:
    return write_clip(tmp_path_factory.mktemp("cut") / "cut.mkv", _shots(10, 34))


def test_encode_starts_a_gop_at_the_cut(cut_clip, tmp_path, tiny_model):
    st = encode_video(cut_clip, tmp_path / "a.tok", model=tiny_model, passes=0)
    assert st.scene_cuts == 1 and st.gops == 3 and st.frames == 34
    with open_tok(tmp_path / "a.tok") as reader:
        assert [e.frames for e in reader.entries] == [10, 17, 7]
    assert decode_video(tmp_path / "a.tok", tmp_path / "a.mkv", model=tiny_model).frames == 34
    st = encode_video(cut_clip, tmp_path / "b.tok", model=tiny_model, passes=0, scenecut=0)
    assert st.scene_cuts == 0 and st.gops == 2
    with pytest.raises(ArgumentError, match="scenecut must be in"):
        encode_video(cut_clip, tmp_path / "c.tok", model=tiny_model, scenecut=-1)


def test_input_without_cuts_is_coded_as_before(tmp_path, tiny_model):
    clip = write_clip(tmp_path / "smooth.mkv", smooth_clip(34, 64, 96))
    encode_video(clip, tmp_path / "a.tok", model=tiny_model, passes=0)
    encode_video(clip, tmp_path / "b.tok", model=tiny_model, passes=0, scenecut=0)
    assert (tmp_path / "a.tok").read_bytes() == (tmp_path / "b.tok").read_bytes()


def test_the_cut_no_longer_blends_two_shots(cut_clip, tmp_path):
    """With the shipped model: the frames next to the cut, coded in a GOP that runs across it,
    showed the other shot through them."""
    source = list(iter_frames(cut_clip))
    near = {}
    for threshold in (DEFAULT_SCENECUT, 0.0):
        out = tmp_path / f"{threshold}.mkv"
        encode_video(cut_clip, tmp_path / f"{threshold}.tok", passes=0, scenecut=threshold)
        decode_video(tmp_path / f"{threshold}.tok", out)
        decoded = list(iter_frames(out))
        near[threshold] = psnr(np.stack(source[8:12]), np.stack(decoded[8:12]))
    assert near[DEFAULT_SCENECUT] > near[0.0] + 1.0, near


def test_tokens_keep_gops_of_one_length_unless_asked(cut_clip, tiny_model):
    """Tokens for language models keep GOPs of one length by default (a bare array's GOP
    boundaries follow from its length); asked, frames in memory split at a cut as a file does."""
    from tokcodec.frame_tokens import tokenize_frames
    from tokcodec.tokens import tokenize

    assert tokenize(cut_clip, model=tiny_model, passes=0).gop_frames == [17, 17]
    assert tokenize_frames(list(iter_frames(cut_clip)), model=tiny_model, passes=0).gop_frames == [17, 17]
    from_file = tokenize(cut_clip, model=tiny_model, passes=0, scenecut=DEFAULT_SCENECUT)
    in_memory = tokenize_frames(list(iter_frames(cut_clip)), model=tiny_model, passes=0, scenecut=DEFAULT_SCENECUT)
    assert from_file.gop_frames == in_memory.gop_frames == [10, 17, 7]
    assert np.array_equal(from_file.tokens, in_memory.tokens)
    assert from_file.made["scenecut"] == DEFAULT_SCENECUT


def test_cli_and_batch(cut_clip, tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["encode", str(cut_clip), "-o", str(tmp_path / "a.tok"), "-m", "tiny", "--passes", "0"])
    assert res.exit_code == 0, res.output
    assert "1 GOP ended at a scene cut" in res.output
    res = runner.invoke(app, ["encode", str(cut_clip), "-o", str(tmp_path / "b.tok"), "--scenecut", "300"])
    assert res.exit_code == 2
    res = runner.invoke(app, ["tokens", str(tmp_path / "a.tok"), "-o", str(tmp_path / "t.npy"), "--scenecut", "12"])
    assert res.exit_code != 0 and "--scenecut applies only to a video, image or image sequence input" in res.output

    from tokcodec.batch.run import batch_encode

    src = tmp_path / "src"
    src.mkdir()
    (src / "cut.mkv").write_bytes(cut_clip.read_bytes())
    batch_encode(src, tmp_path / "tok", model="tiny", passes=0, workers=1)
    record = json.loads((tmp_path / "tok" / "manifest.jsonl").read_text().splitlines()[0])
    assert record["scene_cuts"] == 1
    with pytest.raises(ArgumentError):
        batch_encode(src, tmp_path / "tok2", model="tiny", scenecut=1000)


def test_a_npy_of_gops_of_varying_length_is_warned_of(cut_clip, tmp_path, tiny_model):
    """A .npy holds no GOP boundaries: tokens of a .tok with a scene cut detokenized from one
    were cut into GOPs of one length, wrong, without a word."""
    encode_video(cut_clip, tmp_path / "a.tok", model=tiny_model, passes=0)
    runner = CliRunner()
    res = runner.invoke(app, ["tokens", str(tmp_path / "a.tok"), "-o", str(tmp_path / "t.npy")])
    assert res.exit_code == 0 and "its GOPs vary in length" in res.output
    res = runner.invoke(app, ["tokens", str(tmp_path / "a.tok"), "-o", str(tmp_path / "t.safetensors")])
    assert res.exit_code == 0 and "vary in length" not in res.output
    encode_video(cut_clip, tmp_path / "b.tok", model=tiny_model, passes=0, scenecut=0)  # [17, 17]: one length
    res = runner.invoke(app, ["tokens", str(tmp_path / "b.tok"), "-o", str(tmp_path / "b.npy")])
    assert res.exit_code == 0 and "vary in length" not in res.output
