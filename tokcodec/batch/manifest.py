"""The JSONL manifest in DST and the lock that keeps two runs off the same DST.

One line per file per run, appended with flush + fsync, so a kill -9 loses at most the line being
written (a torn last line is skipped on reading and terminated before the next append).
"""
from __future__ import annotations

import errno
import importlib
import json
import os
import socket
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tokcodec.errors import BusyError, OutputError

if TYPE_CHECKING:
    from typing_extensions import Self


#: the types a record's fields that a rerun reads must have (a hand-edited or damaged line with
#: others, e.g. "frames": "nine", crashed the rerun; such a record is passed over like a torn one)
_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "output": (str,), "input": (str,), "status": (str,), "model": (str, type(None)),
    "frames": (int,), "bpp": (int, float, type(None)),
}


def _well_formed(rec: object) -> bool:
    return isinstance(rec, dict) and all(
        type(rec[k]) in types for k, types in _FIELD_TYPES.items() if k in rec)


def own_file(path: Path, flags: int) -> int:
    """A descriptor of the regular file ``path`` (made if missing), never through a link: a link
    planted in a shared DST as the lock or the manifest made a batch run truncate, or append to,
    whatever file it named (another user's ~/.bashrc); a FIFO there hung or failed "unexpected"."""
    try:
        fd = os.open(path, flags | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
                     | getattr(os, "O_BINARY", 0), 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise OSError(errno.ELOOP, "a link, which is not followed") from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "not a regular file")
    if hasattr(os, "O_NONBLOCK"):  # (opened so only that a FIFO there could not hang the open)
        os.set_blocking(fd, True)
    return fd


def read_records(path: Path) -> list[dict[str, Any]]:
    """Every well-formed record of a manifest (a torn line from a killed run, or one whose fields
    have the wrong types, is ignored)."""
    if not path.exists():
        return []
    records = []
    with path.open("rb") as fh:
        for line in fh:
            try:
                rec = json.loads(line)
            except (ValueError, RecursionError):  # (a line of nested brackets is no record either)
                continue
            if _well_formed(rec):
                records.append(rec)
    return records


def done_records(path: Path) -> dict[str, dict[str, Any]]:
    """Output -> the latest record that made it, of a manifest's finished files."""
    return {rec["output"]: rec for rec in read_records(path) if rec.get("status") == "done" and rec.get("output")}


class Manifest:
    def __init__(self, path: Path, previous: dict[str, dict[str, Any]] | None = None) -> None:
        """Appends to ``path``; ``previous``: its ``done_records`` where the caller read them already."""
        self.path = path
        self.previous = done_records(path) if previous is None else previous
        try:
            self._fh = os.fdopen(own_file(path, os.O_WRONLY | os.O_APPEND), "ab", buffering=0)  # (written through)
            if self._fh.tell() > 0:
                with path.open("rb") as fh:
                    fh.seek(-1, os.SEEK_END)
                    if fh.read(1) != b"\n":
                        self._fh.write(b"\n")
        except OSError as exc:
            raise OutputError(f"{path}: cannot write the manifest ({exc.strerror or exc})") from None

    def write(self, record: dict[str, Any], sync: bool = True) -> None:
        """One record, on the disk when this returns (``sync``; else at the next ``sync``: a
        rerun's skip records, one fsync for them all instead of one each, 28 800 of them 5.9 s
        here and far more on NFS); OutputError where it cannot be (a full disk: the run stops,
        saying so, instead of "unexpected OSError")."""
        line = memoryview(json.dumps(record, separators=(", ", ": ")).encode() + b"\n")
        with self._written():
            while line:  # (a short write, on a disk nearly full: the rest, or the error it meets;
                line = line[self._fh.write(line):]  # a line cut short by it is passed over when read)
            if sync:
                os.fsync(self._fh.fileno())

    def sync(self) -> None:
        with self._written():
            os.fsync(self._fh.fileno())

    @contextmanager
    def _written(self) -> Iterator[None]:
        try:
            yield
        except OSError as exc:
            raise OutputError(f"{self.path}: cannot write the manifest ({exc.strerror or exc})") from None

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


#: where msvcrt (Windows) locks its one byte: far past the holder's line, which stays readable
#: (Windows' byte-range locks keep other processes from reading what they cover)
WINDOWS_LOCK_OFFSET = 1 << 30


def _no_fcntl() -> bool:
    try:
        importlib.import_module("fcntl")
    except ImportError:
        return True
    return False


def _try_lock(fd: int) -> bool | None:
    """Lock ``fd``'s file for this process without waiting (flock): True if locked, False if
    another process holds it, None if this file system cannot lock (then the run goes unlocked:
    some NFS set-ups)."""
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        return False if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES) else None
    return True


def _try_lock_windows(fd: int) -> bool | None:
    try:
        import msvcrt
    except ImportError:
        return None
    os.lseek(fd, WINDOWS_LOCK_OFFSET, os.SEEK_SET)
    try:
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined]
    except OSError as exc:
        return False if exc.errno in (errno.EACCES, errno.EDEADLK) else None
    finally:
        os.lseek(fd, 0, os.SEEK_SET)
    return True


def _unlock_windows(fd: int) -> None:
    import msvcrt

    os.lseek(fd, WINDOWS_LOCK_OFFSET, os.SEEK_SET)
    try:
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)  # type: ignore[attr-defined]
    except OSError:
        pass  # (closing frees it all the same, in time)


class DirLock:
    """An exclusive lock on DST/.tokcodec-batch.lock (flock; on Windows msvcrt's), released by the
    operating system if the run dies."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._windows_locked = False

    def __enter__(self) -> Self:
        try:
            fd = own_file(self.path, os.O_RDWR)
        except OSError as exc:
            raise OutputError(f"{self.path.parent}: cannot create the lock file ({exc.strerror or exc})") from None
        windows = _no_fcntl()
        locked = _try_lock_windows(fd) if windows else _try_lock(fd)
        self._windows_locked = bool(locked) and windows
        if locked is None:
            self._fd = fd  # no locking here: run unlocked
            return self
        if not locked:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise BusyError(f"{self.path.parent}: another batch run is using this folder "
                              f"(holder: {holder}; lock {self.path.name})")
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            if self._windows_locked:  # (Windows frees a lock left at close only after a while)
                _unlock_windows(self._fd)
            os.close(self._fd)  # closing drops the flock; the file stays (deleting it would race)
            self._fd = None
