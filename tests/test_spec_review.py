"""What an outside engineer found writing a .tok reader from docs/FORMAT.md alone (December 2026):
places where the spec was wrong or silent, and where tokcodec passed files the spec calls
damaged. Each test is one finding, fixed (in the spec, the reader, or both)."""
from __future__ import annotations

import struct
import zlib
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import zstandard

from conftest import smooth_clip, write_clip
from tokcodec.codec.container import (AUDIO_HEADER_SIZE, CHUNK_HEADER_SIZE, HEADER_SIZE, ContainerReader,
                                      ContainerWriter, Header)
from tokcodec.codec.correction_record import (KIND_GRID, KIND_GRID_DETAIL, KIND_GRID_DETAIL_CODED,
                                              CorrectionRecord)
from tokcodec.codec.pipeline import encode_video
from tokcodec.codec.record_coder import encode_grids
from tokcodec.codec.verify import verify_file
from tokcodec.errors import FormatError
from tokcodec.zstd_frames import decompress_bounded, frame_length


@pytest.fixture(scope="module")
def tok(tmp_path_factory, tiny_model) -> Path:
    d = tmp_path_factory.mktemp("spec")
    clip = write_clip(d / "clip.mkv", smooth_clip(9, 32, 48), Fraction(25))
    encode_video(clip, d / "clip.tok", model=tiny_model, gop=5)
    return d / "clip.tok"


def _record(frames: int = 3, gh: int = 4, gw: int = 6, seed: int = 0) -> CorrectionRecord:
    rng = np.random.default_rng(seed)
    return CorrectionRecord(8, 4, (4, -8, 0), rng.integers(-3, 4, (3, gh, gw)).astype(np.int8), 16, 24,
                            rng.integers(-2, 3, (3, gh, gw)).astype(np.int8), (1, 0, -1),
                            rng.integers(-5, 6, (frames, 3)).astype(np.int8))


# --- the binary range coder and kind 3's binarisation, as FORMAT.md states them ---------------

def _spec_decode_grids(data: bytes, shape: tuple[int, ...], previous: np.ndarray | None) -> tuple[np.ndarray, int]:
    """Kind 3's grids decoded from FORMAT.md's words alone: returns the values and the bytes read."""
    pos = 4
    code = int.from_bytes(data[:4].ljust(4, b"\0"), "big")
    rng = 2 ** 32 - 1

    def decision(p: int) -> int:
        nonlocal code, rng, pos
        bound = (rng >> 12) * p
        if code < bound:
            rng, bit = bound, 1
        else:
            code, rng, bit = code - bound, rng - bound, 0
        while rng < 2 ** 24:
            rng <<= 8
            code = ((code << 8) | (data[pos] if pos < len(data) else 0)) % 2 ** 32
            pos += 1
        return bit

    probs: dict[tuple, int] = {}

    def adaptive(ctx: tuple, j: int) -> int:
        p = probs.get((ctx, j), 2048)
        bit = decision(p)
        probs[(ctx, j)] = p + ((4096 - p) >> 4) if bit else p - (p >> 4)
        return bit

    out = np.zeros(shape, np.int64)
    for g, c, y, x in np.ndindex(*shape):
        ctx = (g, c, "none" if previous is None else int(np.clip(previous[g, c, y, x], -2, 2)))
        if not adaptive(ctx, 0):
            continue
        negative = adaptive(ctx, 1)
        k = 0
        while k < 14 and adaptive(ctx, 2 + k):
            k += 1
        if k == 14:
            k += sum(decision(2048) << b for b in range(7))
        out[g, c, y, x] = -(k + 1) if negative else k + 1
    return out, pos


@pytest.mark.parametrize("predicted", [False, True])
def test_the_specs_range_coder_reads_kind_3_records(predicted: bool) -> None:
    """The spec called kind 3's coder "LZMA's": LZMA codes p of a zero in the high part, renormalises
    once and codes direct bits; a reader built that way read 602 of a record's 1245 bytes. Written
    from the corrected text, it reads every value and exactly the record's bytes."""
    rng = np.random.default_rng(1)
    shape = (2, 3, 9, 13)
    grids = np.clip(np.round(rng.laplace(0, 3, shape)), -128, 127).astype(np.int8)
    grids.flat[::37] = rng.choice([-128, 127, 60, -90], grids.flat[::37].shape)  # escapes past the unary bins
    previous = np.clip(grids + rng.integers(-1, 2, shape), -128, 127).astype(np.int8) if predicted else None
    data = encode_grids(grids, previous)
    values, used = _spec_decode_grids(data, shape, previous)
    assert np.array_equal(values, grids)
    assert used == len(data)


# --- readers refuse what the spec calls damage ---------------------------------------------------

def test_zstd_frame_must_end_where_its_record_ends() -> None:
    """A kind 1 or 2 record with a byte after its zstd frame passed verify: stored, never read."""
    record = _record()
    for packed in (record.pack(coded=False), CorrectionRecord(8, 4, (0, 0, 0), record.steps).pack()):
        assert packed[0] in (KIND_GRID, KIND_GRID_DETAIL)
        CorrectionRecord.unpack(packed, 48, 32, 3)
        with pytest.raises(FormatError, match="1 bytes follow the frame"):
            CorrectionRecord.unpack(packed + b"\0", 48, 32, 3)


@pytest.mark.parametrize("checksum", [False, True])
def test_zstd_frame_length_counts_blocks_and_checksum(checksum: bool) -> None:
    rng = np.random.default_rng(2)
    content = (rng.integers(0, 4, 400_000).astype(np.uint8).tobytes() + bytes(300_000)  # compressed, RLE
               + rng.integers(0, 256, 200_000).astype(np.uint8).tobytes())  # and raw blocks
    frame = zstandard.ZstdCompressor(level=3, write_checksum=checksum).compress(content)
    assert frame_length(frame) == frame_length(frame + b"more") == len(frame)
    assert decompress_bounded(frame, len(content)) == content
    with pytest.raises(ValueError, match="truncated"):
        frame_length(frame[:-1])
    for other in (b"abcdefgh" * 2, b"\x50\x2a\x4d\x18" + bytes(12)):  # not zstd; a skippable frame
        with pytest.raises(ValueError, match="not a zstd frame"):
            frame_length(other)


def test_record_kind_must_fit_the_files_version() -> None:
    """A kind 2 record inside a file marked 2.0 passed verify; the spec gives 2.0 kind 1 alone."""
    kind2, kind3 = _record().pack(coded=False), _record().pack()
    assert (kind2[0], kind3[0]) == (KIND_GRID_DETAIL, KIND_GRID_DETAIL_CODED)
    for version, newest in (((2, 0), KIND_GRID), ((2, 1), KIND_GRID_DETAIL), ((2, 2), KIND_GRID_DETAIL_CODED),
                            ((2, 3), KIND_GRID_DETAIL_CODED)):
        header = Header.unpack(_header_bytes(version), "x")
        assert header.newest_record_kind == newest
    with pytest.raises(FormatError, match="kind 2 in a file whose version allows kinds up to 1"):
        CorrectionRecord.unpack(kind2, 48, 32, 3, newest_kind=KIND_GRID)
    with pytest.raises(FormatError, match="kind 3 in a file whose version allows kinds up to 2"):
        CorrectionRecord.unpack(kind3, 48, 32, 3, newest_kind=KIND_GRID_DETAIL)
    CorrectionRecord.unpack(kind3, 48, 32, 3, newest_kind=KIND_GRID_DETAIL_CODED)


def _header_bytes(version: tuple[int, int]) -> bytes:
    header = Header(48, 32, 48, 32, 48, 32, Fraction(25), 0, 5, 4, 8, 18, 3, "tiny", "ab" * 32,
                    correction=True)
    raw = bytearray(header.pack())
    struct.pack_into("<HH", raw, 8, *version)
    struct.pack_into("<I", raw, HEADER_SIZE - 4, zlib.crc32(bytes(raw[:HEADER_SIZE - 4])))
    return bytes(raw)


def test_model_name_padding_must_be_zero() -> None:
    raw = bytearray(_header_bytes((2, 2)))
    Header.unpack(bytes(raw), "x")
    raw[68 + len("tiny") + 3] = 1
    struct.pack_into("<I", raw, HEADER_SIZE - 4, zlib.crc32(bytes(raw[:HEADER_SIZE - 4])))
    with pytest.raises(FormatError, match="padding|not zero"):
        Header.unpack(bytes(raw), "x")


# --- messages that name the real problem ----------------------------------------------------------

def test_verify_blames_the_headers_bits_not_a_prior(tok, tmp_path) -> None:
    """A header whose bits (17) are not its weights' (18) was reported as needing a coder-3 prior
    "which this tokcodec does not ship", before the real problem."""
    data = tok.read_bytes()
    header = Header.unpack(data[:HEADER_SIZE], "x")
    header.bits = 17
    bad = tmp_path / "bits17.tok"
    bad.write_bytes(header.pack() + data[HEADER_SIZE:])
    problems = verify_file(bad).problems
    assert len(problems) == 1 and "bits (4, 8, 17) are not those of its weights" in problems[0], problems


def test_a_chunks_wrong_token_grid_is_named_as_such(tok, tmp_path) -> None:
    """Only the chunk header's latent t changed (checksum made good): the error blamed the index,
    which holds no latent sizes."""
    data = bytearray(tok.read_bytes())
    t = struct.unpack_from("<H", data, HEADER_SIZE + 18)[0]
    struct.pack_into("<H", data, HEADER_SIZE + 18, t + 1)
    plen = struct.unpack_from("<I", data, HEADER_SIZE + 24)[0]
    start = HEADER_SIZE + CHUNK_HEADER_SIZE
    crc = zlib.crc32(bytes(data[start:start + plen]), zlib.crc32(bytes(data[HEADER_SIZE:HEADER_SIZE + 28])))
    struct.pack_into("<I", data, HEADER_SIZE + 28, crc)
    bad = tmp_path / "grid.tok"
    bad.write_bytes(bytes(data))
    with ContainerReader(bad) as reader, pytest.raises(FormatError, match=f"token grid {t + 1}x.* is not the {t}x"):
        reader.read_chunk(0)


def test_an_unknown_audio_kind_is_named_as_such(tmp_path) -> None:
    """An audio block of kind 2 was reported as one that "does not fit the file"."""
    from tokcodec.codec.entropy import RawBitsCoder

    header = Header(48, 32, 48, 32, 48, 32, Fraction(25), 0, 5, 4, 8, 18, 1, "tiny", "ab" * 32,
                    has_audio=True)
    path = tmp_path / "audio2.tok"
    with path.open("wb") as fh:
        writer = ContainerWriter(fh, header)
        writer.set_audio(b"not really audio", 0, kind=2)
        writer.add_chunk(5, header.latent_shape(5), RawBitsCoder().encode(np.zeros(header.latent_shape(5),
                                                                                   np.int64), 18))
        writer.close()
    assert AUDIO_HEADER_SIZE == 32
    with pytest.raises(FormatError, match="unknown kind 2"):
        ContainerReader(path)
