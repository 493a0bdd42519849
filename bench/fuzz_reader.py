"""Fuzz the .tok reader: tens of thousands of damaged files, every read path run on each.

A case fails when a read path raises anything but tokcodec's own one-line error, takes longer than
--timeout seconds (a hang), or allocates more (Python + numpy, traced) than a bound derived from
the file's header: 32 MB + 16 x file size + 64 bytes per token of the largest GOP the header allows.

    nice -n 19 .venv/bin/python bench/fuzz_reader.py                 # 12 000 cases
    nice -n 19 .venv/bin/python bench/fuzz_reader.py --cases 50000 --start 12000
    nice -n 19 .venv/bin/python bench/fuzz_reader.py --case 1234     # replay one case, with traceback
"""
from __future__ import annotations

import argparse
import collections
import os
import random
import signal
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TOKCODEC_NO_REEXEC", "1")

from tokcodec.codec.container import HEADER_SIZE, Header  # noqa: E402
from tokcodec.errors import TokcodecError  # noqa: E402
from tokcodec.fuzz import MUTATIONS, exercise, mutate, seed_files, temp_workdir  # noqa: E402

MB = 1 << 20


def peak_rss_mb() -> float:
    """VmHWM: the process's peak resident memory, which also sees allocations tracemalloc cannot
    (constriction's Rust code, FFmpeg's C code)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Hang(BaseException):  # not caught by the read paths under test
    pass


def memory_bound(data: bytes) -> int:
    """Allocation a reader may make for this file: what its header declares, and no more."""
    bound = 32 * MB + 16 * len(data)
    try:
        h = Header.unpack(data[:HEADER_SIZE], "case")
    except TokcodecError:
        return bound
    t, lh, lw = h.latent_shape(h.gop)
    return bound + 64 * t * lh * lw


def run(seeds: list[bytes], start: int, cases: int, timeout: float, workdir: Path) -> int:
    def alarm(_sig, _frame):
        raise Hang()

    signal.signal(signal.SIGALRM, alarm)
    table: dict[str, collections.Counter] = {k: collections.Counter() for k in MUTATIONS}
    failures: list[str] = []
    slowest = (0.0, -1)
    worst_mem = (0.0, -1, 0)
    path = workdir / "case.tok"
    rss_before = peak_rss_mb()
    t0 = time.perf_counter()
    tracemalloc.start()
    for case in range(start, start + cases):
        kind, data = mutate(seeds, random.Random(case))
        path.write_bytes(data)
        tracemalloc.reset_peak()
        began = time.perf_counter()
        signal.setitimer(signal.ITIMER_REAL, timeout)
        try:
            outcome = exercise(path)
        except Hang:
            outcome = None
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        took = time.perf_counter() - began
        peak = tracemalloc.get_traced_memory()[1]
        bound = memory_bound(data)
        slowest = max(slowest, (took, case))
        worst_mem = max(worst_mem, (peak / bound, case, peak))
        if outcome is None:
            failures.append(f"case {case} ({kind}): no result after {timeout} s (hang)")
            table[kind]["fail"] += 1
        elif not outcome.ok:
            failures.append(f"case {case} ({kind}): {outcome.detail}")
            table[kind]["fail"] += 1
        elif peak > bound:
            failures.append(f"case {case} ({kind}): allocated {peak / MB:.1f} MB, bound {bound / MB:.1f} MB")
            table[kind]["fail"] += 1
        else:
            table[kind]["read fully" if outcome.detail.startswith("ok/ok") else "clean error"] += 1
    tracemalloc.stop()
    wall = time.perf_counter() - t0
    print(f"{cases} cases (seeds {start}..{start + cases - 1}) in {wall:.1f} s, {1000 * wall / cases:.1f} ms/case")
    print(f"{'mutation':14s} {'cases':>7s} {'read fully':>11s} {'clean error':>12s} {'FAILED':>7s}")
    for kind, c in table.items():
        print(f"{kind:14s} {sum(c.values()):7d} {c['read fully']:11d} {c['clean error']:12d} {c['fail']:7d}")
    print(f"slowest case {slowest[1]}: {1000 * slowest[0]:.0f} ms (limit {timeout:.0f} s)")
    print(f"largest traced allocation: case {worst_mem[1]}, {worst_mem[2] / MB:.1f} MB = "
          f"{100 * worst_mem[0]:.1f}% of its header-derived bound")
    print(f"peak RSS of the process: {rss_before:.0f} MB before the cases, {peak_rss_mb():.0f} MB after "
          "(all allocations, native code included)")
    for line in failures[:30]:
        print("FAIL", line)
    print(f"{len(failures)} failures")
    return 1 if failures else 0


def replay(seeds: list[bytes], case: int, workdir: Path) -> int:
    kind, data = mutate(seeds, random.Random(case))
    path = workdir / f"case_{case}.tok"
    path.write_bytes(data)
    print(f"case {case}: {kind}, {len(data)} bytes -> {path}")
    os.environ["TOKCODEC_DEBUG"] = "1"
    outcome = exercise(path)
    print(outcome)
    return 0 if outcome.ok else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", type=int, default=12000)
    ap.add_argument("--start", type=int, default=0, help="first case number (cases are reproducible)")
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds before a case counts as a hang")
    ap.add_argument("--case", type=int, help="replay this one case")
    args = ap.parse_args()
    import torch
    torch.set_num_threads(1)
    workdir = temp_workdir()
    seeds = seed_files(workdir)
    print(f"seed files: {[len(s) for s in seeds]} bytes (see tokcodec.fuzz.seed_files)")
    if args.case is not None:
        return replay(seeds, args.case, workdir)
    return run(seeds, args.start, args.cases, args.timeout, workdir)


if __name__ == "__main__":
    sys.exit(main())
