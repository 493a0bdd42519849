"""A portability review (Windows, macOS), by reading the code on Linux: each test fakes the other
system's behaviour where the code branches on it, and checks the branch."""
from __future__ import annotations

import errno
import fcntl
import os
import sys
import types
from pathlib import Path

import pytest

from tokcodec import device
from tokcodec.batch import manifest, plan
from tokcodec.bench import rd
from tokcodec.codec import outputs
from tokcodec.codec.outputs import commit_output
from tokcodec.errors import BusyError, OutputError


def test_a_finished_output_is_flushed_through_a_handle_open_for_writing(tmp_path, monkeypatch):
    """Windows' fsync (_commit) refuses a read-only handle with EBADF: every encode or decode to a
    file failed at its very end, after all the work."""
    seen: list[int] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        seen.append(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    tmp, dst = tmp_path / "out.part", tmp_path / "out.tok"
    tmp.write_bytes(b"data")
    commit_output(tmp, dst)
    assert dst.read_bytes() == b"data"
    assert seen and seen[0] != os.O_RDONLY  # the file's (the folder's fsync may be read-only)


def test_a_read_only_finished_output_is_still_committed(tmp_path):
    tmp, dst = tmp_path / "out.part", tmp_path / "out.tok"
    tmp.write_bytes(b"data")
    tmp.chmod(0o444)
    commit_output(tmp, dst)
    assert dst.read_bytes() == b"data"


class FakeMsvcrt(types.ModuleType):
    """msvcrt.locking as Windows does it: a byte range at the file's position, refused (EACCES)
    while another handle holds it."""
    LK_UNLCK, LK_NBLCK = 0, 2

    def __init__(self) -> None:
        super().__init__("msvcrt")
        self.held: set[tuple[int, int]] = set()

    def locking(self, fd: int, mode: int, nbytes: int) -> None:
        key = (os.fstat(fd).st_ino, os.lseek(fd, 0, os.SEEK_CUR))
        if mode == self.LK_UNLCK:
            self.held.remove(key)
        elif key in self.held:
            raise OSError(errno.EACCES, "Permission denied")
        else:
            self.held.add(key)


def test_the_batch_lock_works_without_fcntl_through_msvcrt(tmp_path, monkeypatch):
    """There is no fcntl on Windows: every `tokcodec batch` run ended in 'unexpected
    ModuleNotFoundError'."""
    fake = FakeMsvcrt()
    monkeypatch.setitem(sys.modules, "fcntl", None)
    monkeypatch.setitem(sys.modules, "msvcrt", fake)
    lock = tmp_path / ".tokcodec-batch.lock"
    with manifest.DirLock(lock):
        assert {offset for _, offset in fake.held} == {manifest.WINDOWS_LOCK_OFFSET}
        with pytest.raises(BusyError, match=f"holder: pid {os.getpid()} on"):  # the holder's line is readable
            with manifest.DirLock(lock):
                pass
    assert not fake.held  # released before the close (Windows frees a lock left at close only in time)
    with manifest.DirLock(lock):
        pass


def test_the_batch_runs_unlocked_where_nothing_can_lock(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "fcntl", None)
    monkeypatch.setitem(sys.modules, "msvcrt", None)
    with manifest.DirLock(tmp_path / ".tokcodec-batch.lock"):
        pass


def fake_winapi(live: set[int], calls: list[str]) -> types.ModuleType:
    winapi = types.ModuleType("_winapi")

    def open_process(access: int, inherit: bool, pid: int) -> int:
        calls.append(f"open {pid}")
        if pid not in live:
            exc = OSError(22, "The parameter is incorrect")
            exc.winerror = 87  # type: ignore[attr-defined]
            raise exc
        return 1000 + pid

    winapi.OpenProcess = open_process  # type: ignore[attr-defined]
    winapi.GetExitCodeProcess = lambda handle: 259  # type: ignore[attr-defined]  # STILL_ACTIVE
    winapi.CloseHandle = lambda handle: calls.append(f"close {handle}")  # type: ignore[attr-defined]
    return winapi


def test_leftover_workers_are_looked_up_without_os_kill_on_windows(monkeypatch):
    """os.kill(pid, 0) on Windows sends Ctrl-C (signal 0 is CTRL_C_EVENT), and raises a plain
    OSError for a pid that is gone, which stopped every batch run that found a leftover part."""
    calls: list[str] = []
    monkeypatch.setattr(outputs, "WINDOWS", True)  # (plan.pid_alive is codec.outputs')
    monkeypatch.setitem(sys.modules, "_winapi", fake_winapi({42}, calls))
    monkeypatch.setattr(os, "kill", lambda *a: pytest.fail("os.kill used on Windows"))
    assert plan.pid_alive(42) and not plan.pid_alive(43)
    assert calls == ["open 42", "close 1042", "open 43"]


def test_a_bench_run_without_a_load_average(monkeypatch):
    monkeypatch.delattr(os, "getloadavg")  # (Windows has none: the bench crashed before measuring)
    assert rd._loadavg() is None


@pytest.mark.parametrize("machine, expected", [("x86_64", "bf16"), ("AMD64", "bf16"), ("arm64", "fp32"),
                                                ("aarch64", "fp32")])
def test_auto_precision_takes_bf16_only_where_it_was_measured_to_pay(machine, expected, monkeypatch):
    """torch reports bf16 on Arm CPUs too (Apple M2 on), where its conv3d speed was never timed."""
    monkeypatch.setattr(device.platform, "machine", lambda: machine)
    monkeypatch.setattr(device.torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True, raising=False)
    assert device.select_runtime("cpu").precision == expected
    assert device.select_runtime("cpu", "bf16").precision == "bf16"


def test_batch_decode_into_its_source_under_another_case_is_refused(tmp_path, monkeypatch):
    """On a case-insensitive file system (macOS', Windows') `toks` and `Toks` are one folder, which
    realpath does not show on macOS: decoded videos would have replaced the originals beside them."""
    src = tmp_path / "toks"
    src.mkdir()
    (src / "a.mp4.tok").write_bytes(b"")
    other = tmp_path / "Toks"
    other.mkdir()
    monkeypatch.setattr(os.path, "samefile", lambda a, b: Path(a).name.lower() == Path(b).name.lower())
    with pytest.raises(OutputError, match="different from SRC"):
        plan.make_plan("decode", src, other)
