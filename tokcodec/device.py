"""Device and precision choice, shared by the pipeline and the CLI."""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch

from tokcodec.allocator import ALLOCATOR_POLICY, allocator_environment, keep_freed_memory  # noqa: F401
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


def select_runtime(device: str = "auto", precision: str = "auto", *, encoding: bool = False) -> Runtime:
    """auto: CUDA when present (bf16 where supported, else fp16; fp32 to ``encoding``: the shipped
    encoders' activations overflow fp16's range, see model/refine.py ``finite_latents``), else CPU
    with bf16 autocast when the CPU has native bf16 (2-3x faster than fp32 for conv3d here; ~0.5%
    of latent bits differ from fp32, and the precision is recorded in the .tok header), else fp32."""
    if device not in ("auto", "cpu", "cuda") and not device.startswith("cuda:"):
        raise DeviceError(f"unknown device {device!r} (use auto, cpu or cuda)")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise DeviceError(f"--device {device} requested but CUDA is not available on this machine")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if precision == "auto":
        if dev.type == "cuda":
            precision = "bf16" if torch.cuda.is_bf16_supported() else "fp32" if encoding else "fp16"
        else:
            precision = "bf16" if _cpu_has_fast_bf16() else "fp32"
    if precision not in ("fp32", "bf16", "fp16"):
        raise DeviceError(f"unknown precision {precision!r} (use auto, fp32, bf16 or fp16)")
    return Runtime(dev, precision)


def _one_thread_after_fork() -> None:
    """In a process forked from one whose torch ran its OpenMP threads, torch's first parallel
    operation waits for ever (GNU OpenMP's thread pool does not survive a fork): a tokcodec call
    in an `os.fork()` or multiprocessing "fork" child hung without a word. The child runs torch on
    one thread, as PyTorch's own DataLoader workers do."""
    torch.set_num_threads(1)


if hasattr(os, "register_at_fork"):  # (POSIX)
    os.register_at_fork(after_in_child=_one_thread_after_fork)


def use_all_cores() -> None:
    """The CLI's thread policy for coding: one torch thread per core, unless the user chose a
    count with OMP_NUM_THREADS. Library callers keep whatever torch.set_num_threads they chose."""
    if not os.environ.get("OMP_NUM_THREADS"):
        torch.set_num_threads(max(1, os.cpu_count() or 1))
