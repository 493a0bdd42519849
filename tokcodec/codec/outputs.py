"""Atomic outputs: a file appears under its final name only when it is complete, even after a
crash or a power cut; until then it is a hidden sibling with the same extension. A directory of
frames is written in a hidden sibling directory too, and takes its name (or, into an existing
one, its frames take theirs) only when every frame is there."""
from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import shutil
import signal
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from tokcodec.errors import OutputError

#: the output (and input) name meaning standard output (input), as ffmpeg takes it
STDIO = "-"
#: standard streams (0, 1, 2) the command line was started without (`>&-`): it gives them stand-ins
#: (tokcodec/cli/stdio.py) and records them here, so that "-" is refused for them at once
CLOSED_STDIO: set[int] = set()


def is_pipe(path: Path) -> bool:
    """Whether ``path`` is a named pipe or a socket (links followed: /dev/stdin, /dev/fd/N):
    read once, unlike a file (the command line copies it first, as standard input)."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


def stdout_closed() -> bool:
    """Whether this process was started without a standard output (Python's None, from a program
    of one's own; CLOSED_STDIO, from the command line)."""
    return sys.stdout is None or 1 in CLOSED_STDIO


#: the names of a directory output's frames (frame_000000.png, ...)
FRAME_NAME = re.compile(r"frame_(\d{6,})\.png")


def check_output(dst: Path, overwrite: bool, source: Path | None = None) -> None:
    """Refuse an output that cannot or must not be written: an existing file without ``overwrite``,
    a missing or read-only directory, the ``source`` itself (-y would replace the input with the
    output, as ffmpeg refuses to), a terminal as standard output."""
    if str(dst) == STDIO:
        if stdout_closed():
            raise OutputError("-: standard output is closed (>&-); give a file name, or pipe it on")
        if sys.stdout.isatty():
            raise OutputError("-: standard output is a terminal; pipe it on (| mpv -, | tokcodec decode - ...) "
                              "or give a file name")
        return
    check_name_length(dst)
    if source is not None and str(source) != STDIO and _same_file(source, dst):
        raise OutputError(f"{dst}: is the input; give the output another name")
    if dst.is_dir() and _file_output(dst):  # (found only after the whole decode, as "appeared")
        raise OutputError(f"{dst}: is a directory; a {dst.suffix} file cannot replace it (give another name)")
    # (lexists: a link to nothing is there too; missed, it cost a whole encode, then "appeared")
    if os.path.lexists(dst) and not overwrite and not (dst.is_dir() and not any(dst.iterdir())):
        what = "" if dst.exists() else " (a link to nothing)"
        raise OutputError(f"{dst}: already exists{what} (use -y to overwrite; overwrite=True from Python)")
    parent = dst.parent if str(dst.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"{dst}: {parent} is a file, not a directory" if parent.exists()
                          else f"{dst}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise OutputError(f"{dst}: directory {parent} is not writable")


def check_tok_output(dst: Path, overwrite: bool, source: Path | None = None, command: str = "encode") -> None:
    """check_output for a .tok file, which is refused a video or image name (a player or ffmpeg
    would take it for one: tokcodec decode makes those); ``command`` names what writes it."""
    from tokcodec.io import MEDIA_INPUT_SUFFIXES  # (io imports this module)

    suffix = dst.suffix.lower()
    if suffix in MEDIA_INPUT_SUFFIXES | {".npy", ".safetensors"}:
        raise OutputError(f"{dst}: {command} writes a .tok file, not {suffix} (name it {dst.stem}.tok; "
                          "tokcodec decode makes video from it)")
    # (before the encode, not at its end; os.path's, as Path.is_dir raises where the name is too
    # long: check_output says that)
    if str(dst) != STDIO and os.path.isdir(dst):
        raise OutputError(f"{dst}: is a directory; give the .tok file's name")
    check_output(dst, overwrite, source)


def check_name_length(dst: Path) -> None:
    """An output name longer than a file system takes, refused before any work (it ended an
    encode or a decode in "unexpected OSError: File name too long")."""
    if len(os.fsencode(dst.name)) > NAME_MAX:
        raise OutputError(f"{dst.name[:40]}...: a name of {len(os.fsencode(dst.name))} bytes, more than the "
                          f"{NAME_MAX} a file system takes")


def _file_output(dst: Path) -> bool:
    """Whether ``dst``, a folder, is named as a video or image file output (io.output_kind)."""
    from tokcodec.io import output_kind  # (io imports this module)

    return output_kind(dst) in ("video", "image")


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return False


#: the longest file name most file systems take (ext4, XFS, APFS, NTFS: 255 bytes)
NAME_MAX = 255
#: the longest extension a temporary output keeps (muxers' are a few letters)
MAX_SUFFIX = 16


WINDOWS = os.name == "nt"


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this host (a zombie counts as gone)."""
    if pid <= 0:
        return False
    if WINDOWS:
        return _windows_pid_alive(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (killed, not yet reaped, e.g. under a container's init) writes nothing
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _windows_pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs, on Windows, where ``os.kill(pid, 0)`` is no check: it sends
    that process Ctrl-C (0 is CTRL_C_EVENT), and raises a plain OSError for a process long gone."""
    import _winapi  # type: ignore[import-not-found]

    query_limited_information, still_active, access_denied = 0x1000, 259, 5
    try:
        handle = _winapi.OpenProcess(query_limited_information, False, pid)
    except OSError as exc:
        return getattr(exc, "winerror", None) == access_denied  # (it exists, not ours to look at)
    try:
        return _winapi.GetExitCodeProcess(handle) == still_active
    finally:
        _winapi.CloseHandle(handle)


#: a temporary output untouched this long, whose writer is not alive here, is a dead run's: a
#: writer on another host sharing the folder (its PID means nothing here) writes every GOP
DEAD_PART_SECONDS = 3600


def remove_dead_parts(dst: Path, now: float | None = None) -> int:
    """Remove the temporary outputs of ``dst`` (temp_path's names, any process's) whose writer is
    no longer alive on this host and that nothing has written for DEAD_PART_SECONDS: a run
    killed outright (`kill -9`, the kernel at a memory limit) leaves its part behind, hidden, and
    no later run took it away. For one output (the CLI's encode and decode): it lists ``dst``'s
    folder, which batch, writing thousands, does once per run itself (batch.plan's
    remove_stale_parts, under its lock). Returns how many it removed."""
    now = time.time() if now is None else now
    stem, suffix = (dst.stem, dst.suffix) if len(os.fsencode(dst.suffix)) <= MAX_SUFFIX else (dst.name, "")
    part = re.compile(rf"\.{re.escape(stem)}\.part-(\d+)(?:-\d+)?{re.escape(suffix)}")
    try:
        names = os.listdir(dst.parent)
    except OSError:
        return 0
    removed = 0
    for name in names:
        found = part.fullmatch(name)
        if not found or int(found.group(1)) == os.getpid() or pid_alive(int(found.group(1))):
            continue
        with contextlib.suppress(OSError):  # (a folder, or gone already: left as it is)
            if now - (dst.parent / name).stat().st_mtime >= DEAD_PART_SECONDS:
                (dst.parent / name).unlink()
                removed += 1
    return removed


def temp_path(dst: Path, number: int = 1) -> Path:
    """Hidden sibling of dst that keeps its extension (muxers are chosen by it): .NAME.part-PID.EXT,
    or .NAME.part-PID-N.EXT for the N-th (from 2) where the names before are in use (written at
    once in this process, or taken again by someone else as soon as removed). A NAME too long to
    take the additions is cut, with a hash of it so that it stays its own."""
    tag = f"{os.getpid()}" if number == 1 else f"{os.getpid()}-{number}"
    # (an "extension" of hundreds of bytes chooses no muxer: kept, it left no room for the additions)
    stem, suffix = (dst.stem, dst.suffix) if len(os.fsencode(dst.suffix)) <= MAX_SUFFIX else (dst.name, "")
    tail = f".part-{tag}{suffix}"
    if len(os.fsencode(f".{stem}{tail}")) > NAME_MAX:  # (the file system's bytes: any name, UTF-8 or not)
        digest = hashlib.sha256(os.fsencode(stem)).hexdigest()[:8]
        room = NAME_MAX - len(os.fsencode(f".~{digest}{tail}"))
        stem = os.fsencode(stem)[:max(room, 1)].decode("utf-8", errors="ignore") + "~" + digest
    return dst.with_name(f".{stem}{tail}")


_STAGED: set[Path] = set()      # temporary outputs being written in this process
_STAGED_LOCK = threading.Lock()


#: names tried before a temporary output is given up on (each taken by another file)
MAX_TEMP_TRIES = 1000
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


def _made_new(path: Path) -> bool:
    """Make ``path`` a new, empty file, exclusively and never through a link; False where
    something (a file, a link) is there already."""
    try:
        os.close(os.open(path, _NEW_FILE, 0o666))
    except FileExistsError:
        return False
    return True


def _made_anew(path: Path) -> bool:
    """``_made_new``, where what is there already (a leftover of an interrupted write, a link
    someone planted) is removed first: the link itself, never what it points to. False where
    that cannot be removed, or is there again at once."""
    if _made_new(path):
        return True
    with contextlib.suppress(OSError):
        path.unlink()
    return _made_new(path)


def new_file(path: Path) -> Path:
    """``path`` made a new, empty file (``_made_anew``), Ctrl-C held back meanwhile (one between
    its open and close leaked the descriptor)."""
    with signals_deferred():
        made = _made_anew(path)
    if not made:
        raise OutputError(f"{path}: cannot be made anew (something keeps taking this name)")
    return path


def _claim_temp_path(dst: Path) -> Path:
    """A temporary name for ``dst`` that no other output of this process is using (two threads
    writing the same output each write their own file; the last to finish is the output), made
    here as a new, empty file. Made exclusively and never through a link: the names are
    predictable, and in a folder others can write to, a link planted under the name would have
    had the output written wherever it points (and left the output a link to it). Something
    already under a name of this process's id that it is not writing is not its own (a planted
    link), or a leftover of a killed run with the same id (a container's is always the same):
    it is removed, and the name made anew; a name someone keeps taking is passed over."""
    return _claim(dst, dst, _made_anew, "file")


def _claim(dst: Path, base: Path, made: Callable[[Path], bool], what: str) -> Path:
    """The first of ``base``'s temporary names (``temp_path``) that no output of this process is
    writing and that ``made`` makes (False: taken), registered as this process's; OutputError
    naming ``dst`` when all MAX_TEMP_TRIES are taken."""
    with _STAGED_LOCK:
        for number in range(1, MAX_TEMP_TRIES + 1):
            tmp = temp_path(base, number)
            if tmp.absolute() in _STAGED or not made(tmp):
                continue
            _STAGED.add(tmp.absolute())
            return tmp
    raise OutputError(f"{dst}: {MAX_TEMP_TRIES} names for its temporary {what} are all taken "
                      f"({temp_path(base).name} and on)")


def _claim_temp_dir(dst: Path) -> tuple[Path, bool]:
    """(a new, empty hidden directory to write the directory output ``dst`` in, whether it lies
    inside ``dst``): inside where ``dst`` is a folder already (".", a mount point, a link to a
    folder: the frames then move up within its file system, and the folder keeps its owner and
    mode), else a sibling, renamed into place. ``mkdir`` is exclusive and follows no link; a name
    already taken (by a killed run with the same process id, or by someone else) is passed over,
    never removed. Something else than a folder under the name is refused before any work."""
    if dst.is_dir():
        base, inside = dst / "frames", True
    elif os.path.lexists(dst):
        raise _not_a_directory(dst)
    else:
        base, inside = dst, False

    def made_dir(path: Path) -> bool:
        try:
            path.mkdir()
        except FileExistsError:
            return False
        except OSError as exc:
            raise OutputError(f"{dst}: cannot write ({exc.strerror or exc})") from None
        return True

    return _claim(dst, base, made_dir, "directory"), inside


def _not_a_directory(dst: Path) -> OutputError:
    what = "a link to nothing" if os.path.islink(dst) and not dst.exists() else "a file"
    return OutputError(f"{dst}: is {what}, not a directory; a directory of frames cannot replace it")


def _appeared(dst: Path) -> OutputError:
    return OutputError(f"{dst}: appeared while this output was being written (another process writing the "
                       "same name?); it is left as it is (use -y to overwrite)")


@contextmanager
def staged_output(dst: Path, kind: str, overwrite: bool = True) -> Iterator[Path]:
    """The path to write ``dst`` at: a temporary sibling (a directory for a directory of PNGs,
    "dir") that becomes ``dst`` when the block completes and is removed when it fails or is
    interrupted; standard output ("stream") as it is. Without ``overwrite``, a ``dst`` that
    appeared while the block ran (another process writing the same name) is left as it is:
    OutputError."""
    if kind == "stream":
        yield dst
        return
    tmp: Path | None = None
    try:
        with signals_deferred():  # (a Ctrl-C between making it and taking it as this output's left it)
            tmp, inside = _claim_temp_dir(dst) if kind == "dir" else (_claim_temp_path(dst), False)
        yield tmp
        if kind == "dir":
            commit_directory(tmp, dst, overwrite, inside)
        else:
            commit_output(tmp, dst, overwrite)
    finally:
        if tmp is not None:
            try:
                if kind == "dir":
                    shutil.rmtree(tmp, ignore_errors=True)
                elif tmp.exists():
                    tmp.unlink()
            finally:
                with _STAGED_LOCK:
                    _STAGED.discard(tmp.absolute())


def commit_directory(tmp: Path, dst: Path, overwrite: bool = True, inside: bool = False) -> None:
    """Give a finished directory of frames (``tmp``) its name: a sibling folder is renamed into
    place (at once); one ``inside`` an existing ``dst`` (or a sibling where a folder appeared
    meanwhile, with ``overwrite``) has its frames take their names there, Ctrl-C and SIGTERM held
    back until the last one has, and then the frames ``dst`` held beyond this output's are
    removed (its other files stay). A failed or interrupted decode so leaves neither a folder
    whose first frames are new and the rest an earlier decode's, nor a half-written one under the
    final name. (The frames are not synced to the disk: a power cut may still lose them.)"""
    if not inside:
        try:
            os.rename(tmp, dst)
            return
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR):
                raise
        if not overwrite:
            raise _appeared(dst)
        if not dst.is_dir():
            raise _not_a_directory(dst)
    with signals_deferred():
        written = sorted(tmp.iterdir())
        for frame in written:
            os.replace(frame, dst / frame.name)
        remove_frames(dst, len(written))
    tmp.rmdir()


@contextmanager
def signals_deferred() -> Iterator[None]:
    """Ctrl-C and SIGTERM held back (in the main thread) until the block ends, then delivered to
    the handlers there were: for steps that must not stop half-way."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        handler = signal.getsignal(signum)
        if handler is not None:  # (None: set outside Python; left alone)
            previous[signum] = signal.signal(signum, lambda number, frame: caught.append(number))
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if caught:
            signal.raise_signal(caught[0])


@contextmanager
def tok_output(dst: Path, overwrite: bool = True) -> Iterator[tuple[BinaryIO, bool]]:
    """(the file to write a .tok at, whether the writer may seek back to patch its header): a .tok
    is written in one pass, its index last, so it streams to standard output ("-") too; else it
    is written as staged_output writes a file."""
    to_stdout = str(dst) == STDIO
    with staged_output(dst, "stream" if to_stdout else "file", overwrite) as path, \
            (open(sys.stdout.fileno(), "wb", closefd=False) if to_stdout else path.open("wb")) as fh:
        yield fh, not to_stdout


def remove_frames(directory: Path, first: int) -> None:
    """A directory output's frames numbered ``first`` and on, left by an earlier, longer output."""
    for png in directory.glob("frame_*.png"):
        number = FRAME_NAME.fullmatch(png.name)
        if number and int(number.group(1)) >= first:
            png.unlink(missing_ok=True)


def _take_free_name(tmp: Path, dst: Path) -> None:
    taken = _appeared(dst)
    try:
        os.link(tmp, dst)
    except FileExistsError:
        raise taken from None
    except OSError:  # a file system without hard links: checked, then renamed (a moment's race)
        if os.path.lexists(dst):
            raise taken from None
        os.replace(tmp, dst)
        return
    tmp.unlink()


@contextmanager
def output_errors(dst: Path, *also: type[Exception]) -> Iterator[None]:
    """Errors while writing ``dst`` as one OutputError: OS errors (disk full, an unwritable
    place) and ``also`` (e.g. a muxer's refusal). A closed pipe passes as it is: the CLI ends
    quietly when whoever reads standard output stops."""
    try:
        yield
    except BrokenPipeError:
        raise
    except (OSError, *also) as exc:
        raise OutputError(f"{dst}: cannot write ({getattr(exc, 'strerror', None) or exc})") from None


def _fsync_file(path: Path) -> None:
    """Flush a closed file's data to the disk. Opened for writing: Windows refuses to fsync a
    handle opened read-only (EBADF); a file we may not write (made read-only by its writer) is
    flushed through a read-only one, as POSIX allows."""
    try:
        fd = os.open(path, os.O_RDWR | getattr(os, "O_BINARY", 0))
    except PermissionError:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def commit_output(tmp: Path, dst: Path, overwrite: bool = True) -> None:
    """Give a finished temporary file its final name, durably: its data reaches the disk before
    the rename, and the rename before we return, so even a power cut never leaves a file under
    the final name that is not complete. Without ``overwrite`` the name is taken only if it is
    still free (a hard link, made or refused at once), so two writers of one name without -y
    never replace each other's output: the second gets an OutputError."""
    _fsync_file(tmp)
    if overwrite:
        os.replace(tmp, dst)
    else:
        _take_free_name(tmp, dst)
    try:
        fd = os.open(dst.parent if str(dst.parent) else ".", os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems cannot fsync a directory
    finally:
        os.close(fd)
