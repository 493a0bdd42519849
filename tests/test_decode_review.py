"""A read-through of the container and decode path, fixed: a header whose token grid is not its
weights', a file without chunks, coder threads kept alive by a failed decode or encode, numpy
float32 times."""
from __future__ import annotations

import dataclasses
import threading
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from conftest import smooth_clip, write_clip
from tokcodec.codec.container import ContainerWriter, open_tok
from tokcodec.codec.pipeline import decode_video, encode_video
from tokcodec.codec.ranges import frame_range, seconds
from tokcodec.codec.raw import RawBitsCoder
from tokcodec.codec.verify import verify_file
from tokcodec.errors import FormatError


@pytest.fixture(scope="module")
def encoded(tmp_path_factory, tiny_model) -> Path:
    d = tmp_path_factory.mktemp("review")
    clip = write_clip(d / "clip.mkv", smooth_clip(40, 64, 64))
    tok = d / "clip.tok"
    encode_video(clip, tok, model=tiny_model, gop=5, passes=0)
    return tok


def _rewritten(src: Path, dst: Path, chunks: int = 1, **fields) -> Path:
    """``src``'s header with ``fields`` changed (its checksum made anew, as the writer makes it),
    holding ``chunks`` GOPs of 5 frames of raw-coded tokens."""
    with open_tok(src) as reader:
        header = reader.header
    header = dataclasses.replace(header, coder_id=1, correction=False, correction_detail=False,
                                 correction_coded=False, has_audio=False, frame_count=0, **fields)
    rng = np.random.default_rng(0)
    with dst.open("wb") as fh:
        writer = ContainerWriter(fh, header)
        for _ in range(chunks):
            shape = header.latent_shape(5)
            writer.add_chunk(5, shape, RawBitsCoder().encode(rng.integers(0, 1 << header.bits, shape), header.bits))
        writer.close()
    return dst


@pytest.mark.parametrize("fields", [dict(spatial_factor=16), dict(temporal_factor=2), dict(bits=19)])
def test_a_header_whose_grid_is_not_its_weights_is_refused(encoded, tmp_path, tiny_model, fields):
    """The weights fix the factors and the bits: such a file (its checksum intact) crashed the
    network with a RuntimeError, or decoded noise with exit status 0, and verify said OK."""
    bad = _rewritten(encoded, tmp_path / "bad.tok", **fields)
    with pytest.raises(FormatError, match="are not those of its weights tiny"):
        decode_video(bad, tmp_path / "out.mkv", model=tiny_model)
    report = verify_file(bad)
    assert any("are not those of its weights" in p for p in report.problems)
    good = _rewritten(encoded, tmp_path / "good.tok")
    assert decode_video(good, tmp_path / "good.mkv", model=tiny_model).frames == 5
    assert verify_file(good).problems == []


def test_a_file_without_chunks_is_refused(encoded, tmp_path):
    empty = _rewritten(encoded, tmp_path / "empty.tok", chunks=0)
    with pytest.raises(FormatError, match="holds no chunks"):
        decode_video(empty, tmp_path / "out.mkv")  # (was: "out.mkv: cannot write (No such file or directory)")
    assert any("holds no chunks" in p for p in verify_file(empty).problems)  # (was: OK, 0 frames)


def _coder_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("tokcodec-coder")]


def _failing_progress():
    calls = []

    def progress(n: int) -> None:
        calls.append(n)
        if len(calls) == 2:
            raise RuntimeError("the caller stops")
    return progress


def test_a_failed_decode_leaves_no_coder_threads(encoded, tmp_path, tiny_model):
    """A failure on the caller's side (its progress callback, the writer, the network) left the
    entropy decoder's generators suspended, held by the exception: its threads lived on as long
    as the caller kept the exception."""
    with pytest.raises(RuntimeError) as caught:
        decode_video(encoded, tmp_path / "out.mkv", model=tiny_model, progress=_failing_progress())
    assert caught.value is not None and _coder_threads() == []


def test_a_failed_encode_leaves_no_coder_threads(tmp_path, tiny_model):
    clip = write_clip(tmp_path / "clip.mkv", smooth_clip(40, 64, 64))
    with pytest.raises(RuntimeError) as caught:
        encode_video(clip, tmp_path / "x.tok", model=tiny_model, gop=5, passes=0, progress=_failing_progress())
    assert caught.value is not None and _coder_threads() == []
    assert not (tmp_path / "x.tok").exists()


def test_numpy_float32_times_are_their_decimals():
    """np.float32(0.2) went through a Python float (0.2000000029...): at 25 fps the range started
    at frame 6, not 5."""
    assert seconds(np.float32(0.2)) == Fraction(1, 5)
    assert seconds(np.float64(0.88)) == Fraction(22, 25)
    assert frame_range(40, Fraction(25), start=seconds(np.float32(0.2))).start == 5
