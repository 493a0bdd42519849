"""Entropy coding of GOPs in worker threads, beside the network and in order.

Each GOP's payload codes and decodes on its own, and the coders' numba kernels release the GIL
(``nogil=True``), so threads run them truly in parallel. :func:`ordered_map` runs a function over
a stream of GOPs in a small thread pool while the caller works on earlier results (the network
runs in the calling thread): results come back in input order, so the bytes written and the
frames decoded are exactly those of a sequential run; only the waiting changes. Coder 4's
linked GOPs decode only after the GOP before them (:func:`linked_map`): a run of linked GOPs
decodes one after the other, but a linked GOP is handed to a worker only once the GOP before it
is done, so no worker sits waiting and the runs that start at successive key GOPs decode side by
side.
"""
from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from tokcodec.cpus import usable_cpus
from tokcodec.errors import ArgumentError

T = TypeVar("T")
R = TypeVar("R")

_END = object()


def coder_threads() -> int:
    """Threads for entropy coding: TOKCODEC_CODER_THREADS, else one per usable core (cpus.py) up to 8."""
    env = os.environ.get("TOKCODEC_CODER_THREADS", "").strip()
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            raise ArgumentError(f"TOKCODEC_CODER_THREADS={env!r} is not a number of threads") from None
    return min(8, usable_cpus())


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
    pool = ThreadPoolExecutor(threads, thread_name_prefix="tokcodec-coder")
    yield from _in_order((pool.submit(fn, item) for item in it), pool, max(1, ahead or 2 * threads))


def linked_map(fn: Callable[[T, Callable[[], R | None]], R], items: Iterable[T],
               needs_previous: Callable[[T], bool] | None = None, threads: int | None = None,
               ahead: int | None = None) -> Iterator[R]:
    """:func:`ordered_map` of ``fn(item, previous)``, where ``previous()`` returns the result of
    the item before (None for the first item; it raises what that item raised). An item for which
    ``needs_previous(item)`` is true (every item when it is None) is handed to a worker only once
    the item before it is done, so no worker waits: the runs that begin at independent items
    (coder 4's key GOPs) decode side by side, up to ``ahead`` items (default 8 x threads) beyond
    the consumer. An independent item must not call ``previous()`` (it raises RuntimeError).
    ``needs_previous`` runs in the calling thread; where it raises, the item counts as
    independent (``fn`` then meets the same fault and raises or reports it)."""
    threads = coder_threads() if threads is None else max(1, threads)
    it = iter(items)
    first = next(it, _END)
    if first is _END:
        return
    first_result = fn(first, lambda: None)  # type: ignore[arg-type]  # in this thread: warm-up, as ordered_map
    yield first_result
    if threads == 1:
        last = first_result
        for item in it:
            last = fn(item, (lambda r=last: r) if _is_linked(item, needs_previous) else _independent)
            yield last
        return
    pool = ThreadPoolExecutor(threads, thread_name_prefix="tokcodec-coder")

    def schedule(item: T, before: Future) -> Future[R]:
        mine: Future[R] = Future()
        linked = _is_linked(item, needs_previous)
        previous = before.result if linked else _independent

        def run() -> None:
            try:
                result = fn(item, previous)
            except BaseException as exc:  # handed to the consumer with this item's result
                mine.set_exception(exc)
            else:
                mine.set_result(result)

        def submit(_: Future | None = None) -> None:
            try:
                pool.submit(run)
            except RuntimeError as exc:  # the pool shut down: the consumer has stopped
                mine.set_exception(exc)

        if linked:  # start once the item before is done (at once if it is)
            before.add_done_callback(submit)
        else:
            submit()
        return mine

    def scheduled() -> Iterator[Future[R]]:
        before: Future = Future()
        before.set_result(first_result)
        for item in it:
            before = schedule(item, before)
            yield before

    yield from _in_order(scheduled(), pool, max(1, ahead or 8 * threads))


def _in_order(futures: Iterator[Future[R]], pool: ThreadPoolExecutor, ahead: int) -> Iterator[R]:
    """The results of ``futures`` (each submitted to ``pool`` as it is drawn), in order, with at
    most ``ahead`` drawn beyond the one yielded; the pool is shut down at the end, also when the
    consumer stops early or fails (what has not started is dropped)."""
    pending: deque[Future[R]] = deque()
    try:
        for future in futures:
            pending.append(future)
            if len(pending) >= ahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _is_linked(item: T, needs_previous: Callable[[T], bool] | None) -> bool:
    try:
        return needs_previous is None or bool(needs_previous(item))
    except Exception:  # fn meets the same fault
        return False


def _independent() -> None:
    raise RuntimeError("linked_map: an item declared independent asked for the one before")
