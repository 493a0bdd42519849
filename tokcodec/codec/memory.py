"""How much memory a CPU encode needs, checked before it starts.

A GOP goes through the encoder, the closed loop's decodes and the correction's fit whole, so an
encode's peak memory grows with the pixels x frames of one GOP (not with the video's length).
On Linux a job that outgrows the machine is killed by the kernel without a word; this module
turns that into an error that names the GOP length or scale that would fit.

The figures are peak RSS of ``tokcodec encode`` with the default preset on a 2-core host
(``bench/streaming_memory.py``'s method: the child's VmHWM), as a fixed part plus a part per
coded pixel-frame, rounded up. Measured (MB) in bf16: 320x180 x 17 frames 528; 640x360 x 17 /
33 / 65: 882 / 1221 / 2269; 1280x720 x 17 / 33: 2431 / 3749. In fp32, 640x360 x 17 / 33: 1042 /
1729; with --refine 2 (bf16): 1724 / 3074. The estimates land within 7.5% of each of these. The
check refuses only when the estimate exceeds all the memory the system says is available, so it
errs towards trying.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from tokcodec.errors import TokcodecError

BASE_BYTES = 400 * 2**20            # interpreter, torch, the model, the coders
ENCODE_BYTES_PER_PIXEL_FRAME = {"bf16": 125, "fp16": 125, "fp32": 190}
REFINE_BYTES_PER_PIXEL_FRAME = 250  # --refine: the decoder's activations kept for its backward pass


class MemoryLimitError(TokcodecError):
    """The job would need more memory than this machine has available."""


@dataclass(frozen=True)
class EncodeFootprint:
    """One GOP of ``frames`` frames at ``width`` x ``height`` coded pixels (the padded size the
    networks see; the larger of it and the source size), in ``precision``, with or without
    ``--refine``."""
    width: int
    height: int
    frames: int
    precision: str
    refine: bool = False

    @property
    def pixel_frames(self) -> int:
        return self.width * self.height * self.frames

    def peak_bytes(self) -> int:
        per = ENCODE_BYTES_PER_PIXEL_FRAME.get(self.precision, ENCODE_BYTES_PER_PIXEL_FRAME["fp32"])
        per += REFINE_BYTES_PER_PIXEL_FRAME if self.refine else 0
        return BASE_BYTES + per * self.pixel_frames


def available_bytes() -> int | None:
    """MemAvailable from /proc/meminfo (memory the kernel can hand out without swapping), or None
    where there is no such file (not Linux)."""
    try:
        text = Path("/proc/meminfo").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return None


def longest_gop_within(footprint: EncodeFootprint, available: int, temporal_factor: int = 4) -> int:
    """The longest GOP (1 + ``temporal_factor`` k frames) whose footprint fits ``available``, 0 if
    not even a single frame does."""
    per_frame = footprint.peak_bytes() - BASE_BYTES
    frames = (available - BASE_BYTES) * footprint.frames // max(per_frame, 1)
    return 0 if frames < 1 else 1 + temporal_factor * ((frames - 1) // temporal_factor)


def check_encode_memory(footprint: EncodeFootprint, available: int | None = None) -> None:
    """MemoryLimitError when the footprint's estimate exceeds the available memory (read from the
    system unless given; no check where it cannot be read)."""
    available = available_bytes() if available is None else available
    if available is None:
        return
    need = footprint.peak_bytes()
    if need <= available:
        return
    gop = longest_gop_within(footprint, available)
    advice = (f"use --gop {gop} or less" if gop >= 1 and gop < footprint.frames else
              "use a smaller --scale")
    raise MemoryLimitError(
        f"encoding GOPs of {footprint.frames} frames at {footprint.width}x{footprint.height} needs about "
        f"{_gb(need)} of memory{' with --refine' if footprint.refine else ''}, and {_gb(available)} is available: "
        f"{advice} (or free some memory)")


def _gb(n: int) -> str:
    return f"{n / 2**30:.1f} GB" if n >= 2**30 else f"{math.ceil(n / 2**20)} MB"
