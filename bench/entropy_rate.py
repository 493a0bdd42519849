"""Measure the token entropy coder: bits/token, saving vs raw bits, bpp and throughput.

Two token sources:

* default: the shipped tokenizer (``tokcodec.model.zoo.load_tokenizer("default")``) run on the
  validation clips with camera motion (``tokcodec.train.data.validation_clips``);
* ``--synthetic``: token grids made without a model. A natural image from skimage.data is panned
  across frames; each latent cell gets a feature vector from a small multi-scale filter bank
  (blurred colour, gradients), a fixed random projection maps it to ``bits`` channels and the
  token is the sign pattern (LFQ), so bits are spatially and temporally correlated the way a
  convolutional encoder's signs are, without claiming to be the real thing.

Examples::

    nice -n 19 .venv/bin/python bench/entropy_rate.py --synthetic          # 360x640 synthetic
    nice -n 19 .venv/bin/python bench/entropy_rate.py                      # shipped model, 128x128
    nice -n 19 .venv/bin/python bench/entropy_rate.py --size 360x640       # shipped model, 360p
    nice -n 19 .venv/bin/python bench/entropy_rate.py --weights runs/small/checkpoint.pt
    nice -n 19 .venv/bin/python bench/entropy_rate.py --coder 3                # one coder only

Every coder given with ``--coder`` (default: 2 and 3, the context coders) codes the same tokens.

Throughput is CPU time of this process (best of --repeat runs per GOP), so other jobs on a shared
machine do not count; it is one core (numpy, constriction for coder 2, numba kernels for coder
3). The first encode and decode of the first GOP are also printed ("first call"): they include
loading coder 3's compiled kernels from numba's cache, or compiling them when there is none
(e.g. ``NUMBA_CACHE_DIR=$(mktemp -d)``); ``TOKCODEC_NO_NUMBA=1`` measures coder 3's numpy path.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


# --------------------------------------------------------------------------- synthetic tokens


@dataclass(frozen=True)
class SyntheticConfig:
    height: int = 360            # pixel frame size (multiple of 8)
    width: int = 640
    frames: int = 17             # 1 + 4k video frames -> 1 + k latent frames
    bits: int = 18
    velocity: tuple[float, float] = (3.0, 5.0)  # camera pan in pixels per video frame (dy, dx)
    noise: float = 0.15          # encoder "jitter" added to features before the sign
    sigmas: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0)
    focus: float = 0.8           # how much each channel draws on one scale (0: all scales alike)
    seed: int = 0
    images: tuple[str, ...] = field(default=("astronaut", "coffee", "rocket", "hubble_deep_field"))


def _feature_maps(img: np.ndarray, sigmas: tuple[float, ...]) -> np.ndarray:
    """(H, W, 3) float -> (F, H, W): blurred colour and its x/y gradients at several scales."""
    from scipy import ndimage

    feats = []
    for s in sigmas:
        for c in range(3):
            g = ndimage.gaussian_filter(img[..., c], s)
            feats += [g, np.gradient(g, axis=0) * s, np.gradient(g, axis=1) * s]
    return np.stack(feats)


def _projection(rng: np.random.Generator, cfg: SyntheticConfig, n_feats: int) -> np.ndarray:
    """Random (bits, F) projection; each channel leans on one scale, so channels differ in
    smoothness the way a CNN's latent channels do."""
    per_scale = n_feats // len(cfg.sigmas)
    scale_of = np.repeat(np.arange(len(cfg.sigmas)), per_scale)
    chosen = rng.integers(0, len(cfg.sigmas), cfg.bits)
    gain = np.where(scale_of[None, :] == chosen[:, None], 1.0, 1.0 - cfg.focus)
    return (rng.standard_normal((cfg.bits, n_feats)) * gain).astype(np.float32)


def _load_image(name: str, min_h: int, min_w: int) -> np.ndarray:
    from skimage import data, transform

    img = getattr(data, name)()
    if img.ndim == 2:
        img = np.stack([img] * 3, -1)
    img = img[..., :3].astype(np.float32) / 255.0
    scale = max(min_h / img.shape[0], min_w / img.shape[1], 1.0)
    if scale > 1.0:
        img = transform.rescale(img, scale, channel_axis=-1, order=1).astype(np.float32)
    return img


def synthetic_tokens(cfg: SyntheticConfig, image: str) -> np.ndarray:
    """Token grid (t, h, w) of one GOP: an image panned at cfg.velocity, LFQ signs of features."""
    rng = np.random.default_rng(cfg.seed)
    vy, vx = cfg.velocity
    span_y = int(abs(vy) * (cfg.frames - 1)) + 2
    span_x = int(abs(vx) * (cfg.frames - 1)) + 2
    img = _load_image(image, cfg.height + span_y, cfg.width + span_x)
    feats = _feature_maps(img, cfg.sigmas)
    feats = (feats - feats.mean((1, 2), keepdims=True)) / (feats.std((1, 2), keepdims=True) + 1e-6)
    proj = _projection(rng, cfg, feats.shape[0])
    h, w = cfg.height // 8, cfg.width // 8
    oy0 = 0 if vy >= 0 else span_y - 1
    ox0 = 0 if vx >= 0 else span_x - 1
    per_frame = []
    for f in range(cfg.frames):
        oy, ox = round(oy0 + vy * f), round(ox0 + vx * f)
        # sample the feature maps at latent cell centres of this frame's crop
        ys = oy + 4 + 8 * np.arange(h)
        xs = ox + 4 + 8 * np.arange(w)
        per_frame.append(feats[:, ys[:, None], xs[None, :]])  # (F, h, w)
    # temporal grouping like a 4x causal encoder: latent 0 <- frame 0, latent k <- frames 4k-3..4k
    latents = [per_frame[0]]
    for k in range(1, (cfg.frames - 1) // 4 + 1):
        latents.append(np.mean(per_frame[4 * k - 3: 4 * k + 1], axis=0))
    z = np.einsum("bf,tfhw->tbhw", proj, np.stack(latents))
    z = z + cfg.noise * rng.standard_normal(z.shape).astype(np.float32) * z.std()
    z = z - np.median(z, axis=(0, 2, 3), keepdims=True)
    signs = (z > 0).astype(np.int64)
    weights = (1 << np.arange(cfg.bits, dtype=np.int64))[None, :, None, None]
    return (signs * weights).sum(1)


def synthetic_gops(size: tuple[int, int], frames: int, bits: int, seed: int) -> list[tuple[str, np.ndarray]]:
    """A few images x camera motions (dy, dx pixels per video frame), one GOP each."""
    motions = ((3.0, 5.0), (0.5, 1.0), (0.0, -8.0))
    out = []
    for image in SyntheticConfig.images:
        for v in motions:
            cfg = SyntheticConfig(height=size[0], width=size[1], frames=frames, bits=bits, velocity=v, seed=seed)
            out.append((f"{image} pan {v[0]:+g},{v[1]:+g}px/f", synthetic_tokens(cfg, image)))
    return out


# --------------------------------------------------------------------------- real model tokens


def _load_model(weights: str | None):
    """The shipped tokenizer, a .safetensors file, or the EMA of a trainer checkpoint (.pt), with
    a label, whether it is trained, and its weights' SHA-256 ("" for a checkpoint)."""
    from tokcodec.model.zoo import load_tokenizer

    if weights and weights.endswith(".pt"):
        import json

        import torch

        from tokcodec.model.presets import TokenizerConfig
        from tokcodec.model.tokenizer import VideoTokenizer

        state = torch.load(weights, map_location="cpu", weights_only=True)
        model = VideoTokenizer(TokenizerConfig.from_dict(json.loads(state["model_config"])))
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state["ema"].items()})
        return model.eval(), f"{weights} (EMA, step {int(state['step'])})", True, ""
    loaded = load_tokenizer(weights or "default")
    return loaded.tokenizer.eval(), f"{loaded.name} ({loaded.source})", loaded.trained, loaded.sha256


def model_gops(weights: str | None, count: int, frames: int, size: tuple[int, int] | None
               ) -> tuple[list[tuple[str, np.ndarray]], list[int], int, str, str]:
    """Tokens of the validation clips, the clips' pixel counts, bits per token, model label and
    the weights' SHA-256."""
    import torch

    from tokcodec.train.data import validation_clips

    model, label, trained, sha256 = _load_model(weights)
    if not trained:
        print(f"WARNING: {label} is an UNTRAINED tokenizer; its tokens say little about real rates")
    kwargs = {"frames": frames, "count": count}
    if size:
        kwargs.update(height=size[0], width=size[1])
    clips = validation_clips(**kwargs)
    gops, pixels = [], []
    with torch.no_grad():
        for i, clip in enumerate(clips):
            x = torch.from_numpy(clip).float().div(127.5).sub(1.0).permute(3, 0, 1, 2)[None]
            idx = model.encode_indices(x)[0].cpu().numpy().astype(np.int64)
            gops.append((f"validation clip {i} {clip.shape[1]}x{clip.shape[2]}", idx))
            pixels.append(int(np.prod(clip.shape[:3])))
    return gops, pixels, int(model.cfg.bits), label, sha256


# --------------------------------------------------------------------------- measuring


@dataclass
class GopResult:
    name: str
    tokens: int
    frame_bits: list[int]
    cells: int
    enc_s: float
    dec_s: float
    enc_first: float = 0.0       # CPU seconds of the first encode / decode (cold for the first GOP)
    dec_first: float = 0.0


def measure(coder, name: str, tokens: np.ndarray, bits: int, repeat: int) -> GopResult:
    """Round trip (checked), per-frame bits, and the best of ``repeat`` CPU times per direction.
    CPU time (time.process_time) keeps other jobs on this shared machine out of the numbers."""
    enc_s = dec_s = float("inf")
    payload = b""
    first = None
    for _ in range(repeat):
        t0 = time.process_time()
        payload = coder.encode(tokens, bits)
        t1 = time.process_time()
        out = coder.decode(payload, tokens.shape, bits)
        t2 = time.process_time()
        enc_s, dec_s = min(enc_s, t1 - t0), min(dec_s, t2 - t1)
        first = first or (t1 - t0, t2 - t1)
        if not np.array_equal(out, tokens):
            raise SystemExit(f"ROUND TRIP FAILED on {name}")
    fb = coder.frame_bits(payload, tokens.shape, bits)
    assert sum(fb) == 8 * len(payload)
    return GopResult(name, tokens.size, fb, tokens.shape[1] * tokens.shape[2], enc_s, dec_s, *first)


def report(results: list[GopResult], bits: int, pixels_per_gop: list[int]) -> None:
    print(f"{'GOP':34s} {'bits/tok':>8s} {'first':>7s} {'later':>7s} {'saving':>7s} {'enc M/s':>8s} {'dec M/s':>8s}")
    for r in results:
        first = r.frame_bits[0] / r.cells
        later = sum(r.frame_bits[1:]) / max(1, r.tokens - r.cells)
        rate = sum(r.frame_bits) / r.tokens
        print(f"{r.name[:34]:34s} {rate:8.2f} {first:7.2f} {later:7.2f} {100 * (1 - rate / bits):6.1f}% "
              f"{r.tokens / r.enc_s / 1e6:8.2f} {r.tokens / r.dec_s / 1e6:8.2f}")
    total_bits = sum(sum(r.frame_bits) for r in results)
    tokens = sum(r.tokens for r in results)
    first_bits = sum(r.frame_bits[0] for r in results)
    first_tokens = sum(r.cells for r in results)
    rate = total_bits / tokens
    later = (total_bits - first_bits) / max(1, tokens - first_tokens)
    print()
    print(f"overall        {rate:.3f} bits/token  ({100 * (1 - rate / bits):.1f}% fewer bits than {bits} bits/token)")
    print(f"first latent   {first_bits / first_tokens:.3f} bits/token")
    print(f"later latents  {later:.3f} bits/token")
    print(f"bpp            {total_bits / sum(pixels_per_gop):.4f} bits per pixel (of the video frames)")
    print(f"encode         {tokens / sum(r.enc_s for r in results) / 1e6:.2f} M tokens/s (CPU time, best of repeats)")
    print(f"decode         {tokens / sum(r.dec_s for r in results) / 1e6:.2f} M tokens/s (CPU time, best of repeats)")
    if results:
        print(f"first call     encode {results[0].enc_first * 1e3:.0f} ms, decode {results[0].dec_first * 1e3:.0f} ms "
              f"(first GOP, CPU time: includes loading / compiling kernels; warm: "
              f"{results[0].enc_s * 1e3:.1f} / {results[0].dec_s * 1e3:.1f} ms)")


def _size(text: str) -> tuple[int, int]:
    h, w = text.lower().split("x")
    return int(h), int(w)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--synthetic", action="store_true", help="tokens made without the model")
    ap.add_argument("--weights", help="model: preset name, .safetensors file or trainer checkpoint .pt "
                                      "(default: the shipped default model)")
    ap.add_argument("--clips", type=int, default=8, help="validation clips (real-model mode)")
    ap.add_argument("--frames", type=int, default=17, help="video frames per GOP (1 + 4k)")
    ap.add_argument("--size", type=_size, default=None,
                    help="HxW pixels (default: 360x640 synthetic, the validation clips' own size otherwise)")
    ap.add_argument("--repeat", type=int, default=3, help="timing repeats per GOP (best is kept)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--coder", default="2,3", help="entropy coder ids to measure, comma separated")
    args = ap.parse_args(argv)

    from tokcodec.codec.entropy import DEFAULT_CODER_ID

    coder_ids = [int(c) for c in args.coder.split(",")]
    sha256 = None  # synthetic tokens: coder 3 with the default model's prior
    if args.synthetic:
        size = args.size or (360, 640)
        bits = 18
        gops = synthetic_gops(size, args.frames, bits, args.seed)
        print(f"synthetic tokens: {len(gops)} GOPs of {args.frames} frames at {size[0]}x{size[1]}, {bits} bits")
        pixels = [args.frames * size[0] * size[1]] * len(gops)
    else:
        try:
            gops, pixels, bits, label, sha256 = model_gops(args.weights, args.clips, args.frames, args.size)
        except ImportError as exc:
            print(f"real-model mode needs tokcodec.model.zoo.load_tokenizer and "
                  f"tokcodec.train.data.validation_clips, which failed to import: {exc}\n"
                  f"use --synthetic to measure on synthetic tokens instead", file=sys.stderr)
            return 2
        print(f"model tokens: {label}; {len(gops)} validation clips of {args.frames} frames, {bits} bits")
    coders = [_coder(c, sha256) for c in coder_ids]
    for coder in coders:
        default = " (the default)" if coder.coder_id == DEFAULT_CODER_ID else ""
        print(f"\n== coder {coder.coder_id}: {coder.name}{default}")
        results = [measure(coder, name, tok, bits, args.repeat) for name, tok in gops]
        report(results, bits, pixels)
    return 0


def _coder(coder_id: int, model_sha256: str | None):
    """The coder as the encoder builds it for these weights (coder 3: with the prior fitted to
    them; without one it writes coder 2's payload, which is what this then measures)."""
    from tokcodec.codec.entropy import CoderContext, get_coder

    if coder_id == 3 and model_sha256:
        from tokcodec.codec.context_coder3 import prior_for_model

        if prior_for_model(model_sha256) is None:
            print("note: no shipped coder-3 prior for these weights; coder 3 falls back to coder 2's "
                  "bitstream (fit one with python -m tokcodec.codec.prior_fit)")
    return get_coder(coder_id, CoderContext(model_sha256=model_sha256))


if __name__ == "__main__":
    raise SystemExit(main())
