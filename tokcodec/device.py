"""Device and precision choice, shared by the pipeline and the CLI."""
from __future__ import annotations

import contextlib
import ctypes
import os
import sys
from dataclasses import dataclass

import torch

from tokcodec.errors import DeviceError


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    precision: str  # "fp32", "bf16" or "fp16"

    def autocast(self):
        if self.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)


def _cpu_has_fast_bf16() -> bool:
    """bf16 autocast only pays off with native bf16 instructions (e.g. AVX512-BF16, AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def select_runtime(device: str = "auto", precision: str = "auto") -> Runtime:
    """auto: CUDA when present (bf16 where supported, else fp16), else CPU with bf16 autocast when
    the CPU has native bf16 (2-3x faster than fp32 for conv3d here; ~0.5% of latent bits differ
    from fp32, and the precision is recorded in the .tok header), else fp32."""
    if device not in ("auto", "cpu", "cuda") and not device.startswith("cuda:"):
        raise DeviceError(f"unknown device {device!r} (use auto, cpu or cuda)")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise DeviceError(f"--device {device} requested but CUDA is not available on this machine")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if precision == "auto":
        if dev.type == "cuda":
            precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        else:
            precision = "bf16" if _cpu_has_fast_bf16() else "fp32"
    if precision not in ("fp32", "bf16", "fp16"):
        raise DeviceError(f"unknown precision {precision!r} (use auto, fp32, bf16 or fp16)")
    return Runtime(dev, precision)


def use_all_cores() -> None:
    """The CLI's thread policy for coding: one torch thread per core, unless the user chose a
    count with OMP_NUM_THREADS. Library callers keep whatever torch.set_num_threads they chose."""
    if not os.environ.get("OMP_NUM_THREADS"):
        torch.set_num_threads(max(1, os.cpu_count() or 1))


def keep_freed_memory() -> None:
    """The CLI's allocator policy, applied to a running process (the CLI sets it through the
    environment before Python starts, so that its batch workers inherit it: cli._maybe_reexec).
    glibc then serves every allocation from its heap and keeps freed memory for reuse. By default
    each activation buffer above the mmap threshold is a fresh mapping that the kernel zero-fills
    page by page on every call: measured here, 60 000-125 000 page faults and +10-30% time per
    decoded 640x360 GOP. mallopt takes an int, so the trim threshold is 2 GiB (the CLI's
    environment says 64 GiB). A no-op where the C library is not glibc."""
    if not sys.platform.startswith("linux"):
        return
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION"):  # None (or ValueError) off glibc
            return
        mallopt = ctypes.CDLL(None).mallopt  # the C library this process already runs on
    except (ValueError, OSError, AttributeError):
        return
    m_trim_threshold, m_mmap_max = -1, -4
    mallopt(m_mmap_max, 0)
    mallopt(m_trim_threshold, 2**31 - 1)
