"""The control groups this process is in, for the limits they set on it (CPU quota: cpus.py;
memory: codec/memory.py): the folders on its path, from its own group up to its hierarchy's
root, in cgroup v2's single hierarchy and in v1's per-controller ones. A limit anywhere on the
path binds the process, so readers take the tightest. Imports nothing heavy."""
from __future__ import annotations

from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")


def group_folders(controller: str, root: Path = CGROUP_ROOT,
                  proc_cgroup: Path = PROC_CGROUP) -> list[tuple[int, Path]]:
    """(cgroup version, folder) for each group on this process's path that can hold
    ``controller``'s files ("cpu", "memory"), existing or not; [] where /proc says nothing."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return []
    out: list[tuple[int, Path]] = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":  # v2: one hierarchy for every controller
            out += [(2, d) for d in _up_from(root, path)]
        elif controller in controllers.split(","):
            # v1: the hierarchy's folder, named as listed ("cpu,cpuacct") or by the controller (a
            # link beside it); some kernels list "cpuacct,cpu" for a folder "cpu,cpuacct"
            names = (controllers, controller, ",".join(sorted(controllers.split(","))))
            for mount in dict.fromkeys(root / name for name in names):
                out += [(1, d) for d in _up_from(mount, path)]
    return out


def _up_from(mount: Path, path: str) -> list[Path]:
    """``mount``/``path`` and its parents up to ``mount`` (in a container the path names the
    host's hierarchy and only the mount itself exists: readers skip the missing ones)."""
    here = mount / path.strip("/")
    return [here, *(p for p in here.parents if p == mount or mount in p.parents)]
