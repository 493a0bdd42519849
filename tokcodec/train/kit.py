"""One training run on a borrowed machine (e.g. a GPU lent for minutes), start to finish.

Trains from a config for a given number of minutes, then writes to one output folder what must
come back: the exported weights (fp16 EMA and raw, each split into parts if it is larger than a
file may be), metrics.jsonl, the run's config and a validation summary of both exports. Needs only
torch, numpy, safetensors, scikit-image (with Pillow) and scikit-learn: with a training pack
(``python -m tokcodec.train.pack``) as its real data it never imports PyAV, zstandard or
constriction. ``--dry-run`` runs the same path on the CPU with small batches, to try it anywhere.

    python -m tokcodec.train.kit --config configs/gpu.toml --minutes 8 --out OUT [--data data/pack]

scripts/gpu_train.sh wraps it for a shell.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

PART_BYTES = 16 * 2**20 - 4096  # largest file to hand back (the device tool takes 16 MiB files)


def dry_run_overrides(cfg) -> dict:
    """What --dry-run changes: the CPU, small batches and frames, validation only at the end."""
    return {"device": "cpu", "compile": False, "workers": 0,
            "batch_size": min(cfg.batch_size, 2), "image_batch_mult": min(cfg.image_batch_mult, 2),
            "frames": min(cfg.frames, 5), "size": min(cfg.size, 64), "val_every": 10**9,
            "val_height": min(cfg.val_height or 64, 64), "val_width": min(cfg.val_width or 64, 64),
            "val_clips": min(cfg.val_clips, 2)}


def split_file(path: Path, limit: int = PART_BYTES) -> list[Path]:
    """``path`` itself when it is at most ``limit`` bytes, else parts NAME.part000, ... (rejoin
    with ``cat NAME.part* > NAME``) and the original removed."""
    size = path.stat().st_size
    if size <= limit:
        return [path]
    parts = []
    with path.open("rb") as src:
        for i in range((size + limit - 1) // limit):
            part = path.with_name(f"{path.name}.part{i:03d}")
            part.write_bytes(src.read(limit))
            parts.append(part)
    path.unlink()
    return parts


def summarise(trainer, weights: dict[str, Path]) -> dict:
    """Validation scores of each exported weights file, loaded as a user would load it."""
    from tokcodec.model.zoo import load_tokenizer

    out: dict = {"step": trainer.step, "train_seconds": round(trainer.elapsed, 1),
                 "device": str(trainer.device)}
    if trainer.device.type == "cuda":
        import torch
        out["device_name"] = torch.cuda.get_device_name(trainer.device)
    for name, path in weights.items():
        loaded = load_tokenizer(str(path), device=trainer.device)
        out[name] = {"sha256": loaded.sha256, **trainer.validate(loaded.tokenizer.float())}
    return out


def with_corpus(sources: tuple[str, ...], data: str) -> tuple[str, ...]:
    """A config's sources with its real corpus replaced by ``data`` (e.g. a pack): every corpus it
    names goes, and so does a source that is not there (configs/gpu.toml's data/pack when the pack
    was carried under another name), which stopped the run at its start, device time spent."""
    from tokcodec.train.real import is_corpus

    return tuple(s for s in sources if s == "synthetic" or (Path(s).exists() and not is_corpus(Path(s)))) + (data,)


def run(config: Path, minutes: float, out: Path, data: str | None = None, device: str = "auto",
        dry_run: bool = False, run_dir: Path | None = None) -> dict:
    from tokcodec.train.trainer import TrainConfig, train

    cfg = TrainConfig.from_file(config)
    changes: dict = {"max_minutes": minutes, "device": device, "export_at_end": True,
                     "out_dir": str(run_dir or Path("runs") / f"kit-{time.strftime('%Y%m%d-%H%M%S')}")}
    if data:
        changes["sources"] = with_corpus(cfg.sources, data)
    cfg = cfg.updated(changes)
    if dry_run:
        cfg = cfg.updated(dry_run_overrides(cfg))
    out.mkdir(parents=True, exist_ok=True)
    trainer = train(cfg, progress=False)
    run_dir = Path(cfg.out_dir)
    summary = summarise(trainer, {"ema": run_dir / "ema.safetensors", "raw": run_dir / "raw.safetensors"})
    summary["dry_run"] = dry_run
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    returned = []
    for name in ("ema.safetensors", "raw.safetensors", "metrics.jsonl", "train_config.json", "summary.json"):
        dest = out / name
        shutil.copyfile(run_dir / name, dest)
        returned += split_file(dest)
    summary["files"] = [p.name for p in returned]
    return summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tokcodec.train.kit", description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", type=Path, required=True, help="training config (TOML/YAML/JSON)")
    ap.add_argument("--minutes", type=float, required=True, help="wall-clock budget of the training, "
                    "exports included (start-up, final validation and copying come on top)")
    ap.add_argument("--out", type=Path, required=True, help="folder for what comes back")
    ap.add_argument("--data", help="a corpus or training pack to use instead of the config's corpus")
    ap.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (--dry-run: cpu)")
    ap.add_argument("--run-dir", type=Path, help="run directory (default runs/kit-TIME)")
    ap.add_argument("--dry-run", action="store_true", help="the same run on the CPU, small batches")
    args = ap.parse_args(argv)
    from tokcodec.device import keep_freed_memory

    keep_freed_memory()  # the CLI's allocator policy (tokcodec train gets it by re-exec)
    summary = run(args.config, args.minutes, args.out, args.data, args.device, args.dry_run, args.run_dir)
    for name in ("ema", "raw"):
        s = summary[name]
        real = f", real held-out {s['real_psnr']:.2f} dB (drift {s['real_colour_drift']:.1f})" if "real_psnr" in s else ""
        print(f"{name}: synthetic {s['psnr']:.2f} dB{real}", file=sys.stderr)
    print(f"step {summary['step']} in {summary['train_seconds']:.0f} s on {summary['device']}; "
          f"wrote {', '.join(summary['files'])} to {args.out}", file=sys.stderr)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
