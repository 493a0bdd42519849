"""Training engine: a few steps learn, resume is exact, and DDP keeps ranks in sync."""
import dataclasses
import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from tokcodec.train.trainer import (Trainer, TrainConfig, export_weights, lr_at, resolve_run, resumed_config,
                                    train)
from tokcodec.errors import ModelError
from tokcodec.model import VideoTokenizer, get_preset
from tokcodec.model.presets import DEFAULT_PRESET
from tokcodec.model.zoo import load_tokenizer, save_weights


def tiny_cfg(tmp_path, **kw) -> TrainConfig:
    base = dict(preset="tiny", out_dir=str(tmp_path / "run"), steps=6, batch_size=2, frames=5, size=32,
                image_every=3, image_batch_mult=2, log_every=2, val_every=3, val_clips=2,
                ckpt_every=100, gan_start_step=2, warmup_steps=2, threads=0, bf16=False)
    base.update(kw)
    return TrainConfig(**base)


def test_lr_schedule_warms_up_and_decays():
    cfg = TrainConfig(lr=1e-3, warmup_steps=10, steps=110, min_lr_ratio=0.1)
    assert lr_at(0, cfg) < lr_at(9, cfg) <= 1e-3
    assert abs(lr_at(10, cfg) - 1e-3) < 1e-9
    assert abs(lr_at(110, cfg) - 1e-4) < 1e-9


def test_training_runs_logs_and_exports(tmp_path):
    cfg = tiny_cfg(tmp_path)
    tr = Trainer(cfg)
    before = {k: v.clone() for k, v in tr.model.state_dict().items()}
    tr.fit(progress=False)
    assert tr.step == 6
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    kinds = [__import__("json").loads(l)["kind"] for l in lines]
    assert "train" in kinds and "val" in kinds
    changed = [k for k, v in tr.model.state_dict().items() if not torch.equal(v, before[k])]
    assert changed
    # GAN switched on after gan_start_step: discriminator weights moved
    out = tmp_path / "w.safetensors"
    export_weights(tmp_path / "run" / "checkpoint.pt", out)
    loaded = load_tokenizer(str(out))
    assert loaded.config.name == "tiny" and loaded.trained
    # --raw: the trained weights themselves, which differ from their average
    raw = tmp_path / "raw.safetensors"
    export_weights(tmp_path / "run" / "checkpoint.pt", raw, fp16=False, ema=False)
    raw_state = load_tokenizer(str(raw)).tokenizer.state_dict()
    assert all(torch.equal(raw_state[k], v) for k, v in tr.model.state_dict().items())
    assert any(not torch.equal(raw_state[k], v.float()) for k, v in loaded.tokenizer.state_dict().items())


def test_resume_is_exact(tmp_path):
    straight = Trainer(tiny_cfg(tmp_path / "a"))
    straight.fit(progress=False)
    first = Trainer(tiny_cfg(tmp_path / "b"))
    # run 3 steps, checkpoint, then a fresh trainer resumes for the rest
    while first.step < 3:
        first.train_step()
        first.step += 1
    first.save()
    resumed = Trainer(tiny_cfg(tmp_path / "b"))
    resumed.load()
    resumed.fit(progress=False)
    for k, v in straight.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k
    for k, v in straight.ema.shadow.items():
        assert torch.equal(v, resumed.ema.shadow[k]), k


def test_ddp_two_cpu_processes_stay_in_sync(tmp_path):
    script = tmp_path / "ddp.py"
    script.write_text(textwrap.dedent(f"""
        import os, torch, torch.distributed as dist
        from tokcodec.train.trainer import Trainer, TrainConfig
        torch.set_num_threads(1)
        cfg = TrainConfig(preset="tiny", out_dir={str(tmp_path / 'run')!r}, steps=3, batch_size=1,
                          frames=5, size=32, image_every=0, log_every=1, val_every=100,
                          ckpt_every=100, gan_start_step=1, warmup_steps=1, bf16=False)
        tr = Trainer(cfg)
        tr.fit(progress=False)
        torch.save(tr.model.state_dict(), {str(tmp_path)!r} + f"/rank{{dist.get_rank()}}.pt")
        dist.destroy_process_group()
    """))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                          "--nproc_per_node=2", str(script)], capture_output=True, text=True,
                         timeout=600, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    a = torch.load(tmp_path / "rank0.pt", weights_only=True)
    b = torch.load(tmp_path / "rank1.pt", weights_only=True)
    torch.manual_seed(0)
    init = VideoTokenizer(get_preset("tiny")).state_dict()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert any(not torch.equal(a[k], init[k]) for k in a), "training did not change the weights"


def test_blurpool_equals_binomial_depthwise_conv():
    import torch.nn.functional as F
    from tokcodec.train.discriminator import BlurPool3d

    x = torch.randn(1, 3, 9, 7, 10)
    for temporal in (True, False):
        k1 = torch.tensor([1.0, 2.0, 1.0])
        kt = k1 if temporal else torch.ones(1)
        k = kt.view(-1, 1, 1) * k1.view(1, -1, 1) * k1.view(1, 1, -1)
        k = (k / k.sum()).expand(3, 1, *k.shape)
        pt = 1 if temporal else 0
        ref = F.conv3d(F.pad(x, (1, 1, 1, 1, pt, pt), mode="replicate"), k,
                       stride=(2 if temporal else 1, 2, 2), groups=3)
        assert torch.allclose(BlurPool3d(temporal)(x), ref, atol=1e-6)


def test_sigterm_stops_with_a_checkpoint(tmp_path):
    import signal as sig

    tr = Trainer(tiny_cfg(tmp_path, steps=50))
    real_step = tr.train_step

    def step_then_signal():
        out = real_step()
        if tr.step == 1:
            os.kill(os.getpid(), sig.SIGTERM)
        return out

    tr.train_step = step_then_signal
    tr.fit(progress=False)
    assert 2 <= tr.step < 50 and tr.stopped_by == sig.SIGTERM  # (the CLI exits 143)
    saved = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert int(saved["step"]) == tr.step


def test_init_from_weights_starts_model_and_ema_there(tmp_path):
    # export a few trained steps as weights, then start a fresh run from them
    src = Trainer(tiny_cfg(tmp_path / "src", steps=2))
    src.fit(progress=False)
    weights = tmp_path / "start.safetensors"
    export_weights(tmp_path / "src" / "run" / "checkpoint.pt", weights, fp16=False)
    start = load_tokenizer(str(weights)).tokenizer.state_dict()

    tr = Trainer(tiny_cfg(tmp_path / "ft", init_weights=str(weights)))
    digest = tr.init_from_weights(str(weights))
    assert len(digest) == 64 and tr.step == 0
    for k, v in start.items():
        assert torch.equal(tr.model.state_dict()[k], v), k
        assert torch.equal(tr.ema.shadow[k], v.float() if v.is_floating_point() else v), k
    # no EMA warm-up ramp from trained weights: one step moves the EMA by (1 - decay) only
    tr.train_step()  # updates the EMA once
    key = next(k for k, v in start.items() if v.is_floating_point() and v.numel() > 8)
    drift_ema = (tr.ema.shadow[key] - start[key]).abs().max()
    drift_model = (tr.model.state_dict()[key] - start[key]).abs().max()
    assert drift_model > 0 and drift_ema < drift_model * 0.01
    # the exported weights name the weights the run started from
    tr.step = 1
    tr.save()
    out = tmp_path / "ft.safetensors"
    export_weights(tr.ckpt_path, out)
    from safetensors import safe_open
    with safe_open(str(out), "pt") as f:
        assert f.metadata()["init_weights"] == f"{weights} (sha256 {digest})"
    # ... also after a resume without the option
    resumed = Trainer(tiny_cfg(tmp_path / "ft"))
    resumed.load()
    assert (resumed.init_from, resumed.init_sha256) == (str(weights), digest)
    assert not resumed.ema.ramp


def test_a_decoder_only_run_keeps_the_tokens_and_moves_the_picture(tmp_path):
    tr = Trainer(tiny_cfg(tmp_path, steps=3, train_parts="decoder"))
    before = {k: v.clone() for k, v in tr.model.state_dict().items()}
    x = torch.rand(1, 3, 5, 16, 16) * 2 - 1
    tokens = tr.model.encode_indices(x)
    tr.fit(progress=False)
    after = tr.model.state_dict()
    frozen = [k for k in before if k.startswith(("encoder.", "quantizer."))]
    trained = [k for k in before if k.startswith("decoder.") and before[k].is_floating_point()]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)
    assert any(not torch.equal(before[k], after[k]) for k in trained)
    assert torch.equal(tr.model.encode_indices(x), tokens)
    optimised = {id(p) for g in tr.opt.param_groups for p in g["params"]}
    assert optimised == {id(p) for n, p in tr.model.named_parameters() if n.startswith("decoder.")}


def test_non_finite_bf16_gradients_are_redone_in_fp32_and_never_reach_the_weights(tmp_path):
    """Some bf16 CPU kernels return NaN gradients for some shapes (torch 2.13 on an AMX host:
    conv3d weight gradients at 32x32 and 36x36); such a step is redone in fp32, and a run whose
    gradients stay non-finite skips its updates, then stops."""
    import math

    from tokcodec.train import trainer as trainer_module

    tr = Trainer(tiny_cfg(tmp_path, bf16=True, steps=3))
    real_step, passes = tr._generator_step, []

    def flaky(x, gan_on, autocast, fail_fp32=False):
        out = real_step(x, gan_on, autocast)
        bf16 = autocast == tr._autocast
        passes.append("bf16" if bf16 else "fp32")
        if bf16 or fail_fp32:
            next(tr.model.parameters()).grad.fill_(float("nan"))
            return dataclasses.replace(out, grad_norm=float("nan"))
        return out

    tr._generator_step = flaky
    metrics = tr.train_step()
    assert passes == ["bf16", "fp32"] and metrics["fp32_retry"] == 1 and metrics["skipped"] == 0
    assert all(torch.isfinite(p).all() for p in tr.model.parameters())

    tr._generator_step = lambda x, gan_on, autocast: flaky(x, gan_on, autocast, fail_fp32=True)
    tr.step = 3  # past gan_start_step: the discriminator would train too
    before = {k: v.clone() for k, v in tr.model.state_dict().items()}
    ema_before = {k: v.clone() for k, v in tr.ema.shadow.items()}
    disc_before = {k: v.clone() for k, v in tr.disc.state_dict().items()}
    metrics = tr.train_step()
    assert metrics["skipped"] == 1 and math.isnan(metrics["grad_norm"])
    assert all(torch.equal(before[k], v) for k, v in tr.model.state_dict().items())  # no update
    assert all(torch.equal(ema_before[k], v) for k, v in tr.ema.shadow.items())
    assert all(torch.equal(disc_before[k], v) for k, v in tr.disc.state_dict().items())
    with pytest.raises(FloatingPointError, match="non-finite gradients for 20 steps"):
        for _ in range(trainer_module.MAX_BAD_STEPS):
            tr.train_step()


def test_the_discriminator_takes_its_widths_and_stem_from_the_config(tmp_path):
    """disc_patch 4 and narrower disc_channels make GAN steps affordable on a CPU; a run with them
    trains the discriminator, resumes into the same shape, and bad values are refused."""
    cfg = tiny_cfg(tmp_path, steps=3, disc_patch=4, disc_channels=(8, 16, 16), ckpt_every=3,
                   val_every=100, image_every=100, train_parts="decoder")
    tr = Trainer(cfg)
    assert tr.disc.patch == 4 and tr.disc.conv_in.in_channels == 3 * 16
    assert [b.conv2.out_channels for b in tr.disc.blocks] == [16, 16]
    before = {k: v.clone() for k, v in tr.disc.state_dict().items()}
    tr.fit(progress=False)
    assert any(not torch.equal(before[k], v) for k, v in tr.disc.state_dict().items())
    resumed = Trainer(dataclasses.replace(cfg, steps=4))
    resumed.load()
    assert all(torch.equal(resumed.disc.state_dict()[k], v) for k, v in tr.disc.state_dict().items())
    for bad in (dict(disc_patch=0), dict(disc_channels=(8,)), dict(disc_channels=(8, 0))):
        with pytest.raises(ValueError, match="discriminator needs"):
            Trainer(TrainConfig(preset="tiny", out_dir="unused", **bad))


def test_train_parts_is_checked():
    with pytest.raises(ValueError, match="train_parts must be 'all' or 'decoder'"):
        Trainer(TrainConfig(preset="tiny", out_dir="unused", train_parts="encoder"))


def test_init_from_weights_refuses_another_preset(tmp_path):
    other = get_preset("small")
    path = tmp_path / "small.safetensors"
    save_weights(VideoTokenizer(other).state_dict(), other, path)
    tr = Trainer(tiny_cfg(tmp_path))
    with pytest.raises(ValueError, match="cannot start preset 'tiny': channels differs"):
        tr.init_from_weights(str(path))


def test_init_grows_weights_into_a_deeper_preset(tmp_path):
    src = Trainer(tiny_cfg(tmp_path / "src", steps=2))
    src.fit(progress=False)
    weights = tmp_path / "start.safetensors"
    export_weights(tmp_path / "src" / "run" / "checkpoint.pt", weights, fp16=False)
    deeper = dataclasses.replace(get_preset("tiny"), name="tiny-deep", blocks=(1, 2), temporal_blocks=2)
    tr = Trainer(tiny_cfg(tmp_path / "grown", steps=2), model_cfg=deeper)
    tr.init_from_weights(str(weights))
    x = torch.rand(1, 3, 5, 16, 16) * 2 - 1
    small = load_tokenizer(str(weights)).tokenizer.eval()
    tr.model.eval()
    with torch.no_grad():
        assert torch.equal(tr.model.encoder(x), small.encoder(x))
        assert torch.allclose(tr.model(x)[0], small(x)[0], atol=1e-6)
    assert sum(p.numel() for p in tr.model.parameters()) > sum(p.numel() for p in small.parameters())
    tr.fit(progress=False)  # and it trains
    assert tr.step == 2


def test_validation_at_its_own_frame_size(tmp_path):
    tr = Trainer(tiny_cfg(tmp_path, val_height=24, val_width=40))
    result = tr.validate()
    assert [tuple(c.shape[-2:]) for c in tr._val] == [(24, 40)] * 2
    assert 0 < result["psnr"] < 60


def test_validation_scores_the_corrected_picture_too(tmp_path):
    """psnr_corrected: the picture after the codec's default correction layer, which only
    removes error (its fit is least squares; quantising can cost a little)."""
    result = Trainer(tiny_cfg(tmp_path, val_height=48, val_width=64)).validate()
    assert result["psnr_corrected"] > result["psnr"] - 0.1


def test_correction_aware_losses_ignore_what_the_grid_removes():
    """With correction_aware, the picture losses see recon after the correction grid: an output
    off by a smooth colour shift costs what an exact one does, while a fine pattern still costs."""
    from tokcodec.train.trainer import pixel_losses

    x = torch.rand(2, 3, 5, 32, 48) * 2 - 1
    y, xx = torch.meshgrid(torch.linspace(-1, 1, 32), torch.linspace(-1, 1, 48), indexing="ij")
    tint = (0.2 + 0.1 * xx * y)[None, None, None]          # smooth, constant in time
    fine = 0.2 * torch.sign(torch.sin(40 * xx))[None, None, None]
    for aware, tint_costs in ((1.0, False), (0.0, True)):
        cfg = TrainConfig(correction_aware=aware, l1_weight=1.0, l2_weight=1.0, ms_ssim_weight=0.2,
                          lowpass_weight=4.0)
        exact = float(pixel_losses(x, x.clone(), cfg)[0])
        tinted = float(pixel_losses(x, x + tint, cfg)[0])
        patterned = float(pixel_losses(x, x + fine, cfg)[0])
        assert (tinted > exact + 0.05) is tint_costs, (aware, exact, tinted)
        assert patterned > exact + 0.05
    half = TrainConfig(correction_aware=0.5, ms_ssim_weight=0.0)
    own, after = (float(pixel_losses(x, x + tint, dataclasses.replace(half, correction_aware=a))[0]) for a in (0.0, 1.0))
    assert abs(float(pixel_losses(x, x + tint, half)[0]) - (own + after) / 2) < 1e-5
    with pytest.raises(ValueError):
        pixel_losses(x, x, dataclasses.replace(half, correction_aware=1.5))


def test_unset_preset_follows_resumed_run_then_init_weights_then_default(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tiny = get_preset("tiny")
    weights = tmp_path / "w.safetensors"
    save_weights(VideoTokenizer(tiny).state_dict(), tiny, weights)
    # fine-tuning trains the starting weights' own preset, in runs/PRESET
    cfg = resolve_run(TrainConfig(init_weights=str(weights)))
    assert (cfg.preset, cfg.out_dir) == ("tiny", "runs/tiny")
    assert resolve_run(TrainConfig()).preset == DEFAULT_PRESET
    assert resolve_run(TrainConfig(preset="default")).preset == DEFAULT_PRESET
    assert resolve_run(TrainConfig(preset="small", out_dir="x")).out_dir == "x"
    # a preset that is given wins (and then growth or a clear error decides, as before)
    assert resolve_run(TrainConfig(preset="small", init_weights=str(weights))).preset == "small"
    with pytest.raises(ModelError, match="unknown model preset 'smal'"):
        resolve_run(TrainConfig(preset="smal"))
    # weights of an architecture that is no preset need --preset
    custom = dataclasses.replace(tiny, name="mine", blocks=(1, 1))
    save_weights(VideoTokenizer(custom).state_dict(), custom, tmp_path / "mine.safetensors")
    with pytest.raises(ValueError, match="'mine', which is not a preset: name the preset"):
        resolve_run(TrainConfig(init_weights=str(tmp_path / "mine.safetensors")))

    # end to end: no preset, no run directory
    base = {k: v for k, v in dataclasses.asdict(tiny_cfg(tmp_path, steps=1)).items()
            if k not in ("preset", "out_dir")}
    trainer = train(TrainConfig(**{**base, "init_weights": str(weights)}), progress=False)
    assert trainer.model_cfg.name == "tiny" and (tmp_path / "runs" / "tiny" / "checkpoint.pt").exists()
    saved = json.loads((tmp_path / "runs" / "tiny" / "train_config.json").read_text())
    assert (saved["preset"], saved["out_dir"]) == ("tiny", "runs/tiny")
    # the same command again would overwrite that run: refused; with --resume it continues it
    # (the same directory, found through the --init weights; the preset from the checkpoint)
    with pytest.raises(FileExistsError, match="runs/tiny already holds a run.*--resume"):
        train(TrainConfig(**{**base, "init_weights": str(weights)}), progress=False)
    resumed = resolve_run(TrainConfig(init_weights=str(weights)), resume=True)
    assert (resumed.preset, resumed.out_dir) == ("tiny", "runs/tiny")
    assert resolve_run(TrainConfig(out_dir="runs/tiny"), resume=True).preset == "tiny"
    with pytest.raises(ValueError, match="holds a 'tiny' model, not 'small'"):
        resolve_run(TrainConfig(out_dir="runs/tiny", preset="small"), resume=True)
    with pytest.raises(FileNotFoundError, match="no checkpoint to resume from"):
        resolve_run(TrainConfig(), resume=True)
    # --resume without --config continues with the run's own settings, options applied over them
    again = resumed_config({"init_weights": str(weights), "steps": 3})
    assert (again.preset, again.out_dir, again.size, again.frames, again.steps) == ("tiny", "runs/tiny", 32, 5, 3)
    assert again.betas == TrainConfig().betas and isinstance(again.sources, tuple)
    assert train(again, resume=True, progress=False).step == 3


def test_searched_tokens_teach_the_encoder(tmp_path):
    """search_steps > 0: each step also pulls the encoder's latents to the tokens a
    decoder-in-the-loop search found. The loss is logged, the search flips bits, and a few optimiser
    steps on that loss alone move the latents toward the searched signs."""
    from tokcodec.model.lfq import indices_to_bits
    from tokcodec.model.refine import RefineConfig, refine_indices
    from tokcodec.train.trainer import searched_bits_loss

    tr = Trainer(tiny_cfg(tmp_path, steps=2, search_steps=3, search_weight=1.0, val_every=0, gan_weight=0.0))
    logged = tr.train_step()
    assert logged["search_loss"] > 0 and 0 < logged["search_flips"] < 0.5

    # the loss reaches the weights: the same step without it ends elsewhere
    plain = Trainer(tiny_cfg(tmp_path / "plain", steps=2, val_every=0, gan_weight=0.0))
    plain.train_step()
    assert any(not torch.equal(a, b) for a, b in zip(tr.model.encoder.parameters(),
                                                     plain.model.encoder.parameters()))
    with pytest.raises(ValueError, match="search_steps"):
        Trainer(tiny_cfg(tmp_path / "half", search_steps=3))

    x = tr.sampler.batch(2)
    target = indices_to_bits(refine_indices(tr.model, x, RefineConfig(3, step_size=0.04, passes=0)), tr.model_cfg.bits)
    opt = torch.optim.SGD(tr.model.encoder.parameters(), lr=1e-4)
    losses, flips = [], []
    for _ in range(4):
        loss, flipped = searched_bits_loss(tr.model.quantize(x).latents, target)
        losses.append(float(loss.detach()))
        flips.append(flipped)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert losses[-1] < losses[0] and flips[-1] < flips[0]


def test_level_skip_learns_at_its_own_rate_and_resumes(tmp_path):
    """level_lr_mult puts the encoder's level skip in its own AdamW group at lr x mult; models
    without a level skip (or mult 1) keep one group; the group survives a checkpoint."""
    from tokcodec.train.trainer import param_groups

    assert len(param_groups(VideoTokenizer(get_preset("tiny")), 20.0)) == 1
    assert len(param_groups(VideoTokenizer(get_preset("fast")), 1.0)) == 1
    skip = dataclasses.replace(get_preset("tiny"), level_skip=True)
    cfg = tiny_cfg(tmp_path, steps=3, level_lr_mult=20.0, lowpass_weight=1.0, gan_weight=0.0)
    tr = Trainer(cfg, model_cfg=skip)
    groups = tr.opt.param_groups
    assert len(groups) == 2 and groups[1]["lr_mult"] == 20.0
    assert [id(p) for p in groups[1]["params"]] == [id(tr.model.encoder.level_out.weight),
                                                    id(tr.model.encoder.level_out.bias)]
    tr.train_step()
    assert groups[1]["lr"] == pytest.approx(20 * groups[0]["lr"]) and groups[0]["lr"] == lr_at(0, cfg)
    assert float(tr.model.encoder.level_out.weight.detach().abs().max()) > 0  # it left zero
    tr.step = 1
    tr.save()
    again = Trainer(cfg, model_cfg=skip)
    again.load()
    assert again.opt.param_groups[1]["lr_mult"] == 20.0
