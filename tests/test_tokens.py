"""Token arrays in and out: `tokcodec tokens` exports, `tokcodec detokenize` decodes them back to
the frames `decode` gives for the same tokens, and refuses arrays and metadata it cannot trust."""
import json
import re
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from conftest import smooth_clip, write_clip
from tokcodec.codec.pipeline import decode_video, encode_video
from tokcodec.errors import ArgumentError, FormatError, InputError, ModelError, OutputError
from tokcodec.frame_tokens import tokenize_frames
from tokcodec.io import iter_frames
from tokcodec.tokens import (detokenize, detokenize_frames, export_tokens, join_tokens, parse_frame_rate,
                             read_token_file, split_tokens, token_file_of, tokenize, write_token_file)


@pytest.fixture(scope="module")
def tokens_only(tmp_path_factory, tiny_model):
    """A tokens-only .tok (no correction layer: its decode is the tokens' picture) of 21 frames in
    GOPs of 9 (latent 3, 3, 2; the last GOP codes 3 frames), at 44x30: coded size padded to 48x32."""
    d = tmp_path_factory.mktemp("tokens")
    src = write_clip(d / "in.mkv", smooth_clip(21, 30, 44))
    encode_video(src, d / "a.tok", model=tiny_model, gop=9, correction=False, audio=False)
    decode_video(d / "a.tok", d / "decoded", model=tiny_model)  # PNGs: the exact frames
    return d


def frames(path):
    return np.stack(list(iter_frames(path)))


def test_exported_tokens_decode_to_the_files_frames(tokens_only, tmp_path):
    d = tokens_only
    export_tokens(d / "a.tok", tmp_path / "t.safetensors")
    stats = detokenize(tmp_path / "t.safetensors", tmp_path / "out")
    want = frames(d / "decoded")
    assert (stats.frames, stats.width, stats.height) == (21, 44, 30)
    assert np.array_equal(frames(tmp_path / "out"), want)
    # in memory, and from sub-tokens (the split is recorded, so no --split needed)
    assert np.array_equal(detokenize_frames(tmp_path / "t.safetensors"), want)
    export_tokens(d / "a.tok", tmp_path / "t9.safetensors", split_bits=9)
    assert np.array_equal(detokenize_frames(tmp_path / "t9.safetensors"), want)


def test_tokenize_is_a_tokens_only_encode(tokens_only, tmp_path, tiny_model):
    """tokenize(video) gives the tokens (and metadata) of encode --no-correction with the same
    settings, and what it writes reads back as it was."""
    d = tokens_only
    got = tokenize(d / "in.mkv", model=tiny_model, gop=9)
    want = token_file_of(d / "a.tok")
    assert np.array_equal(got.tokens, want.tokens) and got.source == str(d / "in.mkv")
    for name in ("bits", "gop_latent_frames", "gop_frames", "model", "weights_sha256", "frame_rate", "size",
                 "coded_size", "color"):
        assert getattr(got, name) == getattr(want, name), name
    write_token_file(got, tmp_path / "t.safetensors")
    back = read_token_file(tmp_path / "t.safetensors")
    header = read_token_file(tmp_path / "t.safetensors", header_only=True)
    assert header.to_dict() == back.to_dict() and not header.tokens.any()
    assert np.array_equal(back.tokens, want.tokens) and back.coded_size == (44, 30) and back.size == (44, 30)
    assert np.array_equal(detokenize_frames(back), frames(d / "decoded"))
    assert tokenize(d / "in.mkv", model=tiny_model, gop=9, max_frames=5).gop_frames == [5]


def _same_tokens(got, want) -> None:
    assert np.array_equal(got.tokens, want.tokens)
    for name in ("bits", "gop_latent_frames", "gop_frames", "model", "weights_sha256", "size", "coded_size", "grey"):
        assert getattr(got, name) == getattr(want, name), name


def test_tokenize_frames_gives_the_tokens_of_a_lossless_file(tokens_only, tiny_model):
    """Frames in memory (an array, or a generator read GOP by GOP) tokenize as a lossless file of
    them does: the tiny model here, the shipped default (rate-aware bits, linked GOPs) below."""
    d = tokens_only
    clip = frames(d / "in.mkv")
    want = tokenize(d / "in.mkv", model=tiny_model, gop=9)
    told = []
    got = tokenize_frames(clip, model=tiny_model, gop=9, progress=told.append, frame_rate="30000/1001")
    _same_tokens(got, want)
    assert told == [9, 9, 3] and got.source == "frames" and str(got.frame_rate) == "30000/1001"
    _same_tokens(tokenize_frames((f for f in clip), model=tiny_model, gop=9), want)
    assert np.array_equal(detokenize_frames(got, model=tiny_model), frames(d / "decoded"))


def test_tokenize_frames_with_the_shipped_model(tmp_path):
    clip = smooth_clip(21, 32, 48, seed=3)
    want = tokenize(write_clip(tmp_path / "in.mkv", clip))
    assert want.gop_frames == [17, 4]
    _same_tokens(tokenize_frames(clip), want)
    _same_tokens(tokenize_frames(clip, passes=0, rdo=0), tokenize(tmp_path / "in.mkv", passes=0, rdo=0))


def test_tokenize_frames_of_a_grey_source(tmp_path, tiny_model):
    """Grey frames are coded as encode codes a grey file; a colour frame after grey ones, in a
    stream, makes it a colour source (the grey ones were held to find out, none lost)."""
    colour = smooth_clip(9, 16, 24)
    grey = np.repeat(colour.mean(-1, keepdims=True).astype(np.uint8), 3, -1)
    want = tokenize(write_clip(tmp_path / "grey.mkv", grey), model=tiny_model, gop=9)
    got = tokenize_frames(list(grey), model=tiny_model, gop=9)
    assert got.grey and want.grey
    _same_tokens(got, want)
    assert not tokenize_frames(grey, model=tiny_model, gop=9, grey=False).grey
    mixed = np.concatenate([grey[:5], colour[5:]])
    streamed = tokenize_frames(iter(mixed), model=tiny_model, gop=9)
    assert not streamed.grey and streamed.gop_frames == [9]
    _same_tokens(streamed, tokenize_frames(mixed, model=tiny_model, gop=9))


@pytest.mark.parametrize("source, needle", [
    (np.zeros((2, 16, 16, 3), np.float32), "got float32 (16, 16, 3) (scale to 0..255"),
    (np.zeros((2, 16, 16), np.uint8), "got shape (2, 16, 16) (grey frames: repeat them to 3 channels)"),
    ([np.zeros((16, 16), np.uint8)], "frame 0: must be uint8 RGB (H, W, 3), got uint8 (16, 16)"),
    (np.zeros((1, 2, 16, 16, 3), np.uint8), "got shape (1, 2, 16, 16, 3)"),
    ([np.zeros((16, 16, 3), np.uint8), np.zeros((16, 24, 3), np.uint8)], "frame 1: must be uint8 (16, 16, 3), got"),
    ([], "no frames"),
    (np.zeros((1, 2, 17000, 3), np.uint8), "too large"),
])
def test_tokenize_frames_refuses_what_it_cannot_code(source, needle, tiny_model):
    with pytest.raises(InputError, match=re.escape(needle)):
        tokenize_frames(source, model=tiny_model)


def test_tokenize_frames_settings_are_checked(tiny_model):
    clip = smooth_clip(5, 16, 16)
    with pytest.raises(ModelError, match="rdo 0.5 needs"):  # the tiny preset has no prior to price bits
        tokenize_frames(clip, model=tiny_model, rdo=0.5)
    with pytest.raises(ValueError, match="--gop must be"):
        tokenize_frames(clip, model=tiny_model, gop=8)
    one = tokenize_frames(clip[0], model=tiny_model)  # one image (H, W, 3)
    assert one.gop_frames == [1] and one.tokens.shape == (1, 2, 2)


def test_token_files_say_how_they_were_made_and_are_the_same_bytes_each_time(tokens_only, tmp_path, tiny_model):
    """What the tokens depend on beyond input and weights is recorded (precision, threads,
    settings); one TokenFile written twice gives the same bytes (sorted metadata), readable by
    all as the umask allows (safetensors' own save_file made 0600 files)."""
    import os

    import torch

    got = tokenize(tokens_only / "in.mkv", model=tiny_model, gop=9, passes=0, device="cpu")
    made = got.made
    assert made["precision"] in ("bf16", "fp32") and made["threads"] == torch.get_num_threads()
    assert (made["passes"], made["rdo"], made["refine"], made["scale"], made["device"]) == (0, 0.0, 0, 1.0, "cpu")
    assert tokenize_frames(frames(tokens_only / "in.mkv"), model=tiny_model, gop=9, passes=0, device="cpu").made == made
    assert "prior" not in made  # no rate-aware bits without a prior; the shipped model's tokens name theirs
    from tokcodec.codec.context_coder3 import prior_for_model
    shipped = tokenize_frames(smooth_clip(5, 16, 16), device="cpu")
    assert shipped.made["rdo"] == 0.25 and shipped.made["prior"] == prior_for_model(shipped.weights_sha256).key.hex()
    assert token_file_of(tokens_only / "a.tok").made == {"precision": made["precision"]}
    old = os.umask(0o022)
    try:
        for name in ("a", "b"):
            write_token_file(got, tmp_path / f"{name}.safetensors")
    finally:
        os.umask(old)
    assert (tmp_path / "a.safetensors").read_bytes() == (tmp_path / "b.safetensors").read_bytes()
    assert (tmp_path / "a.safetensors").stat().st_mode & 0o777 == 0o644
    back = read_token_file(tmp_path / "a.safetensors")
    assert back.made == made and back.tokens_per_second() == round(got.tokens.size * 25 / 21, 1)


def test_write_token_file_refuses_what_would_not_decode(tokens_only, tmp_path):
    from dataclasses import replace

    t = token_file_of(tokens_only / "a.tok")
    with pytest.raises(TypeError, match="takes a TokenFile"):
        write_token_file(t.tokens, tmp_path / "x.safetensors")
    with pytest.raises(ValueError, match="add up to 8 latent frames, the tokens have 3"):
        write_token_file(replace(t, tokens=t.tokens[:3]), tmp_path / "x.safetensors")
    with pytest.raises(ValueError, match="18-bit tokens lie in"):
        write_token_file(replace(t, tokens=t.tokens + (1 << 18)), tmp_path / "x.safetensors")
    with pytest.raises(ArgumentError, match="'made' must be"):  # what read_token_file would refuse
        write_token_file(replace(t, made={"ok": True}), tmp_path / "x.safetensors")
    assert not (tmp_path / "x.safetensors").exists()
    (tmp_path / "text.npy").write_text("hello")
    with pytest.raises(FormatError, match="not a .npy array \\(no NumPy header\\)"):
        read_token_file(tmp_path / "text.npy")


def test_a_bare_array_needs_its_model_and_gop(tokens_only, tmp_path, tiny_model):
    d = tokens_only
    export_tokens(d / "a.tok", tmp_path / "t.npy")
    got = detokenize_frames(tmp_path / "t.npy", model=tiny_model, gop=9)
    want = frames(d / "decoded")
    # no sizes recorded: the whole 48x32 token area (44x30 padded), the last GOP's 2 latent frames as 5 frames
    assert got.shape == (23, 32, 48, 3)
    coded = detokenize_frames(load_file(str(_exported(d, tmp_path)))["tokens"], model=tiny_model, gop=9)
    assert np.array_equal(got, coded)
    assert np.array_equal(got[:21, :30, :44], want)  # the file's 44x30 frames are its crop
    # GOPs of 17 frames (the default) cut the same 8 latent frames 5 + 3: another picture
    assert detokenize_frames(tmp_path / "t.npy", model=tiny_model).shape[0] == 17 + 9
    # one array per GOP, as read_tokens returns them: the list gives the GOP boundaries
    from tokcodec.codec.pipeline import read_tokens
    _, grids, _ = read_tokens(d / "a.tok")
    assert np.array_equal(detokenize_frames(grids, model=tiny_model), got)
    with pytest.raises(InputError, match="one grid size"):
        detokenize_frames([grids[0], grids[1][:, :2]], model=tiny_model)
    # an array in memory, split on its last axis
    parts = split_tokens(np.load(tmp_path / "t.npy"), 18, 6)
    assert np.array_equal(detokenize_frames(parts, model=tiny_model, gop=9, split_bits=6), got)


def _exported(d, tmp_path):
    path = tmp_path / "plain.safetensors"
    if not path.exists():
        export_tokens(d / "a.tok", path)
    return path


def test_join_undoes_split():
    rng = np.random.default_rng(0)
    t = rng.integers(0, 1 << 18, (3, 4, 5))
    for sub in (1, 2, 3, 6, 9, 18):
        assert np.array_equal(join_tokens(split_tokens(t, 18, sub), 18, sub), t)
    with pytest.raises(InputError, match="do not make"):
        join_tokens(split_tokens(t, 18, 9), 18, 6)
    with pytest.raises(InputError, match="range"):
        join_tokens(np.full((1, 1, 1, 2), 512), 18, 9)


def test_frame_rates():
    assert parse_frame_rate("30000/1001").denominator == 1001
    assert parse_frame_rate("29.97") == parse_frame_rate("2997/100")
    for bad in ("0", "-25", "abc", "1/0", "5000"):
        with pytest.raises(InputError):
            parse_frame_rate(bad)


def test_recorded_rate_size_and_model_are_used(tokens_only, tmp_path, tiny_model):
    d = tokens_only
    export_tokens(d / "a.tok", tmp_path / "t.safetensors")
    stats = detokenize(tmp_path / "t.safetensors", tmp_path / "o.y4m")
    assert stats.frames == 21 and (stats.width, stats.height) == (44, 30)
    assert "F25:1" in (tmp_path / "o.y4m").read_bytes()[:80].decode("ascii", "replace")
    detokenize(tmp_path / "t.safetensors", tmp_path / "o2.y4m", frame_rate="30000/1001")
    assert "F30000:1001" in (tmp_path / "o2.y4m").read_bytes()[:80].decode("ascii", "replace")
    # the recorded weights hash: other weights are refused, as decode refuses them
    with pytest.raises(ModelError, match="hash mismatch"):
        detokenize_frames(tmp_path / "t.safetensors", model="fast")
    with pytest.raises(ArgumentError, match="records its GOPs"):
        detokenize_frames(tmp_path / "t.safetensors", gop=9)


def _with_meta(src, dst, **changes):
    """A copy of token file ``src`` with metadata fields changed (None: removed)."""
    from safetensors import safe_open
    with safe_open(str(src), framework="np") as f:
        meta = dict(f.metadata())
    for key, value in changes.items():
        if value is None:
            meta.pop(key)
        else:
            meta[key] = value
    save_file(load_file(str(src)), str(dst), metadata=meta)
    return dst


@pytest.mark.parametrize("changes, error, needle", [
    ({"gop_latent_frames": "[3, 3, 3]"}, FormatError, "latent frames"),
    ({"gop_latent_frames": "[3, 5]"}, FormatError, "3 GOPs. frames for 2 GOPs"),
    ({"gop_latent_frames": "not json"}, FormatError, "list of whole numbers"),
    ({"gop_frames": "[9, 9, 9]"}, FormatError, "cannot hold 9 frames"),
    ({"gop_frames": "[9, 9]"}, FormatError, "frames for 3 GOPs"),
    ({"width": "0"}, FormatError, "out of range"),
    ({"width": "99999999"}, FormatError, "out of range"),
    ({"height": None}, FormatError, "without the other"),
    ({"coded_width": "40"}, FormatError, "does not fit"),
    ({"frame_rate": "0/1"}, FormatError, "frame_rate.*out of range"),
    ({"frame_rate": "fast"}, FormatError, "not a frame rate"),
    ({"bits": "16"}, InputError, "16-bit tokens"),
    ({"weights_sha256": "xyz"}, FormatError, "SHA-256"),
    ({"color": "[1, 2]"}, FormatError, "4 values"),
    ({"split_bits": "9"}, FormatError, "no axis of them"),
    ({"width": "16384", "height": "16384"}, FormatError, "cannot be coded at"),
    ({"frame_rate": "1/10000000"}, FormatError, "out of range"),
])
def test_bad_metadata_is_refused(tokens_only, tmp_path, changes, error, needle):
    bad = _with_meta(_exported(tokens_only, tmp_path), tmp_path / "bad.safetensors", **changes)
    with pytest.raises(error, match=needle):
        detokenize(bad, tmp_path / "o.mkv")
    assert not (tmp_path / "o.mkv").exists()


def test_bad_arrays_are_refused(tmp_path, tiny_model):
    cases = [
        (np.zeros((2, 3, 4), np.float32), FormatError, "not integers"),
        (np.zeros((2, 3), np.int32), FormatError, "shape"),
        (np.zeros((2, 0, 4), np.int32), FormatError, "shape"),
        (np.full((2, 3, 4), 1 << 18, np.int64), InputError, "range"),
        (np.full((2, 3, 4), -1, np.int32), InputError, "range"),
        (np.zeros((2, 3, 4, 2), np.int32), InputError, "--split"),
    ]
    for i, (array, error, needle) in enumerate(cases):
        path = tmp_path / f"bad{i}.npy"
        np.save(path, array)
        with pytest.raises(error, match=needle):
            detokenize(path, tmp_path / "o.mkv", model=tiny_model)
    np.save(tmp_path / "ok.npy", np.zeros((2, 3, 4), np.int32))
    with pytest.raises(ArgumentError, match="1 \\+ 4k"):
        detokenize(tmp_path / "ok.npy", tmp_path / "o.mkv", model=tiny_model, gop=10)
    with pytest.raises(InputError, match="fourth axis"):
        detokenize(tmp_path / "ok.npy", tmp_path / "o.mkv", model=tiny_model, split_bits=9)
    with pytest.raises(OutputError, match="one frame"):
        detokenize(tmp_path / "ok.npy", tmp_path / "o.png", model=tiny_model)
    # a truncated .npy: its header promises more than the file holds, caught before any read
    data = (tmp_path / "ok.npy").read_bytes()
    (tmp_path / "cut.npy").write_bytes(data[:-8])
    with pytest.raises(FormatError, match="npy"):
        read_token_file(tmp_path / "cut.npy")
    (tmp_path / "junk.safetensors").write_bytes(b"\xff" * 64)
    with pytest.raises(FormatError, match="safetensors"):
        read_token_file(tmp_path / "junk.safetensors")
    save_file({"other": np.zeros((2, 3, 4), np.int32)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(FormatError, match="no 'tokens' tensor"):
        read_token_file(tmp_path / "other.safetensors")
    save_file({"tokens": np.zeros((2, 3, 4), np.float16)}, str(tmp_path / "f16.safetensors"))
    with pytest.raises(FormatError, match="not integers"):
        read_token_file(tmp_path / "f16.safetensors")
    with pytest.raises(InputError, match="no such file"):
        read_token_file(tmp_path / "missing.npy")
    save_file({"tokens": np.zeros((4097, 1, 1), np.int32)}, str(tmp_path / "long.safetensors"),
              metadata={"gop_latent_frames": "[4097]"})
    with pytest.raises(FormatError, match="longer than any encode"):
        detokenize(tmp_path / "long.safetensors", tmp_path / "o.mkv", model=tiny_model)
    np.savez(tmp_path / "z.npz", tokens=np.zeros((2, 3, 4), np.int32))
    (tmp_path / "z.npz").rename(tmp_path / "z.npy")
    with pytest.raises(FormatError, match="npz"):
        read_token_file(tmp_path / "z.npy")
    with pytest.raises(ValueError, match="gop-batch"):
        detokenize(tmp_path / "ok.npy", tmp_path / "o.mkv", model=tiny_model, gop_batch=0)
    (tmp_path / "taken.npy").mkdir()
    with pytest.raises(OutputError, match="directory"):
        write_token_file(read_token_file(tmp_path / "ok.npy"), tmp_path / "taken.npy", overwrite=True)
    np.save(tmp_path / "one.npy", np.zeros((1, 3, 4), np.int32))  # one latent frame: one image
    assert detokenize(tmp_path / "one.npy", tmp_path / "one.png", model=tiny_model).frames == 1


def test_damaged_token_files_fail_cleanly(tokens_only, tmp_path, tiny_model):
    """Random byte changes anywhere in a token file (header, metadata JSON, data): it decodes, or
    fails with tokcodec's own error, never another exception."""
    from tokcodec.errors import TokcodecError

    good = {}
    export_tokens(tokens_only / "a.tok", tmp_path / "t.safetensors")
    export_tokens(tokens_only / "a.tok", tmp_path / "t.npy")
    for name in ("t.safetensors", "t.npy"):
        good[name] = (tmp_path / name).read_bytes()
    rng = np.random.default_rng(1)
    outcomes = {"decoded": 0, "refused": 0}
    for i in range(240):
        name = ("t.safetensors", "t.npy")[i % 2]
        data = bytearray(good[name])
        header_end = min(len(data), 400)  # mostly the header and metadata, where sizes live
        for _ in range(int(rng.integers(1, 4))):
            at = int(rng.integers(0, header_end if rng.random() < 0.8 else len(data)))
            data[at] = int(rng.integers(0, 256))
        if rng.random() < 0.1:
            data = data[:int(rng.integers(0, len(data)))]
        path = tmp_path / f"bad{i}{Path(name).suffix}"
        path.write_bytes(bytes(data))
        try:
            detokenize_frames(path, model=None if name.endswith("safetensors") else tiny_model)
            outcomes["decoded"] += 1
        except TokcodecError:
            outcomes["refused"] += 1
    assert outcomes["refused"] > 50, outcomes
