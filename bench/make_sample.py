"""Regenerate the bundled demo clip tokcodec/data/sample.mp4 (deterministic).

A 640x360, 33-frame camera move over a held-out image (never seen in training), written as
high-quality H.264 so it stays small in the package.
"""
from __future__ import annotations

import argparse
from fractions import Fraction
from pathlib import Path

from tokcodec.io import FrameWriter
from tokcodec.train.synthetic import validation_clips

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "tokcodec" / "data" / "sample.mp4"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("-o", "--output", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--frames", type=int, default=33)
    args = ap.parse_args()
    clip = validation_clips(frames=args.frames, height=360, width=640, count=2, seed=2, max_layers=0)[1]
    with FrameWriter(args.output, 640, 360, Fraction(25), crf=16) as w:
        for frame in clip:
            w.write(frame)
    print(f"wrote {args.output} ({args.output.stat().st_size} bytes, {len(clip)} frames)")


if __name__ == "__main__":
    main()
