"""Speed of the default model next to x265 medium, measured in the same run.

For each size (640x360; with --device cuda also 1280x720 and 1920x1080) it prints frames/s of the
network alone, the entropy coder alone, both in sequence (the model path), and the whole CLI path
file -> .tok -> file (17-frame GOPs, the CLI's runtime: bf16 autocast, channels_last_3d on CPU,
all cores, glibc keeping freed memory, OpenMP's short spin, entropy coding in threads beside the
network), then x265 preset medium's encode frames/s on the same frames (ffmpeg from
imageio-ffmpeg). The CLI path is
also timed with the closed loop off, --scale 1.25 and --rdo 0.
With --refine N it also times the CLI path's encode with decoder-in-the-loop search (encode
--refine N), whose decode speed is that of any other file.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from fractions import Fraction
from pathlib import Path

from tokcodec.startup import startup_environment

os.environ.update(startup_environment())  # the CLI's start-up settings, before torch's OpenMP reads them

import numpy as np  # noqa: E402
import torch  # noqa: E402


def model_fps(model_name: str, frames: np.ndarray, gop: int, repeats: int,
              device: str = "auto") -> dict[str, float]:
    """Frames/s of the network alone (encode, decode) and of the entropy coder alone (encode,
    decode; one thread), GOP by GOP; the first pass warms up, then each stage's fastest of
    ``repeats`` passes counts (a shared host's slow spells only ever slow a pass down), and
    ``spread`` is the most any stage's slowest pass took over its fastest. The sequential model
    path is 1 / (1/network + 1/coder): what a decode gets with no overlap."""
    from tokcodec.codec.pipeline import (encoder_for, frames_to_tensor, make_header, prepare_model,
                                         tensor_to_frames)
    from tokcodec.device import select_runtime
    from tokcodec.model.zoo import load_tokenizer

    runtime = select_runtime(device)
    sync = torch.cuda.synchronize if runtime.device.type == "cuda" else (lambda: None)
    loaded = prepare_model(load_tokenizer(model_name), runtime)
    cfg = loaded.config
    t, h, w, _ = frames.shape
    header = make_header(loaded, runtime, w, h, gop=gop)
    coder = encoder_for(header.coder_id, loaded)
    groups = [list(frames[i:i + gop]) for i in range(0, t - gop + 1, gop)]
    passes: list[dict[str, float]] = []
    n = tokens = 0
    for r in range(repeats + 1):
        sec = dict.fromkeys(("net_enc", "coder_enc", "coder_dec", "net_dec"), 0.0)
        n = tokens = 0
        for g in groups:
            t0 = time.perf_counter()
            with torch.inference_mode(), runtime.autocast():
                idx = loaded.tokenizer.encode_indices(frames_to_tensor(g, header, runtime))
            idx = idx[0].cpu().numpy().astype(np.int32)
            t1 = time.perf_counter()
            payload = coder.encode(idx, cfg.bits)
            t2 = time.perf_counter()
            decoded = coder.decode(payload, idx.shape, cfg.bits)
            t3 = time.perf_counter()
            with torch.inference_mode(), runtime.autocast():
                video = loaded.tokenizer.decode_indices(torch.from_numpy(decoded.astype(np.int64))[None].to(runtime.device))
            tensor_to_frames(video, len(g), header)
            sync()
            t4 = time.perf_counter()
            for key, s in zip(sec, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                sec[key] += s
            n += len(g)
            tokens += idx.size
        if r:
            passes.append(sec)
    sec = {key: min(p[key] for p in passes) for key in passes[0]}
    out = {key: n / s for key, s in sec.items()}
    out["spread"] = max(max(p[key] for p in passes) / sec[key] for key in sec)
    out["coder_dec_mtok"] = tokens / sec["coder_dec"] / 1e6
    out["model_enc"] = n / (sec["net_enc"] + sec["coder_enc"])
    out["model_dec"] = n / (sec["net_dec"] + sec["coder_dec"])
    return out


def fastest(repeats: int, run):
    """The fastest of ``repeats`` calls of ``run`` (stats with ``fps``) and the slowest's time over
    its time."""
    runs = [run() for _ in range(max(1, repeats))]
    return max(runs, key=lambda st: st.fps), max(st.fps for st in runs) / min(st.fps for st in runs)


def x265_fps(frames: np.ndarray, ffmpeg: str) -> float:
    t, h, w, _ = frames.shape
    cmd = [ffmpeg, "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
           "-s", f"{w}x{h}", "-r", "25", "-i", "-", "-pix_fmt", "yuv420p", "-c:v", "libx265",
           "-preset", "medium", "-crf", "28", "-x265-params", "log-level=error", "-f", "null", "-"]
    t0 = time.perf_counter()
    subprocess.run(cmd, input=frames.tobytes(), check=True)
    return t / (time.perf_counter() - t0)


SIZES = {"360": (360, 640), "720": (720, 1280), "1080": (1080, 1920)}
#: repeats whose times differ by more than this factor get a warning (a steady host: within 1.1)
UNSTEADY = 1.3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="default")
    ap.add_argument("--frames", type=int, default=68)
    ap.add_argument("--repeats", type=int, default=2, help="timed passes (after a warm-up pass for the "
                    "network alone); the fastest counts, as a shared host only ever slows one down")
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda")
    ap.add_argument("--sizes", default="", help="comma-separated of 360, 720, 1080 "
                    "(default: 360 on the CPU, all three on CUDA)")
    ap.add_argument("--refine", type=int, default=0, help="also time encode --refine N (CLI path)")
    ap.add_argument("--no-x265", action="store_true", help="skip the x265 comparison")
    ap.add_argument("--compile", action="store_true", help="CLI path with torch.compile (encode/decode --compile)")
    ap.add_argument("--main-only", action="store_true", help="each size's first row only (default settings), "
                    "not the variants' lines (--no-correction, --passes 0, --scale 1.25, --rdo 0)")
    a = ap.parse_args()
    from tokcodec.codec.parallel import coder_threads
    from tokcodec.codec.pipeline import decode_video, encode_video
    from tokcodec.device import keep_freed_memory, select_runtime, use_all_cores
    from tokcodec.io import FrameWriter
    from tokcodec.model.zoo import load_tokenizer
    from tokcodec.train.synthetic import validation_clips

    use_all_cores()  # the CLI's thread policy
    keep_freed_memory()  # and its allocator policy (tokcodec/allocator.py)
    runtime = select_runtime(a.device)
    sizes = a.sizes.split(",") if a.sizes else (["360", "720", "1080"] if runtime.device.type == "cuda" else ["360"])
    where = (torch.cuda.get_device_name(runtime.device) if runtime.device.type == "cuda"
             else f"CPU, {torch.get_num_threads()} threads")
    print(f"tokcodec {a.model} on {where}, {runtime.precision}, GOP 17, {a.frames} frames; "
          f"coder alone on one thread, CLI path with {coder_threads()} coder threads")
    print(f"{'size':>6} {'net enc':>8} {'net dec':>8} {'coder enc':>10} {'coder dec':>10} {'Mtok/s':>7} "
          f"{'model enc':>10} {'model dec':>10} {'CLI enc':>8} {'CLI dec':>8} {'bpp':>7}   (frames/s)")
    x265_frames = None
    model = load_tokenizer(a.model)  # loaded once: with --compile, compiled once, not for every call
    for size in sizes:
        height, width = SIZES[size]
        frames = validation_clips(frames=a.frames, height=height, width=width, count=1, seed=5)[0]
        x265_frames = frames if x265_frames is None else x265_frames
        m = model_fps(a.model, frames, 17, a.repeats, a.device)
        with tempfile.TemporaryDirectory() as tmp:
            src = Path(tmp) / "in.mkv"
            with FrameWriter(src, width, height, Fraction(25)) as w:
                for f in frames:
                    w.write(f)
            es, enc_spread = fastest(a.repeats, lambda: encode_video(
                src, Path(tmp) / "a.tok", model=model, device=a.device, compile=a.compile, overwrite=True))
            ds, dec_spread = fastest(a.repeats, lambda: decode_video(
                Path(tmp) / "a.tok", Path(tmp) / "out.mkv", model=model, device=a.device, compile=a.compile,
                overwrite=True))
            print(f"{height:>5}p {m['net_enc']:8.1f} {m['net_dec']:8.1f} {m['coder_enc']:10.1f} {m['coder_dec']:10.1f} "
                  f"{m['coder_dec_mtok']:7.2f} {m['model_enc']:10.1f} {m['model_dec']:10.1f} {es.fps:8.1f} "
                  f"{ds.fps:8.1f} {es.bpp:7.4f}", flush=True)
            spread = max(m["spread"], enc_spread, dec_spread)
            if spread > UNSTEADY:
                print(f"{'':6} warning: a repeat took up to {spread:.1f}x another's time (the fastest of "
                      f"{a.repeats} is shown): the host's speed swings, so compare figures within one run "
                      "or run again", flush=True)
            if a.main_only:
                continue
            ns = encode_video(src, Path(tmp) / "n.tok", model=model, device=a.device, correction=False)
            nd = decode_video(Path(tmp) / "n.tok", Path(tmp) / "n.mkv", model=model, device=a.device)
            print(f"{'':6} tokens only (--no-correction): CLI enc {ns.fps:.1f}, CLI dec {nd.fps:.1f}, "
                  f"{ns.bpp:.4f} bpp; decode took {ds.gop_batch} GOP(s) per network call "
                  f"(--gop-batch auto){', compiled' if a.compile else ''}", flush=True)
            os_ = encode_video(src, Path(tmp) / "o.tok", model=model, device=a.device, passes=0)
            print(f"{'':6} one-shot encoder (--passes 0): CLI enc {os_.fps:.1f}, {os_.bpp:.4f} bpp", flush=True)
            ss = encode_video(src, Path(tmp) / "s.tok", model=model, device=a.device, scale=1.25)
            sd = decode_video(Path(tmp) / "s.tok", Path(tmp) / "s.mkv", model=model, device=a.device)
            print(f"{'':6} tokenized finer (--scale 1.25): CLI enc {ss.fps:.1f}, CLI dec {sd.fps:.1f}, "
                  f"{ss.bpp:.4f} bpp", flush=True)
            rs0 = encode_video(src, Path(tmp) / "z.tok", model=model, device=a.device, rdo=0)
            print(f"{'':6} token bits as the encoder's signs (--rdo 0): CLI enc {rs0.fps:.1f}, {rs0.bpp:.4f} bpp",
                  flush=True)
            if a.refine and size == sizes[0]:
                rs = encode_video(src, Path(tmp) / "r.tok", model=model, refine=a.refine, device=a.device)
                print(f"CLI path encode --refine {a.refine} at {height}p: {rs.fps:.2f} fps, {rs.bpp:.4f} bpp")
    print("net: the network alone; coder: the entropy coder alone; model: both in sequence, no overlap; "
          "CLI: file -> .tok -> .mkv with video IO, coder threads overlapping the network; encode "
          "decodes each GOP once more for its correction record and by default runs the encoder in a "
          "closed loop of 2 passes" + ("" if a.main_only else " (the lines below: without them)"))
    if a.no_x265:
        return
    try:
        import imageio_ffmpeg
        print(f"x265 medium (crf 28) encode on the same frames ({sizes[0]}p): "
              f"{x265_fps(x265_frames, imageio_ffmpeg.get_ffmpeg_exe()):.1f} fps")
    except Exception as exc:  # noqa: BLE001
        print(f"x265: not measured ({exc})")


if __name__ == "__main__":
    main()
