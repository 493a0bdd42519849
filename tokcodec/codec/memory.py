"""How much memory a CPU encode needs, checked before it starts.

A GOP goes through the encoder, the closed loop's decodes and the correction's fit whole, so an
encode's peak memory grows with the pixels x frames of one GOP (not with the video's length).
On Linux a job that outgrows the machine is killed by the kernel without a word; this module
turns that into an error that names the longest GOP that would fit (or asks for a smaller
scale).

The figures are peak RSS of ``tokcodec encode`` with the default preset on a 2-core host
(``bench/streaming_memory.py``'s method: the child's VmHWM), as a fixed part plus a part per
pixel-frame of the GOP, rounded up. Measured (MB) in bf16: 320x180 x 17 frames 528; 640x360 x 17
/ 33 / 65: 882 / 1221 / 2269; 1280x720 x 17 / 33: 2431 / 3749. In fp32, 640x360 x 17 / 33:
1042 / 1729; with --refine 2 (bf16): 1724 / 3074. The estimates land within 7.5% of each of
these. The part per pixel-frame is split between the coded size the networks see and the source
size, at which only the frames themselves are held (uint8 and float copies, ~32 bytes). The
check refuses only when the estimate exceeds all the memory the system says is available (what
this process already holds counted in), so it errs towards trying.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from tokcodec.cgroups import CGROUP_ROOT, PROC_CGROUP, group_folders
from tokcodec.errors import TokcodecError

BASE_BYTES = 400 * 2**20            # interpreter, torch, the model, the coders
SOURCE_BYTES_PER_PIXEL_FRAME = 32   # the source frames: uint8 and float copies, the correction's stacks
CODED_BYTES_PER_PIXEL_FRAME = {"bf16": 125 - 32, "fp16": 125 - 32, "fp32": 190 - 32}  # the networks
REFINE_BYTES_PER_PIXEL_FRAME = 250  # --refine: the decoder's activations kept for its backward pass


class MemoryLimitError(TokcodecError):
    """The job would need more memory than this machine has available."""


@dataclass(frozen=True)
class EncodeFootprint:
    """One GOP of ``frames`` frames (1 + ``temporal_factor`` k), at ``width`` x ``height`` coded
    pixels (the padded size the networks see) from a ``source_width`` x ``source_height`` source
    (0: the coded size), in ``precision``, with or without ``--refine``."""
    width: int
    height: int
    frames: int
    precision: str
    refine: bool = False
    source_width: int = 0
    source_height: int = 0
    temporal_factor: int = 4

    def peak_bytes(self) -> int:
        return BASE_BYTES + self.frames * self._bytes_per_frame()

    def _bytes_per_frame(self) -> int:
        coded = CODED_BYTES_PER_PIXEL_FRAME.get(self.precision, CODED_BYTES_PER_PIXEL_FRAME["fp32"])
        coded += REFINE_BYTES_PER_PIXEL_FRAME if self.refine else 0
        source = (self.source_width or self.width) * (self.source_height or self.height)
        return coded * self.width * self.height + SOURCE_BYTES_PER_PIXEL_FRAME * source

    def longest_gop_within(self, budget: int) -> int:
        """The longest GOP (1 + temporal_factor k frames) whose peak fits ``budget`` bytes, 0 if not
        even one frame does."""
        frames = (budget - BASE_BYTES) // max(self._bytes_per_frame(), 1)
        s = self.temporal_factor
        return 0 if frames < 1 else 1 + s * ((frames - 1) // s)


def resident_bytes(status: Path = Path("/proc/self/status")) -> int:
    """This process's resident memory (VmRSS), 0 where the system does not say: the interpreter,
    torch and the model are loaded before the check, so they are no longer in what is available."""
    try:
        for line in status.read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def available_bytes(meminfo: Path = Path("/proc/meminfo"), cgroup: Path = CGROUP_ROOT,
                    swap: bool = True, proc_cgroup: Path = PROC_CGROUP) -> int | None:
    """What the system can still hand this process, or None where it does not say (not Linux):
    MemAvailable, plus with ``swap`` free swap (a job that spills into swap is slow, not killed;
    the host's swap, whatever the cgroup's own swap limit), capped by the headroom of the memory
    limits of the process's control groups (``cgroup``: where they are mounted; a container's,
    a Slurm job's, systemd's MemoryMax, v2 or v1: /proc/meminfo shows the host's memory, but the
    kernel kills at the limit), where a group's reclaimable page cache counts as free."""
    try:
        fields = {k: int(v.split()[0]) * 1024 for k, v in
                  (line.split(":", 1) for line in meminfo.read_text().splitlines() if ":" in line)}
    except (OSError, ValueError, IndexError):
        return None
    if "MemAvailable" not in fields:
        return None
    available = fields["MemAvailable"] + (fields.get("SwapFree", 0) if swap else 0)
    headrooms = [room for version, folder in group_folders("memory", cgroup, proc_cgroup)
                 if (room := _cgroup_headroom(folder, version)) is not None]
    return min([available, *headrooms])


#: memory files by cgroup version: the limit, the use, the stat field of reclaimable page cache
_MEMORY_FILES = {2: ("memory.max", "memory.current", "inactive_file"),
                 1: ("memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file")}
#: a v1 limit this large is none (the kernel writes 2**63 - 1 rounded down to a page)
_NO_V1_LIMIT = 2**62


def _cgroup_headroom(cgroup: Path, version: int = 2) -> int | None:
    """The group's limit minus what it uses that cannot be reclaimed (its use less its inactive
    file cache; none counted where the stat file is missing), or None without a limit."""
    limit_file, usage_file, cache_field = _MEMORY_FILES[version]
    try:
        limit = (cgroup / limit_file).read_text().strip()
        if limit == "max" or int(limit) >= _NO_V1_LIMIT:
            return None
        headroom = int(limit) - int((cgroup / usage_file).read_text())
    except (OSError, ValueError):
        return None
    try:
        stat = dict(line.split()[:2] for line in (cgroup / "memory.stat").read_text().splitlines() if line.strip())
        headroom += int(stat.get(cache_field, 0))
    except (OSError, ValueError):
        pass
    return max(0, headroom)


def memory_budget(available: int | None = None, resident: int | None = None) -> int | None:
    """What this process holds (``resident``) plus what the system can still give it
    (``available``), both read from the system unless given; None where that cannot be read."""
    available = available_bytes() if available is None else available
    if available is None:
        return None
    return available + (resident_bytes() if resident is None else resident)


def check_encode_memory(footprint: EncodeFootprint, available: int | None = None,
                        resident: int | None = None) -> None:
    """MemoryLimitError when the footprint's peak exceeds what this process holds (``resident``)
    plus what the system can still give it (``available``); both read from the system unless
    given, and no check where the available memory cannot be read."""
    budget = memory_budget(available, resident)
    need = footprint.peak_bytes()
    if budget is None or need <= budget:
        return
    gop = footprint.longest_gop_within(budget)
    if gop >= footprint.frames or gop < 1:
        advice = "use a smaller --scale"
    elif gop == 1:  # (the shortest GOP there is)
        advice = "use --gop 1 or a smaller --scale"
    else:
        advice = f"use --gop {gop} or less"
    raise MemoryLimitError(
        f"encoding GOPs of {footprint.frames} frames at {footprint.width}x{footprint.height} needs about "
        f"{_gb(need)} of memory{' with --refine' if footprint.refine else ''}, and {_gb(budget)} is available: "
        f"{advice} (or free some memory)")


#: decode's peak RSS (``/usr/bin/time -f %M tokcodec decode``, 2-core AMD EPYC host): 640x360,
#: GOP 17 and 65: 626 / 878 MB in bf16, 777 / 1301 MB in fp32; 1920x1080, GOP 17: 1.69-2.09 GiB
#: in bf16 (to .y4m, .mkv, .mp4 with --compare, two sessions), 2.81 / 3.08 GiB in fp32 (.y4m /
#: .mkv); 3840x2160, 9 frames: 2.85 GiB in bf16. A fixed part plus, per coded pixel-frame of the
#: GOPs decoded at once, the decoder's activations (the frames go out one by one). The cost per
#: pixel-frame grows with the frame size (24 B fitted 360p alone; 1080p needed up to 46): these
#: cover every 1080p peak, and overestimate 4K by a third and 360p by a quarter to a half
DECODE_BASE_BYTES = 600 * 2**20
DECODE_BYTES_PER_PIXEL_FRAME = {"bf16": 48, "fp16": 48, "fp32": 76}


@dataclass(frozen=True)
class DecodeFootprint:
    """``gops`` GOPs of up to ``frames`` frames at ``width`` x ``height`` coded (padded) pixels
    through the decoder at once, in ``precision``."""
    width: int
    height: int
    frames: int
    precision: str
    gops: int = 1

    def peak_bytes(self) -> int:
        per = DECODE_BYTES_PER_PIXEL_FRAME.get(self.precision, DECODE_BYTES_PER_PIXEL_FRAME["fp32"])
        return DECODE_BASE_BYTES + self.gops * self.frames * self.width * self.height * per


def check_decode_memory(footprint: DecodeFootprint, source: str, available: int | None = None,
                        resident: int | None = None) -> None:
    """MemoryLimitError, before the first GOP, where a CPU decode's GOPs do not fit the memory
    this process holds and can still get (as check_encode_memory; no check where the system does
    not say). A file made with long GOPs on a larger machine (or made to exhaust memory: a small
    file can name GOPs of thousands of frames) was killed by the kernel part-way."""
    budget = memory_budget(available, resident)
    need = footprint.peak_bytes()
    if budget is None or need <= budget:
        return
    batch = f", {footprint.gops} at a time" if footprint.gops > 1 else ""
    raise MemoryLimitError(
        f"{source}: decoding its GOPs of {footprint.frames} frames at {footprint.width}x{footprint.height}"
        f"{batch} needs about {_gb(need)} of memory, and {_gb(budget)} is available"
        f"{' (try --gop-batch 1)' if footprint.gops > 1 else ''}")


def _gb(n: int) -> str:
    return f"{n / 2**30:.1f} GB" if n >= 2**30 else f"{math.ceil(n / 2**20)} MB"
