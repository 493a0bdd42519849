"""Token export for language models: indices of a .tok file as .npy or .safetensors."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tokcodec.codec.outputs import check_output, temp_path
from tokcodec.codec.pipeline import read_tokens
from tokcodec.errors import OutputError


def split_tokens(tokens: np.ndarray, bits: int, sub_bits: int) -> np.ndarray:
    """Token factorisation (MAGVIT-v2): each ``bits``-bit index -> bits/sub_bits sub-tokens, low bits first."""
    if sub_bits <= 0 or bits % sub_bits:
        raise ValueError(f"--split {sub_bits}: {bits}-bit tokens do not split into {sub_bits}-bit parts")
    shifts = np.arange(bits // sub_bits, dtype=np.int64) * sub_bits
    return ((tokens[..., None].astype(np.int64) >> shifts) & ((1 << sub_bits) - 1)).astype(np.int32)


def export_tokens(src: str | Path, dst: str | Path, split_bits: int | None = None,
                  overwrite: bool = False) -> tuple[int, ...]:
    """Write all tokens as one int32 array (latent_frames, h, w[, parts]); GOPs are concatenated
    along the first axis and their boundaries stored (`gop_latent_frames` in safetensors metadata)."""
    src, dst = Path(src), Path(dst)
    if dst.suffix not in (".npy", ".safetensors"):
        raise OutputError(f"{dst}: tokens are written as .npy or .safetensors")
    check_output(dst, overwrite)
    header, grids, frames = read_tokens(src)
    tokens = np.concatenate(grids, 0).astype(np.int32)
    if split_bits:
        tokens = split_tokens(tokens, header.bits, split_bits)
    tmp = temp_path(dst)
    try:
        if dst.suffix == ".npy":
            np.save(tmp, tokens, allow_pickle=False)
        else:
            from safetensors.numpy import save_file
            meta = {"bits": str(header.bits), "split_bits": str(split_bits or 0),
                    "gop_latent_frames": json.dumps([g.shape[0] for g in grids]),
                    "gop_frames": json.dumps(frames), "model": header.model_name,
                    "weights_sha256": header.weights_sha256,
                    "frame_rate": f"{header.frame_rate.numerator}/{header.frame_rate.denominator}"}
            save_file({"tokens": tokens}, str(tmp), metadata=meta)
        tmp.replace(dst)
    finally:
        if tmp.exists():
            tmp.unlink()
    return tokens.shape
