"""Rate-distortion optimised token bits (codec/rdo.py): the choice rule, fewer coded bits on the
shipped model's own latents with flips only near zero, the closed loop decoding what was chosen,
and --rdo through encode (reported, smaller files, the picture kept) and every entry point."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import smooth_clip, write_clip
from test_shipped_model import SAMPLE

from tokcodec.codec.context_coder3 import ContextCoder3, prior_for_model
from tokcodec.codec.pipeline import decode_video, encode_video, token_chooser
from tokcodec.codec.rdo import choose_bits, rate_aware_tokens
from tokcodec.defaults import DEFAULT_RDO
from tokcodec.io import read_frames
from tokcodec.metrics import ErrorTotals
from tokcodec.model.refine import RefineConfig, find_tokens
from tokcodec.model.zoo import load_tokenizer


@pytest.fixture(scope="module")
def shipped():
    return load_tokenizer("default")


@pytest.fixture(scope="module")
def sample_crop() -> np.ndarray:
    return np.ascontiguousarray(read_frames(SAMPLE, max_frames=9)[:, 100:228, 200:360])


def _latents(shipped, clip: np.ndarray) -> np.ndarray:
    x = torch.from_numpy(clip).permute(3, 0, 1, 2).unsqueeze(0).float() / 127.5 - 1
    with torch.inference_mode():
        z = shipped.tokenizer.eval().encoder(x).float()
    return z[0].permute(1, 0, 2, 3).numpy()  # (t, bits, h, w)


def test_a_bit_follows_the_coder_only_where_that_saves_more_than_it_moves():
    z = np.array([[0.2, -0.2, 3.0, -3.0]])
    sure_one = np.full((1, 4), 4000)  # the coder expects a one: a zero costs 5.4 bits, a one 0.03
    assert choose_bits(z, sure_one, 0.0).tolist() == [[True, False, True, False]]  # the signs
    assert choose_bits(z, sure_one, 0.1).tolist() == [[True, True, True, False]]  # 0.2 < 0.1 * 5.4
    assert choose_bits(z, sure_one, 1.0).tolist() == [[True, True, True, True]]  # 3 < 5.4
    assert choose_bits(-z, 4096 - sure_one, 0.1).tolist() == [[False, False, False, True]]  # mirrored


def test_rate_aware_tokens_code_smaller_and_flip_only_bits_near_zero(shipped, sample_crop):
    prior = prior_for_model(shipped.sha256)
    coder = ContextCoder3(model_sha256=shipped.sha256)
    z = _latents(shipped, sample_crop)
    signs = ((z > 0).astype(np.int64) << np.arange(18)[None, :, None, None]).sum(1)
    assert np.array_equal(rate_aware_tokens(prior, z, 0.0), signs)
    distance = np.abs(z) / np.median(np.abs(z))
    sizes = [len(coder.encode(signs, 18))]
    for lam in (0.1, 0.3, 1.0):
        tokens = rate_aware_tokens(prior, z, lam)
        payload = coder.encode(tokens, 18)
        assert np.array_equal(coder.decode(payload, tokens.shape, 18), tokens)  # ordinary tokens
        sizes.append(len(payload))
        flipped = (((tokens ^ signs)[:, None] >> np.arange(18)[None, :, None, None]) & 1).astype(bool)
        assert 0 < flipped.mean() < 0.5
        # a flip saves at most 12 bits (probabilities are 1..4095 / 4096), so it moves at most 12 lam
        assert distance[flipped].max() < 12 * lam
        assert np.median(distance[flipped]) < np.median(distance)  # and mostly the unsure bits
    assert sizes == sorted(sizes, reverse=True) and sizes[1] < 0.95 * sizes[0], sizes


def test_the_closed_loop_decodes_the_tokens_rdo_chose(shipped, sample_crop):
    quantize = token_chooser(3, shipped, 0.3)
    assert quantize is not None
    x = torch.from_numpy(sample_crop).permute(3, 0, 1, 2).unsqueeze(0).float() / 127.5 - 1
    tok = shipped.tokenizer.eval()
    found = find_tokens(tok, x, RefineConfig(passes=1), quantize=quantize)
    z = _latents(shipped, sample_crop)
    plain = find_tokens(tok, x, RefineConfig(passes=0), quantize=quantize).indices
    assert torch.equal(plain[0], torch.from_numpy(rate_aware_tokens(prior_for_model(shipped.sha256), z, 0.3)))
    with torch.no_grad():
        assert torch.equal(found.decoded, tok.decode_indices(found.indices))
    assert not torch.equal(found.indices, find_tokens(tok, x, RefineConfig(passes=1)).indices)
    # the search scores the tokens it returns: never worse than the chosen tokens it started from
    searched = find_tokens(tok, x, RefineConfig(steps=2, passes=0), quantize=quantize).indices
    with torch.no_grad():
        def error(indices: torch.Tensor) -> float:
            return float((tok.decode_indices(indices) - x).square().sum())
        assert error(searched) <= error(plain)


def test_the_choice_uses_the_probabilities_the_coder_then_codes_with(shipped, monkeypatch):
    """Every bit is chosen with the very probability coder 3 (numpy path) then codes it with:
    same order (lattice passes, the first 9-bit group before the second), same adaptive counts."""
    from tokcodec.codec import context_coder3 as c3
    from tokcodec.codec import lattice, rdo
    from test_context_coder import video_tokens

    prior = prior_for_model(shipped.sha256)
    signs = video_tokens(t=3, h=9, w=13, shift=(1, 0), seed=5)
    rng = np.random.default_rng(5)
    z = ((signs[:, None] >> np.arange(18)[None, :, None, None]) & 1) * 2.0 - 1.0
    z = (z * rng.exponential(1.0, z.shape)).astype(np.float32)  # many bits near zero
    chosen: list[np.ndarray] = []
    real_choose = rdo.choose_bits

    def recording(zc, p_one, lam):
        chosen.append(np.asarray(p_one))
        return real_choose(zc, p_one, lam)

    monkeypatch.setattr(rdo, "choose_bits", recording)
    tokens = rate_aware_tokens(prior, z, 1.0)
    assert not np.array_equal(tokens, ((z > 0) << np.arange(18)[None, :, None, None]).sum(1))
    coded: list[list[int]] = []
    real_code = c3._PyRangeEncoder.code_many

    def coding(self, bits, probs):
        coded.append(list(probs))
        return real_code(self, bits, probs)

    monkeypatch.setattr(c3._PyRangeEncoder, "code_many", coding)
    motions = [(0, 0)] + [lattice.search_motion(tokens[f - 1], tokens[f], 4) for f in (1, 2)]
    c3._run(prior, tokens.shape, 18, motions, tokens, None)
    per_pass = [np.concatenate([a, b], 1).ravel().tolist() for a, b in zip(chosen[::2], chosen[1::2])]
    assert len(per_pass) == len(coded) == 3 * len(lattice.geometry(9, 13, c3.LEVELS_PER_PASS).passes)
    assert per_pass == coded


def test_no_choice_without_a_prior_or_with_rdo_off(shipped, tiny_model):
    assert token_chooser(3, shipped, 0.0) is None
    assert token_chooser(2, shipped, 0.3) is None  # coder 2 has no model of a bit's cost up front
    assert token_chooser(3, tiny_model, 0.3) is None  # no prior fitted for these weights


def test_encode_with_rdo_writes_fewer_bytes_for_nearly_the_same_picture(tmp_path, sample_crop):
    src = write_clip(tmp_path / "in.mkv", sample_crop)
    off = encode_video(src, tmp_path / "off.tok", rdo=0)
    on = encode_video(src, tmp_path / "on.tok", rdo=0.3)
    assert (off.rdo, on.rdo) == (0.0, 0.3)
    assert on.bytes < 0.9 * off.bytes, (on.bytes, off.bytes)
    psnr = {}
    for name in ("off", "on"):
        decode_video(tmp_path / f"{name}.tok", tmp_path / f"{name}.mkv")
        psnr[name] = ErrorTotals().add(sample_crop, read_frames(tmp_path / f"{name}.mkv")).psnr()
    assert psnr["on"] > psnr["off"] - 0.5, psnr


def test_rdo_is_validated_and_off_where_the_model_has_no_prior(tmp_path, tiny_model):
    src = write_clip(tmp_path / "in.mkv", smooth_clip(5, 32, 48))
    assert encode_video(src, tmp_path / "a.tok", model=tiny_model).rdo == 0.0
    for bad in (-0.1, float("nan"), 11.0):
        with pytest.raises(ValueError, match="rdo"):
            encode_video(src, tmp_path / "b.tok", model=tiny_model, rdo=bad)


def test_every_entry_point_defaults_to_the_same_rdo():
    import importlib
    import inspect

    from tokcodec.batch.run import batch_encode
    from tokcodec.batch.work import BatchOptions

    cli_app, cli_batch = (importlib.import_module(f"tokcodec.cli.{m}") for m in ("app", "batch"))
    # None everywhere: encode_video then takes DEFAULT_RDO (or, with a target rate, a controller's)
    assert BatchOptions("encode").rdo is None
    for command in (batch_encode, encode_video, cli_app.encode, cli_batch.encode):
        assert inspect.signature(command).parameters["rdo"].default is None, command
    from tokcodec.cli.options import Rdo
    assert f"default: {DEFAULT_RDO:g}" in Rdo.__metadata__[0].help


def test_the_cli_takes_and_reports_rdo_and_refuses_a_bad_one(tmp_path, sample_crop):
    from test_cli import run

    src = write_clip(tmp_path / "in.mkv", sample_crop[:5])
    res = run("encode", src, "-o", tmp_path / "a.tok", "--rdo", "0.5", "--passes", "0")
    assert res.returncode == 0, res.stderr
    assert "rdo 0.5" in res.stderr
    bad = run("encode", src, "-o", tmp_path / "b.tok", "--rdo", "11")
    assert bad.returncode == 2 and "--rdo" in bad.stderr and not (tmp_path / "b.tok").exists()
    bad = run("batch", "encode", src, tmp_path / "out", "--rdo", "-1", "-q")
    assert bad.returncode == 2 and "--rdo" in bad.stderr and not (tmp_path / "out").exists()


def test_batch_and_bench_carry_rdo(tmp_path, sample_crop):
    from tokcodec.batch.run import batch_encode
    from tokcodec.bench.codecs import TokcodecCodec, make_codecs

    (tmp_path / "in").mkdir()
    src = write_clip(tmp_path / "in" / "a.mkv", sample_crop[:5])
    summary = batch_encode(src.parent, tmp_path / "out", rdo=0.5, passes=0, workers=1)
    assert summary.failed == 0 and [r.rdo for r in summary.results] == [0.5]
    assert TokcodecCodec().series == "tokcodec" and TokcodecCodec(rdo=0.5).series == "tokcodec-rdo0.5"
    (codec,) = make_codecs(["tokcodec"], rdo=0.5)
    assert codec.rdo == 0.5


def test_bit_planes_pack_back_into_the_tokens_they_came_from():
    from tokcodec.codec import lattice

    tokens = np.random.default_rng(3).integers(0, 1 << 18, (4, 5, 6))
    planes = lattice.unpack_bits(tokens, 18)
    assert np.array_equal(lattice.pack_bits(planes), tokens)
    assert np.array_equal(lattice.pack_bits(planes.astype(bool)), tokens)
