"""Weights of your own code with a coder-3 prior fitted for them (tokcodec fit-prior), found
beside the weights file; earlier fits are kept so that files coded with them still decode."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import smooth_clip, write_clip
from tokcodec.cli import app
from tokcodec.codec import context_coder3 as c3
from tokcodec.codec.container import open_tok
from tokcodec.codec.pipeline import decode_video, encode_video, read_tokens
from tokcodec.codec.prior_fit import PriorFitConfig, fit_prior
from tokcodec.errors import FormatError, ModelError
from tokcodec.model import zoo

runner = CliRunner()


def _new_process(monkeypatch):
    """As a new `tokcodec` run: no prior beside weights met yet."""
    monkeypatch.setattr(c3, "_BESIDE", {})
    monkeypatch.setattr(c3, "_CURRENT_BESIDE", {})
    monkeypatch.setattr(c3, "_LOOKED_BESIDE", [])


@pytest.fixture
def fresh_priors(monkeypatch):
    _new_process(monkeypatch)


@pytest.fixture
def own(tmp_path, fresh_priors):
    """Weights of your own (the tiny preset's, saved as a file) and a folder of clips like yours."""
    weights = tmp_path / "w" / "mine.safetensors"
    model = zoo.random_init(zoo.get_preset("tiny"), 3)
    zoo.save_weights(model.state_dict(), model.cfg, weights, fp16=False)
    data = tmp_path / "clips"
    data.mkdir()
    for i in range(2):
        write_clip(data / f"c{i}.mkv", smooth_clip(9, 48, 64, seed=i))
    return weights, data


def _fit(weights, data, seed=7):
    return fit_prior(PriorFitConfig(weights=str(weights), clips360=0, clips128=1, data=(data,), clips_data=2,
                                    epochs=1, seed=seed), log=lambda _: None)


def _coded_with_a_fitted_prior(tmp_path, weights, data) -> Path:
    """A prior fitted beside ``weights``, and a .tok of a small clip coded with it (fp32: the same
    tokens on any host)."""
    _fit(weights, data)
    src = write_clip(tmp_path / "in.mkv", smooth_clip(5, 32, 48, seed=5))
    encode_video(src, tmp_path / "a.tok", model=str(weights), precision="fp32")
    _coded_with_the_prior(tmp_path / "a.tok")
    return tmp_path / "a.tok"


def _first_payload(tok):
    with open_tok(tok) as reader:
        return next(iter(reader.chunks())).payload


def _coded_with_the_prior(tok) -> bytes:
    """The first chunk's payload, which these tests need coded with the fitted prior. Coder 3
    keeps raw or coder-2 bytes where those are smaller: with a weak 1-epoch prior over a random
    model's tokens that could happen on some host (not on those tested), so the test then says so."""
    payload = _first_payload(tok)
    if payload[0] != c3.MODE_CONTEXT:
        pytest.skip(f"the fitted prior lost to mode {payload[0]} on this host's tokens")
    return payload


def test_own_weights_code_with_the_prior_fitted_beside_them(tmp_path, own):
    weights, data = own
    src = write_clip(tmp_path / "in.mkv", smooth_clip(9, 32, 48, seed=5))
    plain = encode_video(src, tmp_path / "plain.tok", model=str(weights))
    assert _first_payload(tmp_path / "plain.tok")[0] == c3.MODE_CODER2  # no prior: coder 2 inside
    assert plain.rdo == 0
    assert any("has no coder-3 prior" in w and f"tokcodec fit-prior {weights}" in w for w in plain.warnings)
    from tokcodec.codec import info

    assert info.MODE_CODER2 == c3.MODE_CODER2
    assert all(c.without_prior for c in info.file_info(tmp_path / "plain.tok").chunks)
    r = runner.invoke(app, ["info", str(tmp_path / "plain.tok")])
    assert r.exit_code == 0 and "1 of 1 chunks by coder 2 inside" in r.output

    fitted = _fit(weights, data)
    assert fitted.path == weights.with_name("mine.coder3.safetensors") and fitted.path.exists()
    assert fitted.kept is None and np.isfinite(fitted.coder3_bits) and np.isfinite(fitted.coder2_bits)
    key = c3.load_prior(fitted.path).key

    coded = encode_video(src, tmp_path / "a.tok", model=str(weights))
    assert c3.prior_for_model(zoo.weights_sha256(str(weights))).key == key
    assert coded.rdo > 0 and not coded.warnings  # (--rdo needs the prior)
    payload = _first_payload(tmp_path / "a.tok")  # (coder 2 inside where smaller on near-static content)
    assert payload[0] in (c3.MODE_CONTEXT, c3.MODE_CODER2)
    if payload[0] == c3.MODE_CONTEXT:
        assert payload[5:5 + c3.KEY_BYTES] == key
    assert decode_video(tmp_path / "a.tok", tmp_path / "a.mkv", model=str(weights)).frames == 9


def test_a_new_process_finds_the_prior_beside_the_weights_or_says_where_it_looks(tmp_path, own, monkeypatch):
    weights, data = own
    _coded_with_a_fitted_prior(tmp_path, weights, data)
    _, grids, _ = read_tokens(tmp_path / "a.tok")

    _new_process(monkeypatch)  # a new process, which has not loaded the weights
    with pytest.raises(FormatError, match="beside the weights file given with --model"):
        read_tokens(tmp_path / "a.tok")
    _, again, _ = read_tokens(tmp_path / "a.tok", model=str(weights))  # tokens alone: no network run
    assert all(np.array_equal(a, b) for a, b in zip(grids, again))

    r = runner.invoke(app, ["tokens", str(tmp_path / "a.tok"), "-o", str(tmp_path / "t.npy"), "--model", str(weights)])
    assert r.exit_code == 0, r.output
    other = tmp_path / "other.safetensors"
    zoo.save_weights(zoo.random_init(zoo.get_preset("tiny"), 9).state_dict(), zoo.get_preset("tiny"), other)
    r = runner.invoke(app, ["tokens", str(tmp_path / "a.tok"), "-o", str(tmp_path / "u.npy"), "--model", str(other)])
    assert r.exit_code == 1 and "hash mismatch" in r.output

    shutil.move(weights.with_name("mine.coder3.safetensors"), tmp_path / "elsewhere.safetensors")
    _new_process(monkeypatch)
    with pytest.raises(FormatError, match="needs the prior with key"):
        decode_video(tmp_path / "a.tok", tmp_path / "a.mkv", model=str(weights))


def test_a_refit_keeps_the_prior_earlier_files_name(tmp_path, own, monkeypatch):
    weights, data = own
    first = _fit(weights, data, seed=1)
    old_key = c3.load_prior(first.path).key
    src = write_clip(tmp_path / "in.mkv", smooth_clip(5, 32, 48, seed=5))
    encode_video(src, tmp_path / "old.tok", model=str(weights), precision="fp32")
    assert _coded_with_the_prior(tmp_path / "old.tok")[5:5 + c3.KEY_BYTES] == old_key

    second = _fit(weights, data, seed=2)
    assert second.kept == weights.with_name(f"mine.coder3-{old_key.hex()}.safetensors") and second.kept.exists()
    new_key = c3.load_prior(second.path).key
    assert new_key != old_key

    _new_process(monkeypatch)  # a new process: both priors found beside the weights
    assert decode_video(tmp_path / "old.tok", tmp_path / "old.mkv", model=str(weights)).frames == 5
    assert c3.known_prior(old_key) is not None
    assert c3.prior_for_model(zoo.weights_sha256(str(weights))).key == new_key  # new files: the current one


def test_a_prior_of_other_weights_is_not_used_and_said(tmp_path, own):
    weights, data = own
    fitted = _fit(weights, data)
    other = tmp_path / "o" / "theirs.safetensors"
    model = zoo.random_init(zoo.get_preset("tiny"), 4)
    zoo.save_weights(model.state_dict(), model.cfg, other, fp16=False)
    shutil.copy(fitted.path, other.with_name("theirs.coder3.safetensors"))
    loaded = zoo.load_tokenizer(str(other))
    assert loaded.prior_problems and "fitted for other weights" in loaded.prior_problems[0]
    assert c3.prior_for_model(loaded.sha256) is None
    src = write_clip(tmp_path / "in.mkv", smooth_clip(5, 32, 48, seed=5))
    stats = encode_video(src, tmp_path / "a.tok", model=str(other))
    assert any("fitted for other weights" in w for w in stats.warnings)
    assert any("has no coder-3 prior" in w for w in stats.warnings)


def test_an_oversized_prior_file_is_not_read(tmp_path, own, monkeypatch):
    weights, data = own
    _fit(weights, data)
    _new_process(monkeypatch)
    monkeypatch.setattr(c3, "MAX_PRIOR_BYTES", 1000)
    loaded = zoo.load_tokenizer(str(weights))
    assert "larger than any coder-3 prior" in loaded.prior_problems[0]
    assert c3.prior_for_model(loaded.sha256) is None


def test_shipped_models_are_unchanged(tmp_path, fresh_priors):
    """The shipped presets keep their own priors; nothing beside them is looked for."""
    loaded = zoo.load_tokenizer("default")
    assert loaded.shipped and loaded.prior_problems == ()
    assert c3.prior_for_model(loaded.sha256) is not None and c3._BESIDE == {}


def test_cli_fit_prior(tmp_path, own):
    weights, data = own
    r = runner.invoke(app, ["fit-prior", str(weights), "--data", str(data), "--clips", "2", "--synthetic", "0",
                            "--epochs", "1"])
    assert r.exit_code == 0, r.output
    assert weights.with_name("mine.coder3.safetensors").exists()
    assert "coder 3 with it:" in r.output and "bits/token; coder 2, without it:" in r.output
    r = runner.invoke(app, ["fit-prior", str(weights), "--synthetic", "0"])
    assert r.exit_code == 1 and "nothing to fit on" in r.output
    r = runner.invoke(app, ["fit-prior", str(tmp_path / "missing.safetensors")])
    assert r.exit_code == 1 and "no such file" in r.output
    r = runner.invoke(app, ["fit-prior", str(zoo.shipped_weights_path("fast-deep"))])
    assert r.exit_code == 1 and "come with their priors" in r.output
    r = runner.invoke(app, ["fit-prior", "default"])
    assert r.exit_code == 1 and "the presets come with their priors" in r.output
    r = runner.invoke(app, ["fit-prior", str(weights), "--data", str(tmp_path / "none"), "--synthetic", "0"])
    assert r.exit_code == 1 and "no such file or directory" in r.output


def test_bpp_target_with_own_weights_without_a_prior_names_fit_prior(tmp_path, own):
    weights, _ = own
    src = write_clip(tmp_path / "in.mkv", smooth_clip(5, 32, 48, seed=5))
    with pytest.raises(ModelError, match="tokcodec fit-prior"):
        encode_video(src, tmp_path / "a.tok", model=str(weights), bpp=0.05)


def test_tokens_of_a_tok_refuse_a_model_that_did_not_make_it(tmp_path, tiny_model):
    src = write_clip(tmp_path / "in.mkv", smooth_clip(5, 32, 48, seed=5))
    encode_video(src, tmp_path / "a.tok", model=tiny_model)
    r = runner.invoke(app, ["tokens", str(tmp_path / "a.tok"), "-o", str(tmp_path / "t.npy"), "--model", "small"])
    assert r.exit_code == 1 and "made with tiny weights, not small's" in r.output
    r = runner.invoke(app, ["tokens", str(tmp_path / "a.tok"), "-o", str(tmp_path / "t.npy"), "--model", "tiny"])
    assert r.exit_code == 0, r.output


def test_batch_says_once_that_weights_have_no_prior(tmp_path, own):
    weights, data = own
    r = runner.invoke(app, ["batch", "encode", str(data), str(tmp_path / "tok"), "--model", str(weights),
                            "--workers", "1", "--passes", "0"])
    assert r.exit_code == 0, r.output
    assert r.output.count("has no coder-3 prior") == 1 and "warning: mine has no coder-3 prior" in r.output
    from tokcodec.batch import batch_encode

    _fit(weights, data)
    summary = batch_encode(data, tmp_path / "tok2", model=str(weights), workers=1, passes=0)
    assert summary.done == 2 and summary.warnings == []


def test_the_same_weights_export_to_the_same_bytes(tmp_path):
    """safetensors writes metadata in a random order; a .tok records the weights' hash, so an
    export of the same checkpoint must hash the same every time."""
    model = zoo.random_init(zoo.get_preset("tiny"), 3)
    digests = {zoo.save_weights(model.state_dict(), model.cfg, tmp_path / f"w{i}.safetensors",
                                extra={"steps": "5", "averaging": "ema", "train_seconds": "1"}) for i in range(4)}
    assert len(digests) == 1
    assert zoo.load_tokenizer(str(tmp_path / "w0.safetensors")).config == model.cfg


def test_verify_finds_the_prior_beside_model_and_asks_for_it(tmp_path, own, monkeypatch):
    from tokcodec.codec.verify import verify_file

    weights, data = own
    _coded_with_a_fitted_prior(tmp_path, weights, data)
    _new_process(monkeypatch)  # a new process
    bare = verify_file(tmp_path / "a.tok")
    assert len(bare.problems) == 1 and "weights of your own" in bare.problems[0] and "--model" in bare.problems[0]
    assert verify_file(tmp_path / "a.tok", model=str(weights)).ok


def test_a_missing_prior_is_not_damage(tmp_path, own, monkeypatch):
    from tokcodec.errors import MissingPriorError

    weights, data = own
    _coded_with_a_fitted_prior(tmp_path, weights, data)
    moved = tmp_path / "moved" / "mine.safetensors"
    moved.parent.mkdir()
    shutil.copy(weights, moved)  # the weights without their prior
    _new_process(monkeypatch)
    for salvage in (False, True):
        with pytest.raises(MissingPriorError) as info:
            decode_video(tmp_path / "a.tok", tmp_path / f"o{salvage}.mkv", model=str(moved), salvage=salvage)
        assert "--salvage" not in str(info.value) and "mine.coder3.safetensors" in str(info.value)
        assert str(moved.parent) in str(info.value)


def test_rdo_and_targets_with_weights_without_a_prior_are_refused(tmp_path, own):
    weights, data = own
    src = write_clip(tmp_path / "in.mkv", smooth_clip(5, 32, 48, seed=5))
    with pytest.raises(ModelError, match="--rdo 1 needs a coder-3 prior.*tokcodec fit-prior"):
        encode_video(src, tmp_path / "a.tok", model=str(weights), rdo=1)
    encode_video(src, tmp_path / "b.tok", model=str(weights), rdo=0)  # (0: the encoder's own bits)
    r = runner.invoke(app, ["batch", "encode", str(data), str(tmp_path / "out"), "--model", str(weights), "--rdo", "1"])
    assert r.exit_code == 1 and "need a coder-3 prior" in r.output and not (tmp_path / "out").exists()


def test_export_weights_says_what_its_input_and_output_are_not(tmp_path, own):
    weights, _ = own
    r = runner.invoke(app, ["export-weights", str(weights), "-o", str(tmp_path / "x.safetensors")])
    assert r.exit_code == 1 and "not a training checkpoint (a weights file" in r.output
    r = runner.invoke(app, ["export-weights", str(weights), "-o", str(tmp_path / "x")])
    assert r.exit_code == 1 and "NAME.safetensors" in r.output


def test_a_malformed_prior_beside_the_weights_is_named_not_a_crash(tmp_path, own):
    from safetensors.numpy import save_file

    weights, _ = own
    sha = zoo.weights_sha256(str(weights))
    save_file({"w1": np.zeros(3, np.int32), "b1": np.zeros(1, np.int32), "w2": np.zeros(1, np.int32),
               "b2": np.zeros(1, np.int64), "ar": np.zeros(1, np.int64), "prob": np.zeros(1, np.int64),
               "bits": np.zeros(0, np.int64)}, str(c3.prior_path(weights)),
              metadata={"format": c3.PRIOR_FORMAT, "model_sha256": sha})
    loaded = zoo.load_tokenizer(str(weights))
    assert loaded.prior_problems and "malformed coder-3 prior" in loaded.prior_problems[0]


def test_info_of_a_weights_file_shows_its_model_record_and_priors(tmp_path, own):
    weights, data = own
    r = runner.invoke(app, ["info", str(weights)])
    assert r.exit_code == 0 and "preset tiny" in r.output and "none beside it" in r.output
    fitted = _fit(weights, data)
    r = runner.invoke(app, ["info", str(weights), "--json"])
    d = json.loads(r.output)
    assert d["sha256"] == zoo.weights_sha256(str(weights)) and d["parameters"] > 0
    assert d["priors"] == [{"file": str(fitted.path), "key": c3.load_prior(fitted.path).key.hex(),
                            "note": "fitted for these weights", "current": True}]
    r = runner.invoke(app, ["info", str(zoo.shipped_weights_path("fast-deep"))])
    assert r.exit_code == 0 and "shipped with it" in r.output


def test_verify_takes_the_prior_beside_weights_named_as_a_preset(tmp_path, own, monkeypatch):
    """Weights of a preset's name (`mine/small.safetensors`: earlier shipped weights kept to read
    old files): decode found the prior beside them, verify did not and called the tokens bad."""
    import shutil

    from tokcodec.codec.verify import verify_file

    mine, data = own
    weights = tmp_path / "kept" / "tiny.safetensors"
    weights.parent.mkdir()
    shutil.copyfile(mine, weights)
    _coded_with_a_fitted_prior(tmp_path, weights, data)
    _new_process(monkeypatch)  # a new process
    report = verify_file(tmp_path / "a.tok", model=str(weights))
    assert report.ok, report.problems
