"""Ray engine: the same jobs on a Ray cluster. One actor per worker loads the model once; inputs
and outputs are paths on a filesystem every node shares. The driver keeps the lock, the skip
decisions and the manifest, so the local rules (atomic outputs, skips, manifest) hold unchanged.
Ray is an optional extra (`pip install 'tokcodec[ray]'`) and imported only here.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tokcodec.batch.local import Events
from tokcodec.batch.plan import Job
from tokcodec.batch.work import BatchOptions, FileResult
from tokcodec.errors import TokcodecError

IN_FLIGHT_PER_ACTOR = 2   # one running, one queued, so an actor never waits for the driver
START_TIMEOUT = 300.0     # seconds for at least one actor to come up


def check_ray() -> None:
    """A clear error before any work when the extra is missing (without importing Ray yet)."""
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        raise TokcodecError("--engine ray needs Ray: pip install 'tokcodec[ray]'")


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise TokcodecError("--engine ray needs Ray: pip install 'tokcodec[ray]'") from None
    return ray


class RayWorker:
    """The actor body (wrapped with ray.remote at run time, so importing this module needs no Ray)."""

    def __init__(self, options: BatchOptions, device: str, threads: int) -> None:
        import os

        from tokcodec.batch.work import Worker

        self.pid = os.getpid()
        self.worker = Worker(options, device=device, threads=threads)

    def ready(self) -> int:
        return self.pid

    def run(self, src: str, dst: str, overwrite: bool) -> FileResult:
        return self.worker.run(src, dst, overwrite)


@dataclass
class RayPool:
    options: BatchOptions
    workers: int | None
    events: Events
    address: str | None = None
    pids: set[int] = field(default_factory=set)
    size: int = 0   # actors started

    def run(self, jobs: Sequence[Job]) -> None:
        if not jobs:
            return
        ray = import_ray()
        started_here = not ray.is_initialized()
        if started_here:
            try:
                ray.init(address=self.address, include_dashboard=False, log_to_driver=False,
                         logging_level=logging.ERROR, configure_logging=True)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                where = self.address or "a new local instance"
                raise TokcodecError(f"cannot start Ray ({where}): {str(exc).splitlines()[0]}") from None
        actors: list[Any] = []
        try:
            self._run(ray, jobs, actors)
        finally:
            for actor in actors:
                ray.kill(actor)
            if started_here:
                ray.shutdown()

    def _sizes(self, ray: Any) -> tuple[int, int, int, bool]:
        """(actors, torch threads per actor, CPUs to reserve per actor, use GPUs)."""
        res = ray.cluster_resources()
        cpus, gpus = int(res.get("CPU", 1)), int(res.get("GPU", 0))
        dev = self.options.device
        use_gpu = dev.startswith("cuda") or (dev == "auto" and gpus > 0)
        if use_gpu:
            if not gpus:
                raise TokcodecError(f"--device {dev}: the Ray cluster has no GPUs")
            return self.workers or gpus, 1, 1, True
        from tokcodec.batch.local import cpu_workers

        n = self.workers or cpu_workers(cpus, res.get("memory"))
        node_cpus = [int(nd["Resources"].get("CPU", 0)) for nd in ray.nodes() if nd.get("Alive")]
        threads = max(1, min(cpus // n, min(node_cpus) if node_cpus else 1))
        return n, threads, threads, False

    def _run(self, ray: Any, jobs: Sequence[Job], actors: list[Any]) -> None:
        n, threads, reserve, use_gpu = self._sizes(ray)
        n = self.size = min(n, len(jobs))
        actor_cls = ray.remote(num_cpus=reserve, num_gpus=1 if use_gpu else 0,
                               max_restarts=0)(RayWorker)
        device = "cuda" if use_gpu else "cpu"

        def spawn() -> Any:
            actor = actor_cls.remote(self.options, device, threads)
            actors.append(actor)
            return actor

        pending = list(reversed(jobs))
        starting: dict[Any, Any] = {}
        for _ in range(n):
            actor = spawn()
            starting[actor.ready.remote()] = actor
        ready: list[Any] = []
        running: dict[Any, tuple[Any, Job]] = {}
        first_deadline = time.monotonic() + START_TIMEOUT
        lost = 0

        def feed(actor: Any) -> None:
            while pending and sum(1 for a, _ in running.values() if a is actor) < IN_FLIGHT_PER_ACTOR:
                job = pending.pop()
                ref = actor.run.remote(str(job.input), str(job.output), job.overwrite)
                running[ref] = (actor, job)

        while pending or running:
            refs = list(starting) + list(running)
            if not refs:
                raise TokcodecError("no Ray worker left to run the remaining files")
            done, _ = ray.wait(refs, num_returns=1, timeout=1.0)
            if not done:
                if not ready and time.monotonic() > first_deadline:
                    raise TokcodecError(f"no Ray worker started within {START_TIMEOUT:.0f} s "
                                        "(does the cluster have free CPUs/GPUs?)")
                continue
            ref = done[0]
            if ref in starting:
                actor = starting.pop(ref)
                try:
                    self.pids.add(ray.get(ref))
                except ray.exceptions.RayError as exc:
                    raise TokcodecError(f"batch worker could not start: {_reason(exc)}") from None
                ready.append(actor)
                feed(actor)
                continue
            actor, job = running.pop(ref)
            try:
                result = ray.get(ref)
            except ray.exceptions.RayError as exc:
                result = FileResult(str(job.input), str(job.output), "failed",
                                    error=f"Ray worker lost: {_reason(exc)}")
                if actor in ready:
                    ready.remove(actor)
                    lost += 1
                    if lost <= len(jobs):
                        new = spawn()
                        starting[new.ready.remote()] = new
            self.events.finished(job, result)
            if actor in ready:
                feed(actor)


def _reason(exc: BaseException) -> str:
    cause = getattr(exc, "cause", None)
    if cause is not None:
        from tokcodec.batch.work import one_line

        return one_line(cause)
    text = str(exc).strip().splitlines()
    return text[-1] if text else type(exc).__name__
