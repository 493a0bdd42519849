"""A grey source decodes grey: the network alone tinted it (up to 57-61 code values between
channels on grey held-out clips), so the header records a grey source and decode shows the
channels' mean."""
from __future__ import annotations

from fractions import Fraction

import numpy as np

from conftest import smooth_clip, write_clip
from tokcodec.codec.container import Header, HEADER_SIZE
from tokcodec.codec.pipeline import decode_video, encode_video, file_info
from tokcodec.io import GREY_TOLERANCE, is_grey, read_frames


def _grey(frames: np.ndarray) -> np.ndarray:
    return np.repeat(frames.mean(-1, keepdims=True).astype(np.uint8), 3, axis=-1)


def test_a_grey_source_decodes_grey_and_a_colour_one_as_before(tmp_path, tiny_model) -> None:
    grey = write_clip(tmp_path / "grey.mkv", _grey(smooth_clip(9, 32, 48)), Fraction(25))
    colour = write_clip(tmp_path / "colour.mkv", smooth_clip(9, 32, 48), Fraction(25))
    for src, expected in ((grey, True), (colour, False)):
        encode_video(src, tmp_path / f"{src.stem}.tok", model=tiny_model, gop=5)
        assert file_info(tmp_path / f"{src.stem}.tok").header.grey is expected
        decode_video(tmp_path / f"{src.stem}.tok", tmp_path / f"{src.stem}.out.mkv", model=tiny_model)
        out = read_frames(tmp_path / f"{src.stem}.out.mkv").astype(int)
        spread = np.abs(out[..., 0] - out[..., 1]).max() + np.abs(out[..., 1] - out[..., 2]).max()
        assert bool(spread == 0) is expected, (src.stem, spread)  # (the untrained tiny model tints)


def test_grey_means_every_frame_within_the_tolerance(tmp_path) -> None:
    frames = _grey(smooth_clip(6, 16, 16))
    frames[4, 3, 5] += np.array([0, GREY_TOLERANCE, 0], np.uint8)   # a camera's monochrome noise
    path = write_clip(tmp_path / "a.mkv", frames, Fraction(25))
    assert is_grey(path)
    frames[5, 7, 7] = (120 + GREY_TOLERANCE, 120, 120 - GREY_TOLERANCE)  # neighbours within it, R - B not
    path = write_clip(tmp_path / "b.mkv", frames, Fraction(25))
    assert not is_grey(path) and is_grey(path, max_frames=5) and not is_grey(path, skip=5)


def test_the_grey_flag_survives_the_header() -> None:
    h = Header(64, 48, 64, 48, 64, 48, Fraction(25), 9, 5, 4, 8, 18, 3, "tiny", "00" * 32, grey=True)
    data = h.pack()
    assert len(data) == HEADER_SIZE and Header.unpack(data, "x").grey
    h.grey = False
    assert not Header.unpack(h.pack(), "x").grey


def test_tokens_of_a_grey_source_detokenize_grey(tmp_path, tiny_model) -> None:
    from tokcodec.tokens import detokenize, read_token_file, tokenize, write_token_file

    grey = write_clip(tmp_path / "grey.mkv", _grey(smooth_clip(5, 32, 48)), Fraction(25))
    write_token_file(tokenize(grey, model=tiny_model, passes=0), tmp_path / "t.safetensors")
    assert read_token_file(tmp_path / "t.safetensors").grey
    detokenize(tmp_path / "t.safetensors", tmp_path / "out.mkv", model=tiny_model)
    out = read_frames(tmp_path / "out.mkv").astype(int)
    assert np.abs(out[..., 0] - out[..., 1]).max() == 0 and np.abs(out[..., 1] - out[..., 2]).max() == 0
