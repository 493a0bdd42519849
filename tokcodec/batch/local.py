"""Local engine: N worker processes (spawned: torch and fork do not mix), each loading the model
once and getting cores // N torch threads; with CUDA each worker is pinned to one GPU.

Each worker has its own task queue, reports on its own pipe and holds one job at a time, so the
driver always knows which file a worker was on: a worker that dies (segfault, OOM kill) fails that
file only and is replaced. (A queue shared by all workers would not survive that: a worker killed
while writing to it leaves its cross-process lock held or a message cut in half.)
Workers ignore SIGINT (the driver decides), turn SIGTERM into KeyboardInterrupt so the pipeline
removes its temporary output, and die with the driver (PR_SET_PDEATHSIG) if it is killed -9.
"""
from __future__ import annotations

import multiprocessing as mp
import multiprocessing.connection as mpc
import os
import pickle
import signal
import sys
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from tokcodec.batch.plan import Job
from tokcodec.batch.work import BatchOptions, FileResult
from tokcodec.codec.memory import available_bytes
from tokcodec.cpus import usable_cpus
from tokcodec.errors import TokcodecError

# Measured by bench/batch_workers.py on this 2-core machine (README "Batch"): one single-threaded
# worker per core is a little faster than one worker using both cores (640x360, small model, idle
# machine: encode 23.7 vs 22.7 frames/s, decode 18.3 vs 17.5; 28-31 vs 21-22 under load), since
# reading, entropy coding and muxing run on one thread and two workers overlap them.
CORES_PER_WORKER = 1
# Peak RSS of one worker coding 1080p with the small model (640x360: 0.6 GB); the default worker
# count is capped so that many-core machines do not run out of memory.
WORKER_MEMORY = 2.5e9
MAX_RESTARTS = 3


class Events(Protocol):
    def started(self, job: Job, total_frames: int) -> None: ...
    def advanced(self, job: Job, frames: int) -> None: ...
    def finished(self, job: Job, result: FileResult) -> None: ...


def cpu_count() -> int:
    """The cores the workers share: those this process may use (its affinity and CPU quota)."""
    return usable_cpus()


def gpu_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def uses_cuda(device: str) -> bool:
    if device.startswith("cuda"):
        return True
    return device == "auto" and gpu_count() > 0


def available_memory() -> float | None:
    """Free RAM (no swap: workers that swap crawl), within a container's cgroup limit."""
    ram = available_bytes(swap=False)
    if ram is not None:
        return float(ram)
    try:
        return float(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def cpu_workers(cpus: int, memory: float | None) -> int:
    """One worker per CORES_PER_WORKER cores, as many as the memory holds."""
    n = max(1, cpus // CORES_PER_WORKER)
    if memory:
        n = min(n, max(1, int(memory // WORKER_MEMORY)))
    return n


def default_workers(device: str) -> int:
    """One worker per GPU with CUDA (one for an explicit cuda:N), else one per core (capped by
    the available memory)."""
    if device.startswith("cuda:"):
        return 1
    if uses_cuda(device):
        return max(1, gpu_count())
    return cpu_workers(cpu_count(), available_memory())


def _die_with_parent() -> None:
    if sys.platform != "linux":
        return
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _worker_main(wid: int, options: BatchOptions, device: str, threads: int,
                 tasks: Any, results: Any) -> None:
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _interrupt)
    parent = mp.parent_process()
    try:
        from tokcodec.batch.work import Worker, one_line

        try:
            worker = Worker(options, device=device, threads=threads)
        except Exception as exc:  # noqa: BLE001 - reported to the driver, which stops the run
            results.send(("init_error", wid, one_line(exc)))
            return
        results.send(("ready", wid, os.getpid()))
        while True:
            if not tasks.poll(1.0):
                if parent is not None and not parent.is_alive():
                    return
                continue
            try:
                task = tasks.recv()
            except EOFError:  # the driver is gone
                return
            if task is None:
                return
            idx, src, dst, overwrite = task
            res = worker.run(src, dst, overwrite,
                             started=lambda n, i=idx: results.send(("start", wid, i, n)),
                             progress=lambda n, i=idx: results.send(("progress", wid, i, n)))
            results.send(("result", wid, idx, res))
    except KeyboardInterrupt:
        return


def _send_stop(slot: _Slot) -> None:
    """Tell a worker to finish (it may have died already: its pipe is then broken)."""
    try:
        slot.tasks.send(None)
    except OSError:
        pass


def worker_threads(workers: int) -> int:
    """Torch threads a CPU worker gets: its share of the cores, or fewer where OMP_NUM_THREADS
    asks for fewer (a busy machine; a cluster job's count of all its cores is no more than the
    share)."""
    share = max(1, cpu_count() // workers)
    asked = os.environ.get("OMP_NUM_THREADS", "")
    return min(int(asked), share) if asked.isdigit() and int(asked) > 0 else share


@dataclass
class _Slot:
    wid: int
    process: Any
    tasks: Any                  # write end of this worker's task pipe
    results: Any                # read end of this worker's result pipe
    device: str
    job: Job | None = None
    pid: int | None = None
    stopping: bool = False
    unsent: bool = False        # its job could not be sent (it had died): give the job to another


@dataclass
class LocalPool:
    options: BatchOptions
    workers: int
    events: Events
    ctx: Any = field(default_factory=lambda: mp.get_context("spawn"))
    pids: set[int] = field(default_factory=set)  # every worker pid, for temp-file cleanup

    def run(self, jobs: Sequence[Job]) -> None:
        if not jobs:
            return
        n = max(1, min(self.workers, len(jobs)))
        cuda = uses_cuda(self.options.device)
        gpus = gpu_count() if cuda else 0
        threads = 1 if cuda else worker_threads(n)
        self._slots: list[_Slot] = []
        self._threads = threads
        pending = deque(jobs)
        by_index = {j.index: j for j in jobs}
        restarts = 0
        try:
            pinned = self.options.device if self.options.device.startswith("cuda:") else None
            for wid in range(n):
                device = pinned or (f"cuda:{wid % gpus}" if cuda else "cpu")
                self._slots.append(self._start(wid, device))
                self._dispatch(self._slots[-1], pending)
            checked = time.monotonic()
            while any(s.job is not None for s in self._slots):
                msg = self._next_message()
                if time.monotonic() - checked >= 0.5:  # even while others keep reporting
                    checked = time.monotonic()
                    restarts += self._replace_dead(pending)
                    if restarts > MAX_RESTARTS + len(self._slots):
                        raise TokcodecError("batch workers keep dying; giving up")
                if msg is None:
                    continue
                kind, wid, *rest = msg
                slot = self._slots[wid]
                if kind == "init_error":
                    raise TokcodecError(f"batch worker could not start: {rest[0]}")
                if kind == "ready":
                    slot.pid = rest[0]
                    self.pids.add(rest[0])
                elif kind == "start" and slot.job is not None:
                    self.events.started(by_index[rest[0]], rest[1])
                elif kind == "progress":
                    self.events.advanced(by_index[rest[0]], rest[1])
                elif kind == "result" and slot.job is not None and slot.job.index == rest[0]:
                    job = slot.job  # (a late result of a replaced worker is dropped above)
                    slot.job = None
                    self.events.finished(job, rest[1])
                    self._dispatch(slot, pending)
        except BaseException:
            self._record_finished(by_index)
            self._stop(graceful=False)
            raise
        self._stop(graceful=True)

    def _record_finished(self, by_index: dict[int, Job]) -> None:
        """On the way out (Ctrl-C, error): record the results workers already sent, so the
        manifest lists every file that was completed."""
        for slot in self._slots:
            try:
                while not slot.results.closed and slot.results.poll(0):
                    kind, _, *rest = slot.results.recv()
                    if kind == "result" and slot.job is not None and slot.job.index == rest[0]:
                        slot.job = None
                        self.events.finished(by_index[rest[0]], rest[1])
            except (EOFError, OSError, ValueError, pickle.UnpicklingError):
                continue

    def _next_message(self) -> tuple | None:
        """One message from any worker (None after 0.5 s of quiet). A pipe whose worker died
        mid-message is left alone: the dead worker is then replaced by _replace_dead."""
        readers = [s.results for s in self._slots if not s.results.closed]
        if not readers:
            time.sleep(0.05)
            return None
        for conn in mpc.wait(readers, timeout=0.5):
            try:
                return conn.recv()
            except (EOFError, OSError, ValueError, pickle.UnpicklingError):
                conn.close()  # the worker is gone (or wrote half a message before dying)
        return None

    def _replace_dead(self, pending: deque[Job]) -> int:
        """Fail the file of each worker that died mid-job (segfault, OOM kill) and replace it."""
        replaced = 0
        for i, slot in enumerate(self._slots):
            if slot.process.is_alive() or (slot.job is None and not slot.results.closed):
                continue
            if slot.job is None:  # died between jobs: its pipe is closed; nothing was lost
                slot.results.close()
                continue
            job, slot.job = slot.job, None
            code = slot.process.exitcode
            why = f"signal {-code}" if code and code < 0 else f"exit code {code}"
            if code == -getattr(signal, "SIGKILL", 9):  # (no signal.SIGKILL on Windows)
                why += ", out of memory?"
            if slot.unsent:  # the job never reached it: not its failure
                pending.appendleft(job)
            else:
                self.events.finished(job, FileResult(str(job.input), str(job.output), "failed",
                                                     error=f"worker process died ({why})"))
            self._slots[i] = self._start(slot.wid, slot.device)
            self._dispatch(self._slots[i], pending)
            replaced += 1
        return replaced

    def _start(self, wid: int, device: str) -> _Slot:
        # pipes, not a multiprocessing.Queue: a Queue's named semaphore made Python's resource
        # tracker warn of a "leaked semaphore" at the end of many runs
        task_reader, tasks = self.ctx.Pipe(duplex=False)
        reader, writer = self.ctx.Pipe(duplex=False)
        proc = self.ctx.Process(target=_worker_main, name=f"tokcodec-batch-{wid}", daemon=True,
                                args=(wid, self.options, device, self._threads, task_reader, writer))
        # start the child with SIGINT ignored (Python keeps an inherited SIG_IGN), so a Ctrl-C
        # while it is still importing torch does not print a traceback from it
        try:
            previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        except ValueError:  # not the main thread
            previous = None
        try:
            proc.start()
        finally:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)
        writer.close()  # the child holds its own copy; EOF on the reader then means it is gone
        task_reader.close()
        self.pids.add(proc.pid)
        return _Slot(wid, proc, tasks, reader, device, pid=proc.pid)

    def _dispatch(self, slot: _Slot, pending: deque[Job]) -> None:
        if pending:
            job = pending.popleft()
            slot.job = job
            try:
                slot.tasks.send((job.index, str(job.input), str(job.output), job.overwrite))
            except OSError:  # it died between jobs: _replace_dead hands the job to its successor
                slot.unsent = True
        elif not slot.stopping:
            slot.stopping = True
            _send_stop(slot)

    def _stop(self, graceful: bool) -> None:
        slots = getattr(self, "_slots", [])
        for slot in slots:
            if not graceful and slot.process.is_alive():
                slot.process.terminate()  # SIGTERM -> KeyboardInterrupt -> temp output removed
            elif not slot.stopping:
                _send_stop(slot)
        for slot in slots:
            slot.process.join(timeout=10 if not graceful else 30)
            if slot.process.is_alive():
                slot.process.kill()
                slot.process.join(timeout=5)
        for slot in slots:
            slot.tasks.close()
            slot.results.close()
