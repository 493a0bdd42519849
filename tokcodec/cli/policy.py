"""The command line's one error and exit-code policy, for every command (bench and batch too).

Expected failures print one line, ``tokcodec: error: ...``, on stderr and exit 1; Ctrl-C exits
130; a reader that stops early (``| head``) exits 141 quietly; anything unexpected is still one
line unless TOKCODEC_DEBUG is set.
"""
from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import typer


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
    except KeyboardInterrupt:
        typer.echo("tokcodec: interrupted", err=True)
        raise typer.Exit(130)
    except BrokenPipeError:
        # whoever read our stdout stopped early (`tokcodec models | head`): a normal end for a
        # Unix tool, not an error; point stdout at /dev/null so the exit-time flush stays quiet
        with contextlib.suppress(OSError, ValueError):  # stdout may be replaced, e.g. in tests
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
        raise typer.Exit(141)
    except expected_errors() as exc:
        fail(str(exc), code)
    except MemoryError:
        fail("out of memory (try a smaller --gop or --scale, or --passes 0 when encoding)", code)
    except Exception as exc:  # noqa: BLE001 - last resort: still one line unless debugging
        if os.environ.get("TOKCODEC_DEBUG"):
            raise
        fail(f"unexpected {type(exc).__name__}: {exc} (set TOKCODEC_DEBUG=1 for a traceback)", code)
