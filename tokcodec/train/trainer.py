"""The training engine: losses, EMA, AdamW + warm-up/cosine, GAN after warm-up, checkpoints with
exact resume, JSONL (and TensorBoard) metrics, validation, and DistributedDataParallel under torchrun.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import sys
import threading
import time
try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser as a package
    import tomli as tomllib
from dataclasses import asdict, dataclass, fields
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from tokcodec.codec.correction import CorrectionConfig, fit_correction, uncorrectable
from tokcodec.errors import InputError, SetupError
from tokcodec.metrics import ErrorTotals, psnr_from_mse
from tokcodec.model.grow import grow_state, growth_error, growth_note, same_architecture
from tokcodec.model.lfq import LFQOutput, indices_to_bits
from tokcodec.model.presets import PRESETS, TokenizerConfig, get_preset, resolve_name
from tokcodec.model.refine import RefineConfig, search_indices
from tokcodec.model.tokenizer import VideoTokenizer
from tokcodec.text import live_terminal
from tokcodec.train.data import ClipSampler, DataConfig, heldout_clips, validation_clips
from tokcodec.train.real import holdout_clips, is_corpus
from tokcodec.train.discriminator import Discriminator
from tokcodec.train.losses import (generator_adv_loss, hinge_d_loss, lecam_loss,
                                   video_ms_ssim_loss)


@dataclass
class TrainConfig:
    preset: str = ""               # "" = that of init_weights (or of the run resumed), else the default
    out_dir: str = ""              # "" = runs/PRESET
    sources: tuple[str, ...] = ("synthetic",)
    steps: int = 20000
    batch_size: int = 4
    frames: int = 17
    size: int = 128
    image_every: int = 4           # every Nth step is a batch of still images (joint training)
    image_batch_mult: int = 4
    real_probability: float = 0.5  # with a real corpus among the sources (see train/data.py)
    flat_probability: float = 0.05
    colour_jitter: float = 0.0
    lr: float = 1e-3
    min_lr_ratio: float = 0.05
    warmup_steps: int = 300
    weight_decay: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.99)
    grad_clip: float = 1.0
    l1_weight: float = 1.0
    l2_weight: float = 0.0
    ms_ssim_weight: float = 0.2
    lowpass_weight: float = 0.0    # MSE of 8x8 block means (each frame's local mean colour), on top
                                   # of the full-resolution terms: colour and level drift cost more
    entropy_weight: float = 0.1
    commit_weight: float = 0.25
    gan_weight: float = 0.05
    gan_start_step: int = 10000
    disc_lr: float = 2e-4
    disc_channels: tuple[int, ...] = (64, 96, 128, 128)  # the discriminator's widths by level
    disc_patch: int = 2            # its space-to-depth stem: 4 costs a quarter of 2's convolutions
    lecam_weight: float = 0.001
    lecam_decay: float = 0.99
    ema_decay: float = 0.999
    ema_warmup: bool = False       # ramp the EMA's decay up from 0 also when starting from trained
                                   # weights (a short fine-tune's EMA otherwise still holds mostly
                                   # the start weights: 0.999^600 = 55%); runs from scratch always do
    level_lr_mult: float = 1.0     # learning-rate multiplier of the encoder's level skip: it starts at
                                   # zero and must reach weights of order 1, which Adam's ~lr-sized
                                   # steps take thousands of steps to do at the base rate
    log_every: int = 20
    val_every: int = 500
    val_clips: int = 8             # synthetic validation clips (always); with a real corpus among
                                   # the sources its held-out videos are validated too ("real_*")
    val_data: tuple[str, ...] = () # your own held-out videos/images (files or folders, never trained
                                   # on): 2 windows of 17 frames per video validated too ("heldout_*")
    val_height: int = 0            # validation frame size; 0 = the training crop size. Full-size
    val_width: int = 0             # frames (e.g. 360 x 640) show what crop-size validation misses
    ckpt_every: int = 500
    max_minutes: float = 0.0       # stop (with a checkpoint) after this wall time; 0 = no limit
    bf16: bool = True
    device: str = "auto"           # auto (CUDA when present), cpu, cuda or cuda:N
    compile: bool = False          # torch.compile the model's training forward (pays on CUDA)
    workers: int = 0               # >0: sample batches in this many worker processes (CPU, pinned
                                   # memory), for folders of videos that must be decoded. 0: in
                                   # this process, with the synthetic engine on the training device
    export_at_end: bool = True     # write ema.safetensors and raw.safetensors (fp16) into out_dir
                                   # when the run ends (steps done, time budget, or a signal)
    threads: int = 0               # torch threads per process; 0 = leave as is
    seed: int = 0
    init_weights: str = ""         # start a fresh run from these weights (a preset name or a
                                   # .safetensors file), e.g. to fine-tune the shipped model
    correction_aware: float = 0.0  # share of the picture losses taken after the codec's correction
                                   # grid (its least-squares fit to the residual, unquantised), the
                                   # rest on the tokens' own picture: 1 = tokens need not carry
                                   # what the grid sends (codec/correction.py), 0 = off
    train_parts: str = "all"       # "decoder": train the decoder only, the encoder and quantiser
                                   # frozen (as init_weights has them), so the tokens of a clip
                                   # stay what the start weights give and only their picture moves
    search_steps: int = 0          # >0: each step, also teach the encoder the tokens that this
    search_weight: float = 0.0     # many steps of decoder-in-the-loop search (model/refine.py)
                                   # find for the batch (a hinge on the latents' signs)

    @classmethod
    def from_file(cls, path: Path) -> "TrainConfig":
        if not path.is_file():
            shipped = " (the training configs are in configs/ of tokcodec's source: a checkout or the sdist)" \
                if not path.is_absolute() and path.parts[:1] == ("configs",) else ""
            raise InputError(f"{path}: no such config file{shipped}")
        text = path.read_text()
        if path.suffix == ".json":  # e.g. a run's own train_config.json
            raw = json.loads(text)
        elif path.suffix in (".yaml", ".yml"):
            import yaml
            raw = yaml.safe_load(text) or {}
        else:
            raw = tomllib.loads(text)
        return cls().updated(raw)

    def updated(self, values: dict) -> "TrainConfig":
        known = {f.name: f for f in fields(self)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ValueError(f"unknown training options: {', '.join(unknown)}")
        merged = asdict(self)
        for k, v in values.items():
            merged[k] = tuple(v) if isinstance(v, list) else v
        return TrainConfig(**merged)


def param_groups(model: nn.Module, level_lr_mult: float) -> list[dict]:
    """AdamW parameter groups: everything at the base rate, and the encoder's level skip (when
    the model has one and ``level_lr_mult`` != 1) in a group of its own with ``lr_mult``."""
    trained = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    level = [p for n, p in trained if n.startswith("encoder.level_out.")]
    if not level or level_lr_mult == 1.0:
        return [{"params": [p for _, p in trained]}]
    ids = {id(p) for p in level}
    return [{"params": [p for _, p in trained if id(p) not in ids]},
            {"params": level, "lr_mult": level_lr_mult}]


def lr_at(step: int, cfg: TrainConfig, time_spent: float = 0.0) -> float:
    """Linear warm-up, then a cosine down to ``min_lr_ratio`` at the last step, or sooner where
    ``time_spent`` (the share of a wall-clock budget used, ``max_minutes``) runs ahead of the
    steps: a run the budget ends before its steps otherwise stopped at a high rate."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = min(1.0, max((step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps), time_spent))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def bit_entropy(p_one: torch.Tensor) -> torch.Tensor:
    p = p_one.clamp(1e-6, 1 - 1e-6)
    return -(p * p.log2() + (1 - p) * (1 - p).log2())


def searched_bits_loss(z: torch.Tensor, target_bits: torch.Tensor,
                       margin: float = 0.25) -> tuple[torch.Tensor, float]:
    """A hinge that pushes each latent across zero to the side the search chose, until it is
    ``margin`` x (the latents' median magnitude) past it. Bits already there cost nothing, so the
    loss does not simply inflate every latent. Also returns the fraction of bits still on the
    wrong side."""
    sign = target_bits.to(z.dtype).movedim(-1, 1) * 2 - 1  # (B, bits, t, h, w)
    scale = z.detach().abs().median().clamp_min(1e-6)
    flips = float(((z.detach() > 0) != (sign > 0)).float().mean())
    return F.relu(margin - sign * z / scale).mean(), flips


def block_mean_mse(x: torch.Tensor, recon: torch.Tensor, block: int = 8) -> torch.Tensor:
    """MSE between the 8x8 block means of each frame: the low-frequency (colour, level) error."""
    b, c, t, h, w = x.shape
    pool = lambda v: F.avg_pool2d(v.transpose(1, 2).reshape(b * t, c, h, w), block)  # noqa: E731
    return F.mse_loss(pool(recon), pool(x))


def _to_uint8_frames(video: torch.Tensor) -> np.ndarray:
    """(1, 3, T, H, W) in [-1, 1] -> uint8 (T, H, W, 3), as a user's decoded file holds it."""
    return ((video[0] + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 3, 0).cpu().numpy()


def pixel_losses(x: torch.Tensor, recon: torch.Tensor, cfg: TrainConfig
                 ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """The weighted sum of the picture losses of ``recon`` against ``x`` (B, 3, T, H, W), and its
    terms (L1, MSE, low-pass MSE, MS-SSIM loss; zero where a term's weight is 0). A share
    ``correction_aware`` of it is taken on ``recon`` as decode shows it after the GOP's correction
    grid (its least-squares fit to the residual): the model is not taught what the grid sends."""
    share = cfg.correction_aware
    if not 0 <= share <= 1:
        raise ValueError(f"correction_aware must lie in [0, 1], got {share}")
    if share == 0:
        return _picture_losses(x, recon, cfg)
    grid = CorrectionConfig().grid_for(x.shape[-1], x.shape[-2], x.shape[2])
    after = _picture_losses(x, x + uncorrectable(recon - x, grid), cfg)
    if share == 1:
        return after
    own = _picture_losses(x, recon, cfg)
    mix = lambda a, b: share * a + (1 - share) * b  # noqa: E731
    return mix(after[0], own[0]), tuple(mix(a, b) for a, b in zip(after[1], own[1]))  # type: ignore[return-value]


def _picture_losses(x: torch.Tensor, recon: torch.Tensor, cfg: TrainConfig
                    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
    l1 = (recon - x).abs().mean()
    mse = ((recon - x) ** 2).mean()
    loss = cfg.l1_weight * l1 + cfg.l2_weight * mse
    lowpass = torch.zeros(())
    if cfg.lowpass_weight > 0:
        lowpass = block_mean_mse(x, recon)
        loss = loss + cfg.lowpass_weight * lowpass
    msssim = torch.zeros(())
    if cfg.ms_ssim_weight > 0:
        msssim = video_ms_ssim_loss(x, recon)
        loss = loss + cfg.ms_ssim_weight * msssim
    return loss, (l1, mse, lowpass, msssim)


MAX_BAD_STEPS = 20  # consecutive steps with non-finite gradients (after the fp32 retry) that stop a run


@dataclass
class _GeneratorStep:
    loss: torch.Tensor
    terms: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]  # L1, MSE, low-pass, MS-SSIM
    q: LFQOutput
    recon: torch.Tensor
    search_loss: torch.Tensor
    search_flips: float
    g_adv: torch.Tensor
    grad_norm: float


class EMA:
    """Exponential moving average of the parameters (fp32), plus a copy of the buffers."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.ramp = True  # short memory early in a run from scratch; off when starting from trained weights
        self.shadow = {k: v.detach().float().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step)) if self.ramp else self.decay
        for k, v in model.state_dict().items():
            if v.is_floating_point():
                self.shadow[k].mul_(d).add_(v.detach().float(), alpha=1 - d)
            else:
                self.shadow[k].copy_(v)


class Logger:
    """JSONL metrics (always) and TensorBoard (when installed), rank 0 only."""

    def __init__(self, out_dir: Path, enabled: bool) -> None:
        self.enabled = enabled
        self.path = out_dir / "metrics.jsonl"
        self.tb = None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter
                self.tb = SummaryWriter(str(out_dir / "tb"))
            except Exception:  # noqa: BLE001 - tensorboard is optional
                self.tb = None

    def log(self, step: int, kind: str, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        with self.path.open("a") as f:
            f.write(json.dumps({"step": step, "kind": kind, "time": time.time(), **values}) + "\n")
        if self.tb is not None:
            for k, v in values.items():
                self.tb.add_scalar(f"{kind}/{k}", v, step)


class Trainer:
    def __init__(self, cfg: TrainConfig, model_cfg: TokenizerConfig | None = None) -> None:
        if not (cfg.preset and cfg.out_dir):
            cfg = resolve_run(cfg)
        if (cfg.search_steps > 0) != (cfg.search_weight > 0):
            raise ValueError("search_steps and search_weight work together: set both > 0 (or neither)")
        if not 0 <= cfg.correction_aware <= 1:
            raise ValueError(f"correction_aware must lie in [0, 1], got {cfg.correction_aware}")
        if cfg.train_parts not in ("all", "decoder"):
            raise ValueError(f"train_parts must be 'all' or 'decoder', got {cfg.train_parts!r}")
        if cfg.train_parts == "decoder" and cfg.search_steps > 0:
            raise ValueError("search_steps teaches the encoder: it does nothing with train_parts = 'decoder'")
        if cfg.disc_patch < 1 or len(cfg.disc_channels) < 2 or min(cfg.disc_channels) < 1:
            raise ValueError(f"the discriminator needs disc_patch >= 1 and at least two positive "
                             f"disc_channels, got {cfg.disc_patch} and {list(cfg.disc_channels)}")
        self.cfg = cfg
        self.device = training_device(cfg.device)
        self.distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
        if self.distributed and not dist.is_initialized():
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
        self.rank = dist.get_rank() if self.distributed else 0
        self.world = dist.get_world_size() if self.distributed else 1
        if self.distributed and self.device.type == "cuda":  # one GPU per process
            self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", self.rank)))
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.out = Path(cfg.out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(cfg.seed)
        self.model_cfg = model_cfg or get_preset(cfg.preset)
        self.model = VideoTokenizer(self.model_cfg).to(self.device)
        if cfg.train_parts == "decoder":
            self.model.encoder.requires_grad_(False)
            self.model.quantizer.requires_grad_(False)
        self.disc = Discriminator(tuple(cfg.disc_channels), cfg.disc_patch).to(self.device)
        self.ema = EMA(self.model, cfg.ema_decay)
        self.opt = torch.optim.AdamW(param_groups(self.model, cfg.level_lr_mult), lr=cfg.lr, betas=cfg.betas,
                                     weight_decay=cfg.weight_decay)
        self.opt_d = torch.optim.AdamW(self.disc.parameters(), lr=cfg.disc_lr, betas=(0.5, 0.99),
                                       weight_decay=cfg.weight_decay)
        self._bad_steps = 0  # consecutive steps skipped for non-finite gradients
        self.lecam_real = torch.zeros((), device=self.device)
        self.lecam_fake = torch.zeros((), device=self.device)
        self.step = 0
        self.elapsed = 0.0
        self.data_cfg = DataConfig(cfg.sources, cfg.frames, cfg.size, real_probability=cfg.real_probability,
                                   flat_probability=cfg.flat_probability, colour_jitter=cfg.colour_jitter)
        # with workers the sampler here only keeps the seed stream (batches come from the workers)
        self.sampler = ClipSampler(self.data_cfg, seed=cfg.seed + 1000 * self.rank,
                                   device=self.device if cfg.workers == 0 else torch.device("cpu"))
        self._stream: Iterator[tuple[torch.Tensor, bool]] | None = None
        self._stream_step = 0  # the step whose batch the worker stream yields next
        self.logger = Logger(self.out, self.rank == 0)
        if self.distributed:
            from torch.nn.parallel import DistributedDataParallel as DDP
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.model_ddp: nn.Module = DDP(self.model, device_ids=ids)
            self.disc_ddp: nn.Module = DDP(self.disc, device_ids=ids)
        else:
            self.model_ddp, self.disc_ddp = self.model, self.disc
        if cfg.compile:
            self.model_ddp = torch.compile(self.model_ddp)
        self._save_seconds = 0.0  # how long the last checkpoint took (the time budget keeps room for it)
        self.time_spent = 0.0  # share of a time budget used (max_minutes; the schedule follows it; kept on resume)
        self._val: list[torch.Tensor] | None = None
        self._val_real: list[torch.Tensor] | None = None
        self._val_own: list[torch.Tensor] = []
        self.stopped_by: int | None = None  # the signal that ended fit() early (its checkpoint saved)
        self.init_from = ""    # the weights this run started from (init_weights), kept across resumes
        self.init_sha256 = ""  # and their SHA-256

    # ---------------------------------------------------------------- checkpoints
    @property
    def ckpt_path(self) -> Path:
        return self.out / "checkpoint.pt"

    def state_dict(self) -> dict:
        return {
            "model": self.model.state_dict(), "disc": self.disc.state_dict(),
            "ema": self.ema.shadow, "opt": self.opt.state_dict(), "opt_d": self.opt_d.state_dict(),
            "lecam": torch.stack([self.lecam_real, self.lecam_fake]),
            "step": self.step, "elapsed": self.elapsed,
            "torch_rng": torch.random.get_rng_state(),
            "data_rng": json.dumps(self.sampler.state()),
            "train_config": json.dumps(asdict(self.cfg)),
            "model_config": json.dumps(self.model_cfg.to_dict()),
            "init_weights": self.init_from, "init_sha256": self.init_sha256,
            "time_spent": self.time_spent,
        }

    def save(self) -> None:
        if self.rank != 0:
            return
        t0 = time.time()
        tmp = self.ckpt_path.with_suffix(".tmp")
        torch.save(self.state_dict(), tmp)
        tmp.replace(self.ckpt_path)
        self._save_seconds = time.time() - t0

    def init_from_weights(self, name_or_path: str) -> str:
        """Start model and EMA from trained weights (a fresh optimizer and schedule); returns
        their SHA-256. Used to fine-tune shipped weights when no checkpoint is at hand."""
        from tokcodec.model.zoo import load_tokenizer

        if name_or_path.endswith(".pt"):
            raise ValueError(f"init_weights {name_or_path!r} is a training checkpoint: --resume --out-dir RUN "
                             "continues its run, or `tokcodec export-weights` makes weights of it for --init")
        loaded = load_tokenizer(name_or_path)
        if not loaded.trained:
            raise ValueError(f"init_weights {name_or_path!r}: no trained weights to start from")
        state = {k: (v.float() if v.is_floating_point() else v).to(self.device)
                 for k, v in loaded.tokenizer.state_dict().items()}
        if not same_architecture(loaded.config, self.model_cfg):
            reason = growth_error(loaded.config, self.model_cfg)
            if reason:
                raise ValueError(f"init_weights {name_or_path!r} hold preset {loaded.config.name!r}, which "
                                 f"cannot start preset {self.model_cfg.name!r}: {reason}")
            state = grow_state(state, loaded.config, self.model_cfg)
            if self.rank == 0:
                print(f"growing preset {loaded.config.name!r} into {self.model_cfg.name!r} "
                      f"({growth_note(loaded.config, self.model_cfg)})", file=sys.stderr)
        self.model.load_state_dict(state)
        self.ema.shadow = {k: v.clone() for k, v in state.items()}
        self.init_from, self.init_sha256 = name_or_path, loaded.sha256
        self.ema.ramp = self.cfg.ema_warmup
        return loaded.sha256

    def _optimiser_settings_from_config(self) -> None:
        """The config's optimiser settings over those a checkpoint brought back: loading an
        optimiser's state restores each group's weight decay, betas, level multiplier and the
        discriminator's rate, so a resumed run kept the old ones while train_config.json said the
        new (the learning rate is set every step)."""
        cfg = self.cfg
        for group, fresh in zip(self.opt.param_groups, param_groups(self.model, cfg.level_lr_mult)):
            group.update(weight_decay=cfg.weight_decay, betas=cfg.betas)
            if "lr_mult" in fresh:
                group["lr_mult"] = fresh["lr_mult"]
        for group in self.opt_d.param_groups:
            group.update(lr=cfg.disc_lr, weight_decay=cfg.weight_decay)

    def load(self, path: Path | None = None) -> None:
        # map_location: a checkpoint written on a GPU resumes on the CPU and back, exactly
        state = load_checkpoint(path or self.ckpt_path, self.device)
        self.model.load_state_dict(state["model"])
        try:
            self.disc.load_state_dict(state["disc"])
            self.opt_d.load_state_dict(state["opt_d"])
        except (RuntimeError, ValueError):
            # the discriminator's architecture changed since the checkpoint; that is harmless only
            # if it was never trained (the GAN phase had not started)
            if int(state["step"]) > self.cfg.gan_start_step:
                raise
            print("note: discriminator in the checkpoint does not fit; starting it fresh "
                  "(the GAN phase had not started)", file=sys.stderr)
        self.ema.shadow = {k: v.float() if v.is_floating_point() else v for k, v in state["ema"].items()}
        self.opt.load_state_dict(state["opt"])
        self._optimiser_settings_from_config()
        self.lecam_real, self.lecam_fake = state["lecam"][0].clone(), state["lecam"][1].clone()
        self.step = int(state["step"])
        self.elapsed = float(state["elapsed"])
        self.time_spent = float(state.get("time_spent", 0.0))  # (a resumed schedule goes on from there)
        self.init_from = str(state.get("init_weights", ""))
        self.init_sha256 = str(state.get("init_sha256", ""))
        self.ema.ramp = not self.init_from or self.cfg.ema_warmup  # as when the run started
        torch.random.set_rng_state(state["torch_rng"].cpu())  # (map_location moved it to the GPU too)
        if self.rank == 0:
            self.sampler.set_state(json.loads(state["data_rng"]))
        else:  # other ranks keep their own streams, advanced deterministically from the step
            self.sampler.rng = np.random.default_rng([self.cfg.seed + 1000 * self.rank, self.step])

    # ---------------------------------------------------------------- one step
    def _autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.cfg.bf16)

    def next_batch(self) -> tuple[torch.Tensor, bool]:
        """This step's batch on the training device, and whether it is one of still images."""
        if self.cfg.workers > 0:
            if self._stream is None or self._stream_step != self.step:  # (re)start at this step
                self._stream = iter(worker_batches(self.cfg, self.sampler, self.rank, self.step,
                                                   pin=self.device.type == "cuda"))
            x, images = next(self._stream)
            self._stream_step = self.step + 1
            return x.to(self.device, non_blocking=True), images
        images = is_image_step(self.step, self.cfg)
        return self.sampler.batch(*batch_shape(images, self.cfg)), images

    def train_step(self) -> dict[str, float]:
        cfg = self.cfg
        x, images = self.next_batch()
        lr = lr_at(self.step, cfg, self.time_spent)
        for g in self.opt.param_groups:
            g["lr"] = lr * g.get("lr_mult", 1.0)
        gan_on = cfg.gan_weight > 0 and self.step >= cfg.gan_start_step and not images
        x = x.float()
        out = self._generator_step(x, gan_on, self._autocast)
        fp32_retry = not math.isfinite(out.grad_norm) and cfg.bf16
        if fp32_retry:
            # bf16 kernels can give non-finite gradients for some shapes while fp32 gives finite
            # ones (seen on a 2-core AMX host, torch 2.13: the conv3d weight gradient of 96-channel
            # 36x36 inputs, also 32x32 with 96 -> 192 channels, while 24, 40 and 48 were fine):
            # redo such a step in fp32 rather than let NaN into the weights
            out = self._generator_step(x, gan_on, contextlib.nullcontext)
        if math.isfinite(out.grad_norm):
            self.opt.step()
            self.ema.update(self.model, self.step)
            self._bad_steps = 0
        else:  # skip the update; a run that only makes non-finite gradients stops
            self.opt.zero_grad(set_to_none=True)
            self._bad_steps += 1
            if self._bad_steps >= MAX_BAD_STEPS:
                raise FloatingPointError(f"step {self.step}: non-finite gradients for {self._bad_steps} steps in a "
                                         "row (in fp32 too); lower lr or grad_clip, or check the data")
        loss, (l1, mse, lowpass, msssim), q, recon = out.loss, out.terms, out.q, out.recon
        search_loss, search_flips, g_adv, gnorm = out.search_loss, out.search_flips, out.g_adv, out.grad_norm
        d_loss = torch.zeros(())
        if gan_on and math.isfinite(gnorm):  # no discriminator step beside a skipped update
            with self._autocast():
                lr_ = self.disc_ddp(x).float()
                lf_ = self.disc_ddp(recon.detach()).float()
            d_loss = hinge_d_loss(lr_, lf_)
            if cfg.lecam_weight > 0:
                d_loss = d_loss + cfg.lecam_weight * lecam_loss(lr_, lf_, self.lecam_real, self.lecam_fake)
            self.opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            if math.isfinite(float(torch.nn.utils.clip_grad_norm_(self.disc.parameters(), cfg.grad_clip))):
                self.opt_d.step()  # (non-finite: the discriminator sits this step out, as above)
                self.lecam_real = cfg.lecam_decay * self.lecam_real + (1 - cfg.lecam_decay) * lr_.mean().detach()
                self.lecam_fake = cfg.lecam_decay * self.lecam_fake + (1 - cfg.lecam_decay) * lf_.mean().detach()
            else:
                self.opt_d.zero_grad(set_to_none=True)
        ent = bit_entropy(q.bit_usage.float())
        return {"loss": float(loss.detach()), "l1": float(l1.detach()), "psnr": psnr_from_mse(float(mse.detach()), peak=2.0),
                "ms_ssim_loss": float(msssim.detach()), "lowpass_mse": float(lowpass.detach()), "entropy_loss": float(q.entropy_loss.detach()),
                "commit": float(q.commit_loss.detach()), "g_adv": float(g_adv.detach()), "d_loss": float(d_loss.detach()),
                "bit_entropy_mean": float(ent.mean()), "bit_entropy_min": float(ent.min()),
                "grad_norm": float(gnorm), "lr": lr, "images": float(images),
                "search_loss": float(search_loss.detach()), "search_flips": search_flips,
                "fp32_retry": float(fp32_retry), "skipped": float(not math.isfinite(gnorm))}

    def _generator_step(self, x: torch.Tensor, gan_on: bool, autocast) -> _GeneratorStep:
        """The tokenizer's forward pass, losses and backward pass (gradients left in the
        parameters, clipped), under ``autocast``."""
        cfg = self.cfg
        with autocast():  # a frozen encoder (train_parts = "decoder") records no graph
            recon, q = self.model_ddp(x)
        recon = recon.float()
        loss, terms = pixel_losses(x, recon, cfg)
        loss = loss + cfg.entropy_weight * q.entropy_loss + cfg.commit_weight * q.commit_loss
        search_loss, search_flips = torch.zeros(()), 0.0
        if cfg.search_steps > 0 and q.latents is not None:  # both set, or neither (checked at start)
            # the search starts from this forward pass's latents, so the encoder runs once per step
            searched = indices_to_bits(search_indices(self.model, q.latents.detach(), x,
                                                      RefineConfig(cfg.search_steps, passes=0),
                                                      autocast=autocast), self.model_cfg.bits)
            search_loss, search_flips = searched_bits_loss(q.latents, searched)
            loss = loss + cfg.search_weight * search_loss
        g_adv = torch.zeros(())
        if gan_on:
            for p in self.disc.parameters():
                p.requires_grad_(False)
            with autocast():
                g_adv = generator_adv_loss(self.disc_ddp(recon).float())
            for p in self.disc.parameters():
                p.requires_grad_(True)
            loss = loss + cfg.gan_weight * g_adv
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip))
        return _GeneratorStep(loss, terms, q, recon, search_loss, search_flips, g_adv, gnorm)

    # ---------------------------------------------------------------- validation
    def ema_model(self) -> VideoTokenizer:
        model = VideoTokenizer(self.model_cfg).to(self.device)
        model.load_state_dict(self.ema.shadow)
        return model.eval()

    @torch.no_grad()
    def validate(self, model: VideoTokenizer | None = None) -> dict[str, float]:
        """Scores of ``model`` (default: the EMA weights) on the synthetic validation clips and,
        with a corpus among the sources, on its held-out real videos ("real_*")."""
        if self._val is None:
            clips = validation_clips(frames=self.cfg.frames, height=self.cfg.val_height or self.cfg.size,
                                     width=self.cfg.val_width or self.cfg.size, count=self.cfg.val_clips)
            self._val = [torch.from_numpy(c).permute(3, 0, 1, 2).float().div(127.5).sub(1) for c in clips]
            corpora = [Path(s) for s in self.cfg.sources if s != "synthetic" and is_corpus(Path(s))]
            real = [clip for c in corpora for _, clip in holdout_clips(
                c, frames=17, max_height=self.cfg.val_height or 360, max_width=self.cfg.val_width or 640)]
            self._val_real = [torch.from_numpy(c).permute(3, 0, 1, 2).float().div(127.5).sub(1) for c in real]
            own = heldout_clips(self.cfg.val_data, max_height=self.cfg.val_height or 360,
                                max_width=self.cfg.val_width or 640) if self.cfg.val_data else []
            self._val_own = [torch.from_numpy(c).permute(3, 0, 1, 2).float().div(127.5).sub(1) for c in own]
        model = model if model is not None else self.ema_model()
        out = self._score(model, self._val)
        if self._val_real:
            out.update({f"real_{k}": v for k, v in self._score(model, self._val_real).items()})
        if self._val_own:
            out.update({f"heldout_{k}": v for k, v in self._score(model, self._val_own).items()})
        return out

    def _score(self, model: VideoTokenizer, clips: list[torch.Tensor]) -> dict[str, float]:
        """PSNR on 8-bit pixels as a user would measure it, bit usage, and mean colour drift (the
        largest per-channel difference of a clip's mean colour, in code values)."""
        psnrs, corrected, drifts, usage = [], [], [], []
        for clip in clips:
            x = clip.unsqueeze(0).to(self.device)
            with self._autocast():
                idx = model.encode_indices(x)
                recon = model.decode_indices(idx).float().clamp(-1, 1)
            a, b = _to_uint8_frames(x), _to_uint8_frames(recon)
            idx = idx.cpu()
            totals = ErrorTotals().add(a, b)
            psnrs.append(totals.psnr())
            # as encode sends it by default (since December 2026 with --sharpen's default gains;
            # earlier logs' psnr_corrected had the least-squares gains themselves)
            fix = fit_correction(a, b, CorrectionConfig())
            corrected.append(ErrorTotals().add(a, fix.apply_to_frames(b)).psnr())
            drifts.append(totals.colour_drift)
            usage.append(((idx.unsqueeze(-1) >> torch.arange(self.model_cfg.bits)) & 1).float().reshape(-1, self.model_cfg.bits))
        ent = bit_entropy(torch.cat(usage).mean(0))
        return {"psnr": float(np.mean(psnrs)), "psnr_corrected": float(np.mean(corrected)),
                "colour_drift": float(np.mean(drifts)),
                "bit_entropy_mean": float(ent.mean()), "bit_entropy_min": float(ent.min())}

    # ---------------------------------------------------------------- loop
    def fit(self, progress: bool = True) -> None:
        cfg = self.cfg
        start_step = self.step
        t0 = time.time() - self.elapsed
        session_start = time.time()
        budget = Budget(60 * cfg.max_minutes)
        if cfg.max_minutes and not self._save_seconds:
            self.save()  # a checkpoint now: one from the start, and how long the last one will take
        bar = _Progress(cfg.steps, start_step, enabled=progress and self.rank == 0)
        running: dict[str, list[float]] = {}
        stop = {"signal": None}

        def request_stop(signum, _frame) -> None:  # finish the step, checkpoint, exit cleanly
            stop["signal"] = signum

        previous = {}
        warned_precision = False
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                previous[sig] = signal.signal(sig, request_stop)
        ran = False  # (the loop ended without an exception)
        try:
            while self.step < cfg.steps and stop["signal"] is None:
                step_start = time.time()
                if self.world == 1:  # (ranks' clocks differ: under DDP their rates would part)
                    reserve = self._save_seconds * (3 if cfg.export_at_end else 1)
                    self.time_spent = max(self.time_spent, budget.spent(reserve))
                metrics = self.train_step()
                if (metrics["fp32_retry"] or metrics["skipped"]) and not warned_precision:
                    warned_precision = True
                    bar.message(f"step {self.step}: non-finite bf16 gradients, the step redone in fp32"
                                + (" and still not finite: skipped" if metrics["skipped"] else "")
                                + " (fp32_retry / skipped in metrics.jsonl count such steps)")
                budget.note_step(time.time() - step_start)
                self.step += 1
                self.elapsed = time.time() - t0
                for k, v in metrics.items():
                    running.setdefault(k, []).append(v)
                if self.step % cfg.log_every == 0:
                    avg = {k: float(np.mean(v)) for k, v in running.items()}
                    avg["steps_per_hour"] = 3600 * (self.step - start_step) / max(1e-9, time.time() - session_start)
                    self.logger.log(self.step, "train", avg)
                    bar.update(self.step, avg)
                    running.clear()
                if self.step % cfg.val_every == 0 and self.rank == 0 and budget.fits(budget.validation, self._save_seconds):
                    val_start = time.time()
                    val = self.validate()
                    budget.validation = time.time() - val_start
                    self.logger.log(self.step, "val", val)
                    real = (f", real video {val['real_psnr']:.2f} dB, {val['real_psnr_corrected']:.2f} corrected "
                            f"(colour drift {val['real_colour_drift']:.1f})" if "real_psnr" in val else "")
                    real += (f", your held-out {val['heldout_psnr']:.2f} dB ({val['heldout_psnr_corrected']:.2f} "
                             "corrected)" if "heldout_psnr" in val else "")
                    bar.message(f"step {self.step}: val PSNR {val['psnr']:.2f} dB{real}, "
                                f"bit entropy {val['bit_entropy_mean']:.3f} (min {val['bit_entropy_min']:.3f})")
                if self.step % cfg.ckpt_every == 0:
                    self.save()
                # stop while the last checkpoint and the exports still fit in the budget
                if not budget.fits(budget.step, self._save_seconds * (3 if cfg.export_at_end else 1)):
                    bar.message(f"time limit reached at step {self.step}")
                    break
            if stop["signal"] is not None:
                self.stopped_by = int(stop["signal"])
                bar.message(f"stopped by signal {stop['signal']} at step {self.step}; checkpoint saved "
                            "(--resume continues)")
            ran = True
        finally:
            if running:  # the steps since the last log line (a short run may have no other)
                avg = {k: float(np.mean(v)) for k, v in running.items()}
                avg["steps_per_hour"] = 3600 * (self.step - start_step) / max(1e-9, time.time() - session_start)
                self.logger.log(self.step, "train", avg)
            self.save()
            # weights only from a run that trained (not one that failed, or stopped, before a step)
            if cfg.export_at_end and self.rank == 0 and ran and self.step > 0:
                written = self.export()
                for name in written:
                    bar.message(f"wrote {name}")
                bar.message(f"next: `tokcodec fit-prior {written[0]} --data DIR` fits the coder-3 prior its "
                            "files need to be small; then encode --model with it")
            bar.close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def export(self) -> list[Path]:
        """The run's EMA and its trained weights themselves as fp16 safetensors in out_dir
        (ema.safetensors, raw.safetensors): after a short fine-tune the EMA still holds a share
        of the start weights, so both are kept for comparison."""
        written = []
        for name, ema in (("ema", True), ("raw", False)):
            path = self.out / f"{name}.safetensors"
            export_weights(self.ckpt_path, path, fp16=True, ema=ema)
            written.append(path)
        return written


class Budget:
    """A run's wall-clock budget (0 = none): whether something of a given duration, plus a reserve
    for what must still happen after it (the last checkpoint, the exports), fits in what is left."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.start = time.time()
        self.step = 0.0        # the slowest recent step (an image step and a video step differ)
        self.validation = 0.0  # how long the last validation took
        self._recent: list[float] = []

    def note_step(self, seconds: float) -> None:
        self._recent = (self._recent + [seconds])[-8:]
        self.step = max(self._recent)

    def spent(self, reserve: float) -> float:
        """The share of the time for steps (the budget less ``reserve``) used so far; 0 without one."""
        if not self.seconds:
            return 0.0
        return min(1.0, (time.time() - self.start) / max(1.0, self.seconds - reserve))

    def fits(self, seconds: float, reserve: float) -> bool:
        if not self.seconds:
            return True
        left = self.seconds - (time.time() - self.start)
        return seconds + reserve + 1.0 < left


def training_device(name: str) -> torch.device:
    """The device a run trains on: auto = the first GPU when CUDA is present, else the CPU."""
    from tokcodec.device import select_runtime

    return select_runtime(name, "fp32").device


def is_image_step(step: int, cfg: TrainConfig) -> bool:
    """Whether this step trains on a batch of still images (joint image-video training)."""
    return cfg.image_every > 0 and step % cfg.image_every == cfg.image_every - 1


def batch_shape(images: bool, cfg: TrainConfig) -> tuple[int, int | None]:
    """(clips, frames) of a step's batch; frames None = the configured clip length."""
    return (cfg.batch_size * cfg.image_batch_mult, 1) if images else (cfg.batch_size, None)


class _WorkerBatches(torch.utils.data.IterableDataset):
    """The batches of steps start, start+1, ... drawn by a DataLoader's worker processes: worker k
    of n makes the batches of steps start+k, start+k+n, ..., and the loader hands them out in
    that order. Each worker's stream is seeded by (seed, rank, start step, worker), so a resumed
    run draws fresh, reproducible data but not the very clips an uninterrupted run would."""

    def __init__(self, cfg: TrainConfig, sampler: ClipSampler, rank: int, start: int) -> None:
        self.cfg, self.sampler, self.rank, self.start = cfg, sampler, rank, start

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        k, n = (info.id, info.num_workers) if info else (0, 1)
        torch.set_num_threads(1)
        sampler = self.sampler.reseeded([self.cfg.seed, self.rank, self.start, k])  # shares the loaded data
        step = self.start + k
        while True:
            images = is_image_step(step, self.cfg)
            yield sampler.batch(*batch_shape(images, self.cfg)), images
            step += n


def worker_batches(cfg: TrainConfig, sampler: ClipSampler, rank: int, start: int,
                   pin: bool) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(_WorkerBatches(cfg, sampler, rank, start), batch_size=None,
                                       num_workers=cfg.workers, pin_memory=pin, prefetch_factor=4,
                                       persistent_workers=True)


class _Progress:
    """A rich progress bar on a terminal, plain periodic lines otherwise (e.g. under nohup), both
    on standard error, as every command's progress (the bar was drawn on standard output, after a
    look at standard error: `train | tee log` showed and logged nothing until the end)."""

    def __init__(self, total: int, start: int, enabled: bool) -> None:
        self.enabled = enabled
        self.tty = enabled and live_terminal()
        self.total, self.start = total, start
        self.t0 = time.time()
        self.progress = None
        if self.tty:
            from rich.console import Console
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                       TimeElapsedColumn, TimeRemainingColumn)
            self.progress = Progress(TextColumn("train"), BarColumn(), MofNCompleteColumn(),
                                     TextColumn("{task.fields[info]}"), TimeElapsedColumn(),
                                     TimeRemainingColumn(), console=Console(stderr=True))
            self.task = self.progress.add_task("train", total=total, completed=start, info="")
            self.progress.start()

    def update(self, step: int, avg: dict[str, float]) -> None:
        if not self.enabled:
            return
        info = f"loss {avg['loss']:.4f} psnr {avg['psnr']:.2f} H {avg['bit_entropy_mean']:.3f}"
        if self.progress is not None:
            self.progress.update(self.task, completed=step, info=info)
        else:
            rate = (step - self.start) / max(1e-9, time.time() - self.t0)
            eta = (self.total - step) / max(rate, 1e-9)
            print(f"step {step}/{self.total} {info} {rate * 3600:.0f} steps/h ETA {eta / 60:.0f} min",
                  file=sys.stderr, flush=True)

    def message(self, text: str) -> None:
        if not self.enabled:
            return
        if self.progress is not None:
            self.progress.console.print(text, markup=False, highlight=False)
        else:
            print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()


def resolve_run(cfg: TrainConfig, resume: bool = False) -> TrainConfig:
    """Fill in an unset preset and run directory.

    The preset is the one given; else, resuming, the one the checkpoint holds; else that of the
    starting weights (so ``--init default`` fine-tunes the shipped model as it is); else the
    default preset. The run directory is runs/PRESET, PRESET as named or as the starting weights
    hold it (the same with and without ``resume``)."""
    from tokcodec.model.zoo import weights_config

    if cfg.preset:
        get_preset(cfg.preset)  # a mistyped name fails here, with the list of presets
    init_preset = ""
    if cfg.init_weights and not cfg.preset:
        init_preset = weights_config(cfg.init_weights).name
        if init_preset not in PRESETS:
            raise ValueError(f"{cfg.init_weights}: these weights hold model {init_preset!r}, which is not "
                             f"a preset: name the preset to train with --preset (presets: {', '.join(PRESETS)})")
    out_dir = cfg.out_dir or f"runs/{resolve_name(cfg.preset or init_preset or 'default')}"
    preset = cfg.preset or init_preset
    if resume:
        ckpt = Path(out_dir) / "checkpoint.pt"
        if not ckpt.exists():
            raise FileNotFoundError(f"{ckpt}: no checkpoint to resume from")
        saved = checkpoint_preset(ckpt)
        if cfg.preset and resolve_name(cfg.preset) != saved:
            raise ValueError(f"{ckpt} holds a {saved!r} model, not {resolve_name(cfg.preset)!r}: "
                             "resume it without --preset, or start a new run in another --out-dir")
        preset = saved
    return cfg.updated({"preset": resolve_name(preset or "default"), "out_dir": out_dir})


def resumed_config(overrides: dict) -> TrainConfig:
    """What ``tokcodec train --resume`` without --config continues: the config the run was last
    started with (its train_config.json), with these options applied over it."""
    run = resolve_run(TrainConfig().updated(overrides), resume=True)
    saved = Path(run.out_dir) / "train_config.json"
    return (TrainConfig.from_file(saved) if saved.exists() else run).updated({**overrides, "out_dir": run.out_dir})


#: torch from which the restricted unpickler of ``torch.load(weights_only=True)`` holds: before 2.6
#: a crafted file could make it run code (CVE-2025-32434)
SAFE_CHECKPOINT_TORCH = "2.6"


def load_checkpoint(path: Path, map_location: str | torch.device) -> dict:
    """A training checkpoint's state, tensors and plain values only (weights_only: no code runs),
    refused on a torch older than SAFE_CHECKPOINT_TORCH (the package takes 2.2 on, for Intel
    Macs), where that guarantee does not hold."""
    from torch.torch_version import TorchVersion

    if TorchVersion(torch.__version__) < SAFE_CHECKPOINT_TORCH:
        raise SetupError(f"reading a training checkpoint needs torch {SAFE_CHECKPOINT_TORCH} or newer "
                         f"(this is {torch.__version__}, whose weights_only loader a crafted file can make run "
                         "code: CVE-2025-32434)")
    return torch.load(path, map_location=map_location, weights_only=True)


def checkpoint_preset(ckpt: Path) -> str:
    """The model preset a training checkpoint holds (from its model config)."""
    state = load_checkpoint(ckpt, "cpu")
    name = json.loads(state.get("model_config", "{}")).get("name", "")
    if name not in PRESETS:
        raise ValueError(f"{ckpt}: holds model {name!r}, which is not a preset")
    return name


def train(cfg: TrainConfig, resume: bool = False, progress: bool = True) -> Trainer:
    cfg = resolve_run(cfg, resume)
    if not resume and (Path(cfg.out_dir) / "checkpoint.pt").exists():
        raise FileExistsError(f"{cfg.out_dir} already holds a run (checkpoint.pt): --resume continues "
                              "it, --out-dir DIR starts a new one elsewhere")
    trainer = Trainer(cfg)
    if resume:
        trainer.load()
        if trainer.rank == 0:
            print(f"resuming {cfg.out_dir} at step {trainer.step} of {cfg.steps}", file=sys.stderr)
    elif cfg.init_weights:
        digest = trainer.init_from_weights(cfg.init_weights)
        if trainer.rank == 0:
            print(f"starting from weights {cfg.init_weights} (sha256 {digest[:16]}...)", file=sys.stderr)
    if trainer.rank == 0:
        (trainer.out / "train_config.json").write_text(json.dumps(asdict(cfg), indent=2))
    trainer.fit(progress=progress)
    return trainer


def read_checkpoint(checkpoint: Path) -> dict:
    """A training checkpoint's state (no pickle: tensors and plain values only), or a ModelError
    that says what the file is not."""
    from tokcodec.errors import ModelError

    hint = (" (a weights file: it is already exported, and --model takes it)"
            if str(checkpoint).endswith(".safetensors") else "")
    try:
        state = load_checkpoint(checkpoint, "cpu")
    except SetupError:
        raise
    except FileNotFoundError:
        raise ModelError(f"{checkpoint}: no such file") from None
    except IsADirectoryError:
        raise ModelError(f"{checkpoint}: is a directory (a run's checkpoint is RUN_DIR/checkpoint.pt)") from None
    except Exception as exc:  # noqa: BLE001 - torch raises several types for a file that is not its own
        raise ModelError(f"{checkpoint}: not a training checkpoint{hint} ({type(exc).__name__})") from None
    if not isinstance(state, dict) or "model_config" not in state or "step" not in state:
        raise ModelError(f"{checkpoint}: not a training checkpoint{hint}")
    return state


def export_weights(checkpoint: Path, out: Path, fp16: bool = True, extra: dict[str, str] | None = None,
                   ema: bool = True, state: dict | None = None) -> str:
    """Write a checkpoint's EMA weights (``ema=False``: the trained weights themselves) as shipped
    safetensors; returns the file's SHA-256. The EMA is usually better; after a short fine-tune
    from other weights it still holds a share of them (0.999^steps), so compare both."""
    from tokcodec.model.zoo import save_weights

    state = state if state is not None else read_checkpoint(checkpoint)  # (``state``: already read)
    cfg = TokenizerConfig.from_dict(json.loads(state["model_config"]))
    meta = {"steps": str(int(state["step"])), "train_seconds": f"{float(state['elapsed']):.0f}",
            "averaging": "ema" if ema else "none"}
    if state.get("init_weights"):  # steps and seconds count from these weights, not from scratch
        meta["init_weights"] = f"{state['init_weights']} (sha256 {state['init_sha256']})"
    meta.update(extra or {})
    return save_weights(state["ema" if ema else "model"], cfg, out, fp16=fp16, extra=meta)
