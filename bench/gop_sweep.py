"""Rate knobs on whole windows of real video: each setting (scale, GOP length, --rdo,
--sharpen) through the real CLI path (``encode_video`` then ``decode_video``), PSNR (RGB), colour
drift and bpp of the whole file, and VMAF and VMAF NEG (libvmaf, on the decoded video in 4:2:0 as
``tokcodec bench`` measures it) with ``--vmaf``.

``bench/quality.py`` measures 17-frame windows, one GOP each, so it cannot see what a longer GOP
does; this takes longer windows (``--frames``, default 130) of the colour videos of the real
corpus's training split (``--split holdout`` only to report, never to tune). The table of
docs/usage.md's "Smaller files" came from

    python bench/gop_sweep.py --videos vtest,franck,cap12_edit --vmaf \\
        --settings 1:17,1:33,1:65,0.75:17,0.75:33,0.75:65,0.5:17,0.5:65

and its comparisons on 66-frame windows of all seven colour training videos from
``--frames 66 --settings 1:17,1:17:0.5,1:17:1,1:33,1:33:0.1,1:33:0.05,1:33:0,1:65``; the
``--sharpen`` table of docs/usage.md from ``--frames 66 --vmaf --settings
1:17:0.25:1,1:17:0.25:1.5,1:17:0.25:2,1:17:0.25:3``.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

from tokcodec.defaults import DEFAULT_RDO


def parse_settings(text: str) -> list[tuple[float, int, float, float | None]]:
    """'scale:gop[:rdo[:sharpen]],...' -> [(scale, gop, rdo, sharpen)], rdo and sharpen
    defaulting to the encoder's (sharpen None: CorrectionConfig's rule by GOP length)."""
    out = []
    for item in text.split(","):
        parts = item.split(":")
        if not 2 <= len(parts) <= 4:
            raise ValueError(f"setting {item!r} is not scale:gop[:rdo[:sharpen]]")
        out.append((float(parts[0]), int(parts[1]), float(parts[2]) if len(parts) > 2 else DEFAULT_RDO,
                    float(parts[3]) if len(parts) > 3 else None))
    return out


def _label(sharpen: float | None) -> str:
    return "auto" if sharpen is None else f"{sharpen:g}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default="data/real", help="real corpus (scripts/training_data.sh makes it)")
    ap.add_argument("--split", choices=("train", "holdout"), default="train")
    ap.add_argument("--videos", default="", help="comma-separated video names (file stems); default: all")
    ap.add_argument("--frames", type=int, default=130, help="frames per window (one window per video)")
    ap.add_argument("--settings", default="1:17,1:33,1:65",
                    help="scale:gop[:rdo[:sharpen]],... (default rdo and sharpen: the encoder's)")
    ap.add_argument("--model", default="default")
    ap.add_argument("--vmaf", action="store_true", help="also VMAF and VMAF NEG (needs an ffmpeg with libvmaf)")
    ap.add_argument("--json", dest="json_out", default=None, help="also write the rows here")
    a = ap.parse_args()
    settings = parse_settings(a.settings)

    from tokcodec.codec.correction import CorrectionConfig
    from tokcodec.codec.pipeline import decode_video, encode_video
    from tokcodec.io import FrameWriter, read_frames
    from tokcodec.metrics import ErrorTotals
    from tokcodec.model.zoo import load_tokenizer
    from tokcodec.train.real import corpus_clips, is_corpus

    corpus = Path(a.corpus)
    if not is_corpus(corpus):
        raise SystemExit(f"no real corpus at {corpus} (scripts/training_data.sh {corpus} makes it)")
    wanted = {v for v in a.videos.split(",") if v}
    clips = [(n, c) for n, c in corpus_clips(corpus, a.split, frames=a.frames, windows=1)
             if not wanted or n.split("#")[0] in wanted]
    if not clips:
        among = f" among {a.videos}" if wanted else ""
        raise SystemExit(f"no {a.split} video of the corpus has {a.frames} frames{among}")
    loaded = load_tokenizer(a.model)  # loaded once: encode and decode place it on their device
    ff = None
    if a.vmaf:
        from tokcodec.bench.ffmpeg import find_ffmpeg, rgb_to_yuv420
        from tokcodec.bench.measure import vmaf
        from tokcodec.bench.reference import load_reference
        ff = find_ffmpeg()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name, clip in clips:
            src = work / f"{name.replace('#', '_')}.mkv"  # lossless (FFV1 RGB)
            with FrameWriter(src, clip.shape[2], clip.shape[1], Fraction(25)) as w:
                for frame in clip:
                    w.write(frame)
            ref = load_reference(src, ff, work / "ref" / src.stem) if ff else None
            for scale, gop, rdo, sharpen in settings:
                start = time.perf_counter()
                stats = encode_video(src, work / "a.tok", model=loaded, gop=gop, scale=scale, rdo=rdo,
                                     correction=CorrectionConfig(sharpen=sharpen), overwrite=True, audio=False)
                decode_video(work / "a.tok", work / "d.mkv", model=loaded, overwrite=True)
                seconds = time.perf_counter() - start
                decoded = read_frames(work / "d.mkv")
                totals = ErrorTotals().add(clip, decoded)
                score = neg = None
                if ref is not None:
                    rgb_to_yuv420(ff, decoded[:, :ref.height, :ref.width], work / "d.yuv", ref.fps)
                    score, neg = (vmaf(ff, work / "d.yuv", ref.yuv420(), ref.width, ref.height, ref.fps, work,
                                       neg=n) for n in (False, True))
                row = {"clip": name, "size": f"{clip.shape[2]}x{clip.shape[1]}", "frames": len(clip),
                       "scale": scale, "gop": gop, "rdo": rdo, "sharpen": sharpen, "bits": 8 * stats.bytes,
                       "pixels": clip.shape[0] * clip.shape[1] * clip.shape[2], "bpp": stats.bpp, "psnr": totals.psnr(),
                       "colour_drift": totals.colour_drift, "vmaf": score, "vmaf_neg": neg, "seconds": seconds}
                rows.append(row)
                vm = "" if score is None else f"  VMAF {score:6.2f}" + ("" if neg is None else f"  NEG {neg:6.2f}")
                print(f"{name:16s} {row['size']:>8s} scale {scale:<5g} gop {gop:<3d} rdo {rdo:<5g} sharpen {_label(sharpen):<4} "
                      f"bpp {stats.bpp:.4f}  PSNR {row['psnr']:6.2f}  drift {row['colour_drift']:4.1f}{vm}  "
                      f"({seconds:.0f} s)", flush=True)
    print(f"model {loaded.name}, {a.split} split, windows of {a.frames} frames; over {len(clips)} clips "
          "(bpp: all bits over all pixels; PSNR and VMAF: the mean of the clips'):")
    for scale, gop, rdo, sharpen in settings:
        sel = [r for r in rows if (r["scale"], r["gop"], r["rdo"], r["sharpen"]) == (scale, gop, rdo, sharpen)]
        vm = [r["vmaf"] for r in sel if r["vmaf"] is not None]
        ng = [r["vmaf_neg"] for r in sel if r["vmaf_neg"] is not None]
        bpp = sum(r["bits"] for r in sel) / sum(r["pixels"] for r in sel)  # all bits over all pixels
        print(f"  scale {scale:<5g} gop {gop:<3d} rdo {rdo:<5g} sharpen {_label(sharpen):<4} bpp {bpp:.4f}  "
              f"PSNR {np.mean([r['psnr'] for r in sel]):6.2f}" + (f"  VMAF {np.mean(vm):6.2f}" if vm else "")
              + (f"  NEG {np.mean(ng):6.2f}" if ng else ""))
    if a.json_out:
        Path(a.json_out).write_text(json.dumps({"model": loaded.name, "split": a.split, "frames": a.frames,
                                                "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
