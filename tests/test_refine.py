"""Decoder-in-the-loop token search (tokcodec encode --refine)."""
import numpy as np
import pytest
import torch

from conftest import smooth_clip, write_clip
from tokcodec.codec.pipeline import decode_video, encode_video, read_tokens
from tokcodec.io import read_frames
from tokcodec.metrics import psnr
from tokcodec.model.lfq import indices_to_codes
from tokcodec.model.refine import RefineConfig, refine_indices


def _clip_tensor(frames: int, height: int, width: int) -> torch.Tensor:
    clip = smooth_clip(frames, height, width)
    return torch.from_numpy(clip).permute(3, 0, 1, 2).unsqueeze(0).float() / 127.5 - 1


def _error(tok, idx: torch.Tensor, x: torch.Tensor) -> float:
    with torch.no_grad():
        return float(((tok.decoder(indices_to_codes(idx, tok.cfg.bits)) - x) ** 2).sum())


def test_zero_steps_are_the_encoders_tokens(tiny_model):
    tok = tiny_model.tokenizer.eval()
    x = _clip_tensor(5, 32, 48)
    assert torch.equal(refine_indices(tok, x, RefineConfig(0)), tok.encode_indices(x))


def test_search_lowers_the_error_and_flips_bits(tiny_model):
    tok = tiny_model.tokenizer.eval()
    x = _clip_tensor(5, 32, 48)
    plain = tok.encode_indices(x)
    weights = {k: v.clone() for k, v in tok.state_dict().items()}
    refined = refine_indices(tok, x, RefineConfig(6))
    assert refined.shape == plain.shape and refined.dtype == plain.dtype
    assert not torch.equal(refined, plain)
    assert _error(tok, refined, x) < _error(tok, plain, x)
    # the model's weights are left untouched and hold no gradients
    assert all(torch.equal(v, weights[k]) for k, v in tok.state_dict().items())
    assert all(p.grad is None for p in tok.parameters())


def test_search_scores_only_the_frames_decode_keeps(tiny_model):
    """Frames past ``frames`` are padding that decode drops. With a causal decoder the last latent
    step (frames 5-8 of 9) then has no say in the score, so the search must leave its tokens
    exactly as the encoder found them, while it does change them when all 9 frames count."""
    tok = tiny_model.tokenizer.eval()
    x = _clip_tensor(9, 32, 48)
    plain = tok.encode_indices(x)
    kept = refine_indices(tok, x, RefineConfig(6), frames=5)
    everything = refine_indices(tok, x, RefineConfig(6))
    assert torch.equal(kept[:, 2], plain[:, 2])
    assert not torch.equal(kept[:, :2], plain[:, :2])
    assert not torch.equal(everything[:, 2], plain[:, 2])


def test_search_scores_only_the_pixels_decode_keeps(tiny_model, monkeypatch):
    """Rows and columns past height x width are padding that decode crops: noise there must not
    change the searched tokens (the encoder's start is held fixed so only the scoring differs)."""
    tok = tiny_model.tokenizer.eval()
    x = _clip_tensor(5, 40, 56)
    with torch.no_grad():
        z0 = tok.encoder(x)
    monkeypatch.setattr(tok.encoder, "forward", lambda _x: z0.clone())
    noisy = x.clone()
    noisy[..., 36:, :] = torch.rand_like(noisy[..., 36:, :]) * 2 - 1
    noisy[..., :, 50:] = torch.rand_like(noisy[..., :, 50:]) * 2 - 1
    cfg = RefineConfig(4)
    clean = refine_indices(tok, x, cfg, height=36, width=50)
    assert torch.equal(refine_indices(tok, noisy, cfg, height=36, width=50), clean)
    assert not torch.equal(refine_indices(tok, noisy, cfg), clean)


def test_search_works_inside_inference_mode(tiny_model):
    tok = tiny_model.tokenizer.eval()
    x = _clip_tensor(5, 32, 48)
    expected = refine_indices(tok, x, RefineConfig(3))
    with torch.inference_mode():
        inside = refine_indices(tok, x.clone(), RefineConfig(3))
    assert torch.equal(inside, expected)


def test_config_is_validated():
    with pytest.raises(ValueError):
        RefineConfig(steps=-1)
    with pytest.raises(ValueError):
        RefineConfig(steps=2, step_size=0.0)


def test_refine_with_scale_and_padding_round_trips(tmp_path, tiny_model):
    src = write_clip(tmp_path / "in.mkv", smooth_clip(5, 45, 70))
    st = encode_video(src, tmp_path / "r.tok", model=tiny_model, scale=0.6, refine=2)
    assert st.refine == 2
    decode_video(tmp_path / "r.tok", tmp_path / "r.mkv", model=tiny_model)
    assert read_frames(tmp_path / "r.mkv").shape == (5, 45, 70, 3)


def test_refined_file_decodes_with_the_same_format(tmp_path, tiny_model):
    src = write_clip(tmp_path / "in.mkv", smooth_clip(9, 32, 48))
    plain = encode_video(src, tmp_path / "plain.tok", model=tiny_model)
    refined = encode_video(src, tmp_path / "refined.tok", model=tiny_model, refine=4)
    assert (plain.refine, refined.refine) == (0, 4)
    h_plain, grids_plain, _ = read_tokens(tmp_path / "plain.tok")
    h_refined, grids_refined, _ = read_tokens(tmp_path / "refined.tok")
    assert [g.shape for g in grids_refined] == [g.shape for g in grids_plain]
    assert h_refined.weights_sha256 == h_plain.weights_sha256
    assert any(not np.array_equal(a, b) for a, b in zip(grids_plain, grids_refined))
    original = read_frames(src)
    out = {}
    for name in ("plain", "refined"):
        decode_video(tmp_path / f"{name}.tok", tmp_path / f"{name}.mkv", model=tiny_model)
        out[name] = psnr(original, read_frames(tmp_path / f"{name}.mkv"))
    assert out["refined"] > out["plain"]


def test_search_with_a_correction_to_follow_minimises_what_the_grid_cannot_remove(tiny_model):
    """With the correction layer, the search scores the residual minus its grid fit: the tokens
    it returns are never worse than the encoder's in that error."""
    from functools import partial

    from tokcodec.codec.correction import uncorrectable

    tok = tiny_model.tokenizer.eval()
    x = _clip_tensor(5, 32, 48)
    keep = partial(uncorrectable, grid=(2, 3))

    def kept_error(idx):
        with torch.no_grad():
            return float(keep(tok.decoder(indices_to_codes(idx, tok.cfg.bits)) - x).square().sum())

    found = refine_indices(tok, x, RefineConfig(4), residual_filter=keep)
    assert kept_error(found) <= kept_error(tok.encode_indices(x))


def test_default_step_size_grows_with_the_search_length():
    """A short search takes shorter steps: 0.02 * sqrt(steps), capped at 0.08; a given size wins."""
    assert RefineConfig(steps=1).lr == pytest.approx(0.02)
    assert RefineConfig(steps=4).lr == pytest.approx(0.04)
    assert RefineConfig(steps=16).lr == pytest.approx(0.08) and RefineConfig(steps=64).lr == pytest.approx(0.08)
    assert RefineConfig(steps=2, step_size=0.3).lr == 0.3
