"""What a GPU needs to run the codec at its speed: host-to-device copies from reused pinned
buffers, an opt-in ``torch.compile`` of the networks, and a GOP batch size chosen from the
memory one GOP takes. On CPU each of these is a no-op (or batch 1), so the CPU path is unchanged.
"""
from __future__ import annotations

import math

import torch

from tokcodec.device import Runtime
from tokcodec.model.tokenizer import VideoTokenizer

MAX_AUTO_GOP_BATCH = 32
#: share of the free device memory a batch may take (the rest: allocator slack, output copies)
AUTO_BATCH_HEADROOM = 0.5


class HostStager:
    """Host-to-device copies through one pinned buffer per shape and dtype, reused GOP after GOP.

    Pinning a fresh buffer per copy (``tensor.pin_memory()``) costs more than it saves; a reused
    one lets ``non_blocking`` copies run beside the host's work. Before a buffer is refilled, the
    copy that last read it is waited for (a CUDA event), so a later GOP never overwrites data an
    earlier copy has not finished reading. On CPU, ``to_device`` returns its input."""

    def __init__(self, runtime: Runtime) -> None:
        self.device = runtime.device
        self._buffers: dict[tuple[tuple[int, ...], torch.dtype], tuple[torch.Tensor, torch.cuda.Event | None]] = {}

    def to_device(self, host: torch.Tensor) -> torch.Tensor:
        if self.device.type != "cuda":
            return host.to(self.device)
        key = (tuple(host.shape), host.dtype)
        buf, done = self._buffers.get(key, (None, None))
        if buf is None:
            buf = torch.empty(host.shape, dtype=host.dtype, pin_memory=True)
        elif done is not None:
            done.synchronize()  # the previous copy out of this buffer has finished
        buf.copy_(host)
        out = buf.to(self.device, non_blocking=True)
        event = torch.cuda.Event()
        event.record(torch.cuda.current_stream(self.device))  # (the copy's device: cuda:1 is not the current one)
        self._buffers[key] = (buf, event)
        return out


def compile_networks(tokenizer: VideoTokenizer) -> VideoTokenizer:
    """Wrap the encoder and decoder in ``torch.compile`` (once: wrapping a wrapped network is
    skipped). The first GOP of each shape pays the compilation (tens of seconds to minutes); meant
    for long runs on a GPU, where the compiled decoder measured 1.6-2x the eager one's frames/s."""
    for name in ("encoder", "decoder"):
        net = getattr(tokenizer, name)
        if not hasattr(net, "_orig_mod"):  # what torch.compile's wrapper adds
            setattr(tokenizer, name, torch.compile(net))
    return tokenizer


def gop_batch_for(per_gop_bytes: int, free_bytes: int, limit: int = MAX_AUTO_GOP_BATCH,
                  headroom: float = AUTO_BATCH_HEADROOM) -> int:
    """GOPs per network call that fit ``headroom`` of ``free_bytes`` when one GOP's forward pass
    takes ``per_gop_bytes`` at its peak; at least 1, at most ``limit``."""
    if per_gop_bytes <= 0:
        return limit
    return max(1, min(limit, math.floor(headroom * free_bytes / per_gop_bytes)))


class AutoGopBatch:
    """``--gop-batch auto``: 1 on CPU (batching GOPs gains nothing there). On CUDA the first
    network call of each token-grid shape decodes one GOP while the peak memory it adds is
    measured; later calls of that shape take as many GOPs as :func:`gop_batch_for` allows in the
    memory then free. Per shape, because a file's first GOP is often short (a scene cut after a
    black leader): sizing 17-frame GOPs from a 2-frame one asked for several times the memory.
    A batch that still runs out of memory halves its shape's size (``shrink``)."""

    def __init__(self, runtime: Runtime) -> None:
        self.device = runtime.device
        self.sizes: dict[tuple[int, ...], int] = {}  # GOPs per call, by token-grid shape (CUDA)

    def size(self, shape: tuple[int, ...]) -> int:
        return self.sizes.get(tuple(shape), 1)

    def measure_start(self, shape: tuple[int, ...]) -> int | None:
        """The memory in use before a call, when this call measures (CUDA, a shape not yet seen)."""
        if self.device.type != "cuda" or tuple(shape) in self.sizes:
            return None
        torch.cuda.synchronize(self.device)
        torch.cuda.reset_peak_memory_stats(self.device)
        return torch.cuda.memory_allocated(self.device)

    def measure_end(self, shape: tuple[int, ...], before: int | None) -> None:
        if before is None:
            return
        torch.cuda.synchronize(self.device)
        per_gop = torch.cuda.max_memory_allocated(self.device) - before
        free, _ = torch.cuda.mem_get_info(self.device)
        self.sizes[tuple(shape)] = gop_batch_for(per_gop, free)

    def shrink(self, shape: tuple[int, ...], tried: int) -> None:
        self.sizes[tuple(shape)] = max(1, tried // 2)

    @property
    def largest(self) -> int:
        return max(self.sizes.values(), default=1)
