"""Token decode of a whole .tok file in coder threads: how far the entropy decoder scales.

A decode hands each GOP's payload to a pool of coder threads (``tokcodec.codec.parallel``;
``TOKCODEC_CODER_THREADS`` sets how many, default one per core up to 8). With coder 4 (the
default) a linked GOP decodes only after the one before it, so the GOPs of a run between key
GOPs decode one after the other, and what threads buy comes from runs decoding side by side.
This writes a coder-4 file of synthetic tokens (a natural image panned across frames, turned into
18-bit sign patterns as in ``bench/entropy_rate.py --synthetic``: not the model's tokens, but
tokens whose neighbours and successive frames agree, so GOPs link) and times
``tokcodec.codec.pipeline.decode_tokens`` over it, the token path of ``tokcodec decode`` without
the network, at each thread count. On a GPU this path must keep up with the network: 1080p at
400 frames/s is about 24 GOPs of 17 frames, 3.8 M tokens, per second.

Example::

    nice -n 19 .venv/bin/python bench/token_threads.py --size 1080x1920 --gops 32
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def _size(text: str) -> tuple[int, int]:
    h, w = text.lower().split("x")
    return int(h), int(w)


def write_file(path: Path, size: tuple[int, int], gops: int, gop: int, key_interval: int) -> tuple[int, int, int]:
    """A coder-4 file of ``gops`` GOPs of one long synthetic pan; (tokens, linked GOPs, bytes)."""
    import torch

    from entropy_rate import SyntheticConfig, synthetic_tokens
    from tokcodec.codec.container import ContainerWriter
    from tokcodec.codec.pipeline import encoder_for, make_header
    from tokcodec.device import Runtime
    from tokcodec.model.zoo import load_tokenizer

    loaded = load_tokenizer("default")
    cfg = loaded.config
    step = (gop - 1) // cfg.temporal_factor  # latent frames each GOP adds after the first
    frames = 1 + cfg.temporal_factor * step * gops
    height, width = size
    pan = SyntheticConfig(height=height, width=width, frames=frames, bits=cfg.bits, velocity=(0.5, 1.0))
    tokens = synthetic_tokens(pan, SyntheticConfig.images[0]).astype(np.int32)
    header = make_header(loaded, Runtime(torch.device("cpu"), "fp32"), width, height, gop=gop)
    coder = encoder_for(header.coder_id, loaded)
    total = linked = 0
    previous = None
    with path.open("wb") as fh:
        writer = ContainerWriter(fh, header)
        for k in range(gops):
            # GOP k: its own first latent frame (taken one step on), then its ``step`` later ones
            idx = np.ascontiguousarray(tokens[k * step:(k + 1) * step + 1])
            payload = coder.encode(idx, cfg.bits, previous if k % key_interval else None)
            linked += coder.links(payload)
            writer.add_chunk(gop, idx.shape, payload, b"")
            total += idx.size
            previous = idx[-1]
        writer.close()
    return total, linked, path.stat().st_size


def time_decode(path: Path, threads: int, repeat: int) -> float:
    """Best wall time of decoding every chunk's tokens with ``threads`` coder threads."""
    from tokcodec.codec.container import ContainerReader
    from tokcodec.codec.pipeline import decode_tokens

    os.environ["TOKCODEC_CODER_THREADS"] = str(threads)
    best = float("inf")
    for _ in range(repeat):
        with ContainerReader(path) as reader:
            start = time.perf_counter()
            for _ in decode_tokens(reader):
                pass
            best = min(best, time.perf_counter() - start)
    return best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=_size, default=(1080, 1920), help="frame size HxW (default 1080x1920)")
    ap.add_argument("--gops", type=int, default=32, help="GOPs in the file")
    ap.add_argument("--gop", type=int, default=17, help="frames per GOP (1 + 4k)")
    ap.add_argument("--key-interval", type=int, default=8, help="a key GOP every N GOPs (as encode's)")
    ap.add_argument("--threads", default=None,
                    help="thread counts, comma separated (default: 1, 2, 4, 8 up to the cores)")
    ap.add_argument("--repeat", type=int, default=3, help="timing repeats (best is kept)")
    a = ap.parse_args(argv)
    cores = os.cpu_count() or 1
    counts = [int(t) for t in a.threads.split(",")] if a.threads else [t for t in (1, 2, 4, 8) if t <= cores]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tokens.tok"
        tokens, linked, size = write_file(path, a.size, a.gops, a.gop, a.key_interval)
        print(f"{a.size[0]}x{a.size[1]}, {a.gops} GOPs of {a.gop} frames, key GOP every {a.key_interval}: "
              f"{linked} linked, {tokens / 1e6:.2f} M tokens, {size / 1e6:.2f} MB; {cores} cores")
        time_decode(path, 1, 1)  # warm: the coder's compiled kernels, the prior
        print(f"{'threads':>7} {'seconds':>8} {'Mtok/s':>7} {'GOPs/s':>7} {'frames/s':>9}")
        for t in counts:
            s = time_decode(path, t, a.repeat)
            print(f"{t:>7} {s:8.3f} {tokens / s / 1e6:7.2f} {a.gops / s:7.1f} {a.gops * a.gop / s:9.1f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
