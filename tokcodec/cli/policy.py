"""The command line's one error and exit-code policy, for every command (bench and batch too).

Expected failures print one line, ``tokcodec: error: ...``, on stderr and exit 1 (2 for a usage
error: an option out of its range or against another; 75, EX_TEMPFAIL, where another run holds
what this one needs: a batch run's folder); Ctrl-C exits 130, SIGTERM 143, SIGHUP 129
(``stopped``, after the same clean-up: tokcodec.interrupts); a reader that stops early (``| head``)
exits 141 quietly; anything unexpected is still one line unless TOKCODEC_DEBUG is set.
"""
from __future__ import annotations

import contextlib
import errno
import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import typer

try:  # (imported here, not when memory has run out: importing it then failed with a traceback)
    import resource
except ImportError:  # (not Unix)
    resource = None  # type: ignore[assignment]

from tokcodec.env_flags import env_flag
from tokcodec.errors import GPU_OUT_OF_MEMORY, ArgumentError, BusyError, Terminated, is_gpu_out_of_memory


def stopped(exc: KeyboardInterrupt) -> int:
    """Say why the command stopped (Ctrl-C, SIGTERM or SIGHUP); its exit status, as a shell gives it."""
    if not isinstance(exc, Terminated):
        typer.echo("tokcodec: interrupted", err=True)
        return 130
    hangup = exc.signum == getattr(signal, "SIGHUP", None)
    typer.echo(f"tokcodec: {'hung up (SIGHUP)' if hangup else 'terminated'}", err=True)
    return 128 + exc.signum


#: what the place written to says (a full disk, a quota, a name too long): no "unexpected" error
_PLACE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.ENAMETOOLONG}
#: exit status of a usage error: an option out of its range or against another (click's own too)
USAGE_EXIT = 2
#: exit status where another run holds what a command needs (sysexits.h EX_TEMPFAIL: try again later)
BUSY_EXIT = 75
OUT_OF_MEMORY = "out of memory (try a smaller --gop or --scale, or --passes 0 when encoding)"


def address_space_note() -> str:
    """Where this process's address space is limited (``ulimit -v``, RLIMIT_AS; schedulers such
    as SGE's h_vmem set it), words that say so: an allocation then fails however much memory is
    free, which the memory checks made before encoding and decoding cannot foresee."""
    if resource is None:  # (not Unix)
        return ""
    limit = resource.getrlimit(resource.RLIMIT_AS)[0]
    if limit == resource.RLIM_INFINITY:
        return ""
    return f"; this process may use at most {limit / 2**30:.1f} GB of address space (ulimit -v)"


def too_many_files() -> str:
    """EMFILE: the open-file limit (``ulimit -n``), which a batch of two workers needs some 24 of."""
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0] if resource is not None else None
    where = f" ({limit}, ulimit -n)" if limit not in (None, getattr(resource, "RLIM_INFINITY", None)) else ""
    return f"too many open files: the limit on open files{where} is too low; raise it (e.g. ulimit -n 1024)"


def reader_gone(code: int = 1) -> int:
    """The exit status of a command whose standard output broke: whoever read it stopped early
    (`tokcodec models | head`), a normal end for a Unix tool, not an error (141, quietly); or it
    was closed before the command began (`>&-`: its output was lost, said so, ``code``). Standard
    output is then pointed at /dev/null, so that the flush at exit stays quiet."""
    from tokcodec.codec.outputs import stdout_closed

    with contextlib.suppress(OSError, ValueError, AttributeError):  # (stdout may be replaced, e.g. in tests)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    if stdout_closed():
        typer.echo("tokcodec: error: standard output is closed (>&-); what this command writes there is lost",
                   err=True)
        return code
    return 141


def _unexpected(exc: Exception, code: int) -> None:
    if env_flag("TOKCODEC_DEBUG"):
        raise exc
    fail(f"unexpected {type(exc).__name__}: {exc} (set TOKCODEC_DEBUG=1 for a traceback)", code)


def fail(message: str, code: int = 1) -> None:
    typer.echo(f"tokcodec: error: {message}", err=True)
    raise typer.Exit(code)


def expected_errors() -> tuple[type[Exception], ...]:
    """The failures a command reports as one line of its own (the rest: "unexpected ...")."""
    from tokcodec.errors import TokcodecError

    return TokcodecError, ValueError, FileNotFoundError, FileExistsError


@contextmanager
def errors(code: int = 1) -> Iterator[None]:
    """Turn expected failures into one line on stderr and exit status ``code``, never a
    traceback (``verify`` exits 2 on them: its 1 says a file is bad)."""
    try:
        yield
    except typer.Exit:
        raise
    except KeyboardInterrupt as exc:
        raise typer.Exit(stopped(exc)) from None
    except BrokenPipeError:
        raise typer.Exit(reader_gone(code)) from None
    except BusyError as exc:
        fail(str(exc), BUSY_EXIT)
    except ArgumentError as exc:  # (--gop 10, --split 0: a usage error, as click's own are)
        fail(str(exc), USAGE_EXIT)
    except expected_errors() as exc:
        fail(str(exc), code)
    except MemoryError:
        fail(OUT_OF_MEMORY + address_space_note(), code)
    except OSError as exc:
        if exc.errno in (errno.EMFILE, errno.ENFILE) and not env_flag("TOKCODEC_DEBUG"):
            fail(too_many_files(), code)
        if exc.errno not in _PLACE_ERRNOS or env_flag("TOKCODEC_DEBUG"):
            _unexpected(exc, code)
        # (a full disk or standard output, `>/dev/full`: what it says is all there is to say)
        fail(f"{exc.filename}: {exc.strerror}" if exc.filename else f"cannot write: {exc.strerror}", code)
    except RuntimeError as exc:
        if is_gpu_out_of_memory(exc) and not env_flag("TOKCODEC_DEBUG"):
            fail(GPU_OUT_OF_MEMORY, code)
        if "can't allocate memory" not in str(exc):  # (torch's CPU allocator: "DefaultCPUAllocator: ...")
            _unexpected(exc, code)
        fail(OUT_OF_MEMORY + address_space_note(), code)
    except Exception as exc:  # noqa: BLE001 - last resort: still one line unless debugging
        _unexpected(exc, code)
