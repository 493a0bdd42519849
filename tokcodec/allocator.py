"""The allocator policy: glibc keeps freed memory for reuse instead of mapping and zero-filling
every big activation buffer afresh. One place for its numbers; imports nothing heavy, so the CLI
can apply it (by re-exec) before torch is loaded."""
from __future__ import annotations

import ctypes
import os
import sys

# glibc's malloc tunables of the allocator policy (see keep_freed_memory): no big buffer as its
# own mapping, and freed memory kept up to 2 GiB - 1 (mallopt takes an int)
ALLOCATOR_POLICY = {"MALLOC_MMAP_MAX_": 0, "MALLOC_TRIM_THRESHOLD_": 2**31 - 1}


def allocator_environment(env: dict[str, str] | None = None) -> dict[str, str]:
    """``env`` (default: this process's) with the allocator policy for a child process or a
    re-exec: glibc reads it at start-up, so it reaches the child's every thread and worker."""
    return {**(os.environ if env is None else env), **{k: str(v) for k, v in ALLOCATOR_POLICY.items()}}


def keep_freed_memory() -> None:
    """The allocator policy, applied to this running process (the CLI applies it through the
    environment before Python starts, ``allocator_environment``, so that its batch workers
    inherit it). glibc then serves every allocation from its heap and keeps freed memory for
    reuse. By default each activation buffer above the mmap threshold is a fresh mapping that
    the kernel zero-fills page by page on every call: measured here, 60 000-125 000 page faults
    and +10-30% time per decoded 640x360 GOP. A no-op where the C library is not glibc."""
    if not sys.platform.startswith("linux"):
        return
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION"):  # None (or ValueError) off glibc
            return
        mallopt = ctypes.CDLL(None).mallopt  # the C library this process already runs on
    except (ValueError, OSError, AttributeError):
        return
    m_trim_threshold, m_mmap_max = -1, -4
    mallopt(m_mmap_max, ALLOCATOR_POLICY["MALLOC_MMAP_MAX_"])
    mallopt(m_trim_threshold, ALLOCATOR_POLICY["MALLOC_TRIM_THRESHOLD_"])
