"""How many CPUs this process may use: the cores it may run on (its affinity: taskset, a Slurm
job's cpuset, ``docker --cpuset-cpus``) or its CPU quota (``docker --cpus``, a Kubernetes limit,
systemd's CPUQuota: cgroup v2's cpu.max, v1's CFS quota), whichever is fewer. ``os.cpu_count()``
counts the machine's cores, and threads beyond what the process may use queue behind each other
at every parallel step. Imports nothing heavy."""
from __future__ import annotations

import math
import os
from pathlib import Path

from tokcodec.cgroups import CGROUP_ROOT, PROC_CGROUP, group_folders


def usable_cpus(root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> int:
    """The CPUs this process may keep busy: at least 1. A quota's part of a CPU counts for none
    (a thread more than the quota holds is throttled at every period, and the others wait for it
    at each parallel step)."""
    cores = _affinity()
    quota = cpu_quota(root, proc_cgroup)
    return max(1, min(cores, math.floor(quota)) if quota is not None else cores)


def _affinity() -> int:
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # (not on macOS or Windows)
        return os.cpu_count() or 1


def cpu_quota(root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> float | None:
    """CPUs' worth of time the process's control groups allow it (the tightest on its path up
    to the root), or None where none is set or none can be read."""
    found = [_v2_quota(d / "cpu.max") if version == 2 else _v1_quota(d)
             for version, d in group_folders("cpu", root, proc_cgroup)]
    limits = [q for q in found if q is not None]
    return min(limits) if limits else None


def _v2_quota(file: Path) -> float | None:
    try:
        quota, period = file.read_text().split()[:2]
        if quota == "max":
            return None
        cpus, per = int(quota), int(period)
    except (OSError, ValueError):
        return None
    return cpus / per if cpus > 0 and per > 0 else None


def _v1_quota(folder: Path) -> float | None:
    try:
        quota = int((folder / "cpu.cfs_quota_us").read_text())
        period = int((folder / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota / period if quota > 0 and period > 0 else None
