"""Quality of a decoded video against the reference: tokcodec.metrics on RGB, VMAF via libvmaf."""
from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path
from typing import Optional

import numpy as np

from tokcodec.bench.ffmpeg import FFmpeg, raw_input_args
from tokcodec.metrics import ms_ssim, psnr, psnr_y, ssim

__all__ = ["quality", "vmaf"]


def vmaf(ff: FFmpeg, dist_yuv: Path, ref_yuv: Path, width: int, height: int, fps: Fraction,
         workdir: Path, neg: bool = False) -> Optional[float]:
    """Mean VMAF (libvmaf's built-in vmaf_v0.6.1 model) of two raw yuv420p files; None without libvmaf.
    ``neg``: the vmaf_v0.6.1neg model instead ("no enhancement gain": it discounts what
    sharpening and contrast gains add), None where the build has no built-in models."""
    if "libvmaf" not in ff.filters or (neg and ff.vmaf_model_option is None):
        return None
    model = ff.vmaf_model_option + "neg" if neg else ff.vmaf_model_option
    opts = [o for o in (model, "log_fmt=json", "log_path=vmaf.json", "n_threads=2") if o]
    args = raw_input_args("yuv420p", width, height, fps, dist_yuv.resolve())
    args += raw_input_args("yuv420p", width, height, fps, ref_yuv.resolve())
    # input 0 is the distorted ("main") video, input 1 the reference
    args += ["-lavfi", "[0:v][1:v]libvmaf=" + ":".join(opts), "-f", "null", "-"]
    ff.run(args, cwd=workdir)  # log_path relative to cwd: no filter-graph escaping of paths needed
    log = workdir / "vmaf.json"
    data = json.loads(log.read_text())
    log.unlink()
    return float(data["pooled_metrics"]["vmaf"]["mean"])


def quality(ref_rgb: np.ndarray, dist_rgb: np.ndarray) -> dict[str, float]:
    """PSNR-Y (BT.709), PSNR-RGB, SSIM and MS-SSIM (both on luma) at full resolution."""
    return {
        "psnr_y": psnr_y(ref_rgb, dist_rgb),
        "psnr_rgb": psnr(ref_rgb, dist_rgb),
        "ssim": ssim(ref_rgb, dist_rgb),
        "ms_ssim": ms_ssim(ref_rgb, dist_rgb),
    }
