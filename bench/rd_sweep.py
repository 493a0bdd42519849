#!/usr/bin/env python
"""Generate the bench clips into bench/clips/ and run the full RD sweep (or --quick).

    python bench/rd_sweep.py                 # full sweep: 3 clips, 640x360, 65 frames -> runs/bench
    python bench/rd_sweep.py --quick -o out  # 2 points per codec, 17 frames

The clips are not committed (about 40 MB of lossless video): they are regenerated here,
deterministically, from scikit-image's bundled images (see tokcodec/bench/clips.py). Run it with
`nice -n 19` on a shared machine; the full sweep takes tens of minutes on 2 cores (vvenc medium is
the slow part).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tokcodec.bench import clips as clipgen  # noqa: E402
from tokcodec.bench.rd import BenchConfig, parse_codecs, run_bench  # noqa: E402
from tokcodec.bench.report import markdown, write_all  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-o", "--out", type=Path, default=ROOT / "runs" / "bench")
    ap.add_argument("--clips-dir", type=Path, default=ROOT / "bench" / "clips")
    ap.add_argument("--clips", default=",".join(clipgen.CLIPS), help="which generated clips")
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=360)
    ap.add_argument("--length", type=int, default=65, help="frames generated per clip (1 + 4k)")
    ap.add_argument("--codecs", default="x265,vvenc,svtav1,x264,tokcodec")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--frames", type=int, default=None, help="cap frames per clip in the bench")
    ap.add_argument("--ffmpeg", type=Path, default=None)
    ap.add_argument("--model", default="default")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--refine", type=int, default=0, help="tokcodec encode --refine steps")
    ap.add_argument("--passes", type=int, default=None, help="tokcodec encode --passes (default: its own)")
    ap.add_argument("--rdo", type=float, default=None, help="tokcodec encode --rdo (default: its own)")
    ap.add_argument("--regenerate", action="store_true", help="rewrite clips that already exist")
    args = ap.parse_args(argv)

    names = [n.strip() for n in args.clips.split(",") if n.strip()]
    clip_dir = args.clips_dir / f"{args.width}x{args.height}_{args.length}"
    paths = clipgen.generate(clip_dir, names, width=args.width, height=args.height, frames=args.length,
                             overwrite=args.regenerate)
    print(f"clips: {', '.join(str(p) for p in paths)}", file=sys.stderr)
    cfg = BenchConfig(clips=paths, out=args.out, codecs=parse_codecs(args.codecs), quick=args.quick, overwrite=True,
                      ffmpeg=args.ffmpeg, frames=args.frames, model=args.model, device=args.device,
                      refine=args.refine, passes=args.passes, rdo=args.rdo)
    report = run_bench(cfg, log=lambda s: print(s, file=sys.stderr, flush=True))
    write_all(report, args.out)
    print(markdown(report))
    return 0 if report.points else 1


if __name__ == "__main__":
    sys.exit(main())
