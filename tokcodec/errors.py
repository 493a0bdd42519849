"""Exceptions with messages meant for users: the CLI prints them as one line, never a traceback."""
from __future__ import annotations

import errno
import os


class TokcodecError(Exception):
    """Base class of every error tokcodec raises on purpose."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, ``timeout``, systemd, Kubernetes), or SIGHUP (a closed terminal, a
    dropped ssh session), raised where the CLI takes it so that it stops a command as Ctrl-C
    does: temporary outputs removed, exit status 128 + ``signum`` (143, 129)."""

    def __init__(self, signum: int = 15) -> None:
        super().__init__(signum)
        self.signum = signum


class FormatError(TokcodecError):
    """A .tok file is malformed, truncated, corrupted or of an unknown version."""


class MissingPriorError(FormatError):
    """A payload names a coder-3 prior this process does not have: an intact file, coded with
    weights of your own whose prior was not found beside them (not damage: --salvage cannot help)."""


class InputError(TokcodecError):
    """An input file is missing, unreadable or not a video/image."""


class OutputError(TokcodecError):
    """An output cannot be written (exists without overwrite, unwritable location, unknown format)."""


class BusyError(OutputError):
    """Another run holds what this one needs (a batch run's output folder): try again later. The
    CLI exits 75 (EX_TEMPFAIL), so that a cron job can tell "still running" from a failure (1)."""


class ModelError(TokcodecError):
    """Unknown preset, missing weights, or a weights hash that does not match the file."""


class DeviceError(TokcodecError):
    """The requested device is not available."""


class ArgumentError(TokcodecError, ValueError):
    """An argument or option out of its range or against another one (--gop 10, rdo=-1, bpp and
    bitrate both): a ValueError too, so code that caught ValueError still does."""


class SetupError(TokcodecError):
    """This installation of tokcodec cannot do the job: a broken install or a missing dependency."""


#: what a chunk lost with the one before it says (salvage tells that case by it, not by "linked":
#: a damaged linked payload's own messages have the word too)
LINKED_TO_LOST = "is linked to the one before"

#: what a CUDA out-of-memory error (torch.cuda.OutOfMemoryError, a RuntimeError) tells the user
GPU_OUT_OF_MEMORY = "out of GPU memory (decode: --gop-batch 1; encode: a smaller --gop or --scale; or --device cpu)"


def is_gpu_out_of_memory(exc: BaseException) -> bool:
    """torch.cuda.OutOfMemoryError, told without importing torch."""
    return isinstance(exc, RuntimeError) and type(exc).__name__ == "OutOfMemoryError"


def why_not_a_file(path: str | os.PathLike[str]) -> str | None:
    """Why ``path`` cannot be read as a file ("no such file", "is a directory"), or None when it can."""
    if os.path.isfile(path):
        return None
    if os.path.isdir(path):
        return "is a directory, expected a file"
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ENAMETOOLONG:
            return "no such file (its name is longer than the file system takes)"
        if exc.errno == errno.EACCES:
            return "cannot be reached: a folder on its path may not be searched (permission denied)"
    except ValueError:  # (a NUL in the name)
        pass
    return "no such file"
