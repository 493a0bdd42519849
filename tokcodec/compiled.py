"""numba's ``njit`` for the entropy coders' kernels, cached on disk wherever a cache can be kept.

numba keeps compiled kernels beside their module (``__pycache__``), else in ``~/.cache/numba``
(or ``NUMBA_CACHE_DIR``). Where neither is writable (a read-only, shared install run by a user
without a writable home: a container, a service account) ``njit(cache=True)`` raises at import
("no locator available"), and encode and decode failed with it. There the kernels are cached in a
directory of this user's own under the temp directory, and where even that cannot be had, they
are compiled in memory (about 3 s, once per process).

Importing this module imports numba: callers that run without it catch the ImportError.
"""
from __future__ import annotations

import os
import stat
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from numba import config, njit

F = TypeVar("F", bound=Callable)
_CACHE_DIR_LOCK = threading.Lock()  # numba.config.CACHE_DIR is process-wide: set it one kernel at a time


def cached_njit(fn: F) -> F:
    """``njit(cache=True, nogil=True)(fn)``, with the fallbacks above."""
    try:
        return njit(cache=True, nogil=True)(fn)
    except RuntimeError:  # "cannot cache function ...: no locator available for file ..."
        pass
    private = private_cache_dir()
    if private is not None:
        with _CACHE_DIR_LOCK:
            saved = config.CACHE_DIR
            config.CACHE_DIR = str(private)  # read as the kernel is decorated: set for this one only
            try:
                return njit(cache=True, nogil=True)(fn)
            except RuntimeError:
                pass
            finally:
                config.CACHE_DIR = saved
    return njit(nogil=True)(fn)


def private_cache_dir() -> Path | None:
    """``<temp dir>/tokcodec-numba-<uid>``, made for this user alone; None where it cannot be
    made or is not safely this user's (another owner, or others may write in it). numba's cache
    index is a pickle: a directory someone else can write to would let them run code here."""
    uid = os.getuid() if hasattr(os, "getuid") else None
    path = Path(tempfile.gettempdir()) / f"tokcodec-numba-{uid if uid is not None else 'user'}"
    try:
        path.mkdir(mode=0o700, exist_ok=True)
        st = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISDIR(st.st_mode):
        return None
    if uid is not None and (st.st_uid != uid or st.st_mode & 0o022):
        return None
    return path
