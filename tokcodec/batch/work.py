"""One batch worker: loads the model once, then encodes, decodes or tokenizes files one at a time.

Shared by the local process pool and the Ray actors. Every per-file failure becomes a FileResult
with a one-line reason; only KeyboardInterrupt/SystemExit escape (the pipeline's `finally` then
removes the temporary output).
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tokcodec.defaults import DEFAULT_KEY_INTERVAL, DEFAULT_PASSES, DEFAULT_SCENECUT

if TYPE_CHECKING:
    from tokcodec.audio_choice import AudioChoice
    from tokcodec.codec.container import Header

ProgressFn = Callable[[int], None]
StartFn = Callable[[int], None]


@dataclass(frozen=True)
class BatchOptions:
    """What every file of a run is coded with (the encode options of `tokcodec encode`)."""

    op: str                     # "encode", "decode" or "tokens" (tokenize videos, export .tok files' tokens)
    model: str | None = None  # encode: preset/weights (None = default); decode: None = as in each file
    gop: int | None = None      # encode: None = 17, or with a target rate the plan's choice
    scale: float | None = None  # encode: None = 1, or with a target rate the plan's choice
    device: str = "auto"
    precision: str = "auto"
    audio: bool | AudioChoice = True  # keep (encode: how, audio.AudioChoice) / restore (decode) the first audio stream
    metadata: bool = True       # keep (encode) / restore (decode) the tags and chapters (media_tags.py)
    refine: int = 0             # encode: decoder-in-the-loop search steps per GOP
    passes: int = DEFAULT_PASSES  # encode: closed-loop encoder passes per GOP (tokcodec.model.refine)
    rdo: float | None = None    # encode: rate-distortion trade of the token bits (None: the default; tokcodec.codec.rdo)
    correction: bool = True     # encode: send each GOP's correction grid
    detail: bool = True         # encode: with detail gains (format 2.1; False: offsets only, 2.0)
    sharpen: float | None = None  # encode: detail gains per unit of their fit (None: by GOP length; codec/correction.py)
    key_interval: int = DEFAULT_KEY_INTERVAL  # encode: GOPs per key GOP (codec/context_coder4.py)
    bpp: float | None = None    # encode: target rate per file (codec/ratecontrol.py), instead of rdo
    bitrate: float | None = None  # encode: the same in bits per second of video
    salvage: bool = False       # decode: decode the intact GOPs of damaged files, lost frames filled
    start: float | Fraction | str | None = None     # encode, tokens: of each video, the part from this
    duration: float | Fraction | str | None = None  # time (--ss; images whole), this long (-t)
    max_frames: int | None = None  # ... at most this many frames (--frames)
    split_bits: int | None = None  # tokens: each token as sub-tokens of this many bits (--split)
    deinterlace: str = "auto"   # encode, tokens: interlaced input (defaults.DEINTERLACE_MODES)
    scenecut: float = DEFAULT_SCENECUT  # encode, tokens: GOPs end before scene cuts this sharp (0: off)

    def __post_init__(self) -> None:
        if self.model is not None and not isinstance(self.model, str):  # a Path: recorded as text in the manifest
            object.__setattr__(self, "model", os.fspath(self.model))


@dataclass
class FileResult:
    input: str
    output: str
    status: str                 # "done", "skipped" or "failed"
    frames: int = 0
    bytes: int = 0              # size of the output file
    bpp: float | None = None  # bits per pixel of the .tok's video, audio left out (none for tokens)
    seconds: float = 0.0
    error: str | None = None
    model: str | None = None
    precision: str | None = None  # encode, tokens: the arithmetic it was made in (bf16, fp32)
    refine: int | None = None   # encode, tokens: the --refine steps the output was made with
    passes: int | None = None   # encode, tokens: the --passes it was made with
    rdo: float | None = None    # encode, tokens: the --rdo it was made with (0 where the coder has no prior)
    sharpen: float | None = None  # encode: the --sharpen its detail gains were sent with (0: no gains)
    linked_gops: int | None = None  # encode: GOPs coded against the one before, tokens or record (--key-interval)
    gop: int | None = None      # encode: frames per GOP (with a target rate, the plan's choice)
    scale: float | None = None  # encode, tokens: the --scale it was made at (the same)
    target_bpp: float | None = None  # encode: the target rate asked for (--bpp, --bitrate)
    deinterlaced: bool | None = None  # encode, tokens: True where the input was deinterlaced as it was read
    scene_cuts: int | None = None  # encode: GOPs that start at a scene cut (--scenecut)
    lost_frames: int | None = None  # decode --salvage: frames lost to damage (filled by the last good one)
    warnings: list[str] | None = None  # what the output is not as asked or as usual (EncodeStats/DecodeStats.warnings)

    def record(self) -> dict[str, Any]:
        rec = asdict(self)
        if rec["bpp"] is not None:
            rec["bpp"] = round(rec["bpp"], 6)
        rec["seconds"] = round(rec["seconds"], 3)
        return {k: v for k, v in rec.items() if v is not None}


def _besides(warnings: Sequence[str], said_once: Sequence[str]) -> list[str] | None:
    """A file's warnings but those the run says once (the model's), None when none is left."""
    return [w for w in warnings if w not in said_once] or None


def one_line(exc: BaseException) -> str:
    """The user-facing reason for a failure: tokcodec errors as they are, others with their type."""
    from tokcodec.errors import GPU_OUT_OF_MEMORY, TokcodecError, is_gpu_out_of_memory

    if isinstance(exc, MemoryError):
        return "out of memory (try a smaller --gop or --scale, --passes 0, or fewer --workers)"
    if is_gpu_out_of_memory(exc):
        return GPU_OUT_OF_MEMORY
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, (TokcodecError, ValueError)):
        return text or type(exc).__name__
    if isinstance(exc, OSError):
        return f"{exc.filename or ''}: {exc.strerror or text}".lstrip(": ")
    return f"unexpected {type(exc).__name__}: {text}"


def limit_threads(threads: int) -> None:
    """Give this worker process its share of the cores as torch threads."""
    import torch

    torch.set_num_threads(max(1, threads))


class Worker:
    def __init__(self, options: BatchOptions, device: str | None = None, threads: int | None = None) -> None:
        if threads:
            limit_threads(threads)
        from tokcodec.device import select_runtime

        self.options = options
        self.device = device or options.device
        self.runtime = select_runtime(self.device, options.precision, encoding=options.op in ("encode", "tokens"))
        if self.runtime.device.type == "cuda":
            import torch

            torch.cuda.set_device(self.runtime.device)
        self._models: dict[str, Any] = {}          # encode: by --model
        self._decode_models: dict[tuple[str, str], Any] = {}  # decode: by the weights a file names
        if options.op in ("encode", "tokens") or options.model:
            self.model(options.model or "default")  # fail at start-up, not on every file

    def model(self, name: str):
        if name not in self._models:
            from tokcodec.codec.pipeline import prepare_model
            from tokcodec.model.zoo import load_tokenizer

            self._models[name] = prepare_model(load_tokenizer(name, "cpu"), self.runtime)
        return self._models[name]

    def model_for(self, header: Header, source: str):
        """The model a .tok needs, picked as `tokcodec decode` picks it (so a folder may mix files
        of several versions of a preset's weights), loaded once per distinct weights."""
        key = (header.model_name, header.weights_sha256)
        if key not in self._decode_models:
            from tokcodec.codec.pipeline import model_for_weights, prepare_model

            given = self._models.get(self.options.model) if self.options.model else None
            if given is not None and given.sha256 == header.weights_sha256:
                self._decode_models[key] = given  # --model, loaded at start-up: not a second copy
            else:
                loaded = model_for_weights(header.model_name, header.weights_sha256, self.options.model, source)
                self._decode_models[key] = prepare_model(loaded, self.runtime)
        header.check_model(self._decode_models[key].config, source)  # (each file's header, as model_for_header does)
        return self._decode_models[key]

    def run(self, src: Path | str, dst: Path | str, overwrite: bool = False,
            started: StartFn | None = None, progress: ProgressFn | None = None) -> FileResult:
        src, dst = Path(src), Path(dst)
        t0 = time.perf_counter()
        try:
            if src.is_symlink() and not src.exists():
                from tokcodec.errors import InputError

                raise InputError(f"{src}: broken symbolic link (to {os.readlink(src)})")
            mtime = src.stat().st_mtime_ns
            dst.parent.mkdir(parents=True, exist_ok=True)
            if self.options.op == "encode":
                result = self._encode(src, dst, overwrite, started, progress)
            elif self.options.op == "tokens":
                result = self._tokens(src, dst, overwrite, started, progress)
            else:
                result = self._decode(src, dst, overwrite, started, progress)
            if src.stat().st_mtime_ns != mtime:
                # the input changed while we read it: leave the output older than it, so the
                # next run redoes it
                os.utime(dst, ns=(mtime, mtime))
            return result
        except Exception as exc:  # noqa: BLE001 - isolate every per-file failure
            return FileResult(str(src), str(dst), "failed", seconds=time.perf_counter() - t0,
                              error=one_line(exc))

    def _encode(self, src: Path, dst: Path, overwrite: bool, started: StartFn | None,
                progress: ProgressFn | None) -> FileResult:
        from tokcodec.codec.correction import CorrectionConfig
        from tokcodec.codec.pipeline import encode_video, model_warnings

        part = self._part(src, started)
        o = self.options
        model = self.model(o.model or "default")
        st = encode_video(src, dst, model=model, gop=o.gop, **part,
                          device=self.device, precision=o.precision, scale=o.scale,
                          overwrite=overwrite, progress=progress, audio=o.audio, refine=o.refine,
                          passes=o.passes, rdo=o.rdo, key_interval=o.key_interval, bpp=o.bpp,
                          bitrate=o.bitrate, deinterlace=o.deinterlace, scenecut=o.scenecut,
                          metadata=o.metadata, correction=CorrectionConfig(enabled=o.correction, detail=o.detail,
                                                       sharpen=o.sharpen))
        return FileResult(str(src), str(dst), "done", st.frames, st.bytes, st.video_bpp, st.seconds,
                          model=st.model, precision=st.precision, refine=st.refine, passes=st.passes, rdo=st.rdo,
                          sharpen=st.sharpen,
                          linked_gops=st.linked_gops, gop=st.gop, scale=st.scale, target_bpp=st.target_bpp,
                          deinterlaced=st.deinterlaced or None, scene_cuts=st.scene_cuts or None,
                          warnings=_besides(st.warnings, model_warnings(model)))

    def _part(self, src: Path, started: StartFn | None) -> dict[str, Any]:
        """encode_video's arguments for the part of ``src`` the options ask for (--ss and -t apply
        to videos: an image is taken whole), after telling ``started`` how many frames it holds."""
        from tokcodec.codec.pipeline import input_part
        from tokcodec.io import probe

        o, info = self.options, probe(src)
        part = dict(max_frames=o.max_frames)
        if not info.is_image:
            part.update(start=o.start, duration=o.duration)
        _, limit, info = input_part(src, info, part.get("start"), part.get("duration"), o.max_frames)
        if started:
            started(min(info.frame_count, limit) if info.frame_count and limit else info.frame_count)
        return part

    def _tokens(self, src: Path, dst: Path, overwrite: bool, started: StartFn | None,
                progress: ProgressFn | None) -> FileResult:
        """A video's tokens (tokenized as encode --no-correction), or a .tok file's, as .safetensors."""
        from tokcodec.codec.container import is_tok_file
        from tokcodec.codec.pipeline import model_warnings
        from tokcodec.tokens import token_file_of, tokenize, write_token_file

        t0 = time.perf_counter()
        o = self.options
        exported = is_tok_file(src)
        if exported:  # no network run: the progress bar learns the frames at the end
            tokens = token_file_of(src)
        else:
            part = self._part(src, started)
            tokens = tokenize(src, model=self.model(o.model or "default"), gop=o.gop, scale=o.scale, **part,
                              passes=o.passes, rdo=o.rdo, refine=o.refine, device=self.device,
                              precision=o.precision, progress=progress, deinterlace=o.deinterlace,
                              scenecut=o.scenecut)
        write_token_file(tokens, dst, split_bits=o.split_bits, overwrite=overwrite)
        frames = sum(tokens.gop_frames or ())
        if exported and started:
            started(frames)
        if exported and progress:
            progress(frames)
        made = tokens.made or {}
        settings = {} if exported else {k: made.get(k) for k in ("refine", "passes", "rdo", "scale")}
        settings.update(deinterlaced=True if made.get("deinterlaced") else None)
        said_once = [] if exported else model_warnings(self.model(o.model or "default"))
        return FileResult(str(src), str(dst), "done", frames, dst.stat().st_size, None,
                          time.perf_counter() - t0, model=tokens.model, precision=made.get("precision"), **settings,
                          warnings=_besides(tokens.warnings, said_once))

    def _decode(self, src: Path, dst: Path, overwrite: bool, started: StartFn | None,
                progress: ProgressFn | None) -> FileResult:
        from tokcodec.codec.pipeline import decode_video, open_tok
        from tokcodec.codec.salvage import open_salvage

        with (open_salvage(src) if self.options.salvage else open_tok(src)) as reader:  # (a cut file too)
            header = reader.header
            total, video_bytes = reader.frame_count, reader.video_bytes
        if started:
            started(total)
        model = self.model_for(header, str(src))
        st = decode_video(src, dst, model=model, device=self.device,
                          precision=self.options.precision, overwrite=overwrite, progress=progress,
                          audio=self.options.audio, salvage=self.options.salvage,
                          metadata=self.options.metadata)
        bpp = 8 * video_bytes / max(1, st.frames * st.width * st.height)
        lost = sum(b - a + 1 for a, b in st.lost_frames) if self.options.salvage else None
        return FileResult(str(src), str(dst), "done", st.frames, dst.stat().st_size, bpp, st.seconds,
                          model=self.options.model or header.model_name, lost_frames=lost,
                          warnings=[*st.problems, *st.warnings] or None)  # (--salvage: the damage found)
