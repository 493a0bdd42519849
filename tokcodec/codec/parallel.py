"""Entropy coding of GOPs in worker threads, beside the network and in order.

Each GOP's payload codes and decodes on its own, and the coders' numba kernels release the GIL
(``nogil=True``), so threads run them truly in parallel. :func:`ordered_map` runs a function over
a stream of GOPs in a small thread pool while the caller works on earlier results (the network
runs in the calling thread): results come back in input order, so the bytes written and the
frames decoded are exactly those of a sequential run; only the waiting changes. Coder 4's
linked GOPs decode only after the GOP before them (:func:`linked_map`): a run of linked GOPs
then decodes one after the other. A waiting item holds its worker thread, so with a few threads
the runs of successive key GOPs barely overlap: on a CPU this stays hidden behind the network
(some 6 ms of token decoding against 300 ms of network per 640x360 GOP on 2 cores).
"""
from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

_END = object()


def coder_threads() -> int:
    """Threads for entropy coding: TOKCODEC_CODER_THREADS, else one per core up to 8."""
    env = os.environ.get("TOKCODEC_CODER_THREADS", "").strip()
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            raise ValueError(f"TOKCODEC_CODER_THREADS={env!r} is not a number of threads") from None
    return max(1, min(8, os.cpu_count() or 1))


def ordered_map(fn: Callable[[T], R], items: Iterable[T], threads: int | None = None,
                ahead: int | None = None) -> Iterator[R]:
    """``fn`` over ``items`` in ``threads`` worker threads, yielded in input order, with at most
    ``ahead`` (default 2 x threads) results in flight. The first item runs in the calling thread,
    so lazily built state (JIT-compiled kernels, loaded priors) exists before the threads start.
    An exception of ``fn`` is raised when its item's turn comes; ``items`` is consumed in the
    calling thread, and only as far as needed."""
    threads = coder_threads() if threads is None else max(1, threads)
    it = iter(items)
    first = next(it, _END)
    if first is _END:
        return
    yield fn(first)  # type: ignore[arg-type]
    if threads == 1:
        for item in it:
            yield fn(item)
        return
    ahead = max(1, ahead or 2 * threads)
    pool = ThreadPoolExecutor(threads, thread_name_prefix="tokcodec-coder")
    pending: deque[Future[R]] = deque()
    try:
        for item in it:
            pending.append(pool.submit(fn, item))
            if len(pending) >= ahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:  # also when the consumer stops early or fails: drop what has not started
        pool.shutdown(wait=True, cancel_futures=True)


def linked_map(fn: Callable[[T, Callable[[], R | None]], R], items: Iterable[T], threads: int | None = None,
               ahead: int | None = None) -> Iterator[R]:
    """:func:`ordered_map` of ``fn(item, previous)``, where ``previous()`` waits for and returns
    the result of the item before (None for the first item; it raises what that item raised).
    Items are handed to the pool in order and each waits only on one handed out before it, so a
    chain of waits always ends at an item that is running: no deadlock, whatever the threads."""
    def paired() -> Iterator[tuple[T, Future | None, Future]]:
        before: Future | None = None
        for item in items:
            mine: Future = Future()
            yield item, before, mine
            before = mine

    def run(job: tuple[T, Future | None, Future]) -> R:
        item, before, mine = job
        try:
            result = fn(item, before.result if before is not None else (lambda: None))
        except BaseException as exc:
            mine.set_exception(exc)
            raise
        mine.set_result(result)
        return result

    yield from ordered_map(run, paired(), threads, ahead)
