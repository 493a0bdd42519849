"""A batch run from start to end: lock DST, clear a killed run's temporary files, plan, record
skips, run the engine, write the manifest as files finish, and summarise."""
from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

from tokcodec.batch.manifest import DirLock, Manifest, done_records
from tokcodec.batch.plan import (
    DECODE_TARGETS,
    LOCK_NAME,
    MANIFEST_NAME,
    Job,
    Plan,
    make_plan,
    remove_stale_parts,
)
from tokcodec.batch.progress import Reporter, reporter_line
from tokcodec.batch.work import BatchOptions, FileResult
from tokcodec.codec.ranges import seconds
from tokcodec.codec.ratecontrol import check_target
from tokcodec.defaults import (DEFAULT_KEY_INTERVAL, DEFAULT_PASSES, DEFAULT_SCENECUT, DEFAULT_TOKEN_SCENECUT,
                               MAX_KEY_INTERVAL, MAX_PASSES, MAX_RDO, MAX_SHARPEN, check_deinterlace, check_gop,
                               check_scale, check_scenecut)
from tokcodec.errors import ArgumentError, InputError, ModelError, OutputError, Terminated
from tokcodec.interrupts import sigterm_as_interrupt
from tokcodec.text import plural

if TYPE_CHECKING:
    from tokcodec.audio_choice import AudioChoice
    from tokcodec.batch.local import LocalPool
    from tokcodec.batch.ray_engine import RayPool
    from tokcodec.model.zoo import ModelName


@dataclass
class BatchSummary:
    op: str
    src: str
    dst: str
    manifest: str
    workers: int
    engine: str
    results: list[FileResult] = field(default_factory=list)
    seconds: float = 0.0
    interrupted: bool = False
    warnings: list[str] = field(default_factory=list)  # about the whole run, said once (not per file)

    def _count(self, status: str) -> int:
        return sum(r.status == status for r in self.results)

    @property
    def done(self) -> int:
        return self._count("done")

    @property
    def skipped(self) -> int:
        return self._count("skipped")

    @property
    def failed(self) -> int:
        return self._count("failed")

    @property
    def failures(self) -> list[FileResult]:
        return [r for r in self.results if r.status == "failed"]

    @property
    def frames(self) -> int:
        """Frames coded by this run (skipped files not counted)."""
        return sum(r.frames for r in self.results if r.status == "done")

    @property
    def bytes(self) -> int:
        return sum(r.bytes for r in self.results if r.status == "done")

    @property
    def lost_frames(self) -> int:
        """Frames that --salvage filled in this run's outputs (damage in their files)."""
        return sum(r.lost_frames or 0 for r in self.results if r.status == "done")

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    @property
    def ok(self) -> bool:
        return self.failed == 0 and not self.interrupted

    def to_dict(self) -> dict:
        """JSON-ready: the run, its counts and each file's record (as the manifest writes it)."""
        return {"op": self.op, "src": self.src, "dst": self.dst, "manifest": self.manifest, "workers": self.workers,
                "engine": self.engine, "seconds": round(self.seconds, 3), "interrupted": self.interrupted,
                "done": self.done, "skipped": self.skipped, "failed": self.failed, "frames": self.frames,
                "bytes": self.bytes, "lost_frames": self.lost_frames, "fps": self.fps, "ok": self.ok,
                "warnings": list(self.warnings),
                "results": [r.record() for r in self.results]}

    def line(self) -> str:
        mb = self.bytes / 1e6
        lost = f" ({self.lost_frames} LOST, filled)" if self.lost_frames else ""
        return (f"batch {self.op}: {self.done} done, {self.skipped} skipped, {self.failed} failed, "
                f"{plural(self.frames, 'frame')}{lost}, {mb:.{1 if mb >= 1 or mb == 0 else 3}f} MB, {self.fps:.1f} fps")


class BatchInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) during a run; workers were stopped and their temporary files removed.
    ``signum``: the signal that stopped it (a shell's exit status for it is 128 + signum)."""

    def __init__(self, summary: BatchSummary, signum: int = signal.SIGINT) -> None:
        super().__init__("interrupted")
        self.summary = summary
        self.signum = int(signum)


def validate_options(options: BatchOptions) -> None:
    """Catch bad options once, up front, instead of as a failure on every file."""
    from tokcodec.device import select_runtime
    from tokcodec.model.presets import get_preset
    from tokcodec.model.presets import resolve_name

    select_runtime(options.device, options.precision)
    if options.model:
        from tokcodec.model.zoo import is_weights_file, weights_exist

        path = Path(options.model)
        if is_weights_file(options.model):
            if not weights_exist(path):  # (shipped weights may be kept as a delta)
                raise ModelError(f"{path}: weights file not found")
        else:
            cfg = get_preset(resolve_name(options.model))
            if options.op != "decode" and options.gop is not None:
                check_gop(options.gop, cfg.temporal_factor)
    if options.op != "decode":
        seconds(options.start)  # an ArgumentError unless a time
        if options.duration is not None and seconds(options.duration) <= 0:
            raise ArgumentError("-t: the duration must be more than 0 s")
        if options.max_frames is not None and options.max_frames < 1:
            raise ArgumentError(f"--frames must be at least 1, got {options.max_frames}")
    if options.split_bits is not None:
        from tokcodec.model.zoo import weights_config
        from tokcodec.tokens import check_split

        check_split(weights_config(options.model or "default").bits, options.split_bits)
    if options.op != "decode" and options.refine < 0:
        raise ArgumentError(f"--refine must be >= 0 steps, got {options.refine}")
    if options.op != "decode" and not 0 <= options.passes <= MAX_PASSES:
        raise ArgumentError(f"--passes must be in 0..{MAX_PASSES}, got {options.passes}")
    if options.op != "decode" and options.rdo is not None and not 0 <= options.rdo <= MAX_RDO:
        raise ArgumentError(f"--rdo must be in [0, {MAX_RDO}], got {options.rdo}")
    if options.op == "encode" and options.bpp is not None and options.bitrate is not None:
        raise ArgumentError("give the target rate as --bpp or as --bitrate, not both")
    if options.op == "encode" and (options.bpp is not None or options.bitrate is not None) \
            and options.rdo is not None:
        raise ArgumentError("--rdo and a target rate (--bpp, --bitrate) both set the token bits' trade-off: give one")
    if options.op == "encode" and options.bpp is not None:
        check_target(options.bpp)
    if options.op == "encode" and options.sharpen is not None and not 0 <= options.sharpen <= MAX_SHARPEN:
        raise ArgumentError(f"--sharpen must be in [0, {MAX_SHARPEN:g}], got {options.sharpen}")
    if options.op == "encode" and options.sharpen is not None and not (options.correction and options.detail):
        raise ArgumentError("--sharpen scales the correction's detail gains: it cannot be used with "
                         "--no-detail or --no-correction")
    if options.op != "decode":
        check_deinterlace(options.deinterlace)
        check_scenecut(options.scenecut)
    if options.op == "encode" and not 1 <= options.key_interval <= MAX_KEY_INTERVAL:
        raise ArgumentError(f"--key-interval must be in 1..{MAX_KEY_INTERVAL} GOPs, got {options.key_interval}")
    if options.op != "decode" and options.scale is not None:
        check_scale(options.scale)


class _Sink:
    """Engine events -> manifest line + reporter + summary."""

    def __init__(self, manifest: Manifest, reporter: Reporter, summary: BatchSummary, run_id: str) -> None:
        self.manifest, self.reporter, self.summary, self.run_id = manifest, reporter, summary, run_id

    def record(self, result: FileResult, sync: bool = True) -> None:
        stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self.manifest.write({"run": self.run_id, "time": stamp, "op": self.summary.op, **result.record()}, sync)
        self.summary.results.append(result)

    def started(self, job: Job, total_frames: int) -> None:
        self.reporter.started(job, total_frames)

    def advanced(self, job: Job, frames: int) -> None:
        self.reporter.advanced(job, frames)

    def finished(self, job: Job, result: FileResult) -> None:
        self.record(result)
        self.reporter.finished(job, result)


def _read_back(op: str, job: Job) -> dict:
    """Frames, bpp and model of a complete output with no manifest record (e.g. a moved DST)."""
    from tokcodec.codec.pipeline import open_tok

    if op == "tokens":
        from tokcodec.tokens import read_token_file
        try:
            tokens = read_token_file(job.output, header_only=True)
            return {"frames": sum(tokens.gop_frames or ()), "model": tokens.model}
        except Exception:  # noqa: BLE001 - only informative; a skip never fails
            return {}
    try:
        tok = job.output if op == "encode" else job.input
        with open_tok(tok) as reader:
            h, frames, video_bytes = reader.header, reader.frame_count, reader.video_bytes
        bpp = 8 * video_bytes / max(1, frames * h.width * h.height)
        return {"frames": frames, "bpp": bpp, "model": h.model_name}
    except Exception:  # noqa: BLE001 - only informative; a skip never fails
        return {}


def _skipped_result(op: str, job: Job, manifest: Manifest) -> FileResult:
    prev = manifest.previous.get(str(job.output)) or _read_back(op, job)
    try:
        size = job.output.stat().st_size
    except OSError:
        size = 0
    return FileResult(str(job.input), str(job.output), "skipped", int(prev.get("frames", 0)), size,
                      prev.get("bpp"), 0.0, model=prev.get("model"))


class NothingToDo(InputError):
    """SRC holds no file the operation takes (none, or none that --include/--exclude let through)."""


_WHAT = {"encode": "videos or images", "decode": ".tok files", "tokens": "videos, images or .tok files"}


def run_batch(op: str, src: str | Path, dst: str | Path, options: BatchOptions, *,
              include: Sequence[str] = (), exclude: Sequence[str] = (), to: str | None = None,
              force: bool = False, workers: int | None = None, engine: str = "local",
              address: str | None = None, reporter: Reporter | None = None) -> BatchSummary:
    if engine not in ("local", "ray"):
        raise ArgumentError(f"--engine must be local or ray, got {engine!r}")
    if workers is not None and workers < 1:
        raise ArgumentError(f"--workers must be at least 1, got {workers}")
    reporter = reporter or Reporter()
    src, dst = Path(os.path.abspath(src)), Path(os.path.abspath(dst))
    if not src.exists():
        raise InputError(f"{src}: no such file or directory")
    if to is not None and to.lower().lstrip(".") not in DECODE_TARGETS:
        raise ArgumentError(f"--to must be one of {', '.join(DECODE_TARGETS)}, got {to!r}")
    validate_options(options)
    notes: list[str] = []
    if op in ("encode", "tokens") and options.model:  # said once here, not on every file's line
        from tokcodec.codec.pipeline import prior_warnings_of, untrained_warning
        from tokcodec.model.presets import resolve_name
        from tokcodec.model.zoo import is_weights_file, weights_trained

        warnings, lacking = prior_warnings_of(options.model)
        asked = options.bpp is not None or options.bitrate is not None or bool(options.rdo)
        if asked and lacking:  # (refused by every file's encode: say it once, now)
            raise ModelError(f"--bpp, --bitrate and --rdo need a coder-3 prior for {options.model}: "
                             f"`tokcodec fit-prior {options.model}` fits one")
        if not weights_trained(options.model):
            name = Path(options.model).stem if is_weights_file(options.model) else resolve_name(options.model)
            warnings = [untrained_warning(name), *warnings]
        notes = warnings
    created = not dst.exists()
    try:
        dst.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{dst}: cannot create ({exc.strerror or exc})") from None
    try:
        return _run_locked(op, src, dst, options, reporter, to=to, include=include, exclude=exclude,
                           force=force, workers=workers, engine=engine, address=address, notes=notes)
    except NothingToDo:
        if created:  # leave no trace of a run that found nothing (a mistyped SRC or pattern)
            (dst / LOCK_NAME).unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                dst.rmdir()
        raise


def _run_locked(op: str, src: Path, dst: Path, options: BatchOptions, reporter: Reporter, *,
                to: str | None, include: Sequence[str], exclude: Sequence[str], force: bool,
                workers: int | None, engine: str, address: str | None, notes: list[str]) -> BatchSummary:
    if engine == "ray":
        from tokcodec.batch.ray_engine import check_ray

        check_ray()
    with DirLock(dst / LOCK_NAME):
        remove_stale_parts(dst)
        previous = done_records(dst / MANIFEST_NAME)
        plan: Plan = make_plan(op, src, dst, include=include, exclude=exclude, to=to, force=force,
                               made_from={out: rec.get("input") for out, rec in previous.items()},
                               sizes={out: rec["bytes"] for out, rec in previous.items()
                                      if isinstance(rec.get("bytes"), int) and rec["bytes"] > 0})
        left_out = plan.left_out_note()
        if not plan.total and not plan.errors:
            patterns = " matching --include/--exclude" if include or exclude else ""
            raise NothingToDo(f"{src}: no {_WHAT[op]}{patterns} found" + (f"; {left_out}" if left_out else ""))
        from tokcodec.batch.local import default_workers

        if left_out:
            notes = [*notes, left_out]
        n = workers or default_workers(options.device)
        summary = BatchSummary(op, str(src), str(dst), str(dst / MANIFEST_NAME), n, engine, warnings=notes)
        with Manifest(dst / MANIFEST_NAME, previous) as manifest:
            sink = _Sink(manifest, reporter, summary,
                         datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S-") + uuid.uuid4().hex[:6])
            for path, reason in plan.errors:  # e.g. an unreadable directory: reported, not fatal
                result = FileResult(path, "", "failed", error=reason)
                sink.record(result)
                reporter_line(reporter, plan, path, result)
            for job in plan.skipped:  # (informational: synced together)
                sink.record(_skipped_result(op, job, manifest), sync=False)
            manifest.sync()
            pool: LocalPool | RayPool
            if engine == "ray":
                from tokcodec.batch.ray_engine import RayPool

                pool = RayPool(options, workers, sink, address)
            else:
                from tokcodec.batch.local import LocalPool

                summary.workers = min(n, max(1, len(plan.todo)))
                pool = LocalPool(options, summary.workers, sink)
            reporter.begin(plan, summary.workers, engine)
            for note in notes:
                reporter.note(note)
            t0 = time.perf_counter()
            try:
                with sigterm_as_interrupt():  # `kill PID`: workers stopped, partial outputs removed
                    pool.run(plan.todo)
            except KeyboardInterrupt as exc:
                summary.interrupted = True
                raise BatchInterrupted(summary, signal.SIGTERM if isinstance(exc, Terminated)
                                       else signal.SIGINT) from None
            finally:
                summary.seconds = time.perf_counter() - t0
                summary.workers = getattr(pool, "size", 0) or summary.workers
                reporter.end()
                remove_stale_parts(dst, pool.pids)  # whatever our own workers left
    return summary


def batch_encode(src: str | Path, dst: str | Path, *, include: Sequence[str] = (),
                 exclude: Sequence[str] = (), model: ModelName = "default", gop: int | None = None,
                 scale: float | None = None, device: str = "auto", precision: str = "auto",
                 workers: int | None = None, engine: str = "local", address: str | None = None,
                 force: bool = False, audio: bool | AudioChoice = True, refine: int = 0,
                 passes: int = DEFAULT_PASSES, rdo: float | None = None, correction: bool = True, detail: bool = True,
                 sharpen: float | None = None, key_interval: int = DEFAULT_KEY_INTERVAL,
                 bpp: float | None = None, bitrate: float | None = None,
                 start: float | Fraction | str | None = None, duration: float | Fraction | str | None = None,
                 max_frames: int | None = None, deinterlace: str = "auto",
                 scenecut: float = DEFAULT_SCENECUT, metadata: bool = True,
                 reporter: Reporter | None = None) -> BatchSummary:
    """Encode every video/image under src into dst, mirroring the tree (`a/x.mp4` -> `a/x.mp4.tok`).

    Complete outputs newer than their input are skipped (force=True redoes them); failures are
    recorded per file in the summary and dst/manifest.jsonl, never raised (a src with nothing
    to encode raises NothingToDo, an InputError, and leaves no dst). ``bpp`` or
    ``bitrate`` set a target rate for each file (``encode_video``'s). ``start``, ``duration``
    and ``max_frames`` encode part of each video (images whole), ``deinterlace`` reads
    interlaced ones and ``scenecut`` starts GOPs at scene cuts, as ``encode_video``'s; ``audio``
    too (an ``AudioChoice``: how each file's audio is stored), and ``metadata`` (keep the tags
    and chapters).
    """
    opts = BatchOptions("encode", model, gop, scale, device, precision, audio=audio, refine=refine,
                        passes=passes, rdo=rdo, correction=correction, detail=detail,
                        sharpen=sharpen, key_interval=key_interval, bpp=bpp, bitrate=bitrate,
                        start=start, duration=duration, max_frames=max_frames, deinterlace=deinterlace,
                        scenecut=scenecut, metadata=metadata)
    return run_batch("encode", src, dst, opts, include=include, exclude=exclude, force=force,
                     workers=workers, engine=engine, address=address, reporter=reporter)


def batch_tokens(src: str | Path, dst: str | Path, *, include: Sequence[str] = (),
                 exclude: Sequence[str] = (), model: ModelName = "default", gop: int | None = None,
                 scale: float | None = None, passes: int = DEFAULT_PASSES, rdo: float | None = None,
                 refine: int = 0, device: str = "auto", precision: str = "auto", workers: int | None = None,
                 engine: str = "local", address: str | None = None, force: bool = False,
                 start: float | Fraction | str | None = None, duration: float | Fraction | str | None = None,
                 max_frames: int | None = None, split_bits: int | None = None, deinterlace: str = "auto",
                 scenecut: float = DEFAULT_TOKEN_SCENECUT, reporter: Reporter | None = None) -> BatchSummary:
    """Token files for language models of every video/image and .tok under src
    (`a/x.mp4` -> `a/x.mp4.safetensors`, as `tokcodec tokens` writes them: videos tokenized as
    tokens alone, ``encode_video(correction=False)``, with these options, of the part ``start``,
    ``duration`` and ``max_frames`` ask for; .tok files' tokens as they are; ``split_bits``: each
    token as sub-tokens of that many bits, as `tokens --split`; ``deinterlace`` and ``scenecut``
    as ``tokenize``'s: GOPs of one length unless ``scenecut`` is given)."""
    opts = BatchOptions("tokens", model, gop, scale, device, precision, audio=False, refine=refine,
                        passes=passes, rdo=rdo, correction=False, start=start, duration=duration,
                        max_frames=max_frames, split_bits=split_bits, deinterlace=deinterlace, scenecut=scenecut)
    return run_batch("tokens", src, dst, opts, include=include, exclude=exclude, force=force,
                     workers=workers, engine=engine, address=address, reporter=reporter)


def batch_decode(src: str | Path, dst: str | Path, *, to: str | None = None,
                 include: Sequence[str] = (), exclude: Sequence[str] = (), model: ModelName | None = None,
                 device: str = "auto", precision: str = "auto", workers: int | None = None,
                 engine: str = "local", address: str | None = None, force: bool = False,
                 audio: bool = True, salvage: bool = False, metadata: bool = True,
                 reporter: Reporter | None = None) -> BatchSummary:
    """Decode every .tok under src into dst, restoring the original names (`x.mp4.tok` -> `x.mp4`,
    or `x.mkv` with to="mkv"). ``salvage`` decodes the intact GOPs of damaged files (as decode
    --salvage: lost frames repeat the last good one; each file's record counts them); ``audio``
    and ``metadata`` (the tags and chapters) go into the outputs that hold them unless False."""
    opts = BatchOptions("decode", model, device=device, precision=precision, audio=audio, salvage=salvage,
                        metadata=metadata)
    return run_batch("decode", src, dst, opts, to=to, include=include, exclude=exclude, force=force,
                     workers=workers, engine=engine, address=address, reporter=reporter)
