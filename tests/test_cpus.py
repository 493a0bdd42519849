"""Threads by the CPUs the process may use (affinity, cgroup CPU quota), not the machine's count:
under `taskset -c 0`, a Slurm cpuset or `docker --cpus 1`, torch and the entropy coder ran one
thread per core of the whole machine, queued behind each other on the cores they had."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import smooth_clip, write_clip
from tokcodec import cpus
from tokcodec.codec.parallel import coder_threads


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


@pytest.fixture
def eight_cores(monkeypatch):
    monkeypatch.setattr(cpus.os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)


def test_cgroup_v2_quota_is_the_tightest_on_the_path(tmp_path, eight_cores):
    root = _tree(tmp_path / "fs", {"cpu.max": "max 100000\n", "job/cpu.max": "250000 100000\n",
                                   "job/step/cpu.max": "max 100000\n"})
    proc = _tree(tmp_path, {"cgroup": "0::/job/step\n"}) / "cgroup"
    assert cpus.cpu_quota(root, proc) == 2.5
    assert cpus.usable_cpus(root, proc) == 2  # (a part of a core more is no thread more)
    (root / "job/cpu.max").write_text("max 100000\n")
    assert cpus.cpu_quota(root, proc) is None and cpus.usable_cpus(root, proc) == 8


def test_cgroup_v1_quota_and_a_container_view(tmp_path, eight_cores):
    # in a container /proc/self/cgroup names the host's path; only the mount itself is there
    root = _tree(tmp_path / "fs", {"cpu,cpuacct/cpu.cfs_quota_us": "50000\n", "cpu,cpuacct/cpu.cfs_period_us": "100000\n"})
    proc = _tree(tmp_path, {"cgroup": "5:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n0::/\n"}) / "cgroup"
    assert cpus.cpu_quota(root, proc) == 0.5 and cpus.usable_cpus(root, proc) == 1
    (root / "cpu,cpuacct/cpu.cfs_quota_us").write_text("-1\n")
    assert cpus.cpu_quota(root, proc) is None


def test_controllers_listed_the_other_way_round(tmp_path, eight_cores):
    """Some kernels list "cpuacct,cpu" for the hierarchy mounted at "cpu,cpuacct"."""
    root = _tree(tmp_path / "fs", {"cpu,cpuacct/cpu.cfs_quota_us": "300000\n",
                                   "cpu,cpuacct/cpu.cfs_period_us": "100000\n"})
    proc = _tree(tmp_path, {"cgroup": "3:cpuacct,cpu:/\n"}) / "cgroup"
    assert cpus.cpu_quota(root, proc) == 3.0


@pytest.mark.parametrize("text", ["lots 100000\n", "100000 0\n", "-5 100000\n", "max\n", ""])
def test_nothing_readable_is_no_limit(tmp_path, eight_cores, text):
    assert cpus.cpu_quota(tmp_path, tmp_path / "missing") is None
    proc = _tree(tmp_path, {"cgroup": "garbage\n0::/x\n"}) / "cgroup"
    _tree(tmp_path / "fs", {"x/cpu.max": text})
    assert cpus.cpu_quota(tmp_path / "fs", proc) is None and cpus.usable_cpus(tmp_path / "fs", proc) == 8


def test_affinity_sets_the_coder_threads(monkeypatch):
    monkeypatch.delenv("TOKCODEC_CODER_THREADS", raising=False)
    monkeypatch.setattr(cpus.os, "sched_getaffinity", lambda pid: {3}, raising=False)
    assert coder_threads() == 1
    monkeypatch.setattr(cpus.os, "sched_getaffinity", lambda pid: set(range(32)), raising=False)
    monkeypatch.setattr(cpus, "cpu_quota", lambda *a: None)
    assert coder_threads() == 8


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2,
                    reason="needs Linux and two cores")
def test_the_cli_under_taskset_runs_one_torch_thread(tmp_path):
    clip = write_clip(tmp_path / "c.mkv", smooth_clip(5, 32, 48))
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    one_core = next(iter(os.sched_getaffinity(0)))
    subprocess.run([sys.executable, "-m", "tokcodec", "tokens", str(clip), "-o", str(tmp_path / "t.safetensors"),
                    "-m", "tiny", "--passes", "0", "-q"], env=env, check=True, timeout=300,
                   preexec_fn=lambda: os.sched_setaffinity(0, {one_core}))  # noqa: PLW1509 - sets affinity only
    info = subprocess.run([sys.executable, "-m", "tokcodec", "info", str(tmp_path / "t.safetensors"), "--json"],
                          env=env, check=True, capture_output=True, text=True, timeout=120)
    made = json.loads(info.stdout)["made"]
    assert made["threads"] == 1, made
