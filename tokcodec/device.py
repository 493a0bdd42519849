"""Device and precision choice, and the thread policy (forked children, BLAS), shared by the pipeline and the CLI."""
from __future__ import annotations

import contextlib
import os
import platform
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from tokcodec.allocator import ALLOCATOR_POLICY, allocator_environment, keep_freed_memory  # noqa: F401
from tokcodec.cpus import usable_cpus
from tokcodec.defaults import check_device_name, check_precision_name
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


X86_64 = ("x86_64", "amd64")  # platform.machine() on Linux/macOS and on Windows


def _cpu_has_fast_bf16() -> bool:
    """bf16 autocast only pays off with native bf16 instructions (e.g. AVX512-BF16, AMX), measured
    on x86-64 only: on Arm (Apple M2 and later, Graviton) torch reports bf16 support too, but its
    conv3d there was never timed, and a slow bf16 path costs more than fp32 does, so auto stays
    fp32 off x86-64 (``--precision bf16`` still asks for it)."""
    if platform.machine().lower() not in X86_64:
        return False
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def cuda_has_bf16(dev: torch.device) -> bool:
    """Native bf16 on this card (compute capability 8.0 on, Ampere): torch.cuda.is_bf16_supported()
    also says yes where it is only emulated (T4, V100), where cuDNN has no bf16 convolutions."""
    return torch.cuda.get_device_capability(dev) >= (8, 0)


def select_runtime(device: str | torch.device = "auto", precision: str = "auto", *, encoding: bool = False) -> Runtime:
    """auto: CUDA when present (bf16 where supported, else fp16; fp32 to ``encoding``: the shipped
    encoders' activations overflow fp16's range, see model/refine.py ``finite_latents``), else CPU
    with bf16 autocast when the CPU has native bf16 (2-3x faster than fp32 for conv3d here; ~0.5%
    of latent bits differ from fp32, and the precision is recorded in the .tok header), else fp32.
    Every tokcodec call starts here, and so marks the process as one that ran tokcodec, whose
    forked children start on one torch thread (``_after_fork_in_child``)."""
    one_thread_if_forked()
    device = str(device)  # (a torch.device too, as load_tokenizer takes: "cuda:1")
    check_device_name(device)
    check_precision_name(precision)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise DeviceError(f"--device {device} requested but CUDA is not available on this machine")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if precision == "auto":
        if dev.type == "cuda":
            precision = "bf16" if cuda_has_bf16(dev) else "fp32" if encoding else "fp16"
        else:
            precision = "bf16" if _cpu_has_fast_bf16() else "fp32"
    return Runtime(dev, precision)


_ran_here = False  # whether this process has made a tokcodec call (its torch threads may be running)
_forked = False    # set in a forked child of a process that had not, until its first tokcodec call


def _after_fork_in_child() -> None:
    """In a process forked from one whose torch ran its OpenMP threads, torch's first parallel
    operation waits for ever (GNU OpenMP's thread pool does not survive a fork): a tokcodec call,
    or the network run directly (``loaded.tokenizer``), in an `os.fork()` or multiprocessing
    "fork" child hung without a word. A child of a process that made tokcodec calls runs torch on
    one thread from the start, as PyTorch's own DataLoader workers do; a child of one that had
    not (a pre-forking server whose workers run models of their own) keeps its thread count until
    its own first tokcodec call (``one_thread_if_forked``). And the BLAS limit's state is this
    process's own, not that of a call running in another thread of the parent."""
    global _forked, _blas_lock, _blas_users, _blas_limits
    if _ran_here:
        torch.set_num_threads(1)
    else:
        _forked = True
    if _blas_limits is not None:  # (forked while a thread held it: undone here, where no call holds it)
        with contextlib.suppress(Exception):
            _blas_limits.restore_original_limits()  # type: ignore[attr-defined]
    _blas_lock, _blas_users, _blas_limits = threading.Lock(), 0, None


def one_thread_if_forked() -> None:
    """Called by every tokcodec call (select_runtime): in a forked child whose parent made none,
    the first sets torch to one thread (``_after_fork_in_child``)."""
    global _forked, _ran_here
    if _forked:
        torch.set_num_threads(1)  # (before the flag clears: another thread of the child may look)
        _forked = False
    _ran_here = True


if hasattr(os, "register_at_fork"):  # (POSIX)
    os.register_at_fork(after_in_child=_after_fork_in_child)


_blas_lock = threading.Lock()
_blas_users = 0
_blas_limits: object | None = None  # threadpoolctl's limiter while any call holds BLAS to one thread


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """NumPy's BLAS on one thread within the block. The limit is the whole process's: threads
    inside such blocks at once share one, set by the first in and undone by the last out, so the
    count a program had before is always the one it has after (each block setting and restoring
    its own, two overlapping calls could leave it at one thread for good)."""
    global _blas_users, _blas_limits
    from threadpoolctl import threadpool_limits

    with _blas_lock:
        if _blas_users == 0:
            _blas_limits = threadpool_limits(limits=1, user_api="blas")
        _blas_users += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas_users -= 1
            if _blas_users == 0:
                _blas_limits.restore_original_limits()  # type: ignore[union-attr]
                _blas_limits = None


def use_all_cores() -> None:
    """The CLI's thread policy for coding: one torch thread per core this process may use (its
    affinity and CPU quota: tokcodec/cpus.py), unless the user chose a count with OMP_NUM_THREADS.
    Library callers keep whatever torch.set_num_threads they chose."""
    if not os.environ.get("OMP_NUM_THREADS"):
        torch.set_num_threads(usable_cpus())
