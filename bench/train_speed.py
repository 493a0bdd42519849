"""Training throughput: steps/s and clips/s of the shipped trainer, per preset and device.

For each preset it times the clip sampler alone (the synthetic engine rendering on the training
device) and whole training steps (forward, losses, backward, AdamW, EMA; video batches only, GAN
off) after a warm-up, then says how many minutes on this device hold as many training voxels
(clips x frames x pixels) as the CPU-hours behind the shipped default weights.

    python bench/train_speed.py                                  # CPU, fast and base, small batches
    python bench/train_speed.py --device cuda --batch 32 --frames 17 --size 256
"""
from __future__ import annotations

import argparse
import tempfile
import time

import torch

# the CPU training behind the shipped `fast` weights (tokcodec/weights/fast.md): about 6.5 CPU-hours
# of batches of 4 clips of 9 x 192 x 192 (stages at 17 x 128 x 128 counted at their own size)
DEFAULT_CPU_HOURS = 6.5


def measure(preset: str, device: str, batch: int, frames: int, size: int, steps: int,
            warmup: int, sources: tuple[str, ...], compile_model: bool) -> dict[str, float]:
    from tokcodec.train.trainer import Trainer, TrainConfig

    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig(preset=preset, out_dir=tmp, sources=sources, batch_size=batch, frames=frames,
                          size=size, image_every=0, gan_weight=0.0, device=device, compile=compile_model,
                          export_at_end=False)
        trainer = Trainer(cfg)
        sync = torch.cuda.synchronize if trainer.device.type == "cuda" else (lambda: None)
        for _ in range(warmup):
            trainer.sampler.batch(batch)
        sync()
        t0 = time.perf_counter()
        for _ in range(steps):
            trainer.sampler.batch(batch)
        sync()
        data_s = (time.perf_counter() - t0) / steps
        for _ in range(warmup):
            trainer.train_step()
        sync()
        t0 = time.perf_counter()
        for _ in range(steps):
            trainer.train_step()
        sync()
        step_s = (time.perf_counter() - t0) / steps
        memory = torch.cuda.max_memory_allocated() / 2**30 if trainer.device.type == "cuda" else float("nan")
        params = sum(p.numel() for p in trainer.model.parameters())
    return {"params_m": params / 1e6, "data_clips_s": batch / data_s, "steps_s": 1 / step_s,
            "clips_s": batch / step_s, "voxels_s": batch * frames * size * size / step_s, "gpu_gib": memory}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--presets", nargs="+", default=["fast", "base"])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--frames", type=int, default=9)
    ap.add_argument("--size", type=int, default=192)
    ap.add_argument("--steps", type=int, default=5, help="timed steps (after --warmup)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--data", nargs="+", default=["synthetic"], help="sources, e.g. synthetic data/pack")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    from tokcodec.train.trainer import training_device

    device = training_device(a.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}; batches of {a.batch} x {a.frames} x {a.size} x {a.size}, bf16 autocast, "
          f"{a.steps} timed steps after {a.warmup}")
    print(f"{'preset':10} {'params':>8} {'data clips/s':>13} {'steps/s':>8} {'clips/s':>8} {'Mvoxel/s':>9} {'GPU GiB':>8}")
    rates = {}
    for preset in a.presets:
        r = measure(preset, a.device, a.batch, a.frames, a.size, a.steps, a.warmup, tuple(a.data), a.compile)
        rates[preset] = r
        print(f"{preset:10} {r['params_m']:7.1f}M {r['data_clips_s']:13.1f} {r['steps_s']:8.3f} "
              f"{r['clips_s']:8.2f} {r['voxels_s'] / 1e6:9.2f} {r['gpu_gib']:8.1f}", flush=True)
    if "fast" in rates:
        # the shipped default's CPU-hours in voxels, at the CPU rate of its own batches (4 x 9 x 192^2)
        cpu = measure("fast", "cpu", 4, 9, 192, 3, 1, ("synthetic",), False) if device.type != "cpu" \
            or (a.batch, a.frames, a.size) != (4, 9, 192) else rates["fast"]
        voxels = DEFAULT_CPU_HOURS * 3600 * cpu["voxels_s"]
        minutes = voxels / rates["fast"]["voxels_s"] / 60
        print(f"the shipped default's {DEFAULT_CPU_HOURS} CPU-hours (at {cpu['voxels_s'] / 1e6:.2f} Mvoxel/s on "
              f"this host's CPU) = {minutes:.1f} minutes of `fast` training here")


if __name__ == "__main__":
    main()
