from fractions import Fraction

import numpy as np
import pytest

from tokcodec.codec.container import (CHUNK_HEADER_SIZE, HEADER_SIZE, ContainerReader,
                                      ContainerWriter, Header)
from tokcodec.codec.entropy import RawBitsCoder, get_coder
from tokcodec.errors import FormatError


def make_header(**kw) -> Header:
    base = dict(width=101, height=70, coded_width=101, coded_height=70, padded_width=104,
                padded_height=72, frame_rate=Fraction(30000, 1001), frame_count=0, gop=9,
                temporal_factor=4, spatial_factor=8, bits=18, coder_id=1, model_name="tiny",
                weights_sha256="ab" * 32)
    base.update(kw)
    return Header(**base)


def write_file(path, frames_per_chunk=(9, 9, 3), seed=0):
    header = make_header()
    rng = np.random.default_rng(seed)
    coder = RawBitsCoder()
    grids = []
    with path.open("wb") as fh:
        w = ContainerWriter(fh, header)
        for n in frames_per_chunk:
            shape = header.latent_shape(n)
            g = rng.integers(0, 2 ** 18, size=shape)
            grids.append(g)
            w.add_chunk(n, shape, coder.encode(g, 18))
        w.close()
    return header, grids


def read_all(path):
    with ContainerReader(path) as r:
        coder = get_coder(r.header.coder_id)
        return r.header, [coder.decode(c.payload, c.latent_shape, 18) for c in r.chunks()]


def test_round_trip(tmp_path):
    p = tmp_path / "a.tok"
    header, grids = write_file(p)
    h2, back = read_all(p)
    assert h2.frame_rate == Fraction(30000, 1001)
    assert h2.frame_count == 21  # patched in at close
    assert (h2.width, h2.height, h2.padded_width, h2.padded_height) == (101, 70, 104, 72)
    assert h2.weights_sha256 == "ab" * 32 and h2.model_name == "tiny"
    for a, b in zip(grids, back):
        assert np.array_equal(a, b)


def test_raw_coder_is_18_bits_per_token():
    g = np.random.default_rng(0).integers(0, 2 ** 18, size=(5, 16, 16))
    assert len(RawBitsCoder().encode(g, 18)) * 8 == 5 * 256 * 18


def test_truncated_file_is_a_clean_error(tmp_path):
    p = tmp_path / "a.tok"
    write_file(p)
    data = p.read_bytes()
    for cut in (0, 10, HEADER_SIZE - 1, HEADER_SIZE + 5, len(data) // 2, len(data) - 1):
        p.write_bytes(data[:cut])
        with pytest.raises(FormatError):
            read_all(p)


def test_every_byte_is_covered_by_a_checksum(tmp_path):
    p = tmp_path / "a.tok"
    write_file(p, frames_per_chunk=(1, 5))
    data = bytearray(p.read_bytes())
    for i in range(len(data)):
        corrupt = bytearray(data)
        corrupt[i] ^= 0x10
        p.write_bytes(bytes(corrupt))
        with pytest.raises(FormatError):
            read_all(p)


def test_corrupted_chunk_is_named(tmp_path):
    p = tmp_path / "a.tok"
    write_file(p)
    data = bytearray(p.read_bytes())
    with ContainerReader(p) as r:
        off = r.entries[1].offset
    data[off + CHUNK_HEADER_SIZE + 7] ^= 1
    p.write_bytes(bytes(data))
    with pytest.raises(FormatError, match="chunk 1"):
        read_all(p)


def test_unknown_version(tmp_path):
    p = tmp_path / "a.tok"
    write_file(p)
    data = bytearray(p.read_bytes())
    data[8] = 9
    p.write_bytes(bytes(data))
    with pytest.raises(FormatError, match="version 9"):
        read_all(p)


def test_unknown_coder_id():
    with pytest.raises(FormatError, match="unknown entropy coder"):
        get_coder(250)


def test_not_a_tok_file(tmp_path):
    p = tmp_path / "x.tok"
    p.write_bytes(b"hello world" * 20)
    with pytest.raises(FormatError, match="not a .tok file"):
        read_all(p)


@pytest.mark.parametrize("fields, needle", [
    (dict(width=16384, height=16384), "cannot be coded at"),   # 8 GB frames from a 104x72 token area
    (dict(width=20, height=70), "cannot be coded at"),         # beyond --scale 2
    (dict(width=8192, height=8192, coded_width=8192, coded_height=8192, padded_width=8192,
          padded_height=8192), "megapixels"),
])
def test_a_display_size_encode_cannot_make_is_refused(fields, needle):
    """Decode allocates frames at the header's display size: it must be one that --scale in
    [0.05, 2] makes from the coded size, within the frame-size guard."""
    with pytest.raises(FormatError, match=needle):
        Header.unpack(make_header(**fields).pack(), "x.tok")


def test_every_size_encode_makes_is_accepted():
    from tokcodec.codec.container import check_display_size
    from tokcodec.codec.tensors import coded_size

    rng = np.random.default_rng(0)
    for _ in range(3000):
        w, h = int(rng.integers(1, 8193)), int(rng.integers(1, 4609))
        scale = float(rng.choice([0.05, 0.1, 0.5, 0.75, 1, 1.25, 2, rng.uniform(0.05, 2)]))
        try:
            cw, ch = coded_size(w, h, scale)
        except ValueError:  # over the frame-size guard
            continue
        check_display_size(w, h, cw, ch, "x")
