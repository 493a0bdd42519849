"""Speed of the default model at 640x360 next to x265 medium, measured in the same run.

Prints tokenizer encode and decode frames/s (network + entropy coding, 17-frame GOPs, the
CLI's runtime: bf16 autocast on CPU, channels_last_3d, all cores, glibc keeping freed memory)
and the whole CLI path file -> .tok -> file, then x265 preset medium's encode frames/s on the
same frames (ffmpeg from imageio-ffmpeg).
With --refine N it also times the CLI path's encode with decoder-in-the-loop search (encode
--refine N), whose decode speed is that of any other file.
"""
from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch


def model_fps(model_name: str, frames: np.ndarray, gop: int, repeats: int) -> tuple[float, float]:
    from tokcodec.codec.pipeline import (encoder_for, frames_to_tensor, make_header, prepare_model,
                                         tensor_to_frames)
    from tokcodec.device import select_runtime
    from tokcodec.model.zoo import load_tokenizer

    runtime = select_runtime("auto")
    loaded = prepare_model(load_tokenizer(model_name), runtime)
    cfg = loaded.config
    t, h, w, _ = frames.shape
    header = make_header(loaded, runtime, w, h, gop=gop)
    coder = encoder_for(header.coder_id, loaded)
    groups = [list(frames[i:i + gop]) for i in range(0, t - gop + 1, gop)]
    enc_s = dec_s = 0.0
    n = 0
    for r in range(repeats + 1):  # the first pass warms up
        for g in groups:
            t0 = time.perf_counter()
            with torch.inference_mode(), runtime.autocast():
                idx = loaded.tokenizer.encode_indices(frames_to_tensor(g, header, runtime))
            payload = coder.encode(idx[0].numpy().astype(np.int32), cfg.bits)
            t1 = time.perf_counter()
            tokens = coder.decode(payload, idx.shape[1:], cfg.bits)
            with torch.inference_mode(), runtime.autocast():
                video = loaded.tokenizer.decode_indices(torch.from_numpy(tokens.astype(np.int64))[None])
            tensor_to_frames(video, len(g), header)
            t2 = time.perf_counter()
            if r:
                enc_s += t1 - t0
                dec_s += t2 - t1
                n += len(g)
    return n / enc_s, n / dec_s


def x265_fps(frames: np.ndarray, ffmpeg: str) -> float:
    t, h, w, _ = frames.shape
    cmd = [ffmpeg, "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
           "-s", f"{w}x{h}", "-r", "25", "-i", "-", "-pix_fmt", "yuv420p", "-c:v", "libx265",
           "-preset", "medium", "-crf", "28", "-x265-params", "log-level=error", "-f", "null", "-"]
    t0 = time.perf_counter()
    subprocess.run(cmd, input=frames.tobytes(), check=True)
    return t / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="default")
    ap.add_argument("--frames", type=int, default=68)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--refine", type=int, default=0, help="also time encode --refine N (CLI path)")
    a = ap.parse_args()
    from tokcodec.device import keep_freed_memory, use_all_cores
    from tokcodec.train.synthetic import validation_clips

    frames = validation_clips(frames=a.frames, height=360, width=640, count=1, seed=5)[0]
    use_all_cores()  # the CLI's thread policy
    keep_freed_memory()  # and its allocator policy (cli._maybe_reexec)
    enc, dec = model_fps(a.model, frames, 17, a.repeats)
    print(f"tokcodec {a.model} 640x360 (tokenizer + entropy coder, GOP 17, {torch.get_num_threads()} threads): "
          f"encode {enc:.1f} fps, decode {dec:.1f} fps")
    with tempfile.TemporaryDirectory() as tmp:
        from tokcodec.codec.pipeline import decode_video, encode_video
        from tokcodec.io import FrameWriter
        src = Path(tmp) / "in.mkv"
        with FrameWriter(src, 640, 360, Fraction(25)) as w:
            for f in frames:
                w.write(f)
        es = encode_video(src, Path(tmp) / "a.tok", model=a.model)
        ds = decode_video(Path(tmp) / "a.tok", Path(tmp) / "out.mkv", model=a.model)
        print(f"tokcodec CLI path (file -> .tok -> .mkv incl. video IO): encode {es.fps:.1f} fps, "
              f"decode {ds.fps:.1f} fps, {es.bpp:.4f} bpp")
        if a.refine:
            rs = encode_video(src, Path(tmp) / "r.tok", model=a.model, refine=a.refine)
            print(f"tokcodec CLI path encode --refine {a.refine}: {rs.fps:.2f} fps, {rs.bpp:.4f} bpp")
    try:
        import imageio_ffmpeg
        print(f"x265 medium (crf 28) encode on the same frames: {x265_fps(frames, imageio_ffmpeg.get_ffmpeg_exe()):.1f} fps")
    except Exception as exc:  # noqa: BLE001
        print(f"x265: not measured ({exc})")


if __name__ == "__main__":
    main()
