"""A walk-through of the upgrade path: files of earlier builds read by this one."""
from __future__ import annotations

import numpy as np
import pytest
import zstandard

from tokcodec.codec.correction_record import _RECORD, KIND_GRID_DETAIL, CorrectionRecord, grid_shape
from tokcodec.errors import FormatError


def early_detail_record(rng: np.random.Generator, width: int, height: int) -> tuple[bytes, np.ndarray, np.ndarray]:
    """A kind 2 record as the builds of 5 December 2026 wrote it (before 9407784): pool and gain
    step, then the zstd frame of the offsets and the gains; no frame count, temporal blend or dc."""
    gh, gw = grid_shape(width, height, 16)
    steps = rng.integers(-20, 20, (3, gh, gw)).astype(np.int8)
    gains = rng.integers(-9, 9, (3, gh, gw)).astype(np.int8)
    body = zstandard.ZstdCompressor(level=19).compress(steps.tobytes() + gains.tobytes())
    return _RECORD.pack(KIND_GRID_DETAIL, 16, 2, 0, gh, gw, 4, -8, 12) + bytes([16, 32]) + body, steps, gains


def test_a_correction_record_of_the_early_2_1_layout_is_read():
    """The same version number, 2.1, named two layouts: the current reader called the earlier
    one's files damaged ("invalid detail fields (pool 16, gain step 32, frames 46376)"), and
    --salvage could not help. Decoded with it, such a file matches the early build's own decode
    to 86-88 dB (0.004% of values differ, by 3-4: rounding)."""
    record, steps, gains = early_detail_record(np.random.default_rng(0), 320, 184)
    fix = CorrectionRecord.unpack(record, 320, 184, 17)
    assert (fix.cell, fix.step, fix.dc, fix.pool, fix.gain_step) == (16, 2, (4, -8, 12), 16, 32)
    assert np.array_equal(fix.steps, steps) and np.array_equal(fix.gains, gains)
    assert fix.temporal == (0, 0, 0) and fix.frame_dc.shape == (17, 3) and not fix.frame_dc.any()
    # and back: today's kind 2 of the same numbers is the current layout, read as such
    again = CorrectionRecord.unpack(fix.pack(coded=False), 320, 184, 17)
    assert np.array_equal(again.gains, gains) and again.frame_dc.shape == (17, 3)
    with pytest.raises(FormatError, match="needs its GOP's frame count"):
        CorrectionRecord.unpack(record, 320, 184)
    with pytest.raises(FormatError, match="does not decompress"):
        CorrectionRecord.unpack(record[:-5], 320, 184, 17)


def test_salvage_of_a_file_whose_one_chunk_does_not_read_names_why(tmp_path, tiny_model):
    """A one-chunk file whose record the reader refuses, checksum intact (an earlier layout): the
    salvage error said "the intact ones are linked to a lost one", where nothing is linked."""
    import struct
    import zlib

    from conftest import smooth_clip, write_clip
    from tokcodec.codec.container import _CHUNK, ContainerReader
    from tokcodec.codec.pipeline import decode_video, encode_video

    src = write_clip(tmp_path / "in.mkv", smooth_clip(5, 32, 48, seed=2))
    encode_video(src, tmp_path / "a.tok", model=tiny_model, gop=5)
    with ContainerReader(tmp_path / "a.tok") as reader:
        (entry,) = reader.entries
    data = bytearray((tmp_path / "a.tok").read_bytes())
    body = entry.offset + _CHUNK.size
    coder_bytes = struct.unpack_from("<I", data, body)[0]
    data[body + 4 + coder_bytes + 14] = 0  # the record's pool: 0, below its least
    crc = zlib.crc32(bytes(data[body:body + entry.payload_len]), zlib.crc32(bytes(data[entry.offset:body - 4])))
    struct.pack_into("<I", data, body - 4, crc)
    (tmp_path / "b.tok").write_bytes(bytes(data))
    with pytest.raises(FormatError) as caught:
        decode_video(tmp_path / "b.tok", tmp_path / "b.mkv", model=tiny_model, salvage=True)
    assert "could be decoded; nothing to salvage (chunk 0: invalid detail fields (pool 0" in str(caught.value)
    assert "linked" not in str(caught.value)
