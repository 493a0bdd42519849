"""Plot a run's training curve (train PSNR, validation PSNR, bit entropy) from metrics.jsonl."""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("-o", "--output", type=Path, default=None)
    a = ap.parse_args()
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(l) for l in (a.run_dir / "metrics.jsonl").read_text().splitlines() if l.strip()]
    train = [r for r in rows if r["kind"] == "train"]
    val = [r for r in rows if r["kind"] == "val"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    ax1.plot([r["step"] for r in train], [r["psnr"] for r in train], lw=0.6, alpha=0.6, label="train batch PSNR")
    ax1.plot([r["step"] for r in val], [r["psnr"] for r in val], "o-", label="validation PSNR (EMA, 8-bit)")
    ax1.set_xlabel("step"); ax1.set_ylabel("dB"); ax1.grid(alpha=0.3); ax1.legend()
    ax2.plot([r["step"] for r in val], [r["bit_entropy_mean"] for r in val], "o-", label="mean per-bit entropy")
    ax2.plot([r["step"] for r in val], [r["bit_entropy_min"] for r in val], "s-", label="min per-bit entropy")
    ax2.set_xlabel("step"); ax2.set_ylabel("bit"); ax2.set_ylim(0, 1.02); ax2.grid(alpha=0.3); ax2.legend()
    fig.tight_layout()
    out = a.output or a.run_dir / "training_curve.png"
    fig.savefig(out, dpi=100)
    for r in val:
        print(f"step {r['step']:6d}  val PSNR {r['psnr']:.2f} dB  bit entropy {r['bit_entropy_mean']:.3f} "
              f"(min {r['bit_entropy_min']:.3f})")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
