"""The encode memory check: the estimate, the GOP it advises, and its refusal before any work."""
from __future__ import annotations

import functools
from fractions import Fraction

import numpy as np
import pytest

from tokcodec.codec import memory
from tokcodec.codec.memory import EncodeFootprint, MemoryLimitError, check_encode_memory


def test_the_estimate_grows_with_pixels_frames_precision_and_refine() -> None:
    small = EncodeFootprint(640, 368, 17, "bf16")
    assert small.peak_bytes() < EncodeFootprint(640, 368, 33, "bf16").peak_bytes()
    assert small.peak_bytes() < EncodeFootprint(1280, 720, 17, "bf16").peak_bytes()
    assert small.peak_bytes() < EncodeFootprint(640, 368, 17, "fp32").peak_bytes()
    assert small.peak_bytes() < EncodeFootprint(640, 368, 17, "bf16", refine=True).peak_bytes()
    # in the measured range: 0.88 GB for 17 frames of 640x360, 2.27 GB for 65 (bf16)
    assert 0.8 < small.peak_bytes() / 2**30 < 1.1
    assert 2.0 < EncodeFootprint(640, 368, 65, "bf16").peak_bytes() / 2**30 < 2.6
    # at --scale 0.5 the networks see a quarter of the pixels; only the frames are held at full size
    full = EncodeFootprint(3840, 2160, 17, "bf16")
    half = EncodeFootprint(1920, 1080, 17, "bf16", source_width=3840, source_height=2160)
    assert EncodeFootprint(1920, 1080, 17, "bf16").peak_bytes() < half.peak_bytes() < full.peak_bytes() / 2


def test_the_advised_gop_is_the_longest_that_fits() -> None:
    big = EncodeFootprint(3840, 2160, 65, "bf16")
    budget = 6 * 2**30
    gop = big.longest_gop_within(budget)
    assert gop % 4 == 1 and 1 <= gop < 65
    assert EncodeFootprint(3840, 2160, gop, "bf16").peak_bytes() <= budget
    assert EncodeFootprint(3840, 2160, gop + 4, "bf16").peak_bytes() > budget
    assert big.longest_gop_within(memory.BASE_BYTES) == 0  # not even one frame
    three = EncodeFootprint(3840, 2160, 65, "bf16", temporal_factor=3).longest_gop_within(budget)
    # a model that compresses time 3x takes 1 + 3k frames
    assert three % 3 == 1 and EncodeFootprint(3840, 2160, three, "bf16").peak_bytes() <= budget


def test_the_check_refuses_only_what_does_not_fit() -> None:
    fp = EncodeFootprint(1920, 1088, 65, "bf16")
    check_encode_memory(fp, available=fp.peak_bytes(), resident=0)  # fits exactly: no error
    # what the process already holds counts in: the model is loaded before the check
    check_encode_memory(fp, available=fp.peak_bytes() - 2**30, resident=2**30)
    advice = r"GOPs of 65 frames at 1920x1088 needs about .* GB .*use --gop \d+ or less"
    with pytest.raises(MemoryLimitError, match=advice):
        check_encode_memory(fp, available=fp.peak_bytes() // 2, resident=0)
    one = EncodeFootprint(7680, 4320, 1, "fp32")
    with pytest.raises(MemoryLimitError, match="use a smaller --scale"):
        check_encode_memory(one, available=one.peak_bytes() - 1, resident=0)


def test_no_check_where_the_system_does_not_say(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "available_bytes", lambda: None)
    check_encode_memory(EncodeFootprint(7680, 4320, 4097, "fp32"))


def test_available_memory_is_read_from_the_system() -> None:
    got = memory.available_bytes()
    assert got is None or got > 0


def test_available_memory_counts_swap_and_keeps_inside_a_cgroup_limit(tmp_path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal: 16000000 kB\nMemAvailable: 8000000 kB\nSwapFree: 1000000 kB\n")
    cgroup = tmp_path / "cgroup"
    mine = tmp_path / "proc_cgroup"
    mine.write_text("0::/\n")  # (this process at the root of a v2 hierarchy: a container's view)
    available_bytes = functools.partial(memory.available_bytes, proc_cgroup=mine)
    assert available_bytes(meminfo, cgroup) == 9_000_000 * 1024  # no cgroup files: no limit
    cgroup.mkdir()
    (cgroup / "memory.max").write_text("max\n")
    assert available_bytes(meminfo, cgroup) == 9_000_000 * 1024
    (cgroup / "memory.max").write_text(f"{4 * 2**30}\n")
    (cgroup / "memory.current").write_text(f"{3 * 2**30}\n")
    (cgroup / "memory.stat").write_text(f"anon 100\ninactive_file {2**30}\nactive_file 5\n")
    assert available_bytes(meminfo, cgroup) == 2 * 2**30  # 4 GB limit, 2 GB of it unreclaimable
    assert available_bytes(meminfo, cgroup, swap=False) == 2 * 2**30
    (cgroup / "memory.stat").unlink()  # no memory.stat: the limit still holds, no cache counted free
    assert available_bytes(meminfo, cgroup) == 2**30
    meminfo.write_text("MemTotal: 16000000 kB\n")
    assert available_bytes(meminfo, cgroup) is None


def test_resident_memory_is_read_from_the_system(tmp_path) -> None:
    status = tmp_path / "status"
    status.write_text("Name: python\nVmRSS:\t  524288 kB\n")
    assert memory.resident_bytes(status) == 2**29
    assert memory.resident_bytes(tmp_path / "missing") == 0


def test_encode_refuses_before_writing_anything(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from tokcodec.cli import app
    from tokcodec.codec.pipeline import encode_video
    from tokcodec.io import FrameWriter

    src = tmp_path / "clip.mkv"
    rng = np.random.default_rng(0)
    with FrameWriter(src, 64, 48, Fraction(25)) as w:
        for _ in range(9):
            w.write(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))
    seen: list[EncodeFootprint] = []
    real_check = memory.check_encode_memory

    def tight(fp: EncodeFootprint, available: int | None = None, resident: int | None = None) -> None:
        seen.append(fp)
        real_check(fp, available=fp.peak_bytes() - 1, resident=0)

    monkeypatch.setattr("tokcodec.codec.pipeline.check_encode_memory", tight)
    with pytest.raises(MemoryLimitError):
        encode_video(src, tmp_path / "out.tok", model="tiny", device="cpu", gop=17)
    # the GOP is the clip (9 frames, shorter than --gop) at the padded size the networks see
    assert seen[0].frames == 9 and seen[0].width >= 64 and seen[0].height >= 48
    assert not (tmp_path / "out.tok").exists()
    res = CliRunner().invoke(app, ["encode", str(src), "-o", str(tmp_path / "out.tok"), "--model", "tiny",
                                   "--device", "cpu"])
    assert res.exit_code == 1 and "tokcodec: error: encoding GOPs of 9 frames" in res.output


def test_memory_limits_of_a_v1_group_and_of_a_v2_parent_bind_too(tmp_path) -> None:
    """Only /sys/fs/cgroup/memory.max was read: a Slurm job's or a systemd unit's limit (cgroup
    v1, or v2 below the root) went unseen, and the kernel killed the encode at it without a word
    (exit 137, a 600 MB limit, 1.0 GB needed)."""
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemAvailable: 8000000 kB\nSwapFree: 0 kB\n")
    root = tmp_path / "fs"
    v1 = root / "memory" / "slurm" / "job_7"
    v1.mkdir(parents=True)
    (root / "memory" / "memory.limit_in_bytes").write_text("9223372036854771712\n")  # the root: no limit
    (v1 / "memory.limit_in_bytes").write_text(f"{600 * 2**20}\n")
    (v1 / "memory.usage_in_bytes").write_text(f"{200 * 2**20}\n")
    (v1 / "memory.stat").write_text(f"cache 5\ntotal_inactive_file {50 * 2**20}\n")
    mine = tmp_path / "proc_cgroup"
    mine.write_text("7:memory:/slurm/job_7\n3:cpu,cpuacct:/slurm/job_7\n")
    assert memory.available_bytes(meminfo, root, proc_cgroup=mine) == 450 * 2**20
    v2 = root / "user.slice" / "run.scope"
    v2.mkdir(parents=True)
    (root / "user.slice" / "memory.max").write_text(f"{2**30}\n")
    (root / "user.slice" / "memory.current").write_text(f"{2**28}\n")
    (v2 / "memory.max").write_text("max\n")
    mine.write_text("0::/user.slice/run.scope\n")
    assert memory.available_bytes(meminfo, root, proc_cgroup=mine) == 3 * 2**28  # the parent's limit
