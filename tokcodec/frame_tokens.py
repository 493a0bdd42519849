"""Tokens of frames in memory (``tokenize_frames``): what :func:`tokcodec.tokens.tokenize` gives
for a lossless file of the same frames, without writing one; a data loader's decoded frames
(an array, or a generator read a GOP at a time) go straight in."""
from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from fractions import Fraction
from typing import TYPE_CHECKING

import numpy as np

from tokcodec.defaults import DEFAULT_GOP, DEFAULT_TOKEN_SCENECUT
from tokcodec.errors import ArgumentError, InputError
from tokcodec.tokens import TokenFile, made_here, parse_frame_rate

if TYPE_CHECKING:
    from tokcodec.model.refine import RefineConfig
    from tokcodec.model.zoo import LoadedModel, ModelName

#: frames in memory: one uint8 RGB array (T, H, W, 3), one image (H, W, 3), or an iterable of
#: (H, W, 3) frames (a list, a generator: read GOP by GOP)
FrameSource = np.ndarray | Iterable[np.ndarray]


def tokenize_frames(frames: FrameSource, *, model: ModelName | LoadedModel = "default", gop: int | None = None,
                    scale: float | None = None, passes: int | None = None, rdo: float | None = None,
                    refine: int | RefineConfig = 0, frame_rate: float | Fraction | str | None = None,
                    grey: bool | None = None,
                    device: str = "auto", precision: str = "auto",
                    progress: Callable[[int], None] | None = None,
                    scenecut: float = DEFAULT_TOKEN_SCENECUT) -> TokenFile:
    """:func:`tokcodec.tokens.tokenize` of frames in memory (uint8 RGB, all of one size): the
    tokens it gives for a lossless file of the same frames, with the same settings, on the same
    machine (tested against one). An iterable is read a GOP at a time, so memory holds a GOP, not
    the video. ``grey`` (None: found out) codes a grey source as encode does (decode then shows
    grey); to find out, an iterable's frames are held until its first colour frame, so give
    ``grey=False`` to stream a long grey video without holding it. ``frame_rate`` is recorded
    for detokenize (None: not recorded, and detokenize takes 25). ``progress`` is told each
    GOP's frames. ``scenecut``: GOPs end before scene cuts, as tokenize's (default off)."""
    from tokcodec.codec.accel import HostStager
    from tokcodec.codec.correction import CorrectionConfig
    from tokcodec.codec.gop_encoder import network_stage
    from tokcodec.codec.pipeline import (_check_memory, coding_for, default_coder_id, model_warnings, no_rate_model,
                                         prepare_model, search_config, token_chooser)
    from tokcodec.codec.ratecontrol import Rung
    from tokcodec.codec.scenecut import split_gops
    from tokcodec.defaults import DEFAULT_KEY_INTERVAL, DEFAULT_RDO, MAX_RDO, check_scenecut
    from tokcodec.device import select_runtime
    from tokcodec.io import VideoInfo

    # every setting is checked before a frame is held (a grey stream is, until it ends)
    if rdo is not None and not 0 <= rdo <= MAX_RDO:
        raise ArgumentError(f"rdo must be in [0, {MAX_RDO}], got {rdo}")
    check_scenecut(scenecut)
    rate = parse_frame_rate(str(frame_rate), "frame_rate", ArgumentError) if frame_rate is not None else None
    search = search_config(refine, passes)
    first, stream, count = _frame_stream(frames)
    height, width = first.shape[:2]
    runtime = select_runtime(device, precision, encoding=True)
    loaded = prepare_model(model, runtime)
    coder_id = default_coder_id(loaded, DEFAULT_KEY_INTERVAL)
    info = VideoInfo(width, height, rate or Fraction(25), count, "rgb24", False)
    rung = Rung(1.0 if scale is None else scale, DEFAULT_GOP if gop is None else gop, 1.0)
    header, encode = coding_for(loaded, runtime, HostStager(runtime), info, rung, coder_id,
                                CorrectionConfig(enabled=False), search, grey=bool(grey))
    _check_memory(header, info, None, runtime, search)
    lam = DEFAULT_RDO if rdo is None else rdo
    quantize = token_chooser(coder_id, loaded, lam)
    if rdo and quantize is None:
        raise no_rate_model(f"rdo {rdo:g}", coder_id, loaded)
    if grey is None:
        header.grey, stream = _grey_lookahead(stream)  # (the encoder reads header.grey per GOP)
    grids, gop_frames = [], []
    gop_stream = split_gops(stream, header.gop, scenecut)
    for n, idx, _, _ in network_stage(encode, gop_stream, lambda _: quantize, DEFAULT_KEY_INTERVAL):
        grids.append(idx)
        gop_frames.append(n)
        if progress:
            progress(n)
    made = made_here(str(runtime.device), runtime.precision, loaded.sha256, 0.0 if quantize is None else lam,
                     passes=search.passes, refine=search.steps, scale=rung.scale, scenecut=scenecut)
    return TokenFile(np.concatenate(grids, 0), "frames", bits=header.bits,
                     gop_latent_frames=[g.shape[0] for g in grids], gop_frames=gop_frames,
                     model=header.model_name, weights_sha256=header.weights_sha256, frame_rate=rate,
                     size=(width, height), coded_size=(header.coded_width, header.coded_height), grey=header.grey,
                     made=made, warnings=tuple(model_warnings(loaded, coder_id)))


def _frame_stream(frames: FrameSource) -> tuple[np.ndarray, Iterator[np.ndarray], int]:
    """The first frame, every frame (checked: uint8 (H, W, 3) of the first one's size, InputError
    naming the first that is not) and the count where known (0 for an iterator)."""
    from tokcodec.io import frame_size_problem

    if isinstance(frames, np.ndarray):
        if frames.ndim not in (3, 4) or frames.shape[-1] != 3:
            hint = " (grey frames: repeat them to 3 channels)" if frames.ndim == 3 else ""
            raise InputError(f"frames must be uint8 RGB (T, H, W, 3) or one image (H, W, 3), got shape "
                             f"{frames.shape}{hint}")
        frames = frames[None] if frames.ndim == 3 else frames
    count = len(frames) if isinstance(frames, (np.ndarray, Sequence)) else 0
    it = iter(frames)
    head = _checked_frame(0, next(it, None), None)
    problem = frame_size_problem(head.shape[1], head.shape[0])
    if problem:
        raise InputError(f"frames: {problem}")
    rest = (_checked_frame(number, frame, head.shape) for number, frame in enumerate(it, 1))
    return head, itertools.chain((head,), rest), count


def _checked_frame(number: int, frame: object, shape: tuple[int, ...] | None) -> np.ndarray:
    """``frame`` as a uint8 (H, W, 3) array (of ``shape`` after the first), or InputError."""
    if frame is None and number == 0:
        raise InputError("no frames to tokenize")
    array = np.asarray(frame)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[-1] != 3 or (shape and array.shape != shape):
        wanted = f"uint8 {shape}" if shape else "uint8 RGB (H, W, 3)"
        raise InputError(f"frame {number}: must be {wanted}, got {array.dtype} {array.shape}"
                         + (" (scale to 0..255 and convert to uint8)" if array.dtype.kind == "f" else ""))
    return array


def _grey_lookahead(frames: Iterator[np.ndarray]) -> tuple[bool, Iterator[np.ndarray]]:
    """Whether every frame is grey (as encode's io.is_grey), and the frames: those read to find
    out (up to the first colour frame, or all), then the rest."""
    from tokcodec.io import is_grey_frame

    held = []
    for frame in frames:
        held.append(frame)
        if not is_grey_frame(frame):
            return False, itertools.chain(held, frames)
    return True, iter(held)
