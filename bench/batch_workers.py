"""Batch throughput with --workers 1 vs 2 (vs N): files/s and frames/s, encode and decode, on
generated clips. Used to choose the default worker count (tokcodec/batch/local.py).

    python bench/batch_workers.py [--model default] [--workers 1 2] [--clips 8] [--frames 34]
                                  [--size 640x360] [--small-files 16]

Wall time includes starting the workers (spawn + model load), as a user would see it.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TOKCODEC_NO_REEXEC", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from conftest import smooth_clip, write_clip

from tokcodec.batch import batch_decode, batch_encode
from tokcodec.batch.progress import Reporter


def make_clips(folder: Path, count: int, frames: int, width: int, height: int) -> int:
    for i in range(count):
        write_clip(folder / f"clip{i:02d}.mkv", smooth_clip(frames, height, width, seed=i))
    return count * frames


class FirstStart(Reporter):
    """Notes when the first file starts, to tell worker start-up from steady coding."""

    def begin(self, plan, workers, engine) -> None:
        self.first: float | None = None

    def started(self, job, total_frames) -> None:
        self.first = self.first or time.perf_counter()


def measure(label: str, src: Path, work: Path, model: str, workers: list[int], repeat: int) -> None:
    for _ in range(repeat):
        for n in workers:
            tok, dec = work / f"tok{n}", work / f"dec{n}"
            for what in ("encode", "decode"):
                rep = FirstStart()
                t0 = time.perf_counter()
                if what == "encode":
                    s = batch_encode(src, tok, model=model, workers=n, force=True, reporter=rep)
                else:
                    s = batch_decode(tok, dec, workers=n, force=True, to="mkv", reporter=rep)
                end = time.perf_counter()
                assert s.failed == 0, s.failures
                steady = s.frames / (end - rep.first) if rep.first else 0.0
                print(f"{label:26s} {what}  workers={n}  {s.done / (end - t0):5.2f} files/s  "
                      f"{s.frames / (end - t0):6.1f} frames/s  (steady {steady:6.1f} frames/s after "
                      f"{rep.first - t0 if rep.first else 0:.1f} s start-up; {s.done} files, "
                      f"{end - t0:.1f} s)", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="default")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--clips", type=int, default=8)
    ap.add_argument("--frames", type=int, default=34)
    ap.add_argument("--size", default="640x360")
    ap.add_argument("--repeat", type=int, default=1, help="alternate the worker counts this many times")
    ap.add_argument("--small-files", type=int, default=16, help="also N clips of 9 frames at 160x96 (0: skip)")
    args = ap.parse_args()
    width, height = map(int, args.size.split("x"))
    with tempfile.TemporaryDirectory(prefix="tokcodec-bench-") as tmp:
        tmp_path = Path(tmp)
        big = tmp_path / "big"
        big.mkdir()
        make_clips(big, args.clips, args.frames, width, height)
        measure(f"{args.clips} clips {args.frames}f {width}x{height}", big, tmp_path, args.model, args.workers,
                args.repeat)
        if args.small_files:
            small = tmp_path / "small"
            small.mkdir()
            make_clips(small, args.small_files, 9, 160, 96)
            measure(f"{args.small_files} clips 9f 160x96", small, tmp_path / "s", args.model,
                    args.workers, args.repeat)


if __name__ == "__main__":
    main()
