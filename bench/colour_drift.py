"""Colour fidelity: how far a model moves the mean colour of nearly flat clips.

Each clip is one colour (greys, skin tones, sky, asphalt, foliage) with a faint gradient and a
little noise, as walls, sky and roads are in camera video. It goes through the whole CLI path
(encode to a .tok, decode to lossless .mkv) and the drift is the largest per-channel difference
of the clip's mean colour, in 8-bit code values (``decode --compare`` prints the same figure).

    python bench/colour_drift.py [--model NAME|weights.safetensors] [--size 128x128] [--no-correction] [--passes N]

By default the clips go through the codec as ``tokcodec encode`` sends them (tokens and the
correction layer); ``--no-correction`` measures the tokens alone, i.e. the model itself.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from tokcodec.model.zoo import LoadedModel

COLOURS: dict[str, tuple[int, int, int]] = {
    "grey 30%": (77, 77, 77), "grey 50%": (128, 128, 128), "grey 80%": (204, 204, 204),
    "skin light": (224, 172, 145), "skin dark": (141, 85, 36), "sky": (110, 160, 220),
    "asphalt": (90, 92, 95), "foliage": (60, 120, 50),
}


def flat_clip(rgb: tuple[int, int, int], frames: int = 17, height: int = 128, width: int = 128,
              seed: int = 0) -> np.ndarray:
    """uint8 (T, H, W, 3): ``rgb`` with a +-6 code value gradient and noise of sigma 2."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(-6, 6, width)[None, :, None]
    base = np.asarray(rgb, np.float64)[None, None, :] + ramp
    clip = base[None] + rng.normal(0, 2, (frames, height, width, 3))
    return np.clip(np.round(clip), 0, 255).astype(np.uint8)


def drift(model: "LoadedModel", rgb: tuple[int, int, int], frames: int, height: int, width: int,
          work: Path, correction: bool = True, passes: int | None = None, rdo: float | None = None,
          cell: int = 0, pool: int | None = None) -> dict[str, float]:
    from fractions import Fraction

    import tokcodec
    from tokcodec.codec.correction import CorrectionConfig
    from tokcodec.io import FrameWriter

    src = work / "in.mkv"  # lossless FFV1
    with FrameWriter(src, width, height, Fraction(25)) as writer:
        for frame in flat_clip(rgb, frames, height, width):
            writer.write(frame)
    extra = {} if rdo is None else {"rdo": rdo}
    tokcodec.encode_video(src, work / "c.tok", model=model, overwrite=True, passes=passes,
                          correction=CorrectionConfig(enabled=correction, cell=cell,
                                                      **({} if pool is None else {"pool": pool})), **extra)
    tokcodec.decode_video(work / "c.tok", work / "out.mkv", model=model, overwrite=True)
    return tokcodec.compare_videos(src, work / "out.mkv")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="default")
    ap.add_argument("--size", default="128x128", help="HxW of the clips")
    ap.add_argument("--frames", type=int, default=17)
    ap.add_argument("--json", dest="json_out", default=None)
    ap.add_argument("--no-correction", action="store_true", help="tokens alone (the model itself)")
    ap.add_argument("--passes", type=int, default=None, help="closed-loop encoder passes (default: encode's)")
    ap.add_argument("--rdo", type=float, default=None, help="encode --rdo (default: encode's)")
    ap.add_argument("--cell", type=int, default=0, help="correction grid cell in pixels (default 0: encode's)")
    ap.add_argument("--pool", type=int, default=None, help="detail gains' low-pass block (default: encode's)")
    a = ap.parse_args()
    h, w = (int(v) for v in a.size.split("x"))

    from tokcodec.device import keep_freed_memory, use_all_cores

    from tokcodec.model.zoo import load_tokenizer

    use_all_cores()
    keep_freed_memory()
    model = load_tokenizer(a.model)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, rgb in COLOURS.items():
            cmp = drift(model, rgb, a.frames, h, w, Path(tmp), correction=not a.no_correction,
                        passes=a.passes, rdo=a.rdo, cell=a.cell, pool=a.pool)
            rows[name] = {"rgb": rgb, "colour_drift": cmp["colour_drift"], "psnr": cmp["psnr"]}
            print(f"{name:11s} {str(rgb):16s} drift {cmp['colour_drift']:5.1f} code values, "
                  f"PSNR {cmp['psnr']:.2f} dB", flush=True)
    worst = max(r["colour_drift"] for r in rows.values())
    mean = float(np.mean([r["colour_drift"] for r in rows.values()]))
    print(f"model {model.name} ({model.sha256[:8]}), {'tokens alone' if a.no_correction else 'with correction'}: "
          f"mean drift {mean:.1f}, worst {worst:.1f} code values ({h}x{w}, {a.frames} frames)")
    if a.json_out:
        Path(a.json_out).write_text(json.dumps({"model": a.model, "correction": not a.no_correction, "rows": rows,
                                                "mean": mean, "worst": worst}, indent=2))


if __name__ == "__main__":
    main()
