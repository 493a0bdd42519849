"""Decoder-in-the-loop token search (tokcodec encode --refine) and the closed-loop encoder passes
(--passes). The search tests set passes=0: they test the search from the encoder's own tokens."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import smooth_clip, write_clip
from tokcodec.codec.pipeline import decode_video, encode_video, read_tokens
from tokcodec.io import read_frames
from tokcodec.metrics import psnr
from tokcodec.model.lfq import indices_to_codes
from tokcodec.model.refine import (DEFAULT_PASSES, MAX_PASSES, FoundTokens, RefineConfig, feedback_blur,
                                   find_tokens, latent_step_means_, pass_gain, refine_indices)


def _clip_tensor(frames: int, height: int, width: int) -> torch.Tensor:
    clip = smooth_clip(frames, height, width)
    return torch.from_numpy(clip).permute(3, 0, 1, 2).unsqueeze(0).float() / 127.5 - 1


def _error(tok, idx: torch.Tensor, x: torch.Tensor) -> float:
    with torch.no_grad():
        return float(((tok.decoder(indices_to_codes(idx, tok.cfg.bits)) - x) ** 2).sum())


def test_zero_steps_are_the_encoders_tokens(tiny_model):
    tok = tiny_model.tokenizer.eval()
    x = _clip_tensor(5, 32, 48)
    assert torch.equal(refine_indices(tok, x, RefineConfig(0, passes=0)), tok.encode_indices(x))


def test_search_lowers_the_error_and_flips_bits(tiny_model):
    tok = tiny_model.tokenizer.eval()
    x = _clip_tensor(5, 32, 48)
    plain = tok.encode_indices(x)
    weights = {k: v.clone() for k, v in tok.state_dict().items()}
    refined = refine_indices(tok, x, RefineConfig(6, passes=0))
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
    kept = refine_indices(tok, x, RefineConfig(6, passes=0), frames=5)
    everything = refine_indices(tok, x, RefineConfig(6, passes=0))
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
    cfg = RefineConfig(4, passes=0)
    clean = refine_indices(tok, x, cfg, height=36, width=50)
    assert torch.equal(refine_indices(tok, noisy, cfg, height=36, width=50), clean)
    assert not torch.equal(refine_indices(tok, noisy, cfg), clean)


def test_search_works_inside_inference_mode(tiny_model):
    tok = tiny_model.tokenizer.eval()
    x = _clip_tensor(5, 32, 48)
    expected = refine_indices(tok, x, RefineConfig(3, passes=0))
    with torch.inference_mode():
        inside = refine_indices(tok, x.clone(), RefineConfig(3, passes=0))
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
    plain = encode_video(src, tmp_path / "plain.tok", model=tiny_model, passes=0)
    refined = encode_video(src, tmp_path / "refined.tok", model=tiny_model, refine=4, passes=0)
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

    found = refine_indices(tok, x, RefineConfig(4, passes=0), residual_filter=keep)
    assert kept_error(found) <= kept_error(tok.encode_indices(x))


def test_default_step_size_grows_with_the_search_length():
    """A short search takes shorter steps: 0.02 * sqrt(steps), capped at 0.08; a given size wins."""
    assert RefineConfig(steps=1).lr == pytest.approx(0.02)
    assert RefineConfig(steps=4).lr == pytest.approx(0.04)
    assert RefineConfig(steps=16).lr == pytest.approx(0.08) and RefineConfig(steps=64).lr == pytest.approx(0.08)
    assert RefineConfig(steps=2, step_size=0.3).lr == 0.3


def _window_error(tok, idx: torch.Tensor, x: torch.Tensor, frames: int) -> float:
    with torch.no_grad():
        return float(((tok.decoder(indices_to_codes(idx, tok.cfg.bits)) - x)[:, :, :frames] ** 2).sum())


def test_closed_loop_keeps_its_best_pass_and_hands_back_that_pass_decode(tiny_model):
    """The passes never end worse than the encoder's own tokens (in the error that counts), and
    the decoder output they return is exactly what decoding the returned tokens gives (encode
    fits the correction to it instead of decoding again)."""
    tok = tiny_model.tokenizer.eval()
    x = _clip_tensor(9, 32, 48)
    for passes in (1, 3):
        found = find_tokens(tok, x, RefineConfig(passes=passes), frames=7)
        assert found.decoded is not None
        with torch.no_grad():
            assert torch.equal(found.decoded, tok.decode_indices(found.indices))
        assert _window_error(tok, found.indices, x, 7) <= _window_error(tok, tok.encode_indices(x), x, 7)
    plain = find_tokens(tok, x, RefineConfig(passes=0))
    assert plain.decoded is None and torch.equal(plain.indices, tok.encode_indices(x))
    returned = 0
    for steps in (1, 2, 4):  # the search hands back its last step's decode where it keeps that step
        searched = find_tokens(tok, x, RefineConfig(steps=steps, passes=1))
        if searched.decoded is not None:
            returned += 1
            with torch.no_grad():
                assert torch.equal(searched.decoded, tok.decode_indices(searched.indices))
    assert returned


def test_closed_loop_moves_the_shipped_models_tokens_closer():
    """On the shipped weights the passes find other tokens, whose decode is closer to the source."""
    from tokcodec.model.zoo import load_tokenizer
    from tokcodec.io import read_frames

    from test_shipped_model import SAMPLE

    tok = load_tokenizer("default").tokenizer.eval()
    clip = read_frames(SAMPLE, max_frames=9)[:, 100:228, 200:360]
    x = torch.from_numpy(np.ascontiguousarray(clip)).permute(3, 0, 1, 2).unsqueeze(0).float() / 127.5 - 1
    plain = find_tokens(tok, x, RefineConfig(passes=0)).indices
    found = find_tokens(tok, x, RefineConfig(passes=2))
    looped = found.indices
    assert not torch.equal(looped, plain)  # a later pass was kept ...
    assert _window_error(tok, looped, x, 9) < 0.97 * _window_error(tok, plain, x, 9)
    with torch.no_grad():  # ... and the decode handed back is that pass's
        assert torch.equal(found.decoded, tok.decode_indices(looped))


def test_encode_reuses_the_closed_loops_decode_without_changing_a_byte(tmp_path, monkeypatch):
    """encode fits the correction to the decode the closed loop hands back; decoding the tokens
    again instead must give the very same file."""
    from tokcodec.codec import gop_encoder

    src = write_clip(tmp_path / "in.mkv", smooth_clip(9, 48, 64))
    real = gop_encoder.find_tokens
    handed_back = []

    def noting(*args, **kwargs) -> FoundTokens:
        found = real(*args, **kwargs)
        handed_back.append(found.decoded is not None)
        return found

    def tokens_without_their_decode(*args, **kwargs) -> FoundTokens:
        return FoundTokens(real(*args, **kwargs).indices)

    for refine in (0, 3):  # the closed loop's decode, then the search's last step's
        monkeypatch.setattr(gop_encoder, "find_tokens", noting)
        encode_video(src, tmp_path / "reused.tok", refine=refine, overwrite=True)
        monkeypatch.setattr(gop_encoder, "find_tokens", tokens_without_their_decode)
        encode_video(src, tmp_path / "decoded_again.tok", refine=refine, overwrite=True)
        assert (tmp_path / "reused.tok").read_bytes() == (tmp_path / "decoded_again.tok").read_bytes()
    assert handed_back == [True, True]


def test_feedback_blur_keeps_flat_fields_and_removes_pixel_noise():
    flat = torch.full((1, 3, 2, 20, 24), 0.3)
    assert torch.allclose(feedback_blur(flat), flat)
    checker = (torch.arange(20)[:, None] + torch.arange(24)[None, :]) % 2 * 2.0 - 1  # +-1 pixel to pixel
    noisy = checker.expand(1, 3, 2, 20, 24).clone()
    assert float(feedback_blur(noisy)[..., 4:-4, 4:-4].abs().max()) < 0.01  # (edges are replicated)
    assert torch.equal(feedback_blur(noisy, sigma=0), noisy)
    ramp = torch.linspace(-1, 1, 24).expand(1, 3, 2, 20, 24)
    assert torch.allclose(feedback_blur(ramp)[..., 4:-4], ramp[..., 4:-4], atol=1e-5)  # linear: kept
    # the separable Gaussian it is, edges replicated: against a plain 2D convolution
    sigma, r = 1.5, 4
    taps = torch.exp(-torch.arange(-r, r + 1, dtype=torch.float32) ** 2 / (2 * sigma * sigma))
    kernel = torch.outer(taps, taps) / taps.sum() ** 2
    x = torch.randn(2, 3, 3, 21, 30, generator=torch.Generator().manual_seed(0))
    frames = x.permute(0, 2, 1, 3, 4).reshape(6, 3, 21, 30)
    direct = F.conv2d(F.pad(frames, (r, r, r, r), mode="replicate"), kernel.expand(3, 1, 9, 9), groups=3)
    expected = direct.view(2, 3, 3, 21, 30).permute(0, 2, 1, 3, 4)
    assert torch.allclose(feedback_blur(x, sigma), expected, atol=1e-6)
    assert torch.allclose(feedback_blur(x.bfloat16(), sigma).float(), expected, atol=0.02)


def test_the_feedback_is_averaged_over_each_latent_steps_frames():
    """Frame 0 is a latent step of its own, then every 4 frames share one; a window that ends
    inside a step averages what it has."""
    miss = torch.arange(7, dtype=torch.float32).view(1, 1, 7, 1, 1).expand(1, 2, 7, 3, 4).clone()
    out = latent_step_means_(miss, 4)
    assert out is miss  # in place
    assert out[0, 0, :, 0, 0].tolist() == [0, 2.5, 2.5, 2.5, 2.5, 5.5, 5.5]
    assert torch.equal(out[0, 1], out[0, 0])


def test_passes_are_validated_and_their_gain_shrinks():
    with pytest.raises(ValueError):
        RefineConfig(passes=-1)
    with pytest.raises(ValueError):
        RefineConfig(passes=MAX_PASSES + 1)
    assert RefineConfig().passes == DEFAULT_PASSES
    assert [pass_gain(k) for k in (1, 2, 4)] == [0.5, 0.25, 0.125]


def test_every_entry_point_defaults_to_the_same_passes():
    import importlib
    import inspect

    from tokcodec.batch.run import batch_encode
    from tokcodec.batch.work import BatchOptions

    cli_app, cli_batch = (importlib.import_module(f"tokcodec.cli.{m}") for m in ("app", "batch"))
    assert BatchOptions("encode").passes == DEFAULT_PASSES
    for command in (batch_encode, cli_app.encode, cli_batch.encode):
        assert inspect.signature(command).parameters["passes"].default == DEFAULT_PASSES, command


def test_passes_round_trip_and_are_reported(tmp_path, tiny_model):
    src = write_clip(tmp_path / "in.mkv", smooth_clip(5, 40, 56))
    st = encode_video(src, tmp_path / "p.tok", model=tiny_model, passes=1, refine=1)
    assert (st.passes, st.refine) == (1, 1)
    assert encode_video(src, tmp_path / "d.tok", model=tiny_model).passes == DEFAULT_PASSES
    assert decode_video(tmp_path / "p.tok", tmp_path / "p.mkv", model=tiny_model).frames == 5
    with pytest.raises(ValueError):
        encode_video(src, tmp_path / "x.tok", model=tiny_model, refine=RefineConfig(1), passes=1)
