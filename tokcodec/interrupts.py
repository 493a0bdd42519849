"""SIGTERM as an exception, ``Terminated`` (a KeyboardInterrupt), so that ``kill``, ``timeout``,
systemd and Kubernetes stop a command as Ctrl-C does: the ``finally`` blocks of its outputs
remove their temporary files. SIGTERM's default, dying at once, left them behind. The command
line takes SIGHUP (a closed terminal, a dropped ssh session) the same way, unless it is ignored
(``nohup``): a live capture's copy (``encode --spool``) was left in $TMPDIR, whole."""
from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from tokcodec.errors import Terminated


def raise_terminated(signum: int, frame: object) -> None:
    """The SIGTERM (and SIGHUP) handler: raise ``Terminated`` once; a second such signal while the
    first is being cleaned up after is ignored, so that it cannot cut the clean-up short."""
    signal.signal(signum, signal.SIG_IGN)
    raise Terminated(signum)


def terminate_as_interrupt() -> None:
    """From now on SIGTERM, and SIGHUP where it is not ignored (``nohup``), raise ``Terminated``
    in the main thread (the CLI's whole run)."""
    with contextlib.suppress(ValueError):  # (not the main thread: signals stay as they are)
        signal.signal(signal.SIGTERM, raise_terminated)
        hangup = getattr(signal, "SIGHUP", None)  # (not on Windows)
        if hangup is not None and signal.getsignal(hangup) is not signal.SIG_IGN:
            signal.signal(hangup, raise_terminated)


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM raises ``Terminated`` within the block, and the handler there was is back after it
    (a batch run called from a program of one's own); outside the main thread, nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
