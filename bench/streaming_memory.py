"""Streaming check: peak RSS of `tokcodec encode` and `decode` on a clip and on one 10x longer.

Each run is its own process (the real CLI); its peak RSS comes from wait4()'s rusage. Memory must
not grow with the video's length: long/short should stay <= 1.2.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from fractions import Fraction
from pathlib import Path



def make_clip(path: Path, frames: int, width: int, height: int) -> None:
    from tokcodec.io import FrameWriter
    from tokcodec.train.synthetic import validation_clips

    base = validation_clips(frames=34, height=height, width=width, count=1, seed=3)[0]
    with FrameWriter(path, width, height, Fraction(25)) as w:
        for i in range(frames):  # ping-pong the base clip so any length stays natural
            k = i % (2 * len(base) - 2)
            w.write(base[k if k < len(base) else 2 * len(base) - 2 - k])


# The child reports its own VmHWM (peak RSS of its address space, reset at exec). rusage's
# ru_maxrss is not usable here: on Linux it keeps the parent's RSS at fork time as a floor.
_CHILD = """
import atexit, sys
def report():
    for line in open('/proc/self/status'):
        if line.startswith('VmHWM:'):
            print('VMHWM_KB', line.split()[1], file=sys.stderr)
atexit.register(report)
from tokcodec.cli import main
sys.argv = ['tokcodec'] + sys.argv[1:]
main()
"""


def peak_rss_mb(args: list[str]) -> float:
    from tokcodec.startup import startup_environment

    env = {**startup_environment(), "TOKCODEC_NO_REEXEC": "1"}  # the CLI's own settings, without its re-exec
    res = subprocess.run([sys.executable, "-c", _CHILD, *args, "-q", "-y"], capture_output=True,
                         text=True, env=env)
    if res.returncode != 0:
        raise SystemExit(f"command failed: tokcodec {' '.join(args)}\n{res.stderr}")
    kb = [int(l.split()[1]) for l in res.stderr.splitlines() if l.startswith("VMHWM_KB")]
    return kb[-1] / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--frames", type=int, default=34, help="frames of the short clip")
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=360)
    ap.add_argument("--model", default="default")
    ap.add_argument("--repeats", type=int, default=3,
                    help="runs per measurement; the median is kept (peak RSS varies by ~10%% run to run)")
    ap.add_argument("--passes", type=int, default=None, help="encode --passes (default: encode's)")
    ap.add_argument("--rdo", type=float, default=None, help="encode --rdo (default: encode's)")
    a = ap.parse_args()
    passes = [] if a.passes is None else ["--passes", str(a.passes)]
    passes += [] if a.rdo is None else ["--rdo", str(a.rdo)]
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        rows = []
        for label, n in (("short", a.frames), ("long", 10 * a.frames)):
            src = d / f"{label}.mkv"
            make_clip(src, n, a.width, a.height)
            enc = statistics.median(peak_rss_mb(["encode", str(src), "-o", str(d / f"{label}.tok"),
                                                 "--model", a.model, *passes]) for _ in range(a.repeats))
            dec = statistics.median(peak_rss_mb(["decode", str(d / f"{label}.tok"), "-o",
                                                 str(d / f"{label}_out.mkv")]) for _ in range(a.repeats))
            rows.append((label, n, enc, dec))
            print(f"{label:5s} {n:5d} frames {a.width}x{a.height}: peak RSS encode {enc:7.1f} MB, decode {dec:7.1f} MB"
                  f" (median of {a.repeats})",
                  flush=True)
        (_, _, e0, d0), (_, _, e1, d1) = rows
        print(f"ratio long/short: encode {e1 / e0:.3f}, decode {d1 / d0:.3f} (target <= 1.2)")


if __name__ == "__main__":
    main()
