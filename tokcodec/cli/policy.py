"""The command line's one error and exit-code policy, for every command (bench and batch too).

Expected failures print one line, ``tokcodec: error: ...``, on stderr and exit 1 (75, EX_TEMPFAIL,
where another run holds what this one needs: a batch run's folder); Ctrl-C exits 130, SIGTERM 143
(``stopped``, after the same clean-up: tokcodec.interrupts); a reader that stops early (``| head``)
exits 141 quietly; anything unexpected is still one line unless TOKCODEC_DEBUG is set.
"""
from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import typer

from tokcodec.errors import BusyError, Terminated


def stopped(exc: KeyboardInterrupt) -> int:
    """Say why the command stopped (Ctrl-C or SIGTERM); its exit status, as a shell gives it."""
    terminated = isinstance(exc, Terminated)
    typer.echo(f"tokcodec: {'terminated' if terminated else 'interrupted'}", err=True)
    return 143 if terminated else 130


#: exit status where another run holds what a command needs (sysexits.h EX_TEMPFAIL: try again later)
BUSY_EXIT = 75
OUT_OF_MEMORY = "out of memory (try a smaller --gop or --scale, or --passes 0 when encoding)"


def address_space_note() -> str:
    """Where this process's address space is limited (``ulimit -v``, RLIMIT_AS; schedulers such
    as SGE's h_vmem set it), words that say so: an allocation then fails however much memory is
    free, which the memory checks made before encoding and decoding cannot foresee."""
    try:
        import resource
    except ImportError:  # (not Unix)
        return ""
    limit = resource.getrlimit(resource.RLIMIT_AS)[0]
    if limit == resource.RLIM_INFINITY:
        return ""
    return f"; this process may use at most {limit / 2**30:.1f} GB of address space (ulimit -v)"


def _unexpected(exc: Exception, code: int) -> None:
    if os.environ.get("TOKCODEC_DEBUG"):
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
        # whoever read our stdout stopped early (`tokcodec models | head`): a normal end for a
        # Unix tool, not an error; point stdout at /dev/null so the exit-time flush stays quiet
        with contextlib.suppress(OSError, ValueError):  # stdout may be replaced, e.g. in tests
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
        raise typer.Exit(141)
    except BusyError as exc:
        fail(str(exc), BUSY_EXIT)
    except expected_errors() as exc:
        fail(str(exc), code)
    except MemoryError:
        fail(OUT_OF_MEMORY + address_space_note(), code)
    except RuntimeError as exc:
        if "can't allocate memory" not in str(exc):  # (torch's CPU allocator: "DefaultCPUAllocator: ...")
            _unexpected(exc, code)
        fail(OUT_OF_MEMORY + address_space_note(), code)
    except Exception as exc:  # noqa: BLE001 - last resort: still one line unless debugging
        _unexpected(exc, code)
