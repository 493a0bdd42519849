from fractions import Fraction

import numpy as np
import pytest
import torch

from conftest import smooth_clip, write_clip
from tokcodec.codec.pipeline import (compare_videos, decode_video, encode_video, file_info,
                                     read_tokens)
from tokcodec.errors import InputError, ModelError, OutputError
from tokcodec.io import probe, read_frames
from tokcodec.model.zoo import load_tokenizer, save_weights


@pytest.mark.parametrize("frames", [1, 5, 17, 18])
def test_frame_counts_round_trip(tmp_path, tiny_model, frames):
    src = write_clip(tmp_path / "in.mkv", smooth_clip(frames, 24, 40))
    st = encode_video(src, tmp_path / "a.tok", model=tiny_model)
    assert st.frames == frames
    info = file_info(tmp_path / "a.tok")
    assert info.frames == frames
    gops = -(-frames // 17)
    assert info.chunks_count == gops
    decode_video(tmp_path / "a.tok", tmp_path / "out.mkv", model=tiny_model)
    assert read_frames(tmp_path / "out.mkv").shape == (frames, 24, 40, 3)


def test_odd_size_is_padded_and_cropped_back(tmp_path, tiny_model):
    src = write_clip(tmp_path / "in.mkv", smooth_clip(5, 270, 481), Fraction(30000, 1001))
    encode_video(src, tmp_path / "a.tok", model=tiny_model)
    h, grids, frames = read_tokens(tmp_path / "a.tok")
    assert (h.padded_width, h.padded_height) == (488, 272)
    assert grids[0].shape == (2, 34, 61) and frames == [5]
    decode_video(tmp_path / "a.tok", tmp_path / "out.mkv", model=tiny_model)
    info = probe(tmp_path / "out.mkv")
    assert (info.width, info.height) == (481, 270)
    assert info.frame_rate == Fraction(30000, 1001)


def test_gop_streaming_chunks(tmp_path, tiny_model):
    src = write_clip(tmp_path / "in.mkv", smooth_clip(20, 16, 16))
    encode_video(src, tmp_path / "a.tok", model=tiny_model, gop=5)
    info = file_info(tmp_path / "a.tok")
    assert [c.frames for c in info.chunks] == [5, 5, 5, 5]
    assert info.tokens == 4 * 2 * 2 * 2


def test_scale_records_size_and_restores_it(tmp_path, tiny_model):
    src = write_clip(tmp_path / "in.mkv", smooth_clip(5, 64, 96))
    full = encode_video(src, tmp_path / "a.tok", model=tiny_model)
    half = encode_video(src, tmp_path / "b.tok", model=tiny_model, scale=0.5)
    assert half.bytes < full.bytes
    h, grids, _ = read_tokens(tmp_path / "b.tok")
    assert (h.coded_width, h.coded_height) == (48, 32) and grids[0].shape[1:] == (4, 6)
    decode_video(tmp_path / "b.tok", tmp_path / "b.mkv", model=tiny_model)
    assert read_frames(tmp_path / "b.mkv").shape == (5, 64, 96, 3)
    larger = encode_video(src, tmp_path / "c.tok", model=tiny_model, scale=1.5)
    assert larger.scale == 1.5 and read_tokens(tmp_path / "c.tok")[0].coded_width == 144
    decode_video(tmp_path / "c.tok", tmp_path / "c.mkv", model=tiny_model)
    assert read_frames(tmp_path / "c.mkv").shape == (5, 64, 96, 3)
    for bad in (0.01, 2.5):
        with pytest.raises(ValueError, match="--scale must lie in"):
            encode_video(src, tmp_path / "d.tok", model=tiny_model, scale=bad)


def test_coded_sizes_stay_within_what_a_file_can_hold():
    from tokcodec.codec.tensors import coded_size

    assert coded_size(4, 6, 1.0) == (8, 8) and coded_size(4000, 2000, 2.0) == (8000, 4000)
    with pytest.raises(ValueError, match="smaller --scale"):
        coded_size(8200, 100, 2.0)  # a side over 16384
    with pytest.raises(ValueError, match="smaller --scale"):
        coded_size(7680, 4320, 2.0)  # an 8K frame doubled: over the frame-size guard



@pytest.mark.parametrize("suffix", [".mp4", ".y4m", ".mkv", "dir"])
def test_output_formats(tmp_path, tiny_model, suffix):
    src = write_clip(tmp_path / "in.mkv", smooth_clip(5, 32, 48))
    encode_video(src, tmp_path / "a.tok", model=tiny_model)
    out = tmp_path / ("frames" if suffix == "dir" else "out" + suffix)
    st = decode_video(tmp_path / "a.tok", out, model=tiny_model)
    target = out / "frame_000000.png" if suffix == "dir" else out
    back = read_frames(target)
    assert back.shape[1:] == (32, 48, 3)
    assert st.frames == 5
    if suffix == "dir":
        assert len(list(out.glob("frame_*.png"))) == 5


def test_image_input_is_a_one_frame_video(tmp_path, tiny_model):
    img = write_clip(tmp_path / "in.png", smooth_clip(1, 40, 56))
    st = encode_video(img, tmp_path / "a.tok", model=tiny_model)
    assert st.frames == 1
    decode_video(tmp_path / "a.tok", tmp_path / "out.png", model=tiny_model)
    assert read_frames(tmp_path / "out.png").shape == (1, 40, 56, 3)


def test_ten_bit_input(tmp_path, tiny_model):
    import av
    path = tmp_path / "in10.mkv"
    frames = smooth_clip(5, 32, 32)
    with av.open(str(path), "w") as c:
        s = c.add_stream("ffv1", rate=25)
        s.width, s.height, s.pix_fmt = 32, 32, "yuv420p10le"
        for f in frames:
            vf = av.VideoFrame.from_ndarray(f, format="rgb24").reformat(format="yuv420p10le")
            for p in s.encode(vf):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    assert probe(path).pixel_format == "yuv420p10le"
    back = read_frames(path)
    assert back.shape == (5, 32, 32, 3) and back.dtype == np.uint8
    assert encode_video(path, tmp_path / "a.tok", model=tiny_model).frames == 5


def test_existing_output_needs_overwrite(tmp_path, tiny_model):
    src = write_clip(tmp_path / "in.mkv", smooth_clip(1, 16, 16))
    encode_video(src, tmp_path / "a.tok", model=tiny_model)
    with pytest.raises(OutputError, match="already exists"):
        encode_video(src, tmp_path / "a.tok", model=tiny_model)
    encode_video(src, tmp_path / "a.tok", model=tiny_model, overwrite=True)


def test_no_partial_output_on_failure(tmp_path, tiny_model):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 1000)
    with pytest.raises(InputError):
        encode_video(bad, tmp_path / "a.tok", model=tiny_model)
    assert list(tmp_path.iterdir()) == [bad]


def test_weights_hash_mismatch(tmp_path, tiny_model):
    src = write_clip(tmp_path / "in.mkv", smooth_clip(1, 16, 16))
    encode_video(src, tmp_path / "a.tok", model=tiny_model)
    other = load_tokenizer("tiny")
    state = {k: v + 0.01 if v.is_floating_point() else v for k, v in other.tokenizer.state_dict().items()}
    save_weights(state, other.config, tmp_path / "other.safetensors")
    with pytest.raises(ModelError, match="hash mismatch"):
        decode_video(tmp_path / "a.tok", tmp_path / "o.mkv", model=str(tmp_path / "other.safetensors"))


def test_custom_weights_file_round_trip(tmp_path, tiny_model):
    src = write_clip(tmp_path / "in.mkv", smooth_clip(5, 16, 16))
    w = tmp_path / "mine.safetensors"
    save_weights(tiny_model.tokenizer.state_dict(), tiny_model.config, w, fp16=False)
    encode_video(src, tmp_path / "a.tok", model=str(w))
    assert decode_video(tmp_path / "a.tok", tmp_path / "o.mkv", model=str(w)).frames == 5
    assert compare_videos(src, tmp_path / "o.mkv")["frames"] == 5
    # without --model the file names the weights it needs
    with pytest.raises(ModelError, match="custom weights 'mine'.*pass --model"):
        decode_video(tmp_path / "a.tok", tmp_path / "o2.mkv")


def test_library_keeps_callers_thread_count(tmp_path, tiny_model):
    """Only the CLI applies its one-thread-per-core policy; a library caller's choice stands."""
    import torch

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        src = write_clip(tmp_path / "in.mkv", smooth_clip(5, 16, 16))
        encode_video(src, tmp_path / "a.tok", model=tiny_model)
        decode_video(tmp_path / "a.tok", tmp_path / "o.mkv", model=tiny_model)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("scale", [1.0, 0.5, 1.5, "tiny"])
@pytest.mark.parametrize("layout", ["fp32", "bf16-channels-last"])
def test_frames_from_decoder_output(tiny_model, scale, layout):
    """tensor_to_frames equals the plain formula (crop, resize back, clamp, round) in any layout,
    and leaves the decoder's tensor as it was. A scale above 1 shrinks back with an antialiased
    filter; below 1 the enlargement is the plain bicubic files made before scales above 1 decode with."""
    import torch
    import torch.nn.functional as F

    from tokcodec.codec.pipeline import make_header, tensor_to_frames
    from tokcodec.device import Runtime

    # "tiny": a 6x5 source is coded at 8x8 (the least), as files from before scales above 1 were:
    # it is enlarged back with the plain bicubic it always was, not shrunk with antialiasing
    width, height = (6, 5) if scale == "tiny" else (50, 30)
    header = make_header(tiny_model, Runtime(torch.device("cpu"), "fp32"), width, height,
                         scale=1.0 if scale == "tiny" else scale)
    torch.manual_seed(0)
    video = torch.rand(1, 3, 5, header.padded_height, header.padded_width) * 2.4 - 1.2
    if layout != "fp32":
        video = video.to(torch.bfloat16).contiguous(memory_format=torch.channels_last_3d)
    kept = video.clone()
    x = video[0, :, :4, :header.coded_height, :header.coded_width].float().permute(1, 0, 2, 3)
    if scale != 1.0:
        x = F.interpolate(x, size=(height, width), mode="bicubic", align_corners=False,
                          antialias=scale != "tiny" and scale > 1)
    expected = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    frames = tensor_to_frames(video, 4, header)
    assert frames.shape == (4, height, width, 3) and frames.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(frames, expected)
    assert torch.equal(video, kept)


def test_files_of_a_previous_version_of_a_preset_decode(tmp_path, monkeypatch):
    """When a preset's shipped weights are replaced, the old ones stay shipped as
    PRESET-SHA8.safetensors: files made with them decode without --model (one by one, in a batch
    beside files of the current version, and under verify); a hash no shipped file has is refused."""
    from tokcodec.batch.work import BatchOptions, Worker
    from tokcodec.codec.verify import verify_file
    from tokcodec.model import zoo
    from tokcodec.model.presets import get_preset

    weights = tmp_path / "weights"
    weights.mkdir()
    tiny = get_preset("tiny")
    old = save_weights(zoo.random_init(tiny, 1).state_dict(), tiny, weights / "old.safetensors")
    (weights / "old.safetensors").rename(weights / f"tiny-{old[:8]}.safetensors")
    new = save_weights(zoo.random_init(tiny, 2).state_dict(), tiny, weights / "tiny.safetensors")
    (weights / "SHA256SUMS").write_text(f"{old}  tiny-{old[:8]}.safetensors\n{new}  tiny.safetensors\n")
    monkeypatch.setattr(zoo, "WEIGHTS_DIR", weights)

    assert zoo.shipped_version("tiny", new) == weights / "tiny.safetensors"
    assert zoo.shipped_version("tiny", old) == weights / f"tiny-{old[:8]}.safetensors"
    assert zoo.shipped_version("small", old) is None  # another preset's name never matches
    assert zoo.shipped_version(f"tiny-{old[:8]}", old) is None  # nor a file stem
    assert zoo.kept_versions("tiny") == [old[:8]] and zoo.kept_versions("small") == []
    previous = zoo.load_tokenizer_version("tiny", old)
    assert (previous.name, previous.sha256) == ("tiny", old)
    assert zoo.load_tokenizer_version("tiny", "0" * 64).sha256 == new  # unknown: the current ones

    src = write_clip(tmp_path / "in.mkv", smooth_clip(5, 16, 16))
    encode_video(src, tmp_path / "old.tok", model=previous)     # as an earlier release made it
    encode_video(src, tmp_path / "new.tok", model="tiny")
    for name, digest in (("old", old), ("new", new)):
        assert file_info(tmp_path / f"{name}.tok").header.weights_sha256 == digest
        st = decode_video(tmp_path / f"{name}.tok", tmp_path / f"{name}.mkv")
        assert st.frames == 5
        assert verify_file(tmp_path / f"{name}.tok").ok
        assert verify_file(tmp_path / f"{name}.tok", model="tiny").ok  # as decode picks it
        # naming the preset the file names picks the same version
        decode_video(tmp_path / f"{name}.tok", tmp_path / f"{name}2.mkv", model="tiny")
        assert compare_videos(tmp_path / f"{name}.mkv", tmp_path / f"{name}2.mkv")["psnr"] == float("inf")
    # a kept version named by its path is still the preset's (its files decode without --model)
    by_path = zoo.load_tokenizer(str(weights / f"tiny-{old[:8]}.safetensors"))
    assert (by_path.name, by_path.sha256) == ("tiny", old)
    # the two versions decode to different pictures: each file got its own weights
    assert compare_videos(tmp_path / "old.mkv", tmp_path / "new.mkv")["psnr"] < 60
    # the batch worker decodes on the CPU; decode_video above picked CUDA where there is one, and
    # GPU kernels do not round as the CPU's do (a lent H200: 54.5-57 dB between the two decodes)
    same_pictures = float("inf") if not torch.cuda.is_available() else 50.0
    for option in (None, "tiny"):
        worker = Worker(BatchOptions("decode", option), device="cpu")
        for name in ("old", "new"):
            dst = tmp_path / f"batch{option}" / f"{name}.mkv"
            assert worker.run(tmp_path / f"{name}.tok", dst).status == "done"
            assert compare_videos(tmp_path / f"{name}.mkv", dst)["psnr"] >= same_pictures
        if option:  # the --model loaded at start-up serves the files it fits: no second copy
            assert worker._decode_models[("tiny", new)] is worker._models[option]
    # a damaged kept version is refused by decode and by verify
    kept = weights / f"tiny-{old[:8]}.safetensors"
    data = bytearray(kept.read_bytes())
    data[-100] ^= 1
    kept.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="damaged"):
        decode_video(tmp_path / "old.tok", tmp_path / "x.mkv")
    assert any("sha256" in p for p in verify_file(tmp_path / "old.tok").problems)
    # weights no shipped file has are still refused, with the hashes named
    (weights / "SHA256SUMS").write_text(f"{new}  tiny.safetensors\n")
    with pytest.raises(ModelError, match="hash mismatch"):
        decode_video(tmp_path / "old.tok", tmp_path / "x.mkv")
    assert not verify_file(tmp_path / "old.tok").ok


def test_compare_is_exact_on_large_errors_and_reports_colour_drift(tmp_path):
    """A frame whose squared error passes 2^31 (an int32 sum overflowed and printed 26.38 dB for
    a true 22.12 dB), checked against metrics.psnr; a uniform +10 shift is a drift of 10."""
    from tokcodec.metrics import psnr

    rng = np.random.default_rng(0)
    ref = rng.integers(0, 256, (2, 360, 640, 3), dtype=np.uint8)
    far = (255 - ref).astype(np.uint8)
    assert float(((ref.astype(np.int64) - far) ** 2)[0].sum()) > 2 ** 31
    for name, frames in (("ref", ref), ("far", far), ("shift", np.minimum(ref.astype(np.int16) + 10, 255).astype(np.uint8))):
        write_clip(tmp_path / f"{name}.mkv", frames)
    cmp = compare_videos(tmp_path / "ref.mkv", tmp_path / "far.mkv")
    assert abs(cmp["psnr"] - psnr(ref, far)) < 1e-9 and cmp["psnr"] < 10
    assert cmp["colour_drift"] < 1.0
    shifted = compare_videos(tmp_path / "ref.mkv", tmp_path / "shift.mkv")
    assert 9.0 < shifted["colour_drift"] <= 10.0
