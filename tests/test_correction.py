"""The correction layer (codec/correction.py): fit, record, and its place in the .tok format."""
import os
import struct

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import tokcodec
from tokcodec.codec.container import ContainerReader
from tokcodec.codec.correction import Correction, CorrectionConfig, fit_correction, lowpass, upsample_matrix
from tokcodec.codec.correction_record import GAIN_UNIT, RECORD_HEADER_SIZE, max_record_bytes
from tokcodec.errors import FormatError


@pytest.mark.parametrize("pixels,grid", [(144, 9), (360, 23), (100, 1), (33, 4), (8, 8)])
def test_upsampling_is_bilinear_with_half_pixel_centres(pixels, grid):
    """The spec's interpolation equals torch's bilinear, align_corners=False, on any grid."""
    g = torch.randn(1, 1, grid, grid + 3, dtype=torch.float64)
    want = F.interpolate(g, size=(pixels, pixels + 5), mode="bilinear", align_corners=False)[0, 0].numpy()
    got = upsample_matrix(pixels, grid) @ g[0, 0].numpy() @ upsample_matrix(pixels + 5, grid + 3).T
    np.testing.assert_allclose(got, want, atol=1e-12)


def _smooth_offset(h: int, w: int) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    return np.stack([9 + 12 * x, -5 + 10 * np.sin(3 * y), 3 - 8 * x * y], -1)  # (H, W, 3)


def test_fit_removes_a_smooth_offset_and_pins_the_mean_colour():
    rng = np.random.default_rng(0)
    source = rng.integers(40, 216, (9, 72, 96, 3)).astype(np.uint8)
    decoded = np.clip(np.rint(source - _smooth_offset(72, 96)[None]), 0, 255).astype(np.uint8)
    err_before = np.abs(source.astype(float) - decoded).mean()
    assert err_before > 6
    for step, most in ((8, 2.0), (1, 0.8)):  # the default quantiser, and a fine one
        fix = fit_correction(source, decoded, CorrectionConfig(step=step, detail=False))
        assert fix.cell == 8 and fix.steps.shape == (3, 9, 12) and not fix.has_detail
        corrected = fix.apply_to_frames(decoded)
        err_after = np.abs(source.astype(float) - corrected).mean()
        assert err_after < most, (step, err_after)
        drift = np.abs(source.reshape(-1, 3).mean(0) - corrected.reshape(-1, 3).mean(0)).max()
        assert drift < 0.25, (step, drift)


def test_cell_follows_the_gop_length_unless_given():
    assert CorrectionConfig().cell_for(17) == 8 and CorrectionConfig().cell_for(1) == 24
    assert CorrectionConfig(cell=24).cell_for(1) == 24 and CorrectionConfig(cell=16).cell_for(17) == 16
    assert CorrectionConfig().grid_for(640, 360, 17) == (45, 80)
    assert CorrectionConfig().grid_for(640, 360, 1) == (15, 27)
    for bad in ({"cell": 4}, {"cell": 300}, {"step": 0}, {"pool": 1}, {"gain_step": 0}, {"ridge": -1}):
        with pytest.raises(ValueError):
            CorrectionConfig(**bad)


@pytest.mark.parametrize("detail", [False, True])
def test_record_round_trips_and_stays_within_its_bound(detail):
    rng = np.random.default_rng(1)
    grid = lambda: rng.integers(-127, 128, (3, 45, 80)).astype(np.int8)  # noqa: E731  (the finest cell)
    frames = 4097  # the longest GOP: the bound must hold its per-frame dc too
    extra = (16, 32, grid(), (-127, 5, 127), rng.integers(-127, 128, (frames, 3)).astype(np.int8)) if detail else ()
    fix = Correction(8, 8, (-12, 0, 1020), grid(), *extra)
    record = fix.pack()
    back = Correction.unpack(record, 640, 360, frames)
    assert (back.cell, back.step, back.dc, back.has_detail) == (8, 8, (-12, 0, 1020), detail)
    assert np.array_equal(back.steps, fix.steps)
    if detail:
        assert (back.pool, back.gain_step, back.temporal) == (16, 32, (-127, 5, 127))
        assert np.array_equal(back.gains, fix.gains) and np.array_equal(back.frame_dc, fix.frame_dc)
        with pytest.raises(FormatError, match="describes 4097 frames"):
            Correction.unpack(record, 640, 360, 17)  # a record for another GOP length
    assert len(record) <= max_record_bytes(640, 360)


def _bad_records() -> dict[str, bytes]:
    good = Correction(16, 8, (1, 2, 3), np.zeros((3, 23, 40), np.int8)).pack()
    head = bytearray(good[:RECORD_HEADER_SIZE])
    out = {"truncated": good[:5], "no grid": bytes(head), "zstd garbage": bytes(head) + b"\x28\xb5\x2f\xfd junk"}
    for name, offset, fmt, value in (("kind", 0, "<B", 7), ("cell", 1, "<B", 2), ("step", 2, "<B", 0),
                                     ("grid height", 4, "<H", 60000), ("dc", 8, "<h", -1021)):
        b = bytearray(good)
        struct.pack_into(fmt, b, offset, value)
        out[name] = bytes(b)
    import zstandard
    short = zstandard.ZstdCompressor().compress(bytes(3 * 23 * 40 - 1))
    out["short grid"] = bytes(head) + short
    detail = bytearray(Correction(16, 8, (1, 2, 3), np.zeros((3, 23, 40), np.int8), 16, 32,
                                  np.zeros((3, 23, 40), np.int8), (0, 0, 0), np.zeros((17, 3), np.int8)).pack())
    fields = RECORD_HEADER_SIZE + 4  # pool, gain step, frames
    out["detail truncated"] = bytes(detail[:RECORD_HEADER_SIZE + 1])
    for name, offset, fmt, value in (("pool", RECORD_HEADER_SIZE, "<B", 1), ("gain step", RECORD_HEADER_SIZE + 1, "<B", 0),
                                     ("no frames", RECORD_HEADER_SIZE + 2, "<H", 0),
                                     ("too many frames", RECORD_HEADER_SIZE + 2, "<H", 4098),
                                     ("more frames than sent", RECORD_HEADER_SIZE + 2, "<H", 18)):
        b = bytearray(detail)
        struct.pack_into(fmt, b, offset, value)
        out[name] = bytes(b)
    out["detail without gains"] = bytes(detail[:fields]) + out["zstd garbage"][RECORD_HEADER_SIZE:]
    out["gains missing"] = bytes(detail[:fields]) + zstandard.ZstdCompressor().compress(bytes(3 * 23 * 40))
    out["frame dc missing"] = bytes(detail[:fields]) + zstandard.ZstdCompressor().compress(bytes(6 * 23 * 40 + 3))
    return out


@pytest.mark.parametrize("name", list(_bad_records()))
def test_damaged_records_are_format_errors(name):
    with pytest.raises(FormatError):
        Correction.unpack(_bad_records()[name], 640, 360)


def _detail_record(seed: int, shape=(3, 45, 80), frames: int = 17) -> Correction:
    """A record with detail gains whose grids look like fitted ones (mostly small values)."""
    rng = np.random.default_rng(seed)
    steps = np.clip(np.round(rng.laplace(0, 1.5, shape)), -127, 127).astype(np.int8)
    gains = (2 * np.clip(np.round(rng.laplace(0, 0.6, shape)), -3, 3)).astype(np.int8)
    return Correction(8, 4, (3, -5, 40), steps, 16, 24, gains, (4, -2, 0),
                      rng.integers(-3, 4, (frames, 3)).astype(np.int8))


def test_range_coded_records_hold_the_same_values_in_fewer_bytes():
    from tokcodec.codec.correction_record import KIND_GRID_DETAIL, KIND_GRID_DETAIL_CODED, record_needs_previous

    first, second = _detail_record(1), _detail_record(1)
    second.steps[:, ::3] += 1                   # the next GOP: much the same grids
    zstd_record, coded = second.pack(coded=False), second.pack()
    assert (zstd_record[0], coded[0]) == (KIND_GRID_DETAIL, KIND_GRID_DETAIL_CODED)
    assert len(coded) < len(zstd_record)
    linked = second.pack(first)
    assert record_needs_previous(linked) and not record_needs_previous(coded) and len(linked) < len(coded)
    for record, previous in ((zstd_record, None), (coded, None), (linked, first)):
        back = Correction.unpack(record, 640, 360, 17, previous)
        assert np.array_equal(back.steps, second.steps) and np.array_equal(back.gains, second.gains)
        assert np.array_equal(back.frame_dc, second.frame_dc) and back.temporal == second.temporal
        assert (back.cell, back.step, back.dc, back.pool, back.gain_step) == (8, 4, (3, -5, 40), 16, 24)
    with pytest.raises(FormatError, match="previous GOP's record"):
        Correction.unpack(linked, 640, 360, 17)
    with pytest.raises(FormatError):            # another previous record: the decode goes astray
        Correction.unpack(linked, 640, 360, 17, _detail_record(2))
    for broken in (coded[:-1], coded + b"\0", coded[:RECORD_HEADER_SIZE + 10], coded[:3] + b"\x02" + coded[4:]):
        with pytest.raises(FormatError):
            Correction.unpack(broken, 640, 360, 17)


def test_range_coded_record_bytes_are_pinned():
    """The exact bytes of two kind 3 records (one coded against the other): a change to the
    binarisation, the contexts, the adaptation or the range coder changes files, and fails here."""
    import zlib

    a, b = _detail_record(3), _detail_record(4)
    b.steps[:, ::2] = a.steps[:, ::2]
    plain, linked = b.pack(), b.pack(a)
    assert (len(plain), zlib.crc32(plain)) == (6802, 382491872)
    assert (len(linked), zlib.crc32(linked), linked[3]) == (6117, 2676462378, 1)


def test_range_coded_records_are_the_same_bytes_without_numba():
    import subprocess
    import sys

    code = ("import hashlib, sys; sys.path.insert(0, 'tests'); from test_correction import _detail_record; "
            "from tokcodec.codec.correction import Correction; "
            "a, b = _detail_record(3), _detail_record(4); b.steps[:, ::2] = a.steps[:, ::2]; "
            "coded, linked = b.pack(), b.pack(a); "
            "back = [Correction.unpack(r, 640, 360, 17, a) for r in (coded, linked)]; "
            "print(hashlib.sha256(coded + linked + b''.join(x.grids().tobytes() for x in back)).hexdigest())")
    out = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env={**os.environ, **env}).stdout for env in ({}, {"TOKCODEC_NO_NUMBA": "1"})]
    assert out[0] == out[1] and len(out[0]) == 65


@pytest.mark.parametrize("what", ["content size", "window"])
def test_a_frame_asking_for_gigabytes_is_refused_before_allocating(what):
    """A zstd frame header can state a content size or a window of gigabytes, which zstd would
    allocate before reading a byte (found by bench/fuzz_reader.py: a resealed bit flip in a 40x32
    file's record, whose frame then stated 2.2 GB, made the reader allocate 2 GB before failing);
    the record's own size bounds what is allocated. (tracemalloc sees the content buffer, which
    Python allocates, not zstd's own window: there the refusal itself is the check.)"""
    import tracemalloc

    import zstandard

    if what == "content size":  # that fuzz case's record, as found
        record, size = bytes.fromhex("01180400020002000a004400c0ff28b52ffda00ce100820af50001e8f91337edfe16ff"), (40, 32)
    else:
        head = Correction(16, 8, (0, 0, 0), np.zeros((3, 23, 40), np.int8)).pack()[:RECORD_HEADER_SIZE]
        params = zstandard.ZstdCompressionParameters.from_level(1, window_log=30, write_content_size=False)
        stream = zstandard.ZstdCompressor(compression_params=params).compressobj()  # size unknown:
        record, size = head + stream.compress(bytes(3 * 23 * 40)) + stream.flush(), (640, 360)  # 1 GB window
    tracemalloc.start()
    try:
        with pytest.raises(FormatError, match="does not decompress"):
            Correction.unpack(record, *size)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20


@pytest.mark.parametrize("h,w,pool", [(72, 96, 16), (45, 70, 16), (20, 33, 8), (5, 7, 16)])
def test_lowpass_is_block_means_upsampled(h, w, pool):
    """The spec's low-pass: means over pool x pool blocks (edge blocks over the pixels they
    hold), upsampled with the grid's interpolation."""
    x = torch.rand(2, h, w, 3, dtype=torch.float64) * 255
    bh, bw = -(-h // pool), -(-w // pool)
    means = np.zeros((2, bh, bw, 3))
    for i in range(bh):
        for j in range(bw):
            means[:, i, j] = x[:, i * pool:(i + 1) * pool, j * pool:(j + 1) * pool].mean((1, 2)).numpy()
    want = np.einsum("yi,tijc,xj->tyxc", upsample_matrix(h, bh), means, upsample_matrix(w, bw))
    np.testing.assert_allclose(lowpass(x, pool).numpy(), want, atol=1e-9)


def _softened(seed: int, kept: float) -> tuple[np.ndarray, torch.Tensor]:
    """A 9-frame 96x128 source (uint8) and a decode (float) keeping ``kept`` of its detail."""
    rng = np.random.default_rng(seed)
    base = torch.from_numpy(rng.uniform(30, 220, (9, 8, 12, 3)))
    source_f = F.interpolate(base.permute(0, 3, 1, 2), size=(96, 128), mode="bicubic",
                             align_corners=False).permute(0, 2, 3, 1).clamp(0, 255)
    soft = lowpass(source_f, 16) + kept * (source_f - lowpass(source_f, 16))
    return source_f.round().to(torch.uint8).numpy(), soft


def test_detail_gains_restore_a_softened_picture():
    """A decode that lost half its local detail, with an offset: the gains bring the detail
    back, and a flat decode (no detail to scale) gets zero gains."""
    source, soft = _softened(3, 0.5)
    decoded = np.clip(np.rint(soft.numpy() - _smooth_offset(96, 128)[None]), 0, 255).astype(np.uint8)
    mse = lambda a, b: float(((a.astype(float) - b) ** 2).mean())  # noqa: E731
    offsets_only = fit_correction(source, decoded, CorrectionConfig(detail=False))
    both = fit_correction(source, decoded, CorrectionConfig(sharpen=1))
    assert both.has_detail and (both.pool, both.gain_step) == (16, 24)
    gain = GAIN_UNIT * both.gain_step * both.gains.mean()
    assert 0.6 < gain < 1.4, gain  # about +1: the detail halved, doubled back
    err_offsets = mse(source, offsets_only.apply_to_frames(decoded))
    err_both = mse(source, both.apply_to_frames(decoded))
    assert err_both < 0.5 * err_offsets, (err_both, err_offsets)
    flat = np.full((9, 64, 64, 3), 128, np.uint8)
    assert not fit_correction(flat, flat, CorrectionConfig()).gains.any()


def test_sharpen_scales_the_fitted_gains():
    """``sharpen`` multiplies the quantised least-squares gains (the default sends 1.5 times
    the fit; gains that quantise to 0 stay 0), 0 sends none, and the offsets are refitted to
    what the gains leave: the mean colour stays pinned whatever the gains."""
    source, soft = _softened(5, 0.7)
    decoded = np.clip(np.rint(soft.numpy()), 0, 255).astype(np.uint8)
    steps = lambda k: fit_correction(source, decoded, CorrectionConfig(sharpen=k)).gains  # noqa: E731
    fitted = steps(1)
    assert 0.25 < GAIN_UNIT * 24 * fitted.mean() < 0.6, fitted.mean()  # about 1 / 0.7 - 1
    auto = CorrectionConfig()  # 1.5 for GOPs of 9 frames or more (this one), 1 for shorter ones
    assert (auto.sharpen_for(9), auto.sharpen_for(8), auto.sharpen_for(1)) == (1.5, 1.0, 1.0)
    np.testing.assert_array_equal(fit_correction(source, decoded, auto).gains, steps(1.5))
    short_fit = fit_correction(source[:5], decoded[:5], CorrectionConfig(sharpen=1)).gains
    assert short_fit.any()
    np.testing.assert_array_equal(fit_correction(source[:5], decoded[:5], auto).gains, short_fit)
    for k in (1.5, 2, 3.2):
        np.testing.assert_array_equal(steps(k), np.clip(np.rint(k * fitted.astype(float)), -127, 127))
    assert steps(1.5).astype(int).sum() > 1.4 * fitted.astype(int).sum()
    # the nearest step, halves to even: at 1.5 one step becomes two, two three, three four
    for one, want in ((1, 2), (2, 3), (3, 4), (-1, -2)):
        if (fitted == one).any():
            assert (steps(1.5)[fitted == one] == want).all(), one
    assert (fitted == 1).any() and not steps(0.5).any()
    assert not steps(0).any()
    for k in (0, 1, 2):
        out = fit_correction(source, decoded, CorrectionConfig(sharpen=k)).apply_to_frames(decoded)
        assert np.abs(out.astype(float).mean((0, 1, 2)) - source.mean((0, 1, 2))).max() < 0.6
    for bad in (-0.5, 4.5, float("nan")):
        with pytest.raises(ValueError, match="sharpen"):
            CorrectionConfig(sharpen=bad)
    for without_gains in ({"detail": False}, {"enabled": False}):
        with pytest.raises(ValueError, match="detail gains"):
            CorrectionConfig(sharpen=1.5, **without_gains)


def test_per_frame_dc_and_temporal_blend_remove_flicker():
    """Decodes that flicker: a brightness step per frame is taken out (by the per-frame dc and
    the blend together), noise that changes every frame is averaged by the temporal blend."""
    from tokcodec.codec.container import MAX_GOP
    from tokcodec.codec.correction_record import MAX_GOP_FRAMES, TEMPORAL_UNIT

    assert MAX_GOP_FRAMES == MAX_GOP
    rng = np.random.default_rng(4)
    source = np.repeat(rng.integers(60, 190, (1, 48, 64, 3)), 9, 0).astype(np.uint8)
    steps = np.array([0, 3, -2, 4, -3, 2, 0, -4, 1], float)[:, None, None, None]
    mse = lambda a, b: float(((a.astype(float) - b) ** 2).mean())  # noqa: E731
    for name, shift, noise in (("steps", steps, 0.0), ("noise", 0.0, 4.0)):
        decoded = np.clip(np.rint(source + shift + rng.normal(0, noise, source.shape)), 0, 255).astype(np.uint8)
        fix = Correction.unpack(fit_correction(source, decoded, CorrectionConfig()).pack(), 64, 48, 9)
        assert fix.frame_dc.shape == (9, 3), name
        spatial = Correction(fix.cell, fix.step, fix.dc, fix.steps, fix.pool, fix.gain_step, fix.gains,
                             (0, 0, 0), np.zeros((9, 3), np.int8))
        before, after = mse(source, spatial.apply_to_frames(decoded)), mse(source, fix.apply_to_frames(decoded))
        assert after < (0.2 if name == "steps" else 0.8) * before, (name, before, after)
        if name == "noise":
            assert all(0.1 < TEMPORAL_UNIT * b < 1.0 for b in fix.temporal), fix.temporal


def test_decode_applies_the_temporal_blend_as_the_fit_does():
    """tensor_to_frames (decode, frame by frame with its neighbours) and Correction.apply_ (the
    whole GOP at once) give the same frames."""
    from tokcodec.codec.container import Header
    from tokcodec.codec.tensors import tensor_to_frames

    rng = np.random.default_rng(5)
    video = torch.rand(1, 3, 5, 16, 24) * 2 - 1
    fix = Correction(8, 4, (3, -2, 1), rng.integers(-3, 4, (3, 2, 3)).astype(np.int8), 8, 24,
                     rng.integers(-3, 4, (3, 2, 3)).astype(np.int8), (20, -10, 5),
                     rng.integers(-8, 9, (5, 3)).astype(np.int8))
    from fractions import Fraction

    header = Header(24, 16, 24, 16, 24, 16, Fraction(25), 5, 5, 4, 8, 18, 3, "tiny", "0" * 64)
    decoded = tensor_to_frames(video, 5, header, fix)
    frames = video[0].permute(1, 2, 3, 0).clamp(-1, 1).add(1).mul(127.5)
    want = fix.apply_(frames.clone()).round().to(torch.uint8).numpy()
    assert np.abs(decoded.astype(int) - want).max() <= 1  # float order of operations only


def test_a_record_for_another_frame_size_is_refused():
    record = Correction(16, 8, (0, 0, 0), np.zeros((3, 23, 40), np.int8)).pack()
    with pytest.raises(FormatError, match="does not fit"):
        Correction.unpack(record, 640, 400)


@pytest.fixture(scope="module")
def tinted_clip(tmp_path_factory):
    """A clip with a strong colour cast and a gradient: what the tokenizer alone shifts."""
    from conftest import write_clip

    rng = np.random.default_rng(2)
    h, w = 96, 128
    base = np.array([150, 120, 90], float) + _smooth_offset(h, w) * 2
    clip = np.clip(np.rint(base[None] + rng.normal(0, 3, (13, h, w, 3))), 0, 255).astype(np.uint8)
    return write_clip(tmp_path_factory.mktemp("tint") / "tint.mkv", clip)


def test_codec_path_sends_and_applies_the_correction(tmp_path, tinted_clip):
    # passes=0: the one-shot encoder's tokens, the same with or without the correction (the
    # closed-loop passes feed back only what the correction cannot remove, so theirs differ)
    with_fix = tokcodec.encode_video(tinted_clip, tmp_path / "c.tok", passes=0)
    without = tokcodec.encode_video(tinted_clip, tmp_path / "n.tok", correction=False, passes=0)
    assert with_fix.correction_bytes > 0 and without.correction_bytes == 0
    assert with_fix.bytes == without.bytes + with_fix.correction_bytes + 4 * 1  # + one u32 per chunk
    info_c, info_n = tokcodec.file_info(tmp_path / "c.tok"), tokcodec.file_info(tmp_path / "n.tok")
    assert info_c.header.version == (2, 2) and info_n.header.version == (1, 0)
    assert info_c.correction_bytes == with_fix.correction_bytes and info_n.correction_bytes == 0
    assert info_c.payload_bits_per_token == info_n.payload_bits_per_token  # same tokens
    for name in ("c", "n"):
        tokcodec.decode_video(tmp_path / f"{name}.tok", tmp_path / f"{name}.mkv")
    c = tokcodec.compare_videos(tinted_clip, tmp_path / "c.mkv")
    n = tokcodec.compare_videos(tinted_clip, tmp_path / "n.mkv")
    assert c["psnr"] > n["psnr"] + 0.3, (c, n)
    assert c["colour_drift"] < 1.0, c
    # the tokens alone still decode the same way (what a language model reads)
    assert all(np.array_equal(a, b) for a, b in zip(tokcodec.read_tokens(tmp_path / "c.tok")[1],
                                                    tokcodec.read_tokens(tmp_path / "n.tok")[1]))
    # offsets only: format 2.0, a little less close than with the detail gains
    offsets = tokcodec.encode_video(tinted_clip, tmp_path / "o.tok", correction=CorrectionConfig(detail=False),
                                    passes=0)
    assert tokcodec.file_info(tmp_path / "o.tok").header.version == (2, 0)
    assert offsets.correction_bytes < with_fix.correction_bytes
    tokcodec.decode_video(tmp_path / "o.tok", tmp_path / "o.mkv")
    o = tokcodec.compare_videos(tinted_clip, tmp_path / "o.mkv")
    assert n["psnr"] + 0.3 < o["psnr"] <= c["psnr"] + 0.05, (o, c)


def test_a_damaged_correction_is_a_chunk_error_and_salvage_drops_the_chunk(tmp_path, tinted_clip):
    import zlib

    from tokcodec.codec.container import CHUNK_HEADER_SIZE

    tokcodec.encode_video(tinted_clip, tmp_path / "c.tok", gop=9)  # chunks of frames 0-8 and 9-12
    data = bytearray((tmp_path / "c.tok").read_bytes())
    with ContainerReader(tmp_path / "c.tok") as reader:
        e = reader.entries[0]
        chunk = reader.read_chunk(0)
    # change the record's cell (byte 1 of the record) and reseal the chunk's CRC: only the
    # record's own checks can catch it
    record_at = e.offset + CHUNK_HEADER_SIZE + 4 + len(chunk.payload)
    data[record_at + 1] = 9
    start, end = e.offset, e.offset + CHUNK_HEADER_SIZE + e.payload_len
    crc = zlib.crc32(bytes(data[start + CHUNK_HEADER_SIZE:end]), zlib.crc32(bytes(data[start:start + CHUNK_HEADER_SIZE - 4])))
    struct.pack_into("<I", data, start + CHUNK_HEADER_SIZE - 4, crc)
    (tmp_path / "bad.tok").write_bytes(bytes(data))
    with pytest.raises(FormatError, match="chunk 0"):
        tokcodec.decode_video(tmp_path / "bad.tok", tmp_path / "bad.mkv")
    st = tokcodec.decode_video(tmp_path / "bad.tok", tmp_path / "s.mkv", salvage=True)
    assert st.lost_frames == [(0, 8)] and st.frames == 13
    assert not tokcodec.verify_file(tmp_path / "bad.tok", weights=False).ok


def test_an_unknown_major_version_is_refused_clearly(tmp_path, tinted_clip):
    import zlib

    from tokcodec.codec.container import HEADER_SIZE

    tokcodec.encode_video(tinted_clip, tmp_path / "c.tok", max_frames=1)
    data = bytearray((tmp_path / "c.tok").read_bytes())
    struct.pack_into("<H", data, 8, 3)
    struct.pack_into("<I", data, HEADER_SIZE - 4, zlib.crc32(bytes(data[:HEADER_SIZE - 4])))
    (tmp_path / "v3.tok").write_bytes(bytes(data))
    with pytest.raises(FormatError, match=r"version 3\.2 .*reads 1\.x and 2\.x"):
        tokcodec.file_info(tmp_path / "v3.tok")


def test_uncorrectable_is_the_residual_minus_its_grid_fit():
    from tokcodec.codec.correction import uncorrectable

    g = torch.randn(2, 3, 1, 3, 4, dtype=torch.float64)  # a field the grid can make, constant in time
    field = torch.tensor(upsample_matrix(40, 3)) @ g @ torch.tensor(upsample_matrix(56, 4)).T
    noise = torch.randn(2, 3, 5, 40, 56, dtype=torch.float64)
    assert uncorrectable(field.expand(-1, -1, 5, -1, -1), (3, 4)).abs().max() < 1e-9
    once = uncorrectable(noise, (3, 4))
    torch.testing.assert_close(uncorrectable(once, (3, 4)), once)  # a projection
    assert once.square().sum() < noise.square().sum()


def test_describing_a_file_does_not_load_torch():
    """`tokcodec info` reads headers, the index and the records' kinds: the record format lives in
    correction_record, torch-free, so the command starts in a fraction of a second (2 s with torch)."""
    import subprocess
    import sys

    from tokcodec.codec.correction_record import CorrectionRecord

    record = _detail_record(3)
    back = CorrectionRecord.unpack(record.pack(), 640, 360, 17)
    assert np.array_equal(back.grids(), record.grids()) and type(back).__name__ == "CorrectionRecord"
    code = ("import sys; import tokcodec.cli.app, tokcodec.codec.info, tokcodec.codec.container, "
            "tokcodec.codec.correction_record; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
