"""Quality of a tokenizer on held-out clips, real camera video first.

With the real corpus at hand (``scripts/training_data.sh data/real``; ``--corpus DIR``), the
real-video validation set leads: two 17-frame windows of each held-out camera video (at most
640x360, centre crop) and the held-out photos, none of them ever trained on. Then the synthetic
set: 640x360 camera moves over held-out images, 17 frames, and the same as still images.
For each clip it prints PSNR (RGB and Y), SSIM, MS-SSIM, mean colour drift (largest per-channel
difference of the clip's mean colour, in code values) and bits/token through the real codec path
(tokenizer + default entropy coder + the correction layer, as ``tokcodec encode`` does by
default; ``--no-detail`` for its offsets only, ``--no-correction`` for tokens alone), the PSNR of the tokens alone beside it, and the
per-bit token entropy (codebook usage). bpp counts the coder's payload and the correction record.
"""
from __future__ import annotations

import argparse
import json
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch

from tokcodec.defaults import DEFAULT_PASSES, DEFAULT_RDO, MAX_RDO


def bit_entropy(tokens: np.ndarray, bits: int) -> np.ndarray:
    b = (tokens.reshape(-1, 1).astype(np.int64) >> np.arange(bits)) & 1
    p = b.mean(0).clip(1e-9, 1 - 1e-9)
    return -(p * np.log2(p) + (1 - p) * np.log2(1 - p))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="default")
    ap.add_argument("--clips", type=int, default=6)
    ap.add_argument("--frames", type=int, default=17)
    ap.add_argument("--height", type=int, default=360)
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--refine", type=int, default=0,
                    help="decoder-in-the-loop search steps per clip at encode (tokcodec encode --refine)")
    ap.add_argument("--passes", type=int, default=DEFAULT_PASSES,
                    help="closed-loop encoder passes per clip (tokcodec encode --passes)")
    ap.add_argument("--scale", type=float, default=1.0,
                    help="tokenize at this multiple of the size (tokcodec encode --scale)")
    ap.add_argument("--rdo", type=float, default=DEFAULT_RDO,
                    help="rate-distortion trade of the token bits (tokcodec encode --rdo; 0 = their signs)")
    ap.add_argument("--cell", type=int, default=0,
                    help="correction grid cell in pixels (CorrectionConfig.cell; 0: the default, 8 for "
                         "17-frame GOPs; 16 before December 2026)")
    ap.add_argument("--pool", type=int, default=None,
                    help="detail gains' low-pass block in pixels (CorrectionConfig.pool; default 16)")
    ap.add_argument("--sharpen", type=float, default=None,
                    help="detail gains per unit of their fit (tokcodec encode --sharpen; default: 1.5 for "
                         "GOPs of 9 frames or more, 1 for images; 1 for all before December 2026)")
    ap.add_argument("--corpus", default="data/real", help="real corpus with held-out clips (skipped when absent)")
    ap.add_argument("--split", choices=("holdout", "train"), default="holdout",
                    help="real videos to measure: the held-out ones (default), or windows of the colour "
                         "training videos, to tune an encoder setting without touching the held-out clips")
    ap.add_argument("--no-synthetic", action="store_true", help="only the real-video validation set")
    ap.add_argument("--no-correction", action="store_true", help="tokens only (tokcodec encode --no-correction)")
    ap.add_argument("--no-detail", action="store_true", help="correction offsets only (tokcodec encode --no-detail)")
    ap.add_argument("--json", dest="json_out", default=None, help="also write the results here")
    a = ap.parse_args()
    if not 0 <= a.rdo <= MAX_RDO:
        ap.error(f"--rdo must be in [0, {MAX_RDO}]")

    from tokcodec.codec.correction import CorrectionConfig, fit_correction, uncorrectable
    from tokcodec.codec.pipeline import (encoder_for, frames_to_tensor, make_header, prepare_model,
                                         tensor_to_frames, token_chooser)
    from tokcodec.device import keep_freed_memory, select_runtime
    from tokcodec.metrics import ErrorTotals, ms_ssim, psnr_y, ssim
    from tokcodec.model.refine import RefineConfig, find_tokens
    from tokcodec.model.zoo import load_tokenizer
    from tokcodec.train.real import corpus_clips, holdout_photos, is_corpus
    from tokcodec.train.synthetic import VALIDATION_IMAGES, validation_clips

    keep_freed_memory()  # the CLI's allocator policy (its fps figure is the network's)
    runtime = select_runtime("auto")
    loaded = prepare_model(load_tokenizer(a.model), runtime)
    cfg = loaded.config
    h, w = a.height, a.width
    coder_id = make_header(loaded, runtime, w, h, gop=a.frames).coder_id
    coder = encoder_for(coder_id, loaded)
    quantize = token_chooser(coder_id, loaded, a.rdo)
    sets: list[tuple[str, str, np.ndarray]] = []
    corpus = Path(a.corpus)
    if is_corpus(corpus):
        sets += [("real-video", n, c) for n, c in corpus_clips(corpus, a.split, frames=a.frames, max_height=h, max_width=w)]
        if a.split == "holdout":
            sets += [("real-photo", n, c) for n, c in holdout_photos(corpus, max_height=h, max_width=w)]
    else:
        print(f"note: no real corpus at {corpus} (scripts/training_data.sh {corpus} makes it): "
              "synthetic clips only")
    if not a.no_synthetic:
        synth = validation_clips(frames=a.frames, height=h, width=w, count=a.clips, seed=4321, max_layers=1)
        names = [VALIDATION_IMAGES[i % len(VALIDATION_IMAGES)] for i in range(len(synth))]
        sets += [("video", n, c) for n, c in zip(names, synth)]
        sets += [("image", n, c[:1]) for n, c in zip(names, synth)]
    refine = RefineConfig(steps=a.refine, passes=a.passes)
    fix_config = CorrectionConfig(detail=not a.no_detail, cell=a.cell, sharpen=a.sharpen,
                                  **({} if a.pool is None else {"pool": a.pool}))
    rows, all_tokens = [], []
    encode_seconds, encoded_frames = 0.0, 0
    for i, (kind, source, frames) in enumerate(sets):
        ch, cw = frames.shape[1:3]
        header = make_header(loaded, runtime, cw, ch, gop=a.frames, scale=a.scale)
        x = frames_to_tensor(list(frames), header, runtime)
        start = time.perf_counter()
        grid = fix_config.grid_for(cw, ch, len(frames))
        found = find_tokens(loaded.tokenizer, x, refine, frames=len(frames), height=header.coded_height,
                            width=header.coded_width,
                            autocast=runtime.autocast,
                            residual_filter=None if a.no_correction else partial(uncorrectable, grid=grid),
                            quantize=quantize)
        encode_seconds += time.perf_counter() - start
        encoded_frames += len(frames)
        idx = found.indices
        with torch.inference_mode(), runtime.autocast():  # the decode the decoder will do
            video = loaded.tokenizer.decode_indices(idx)
        recon = tokens_only = tensor_to_frames(video, len(frames), header)
        record = b""
        if not a.no_correction:  # as encode/decode do: fit to the decoded GOP, add before rounding
            fix = fit_correction(frames, tokens_only, fix_config)
            record = 4 * b"\0" + fix.pack()  # the record and the chunk's u32 that sets it apart
            recon = tensor_to_frames(video, len(frames), header, fix)
        tokens = idx[0].cpu().numpy().astype(np.int32)
        all_tokens.append(tokens.ravel())
        payload = coder.encode(tokens, cfg.bits)
        assert np.array_equal(coder.decode(payload, tokens.shape, cfg.bits), tokens)
        totals = ErrorTotals().add(frames, recon)  # PSNR and colour drift in one pass
        rows.append({
            "kind": kind, "clip": i, "source": source, "size": f"{cw}x{ch}",
            "psnr": totals.psnr(), "psnr_y": psnr_y(frames, recon), "ssim": ssim(frames, recon),
            "ms_ssim": ms_ssim(frames, recon), "colour_drift": totals.colour_drift,
            "psnr_tokens_only": ErrorTotals().add(frames, tokens_only).psnr(),
            "bits_per_token": 8 * (len(payload) + len(record)) / tokens.size,
            "bpp": 8 * (len(payload) + len(record)) / (len(frames) * ch * cw),
        })
    ent = bit_entropy(np.concatenate(all_tokens), cfg.bits)
    print(f"model {loaded.name} ({loaded.source}), {'trained' if loaded.trained else 'UNTRAINED'}, "
          f"coder {coder.name}, {w}x{h}, {a.frames} frames, {runtime.device} {runtime.precision}, "
          f"scale {a.scale:g}, {refine.passes} closed-loop passes, "
          f"rdo {a.rdo if quantize else 0:g}, refine {refine.steps} steps, "
          f"{'no correction' if a.no_correction else 'correction, offsets only' if a.no_detail else 'correction'}"
          f"{f' (cell {a.cell})' if a.cell and not a.no_correction else ''}"
          f"{f' (pool {a.pool})' if a.pool and not a.no_correction else ''} "
          f"(network encode {encoded_frames / encode_seconds:.2f} fps)")
    print(f"{'kind':10s} {'source':26s} {'size':>7s} {'PSNR':>6s} {'PSNR-Y':>6s} {'SSIM':>5s} {'MS-SSIM':>7s} "
          f"{'drift':>5s} {'bits/tok':>8s} {'bpp':>6s} {'tok-PSNR':>8s}")
    for r in rows:
        print(f"{r['kind']:10s} {r['source'][:26]:26s} {r['size']:>7s} {r['psnr']:6.2f} {r['psnr_y']:6.2f} "
              f"{r['ssim']:5.3f} {r['ms_ssim']:7.3f} {r['colour_drift']:5.1f} {r['bits_per_token']:8.2f} "
              f"{r['bpp']:6.4f} {r['psnr_tokens_only']:8.2f}")
    summary = {}
    for kind in ("real-video", "real-photo", "video", "image"):
        sel = [r for r in rows if r["kind"] == kind]
        if not sel:
            continue
        summary[kind] = {k: float(np.mean([r[k] for r in sel]))
                         for k in ("psnr", "psnr_y", "ssim", "ms_ssim", "colour_drift", "bits_per_token", "bpp",
                           "psnr_tokens_only")}
        s = summary[kind]
        print(f"mean {kind:10s}: PSNR {s['psnr']:.2f} dB, PSNR-Y {s['psnr_y']:.2f}, SSIM {s['ssim']:.3f}, "
              f"MS-SSIM {s['ms_ssim']:.3f}, drift {s['colour_drift']:.1f}, {s['bits_per_token']:.2f} bits/token, "
              f"{s['bpp']:.4f} bpp (tokens alone: {s['psnr_tokens_only']:.2f} dB)")
    print(f"per-bit token entropy: mean {ent.mean():.3f}, min {ent.min():.3f} bit")
    if a.json_out:
        with open(a.json_out, "w") as fh:
            json.dump({"model": loaded.name, "sha256": loaded.sha256, "refine": refine.steps, "passes": refine.passes,
                       "rdo": a.rdo if quantize else 0.0, "scale": a.scale, "cell": a.cell, "pool": fix_config.pool,
                       "sharpen": "auto" if fix_config.sharpen is None else fix_config.sharpen,
                       "correction": not a.no_correction, "detail": not (a.no_correction or a.no_detail),
                       "network_encode_fps": encoded_frames / encode_seconds, "rows": rows, "summary": summary,
                       "bit_entropy": ent.tolist()}, fh, indent=2)


if __name__ == "__main__":
    main()
