"""Quality of a tokenizer on the held-out validation clips (images and motions never trained on).

For each clip (640x360 camera moves over held-out photos, 17 frames, and the same as still
images) it prints PSNR (RGB and Y), SSIM, MS-SSIM and bits/token through the real codec path
(tokenizer + default entropy coder), plus the per-bit token entropy (codebook usage).
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch


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
    ap.add_argument("--json", dest="json_out", default=None, help="also write the results here")
    a = ap.parse_args()

    from tokcodec.codec.pipeline import (encoder_for, frames_to_tensor, make_header, prepare_model,
                                         tensor_to_frames)
    from tokcodec.device import keep_freed_memory, select_runtime
    from tokcodec.metrics import ms_ssim, psnr, psnr_y, ssim
    from tokcodec.model.refine import RefineConfig, refine_indices
    from tokcodec.model.zoo import load_tokenizer
    from tokcodec.train.synthetic import VALIDATION_IMAGES, validation_clips

    keep_freed_memory()  # the CLI's allocator policy (its fps figure is the network's)
    runtime = select_runtime("auto")
    loaded = prepare_model(load_tokenizer(a.model), runtime)
    cfg = loaded.config
    h, w = a.height, a.width
    header = make_header(loaded, runtime, w, h, gop=a.frames)
    coder = encoder_for(header.coder_id, loaded)
    clips = validation_clips(frames=a.frames, height=h, width=w, count=a.clips, seed=4321, max_layers=1)
    refine = RefineConfig(steps=a.refine)
    rows, all_tokens = [], []
    encode_seconds, encoded_frames = 0.0, 0
    for kind in ("video", "image"):
        for i, clip in enumerate(clips):
            frames = clip if kind == "video" else clip[:1]
            x = frames_to_tensor(list(frames), header, runtime)
            start = time.perf_counter()
            idx = refine_indices(loaded.tokenizer, x, refine, frames=len(frames), height=h, width=w,
                                 autocast=runtime.autocast)
            encode_seconds += time.perf_counter() - start
            encoded_frames += len(frames)
            with torch.inference_mode(), runtime.autocast():
                recon = tensor_to_frames(loaded.tokenizer.decode_indices(idx), len(frames), header)
            tokens = idx[0].cpu().numpy().astype(np.int32)
            all_tokens.append(tokens.ravel())
            payload = coder.encode(tokens, cfg.bits)
            assert np.array_equal(coder.decode(payload, tokens.shape, cfg.bits), tokens)
            rows.append({
                "kind": kind, "clip": i, "source": VALIDATION_IMAGES[i % len(VALIDATION_IMAGES)],
                "psnr": psnr(frames, recon), "psnr_y": psnr_y(frames, recon), "ssim": ssim(frames, recon),
                "ms_ssim": ms_ssim(frames, recon), "bits_per_token": 8 * len(payload) / tokens.size,
                "bpp": 8 * len(payload) / (len(frames) * h * w),
            })
    ent = bit_entropy(np.concatenate(all_tokens), cfg.bits)
    print(f"model {loaded.name} ({loaded.source}), {'trained' if loaded.trained else 'UNTRAINED'}, "
          f"coder {coder.name}, {w}x{h}, {a.frames} frames, {runtime.device} {runtime.precision}, "
          f"refine {refine.steps} steps (network encode {encoded_frames / encode_seconds:.2f} fps)")
    print(f"{'kind':6s} {'clip':>4s} {'source':18s} {'PSNR':>7s} {'PSNR-Y':>7s} {'SSIM':>6s} {'MS-SSIM':>7s} "
          f"{'bits/tok':>8s} {'bpp':>7s}")
    for r in rows:
        print(f"{r['kind']:6s} {r['clip']:4d} {r['source']:18s} {r['psnr']:7.2f} {r['psnr_y']:7.2f} "
              f"{r['ssim']:6.3f} {r['ms_ssim']:7.3f} {r['bits_per_token']:8.2f} {r['bpp']:7.4f}")
    summary = {}
    for kind in ("video", "image"):
        sel = [r for r in rows if r["kind"] == kind]
        summary[kind] = {k: float(np.mean([r[k] for r in sel]))
                         for k in ("psnr", "psnr_y", "ssim", "ms_ssim", "bits_per_token", "bpp")}
        s = summary[kind]
        print(f"mean {kind:6s}: PSNR {s['psnr']:.2f} dB, PSNR-Y {s['psnr_y']:.2f}, SSIM {s['ssim']:.3f}, "
              f"MS-SSIM {s['ms_ssim']:.3f}, {s['bits_per_token']:.2f} bits/token, {s['bpp']:.4f} bpp")
    print(f"per-bit token entropy: mean {ent.mean():.3f}, min {ent.min():.3f} bit")
    if a.json_out:
        with open(a.json_out, "w") as fh:
            json.dump({"model": loaded.name, "sha256": loaded.sha256, "refine": refine.steps,
                       "network_encode_fps": encoded_frames / encode_seconds, "rows": rows, "summary": summary,
                       "bit_entropy": ent.tolist()}, fh, indent=2)


if __name__ == "__main__":
    main()
