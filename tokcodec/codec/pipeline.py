"""Streaming encode/decode of whole videos, GOP by GOP, so memory does not grow with length.

encode: frames -> [scale] -> pad to the model's multiple -> GOPs of 1 + s*k frames -> tokens ->
entropy coder -> container chunks. decode: the reverse, cropping padding and restoring the size.
Outputs are written to a temporary name and renamed when complete (outputs.py), so an
interrupted run never leaves a file that looks complete. Beside it: stats.py (what a run
reports), tensors.py (frames <-> model tensors), info.py (``tokcodec info``), parallel.py
(entropy coding in threads).
"""
from __future__ import annotations

import functools
import itertools
import math
import os
import stat
import sys
import threading
import time
from contextlib import closing
from dataclasses import dataclass, field, replace
from fractions import Fraction
from functools import partial
from pathlib import Path
from typing import BinaryIO, Callable, Iterable, Iterator, Protocol, TypeVar

import av
import numpy as np
import torch
from numpy.typing import DTypeLike

from tokcodec.audio import AudioTrack, extract_audio, has_audio, read_track
from tokcodec.audio_choice import AudioChoice
from tokcodec.codec.accel import AutoGopBatch, HostStager, compile_networks
from tokcodec.codec.container import (MAX_FRAMES, Chunk, ContainerReader, ContainerWriter, Header,
                                      chunk_file_bytes, fixed_file_bytes, open_tok)
from tokcodec.codec.correction import Correction, CorrectionConfig
from tokcodec.codec.gop_encoder import (PROBE_WINDOWS, CodedGop, GopEncoder, measure_bpp, network_stage,
                                        probe_windows)
from tokcodec.codec.info import FileInfo, chunk_contents, file_info, links_to_previous  # noqa: F401  (file_info re-exported)
from tokcodec.codec.memory import (DecodeFootprint, EncodeFootprint, MemoryLimitError, check_decode_memory,
                                   check_encode_memory)
from tokcodec.codec.outputs import (check_output, check_tok_output, output_errors, staged_output,
                                    tok_output)
from tokcodec.codec.context_coder3 import ContextCoder3, prior_for_model, use_priors_beside
from tokcodec.codec.context_coder4 import ContextCoder4
from tokcodec.codec.entropy import DEFAULT_CODER_ID, UNLINKED_CODER_ID, CoderContext, TokenCoder, get_coder
from tokcodec.codec.parallel import linked_map, ordered_map
from tokcodec.codec.ratecontrol import (DEFAULT_RUNG, LADDER, LINKED_RATE, TARGET_TOLERANCE, RateController,
                                        STRENGTH_PROBE_RDO, RatePlan, Rung, check_bitrate, check_target,
                                        lambda_strength, plan_long, plan_short, rdo_for_factor, short_gop_factor)
from tokcodec.codec.ranges import FrameRange, chunk_span, frame_range, in_range, seconds, time_of
from tokcodec.codec.rdo import rate_aware_tokens
from tokcodec.codec.salvage import SalvageReader, nothing_survived, open_salvage
from tokcodec.codec.stats import DecodeStats, EncodeStats
from tokcodec.codec.scenecut import split_gops
from tokcodec.codec.tok_stream import TokStream, after_video
from tokcodec.codec.tensors import coded_size, frames_to_tensor, tensor_to_frames  # noqa: F401
from tokcodec.defaults import (DEFAULT_GOP, DEFAULT_KEY_INTERVAL, DEFAULT_RDO, DEFAULT_SCENECUT, MAX_KEY_INTERVAL,
                               MAX_RDO, check_deinterlace, check_gop, check_scenecut)
from tokcodec.device import Runtime, one_blas_thread, select_runtime
from tokcodec.errors import (LINKED_TO_LOST, ArgumentError, FormatError, InputError, MissingPriorError,
                             ModelError, OutputError, TokcodecError)
from tokcodec.io import (ColorInfo, FrameWriter, VideoInfo, audio_dropped, deinterlaces, is_grey, iter_frames,
                         not_kept, output_kind, probe, sequence_warnings, standard_rate, stored_lines, tags_dropped,
                         timing_drift)
from tokcodec.media_tags import MediaTags, read_tags
from tokcodec.metrics import ErrorTotals
from tokcodec.model.presets import PRESETS, resolve_name
from tokcodec.model.refine import Quantize, RefineConfig
from tokcodec.model.zoo import (WEIGHTS_DIR, LoadedModel, ModelName, is_weights_file, load_tokenizer,
                                load_tokenizer_version, use_priors_of, weights_sha256)
from tokcodec.stream_input import StreamedVideo, open_y4m
from tokcodec.text import plural

T = TypeVar("T")
#: why a stream read as it comes takes no target rate
STREAM_TARGET = ("{name}: a target rate (--bpp, --bitrate) is planned on windows from across the input, and a "
                 "stream is read once as it comes: write it to a file first (the command line does, for encode -)")

#: the end of a stream's frames before it has come (its header states no count): decode_part
UNKNOWN_END = MAX_FRAMES

ProgressFn = Callable[[int], None]  # called with the number of frames just finished


_PLACING = threading.Lock()


def prepare_model(model: str | LoadedModel, runtime: Runtime) -> LoadedModel:
    """Load (if given a name) and place a tokenizer for inference: device, eval, and on CPU the
    channels_last_3d layout that bf16 convolutions run fastest in. A model already placed so is
    left alone, and placing is one thread at a time: threads that share a model (each call on it
    does this) must not swap its weights' storage under one another's running convolutions,
    which corrupted weights for good and could crash. So threads may share a model on one
    device; a call for another device moves it, under any call running on the first."""
    loaded = model if isinstance(model, LoadedModel) else load_tokenizer(model, "cpu")
    with _PLACING:
        if not _placed(loaded.tokenizer, runtime):
            tok = loaded.tokenizer.to(runtime.device).eval()
            tok.to(memory_format=_layout(runtime))  # (a move keeps the layout a CPU call gave)
    return loaded


def _placed(tok: torch.nn.Module, runtime: Runtime) -> bool:
    """Whether ``tok`` is already in eval mode on ``runtime``'s device, in its layout there."""
    if any(m.training for m in tok.modules()):
        return False
    want = runtime.device
    if want.type == "cuda" and want.index is None:  # "cuda": the current device, where frames go
        want = torch.device("cuda", torch.cuda.current_device())
    for p in itertools.chain(tok.parameters(), tok.buffers()):
        if p.device != want:
            return False
        if p.ndim == 5 and not p.is_contiguous(memory_format=_layout(runtime)):
            return False
    return True


def _layout(runtime: Runtime) -> torch.memory_format:
    """The weights' layout: channels-last on CPU (oneDNN's fast convolutions), else PyTorch's own."""
    return torch.channels_last_3d if runtime.device.type == "cpu" else torch.contiguous_format


def make_header(loaded: LoadedModel, runtime: Runtime, width: int, height: int, *,
                frame_rate: Fraction = Fraction(25), gop: int = DEFAULT_GOP, scale: float = 1.0,
                coder_id: int | None = None, color: ColorInfo | None = None) -> Header:
    """The .tok header for a video of this size coded by this model: coded size (after --scale),
    padding to the model's spatial factor, GOP, coder and model identity."""
    cfg = loaded.config
    s, f = cfg.temporal_factor, cfg.spatial_factor
    check_gop(gop, s)
    cw, ch = coded_size(width, height, scale)
    color = color or ColorInfo()
    return Header(
        width=width, height=height, coded_width=cw, coded_height=ch,
        padded_width=-(-cw // f) * f, padded_height=-(-ch // f) * f, frame_rate=frame_rate,
        frame_count=0, gop=gop, temporal_factor=s, spatial_factor=f, bits=cfg.bits,
        coder_id=DEFAULT_CODER_ID if coder_id is None else coder_id, model_name=loaded.name,
        weights_sha256=loaded.sha256, precision=runtime.precision,
        color_range=color.color_range, colorspace=color.colorspace,
        primaries=color.primaries, transfer=color.transfer, untrained=not loaded.trained)


def encoder_for(coder_id: int, loaded: LoadedModel) -> TokenCoder:
    """The coder that writes a file's chunks, built for this model (coder 3 uses the prior
    fitted to its tokens, and coder 2's bitstream inside its payload when it has none)."""
    return get_coder(coder_id, CoderContext(model_sha256=loaded.sha256))


#: coders that code with the model's learned prior (coder 4 is coder 3 with linked GOPs)
PRIOR_CODER_IDS = (ContextCoder3.coder_id, ContextCoder4.coder_id)


def token_chooser(coder_id: int, loaded: LoadedModel, rdo: float) -> Quantize | None:
    """The rate-aware choice of token bits (codec/rdo.py) at trade-off ``rdo`` for files this
    model writes with coder ``coder_id``, or None (the latents' signs): when ``rdo`` is 0, or the
    coder is not coder 3 or 4 with a prior for this model, so no model of each bit's cost."""
    if not rdo > 0 or coder_id not in PRIOR_CODER_IDS:
        return None
    prior = prior_for_model(loaded.sha256)
    if prior is None or prior.bits != loaded.config.bits:
        return None

    def choose(z: torch.Tensor) -> torch.Tensor:
        latents = z.detach().float().permute(0, 2, 1, 3, 4).cpu().numpy()  # (B, t, bits, h, w)
        # one BLAS thread: OpenBLAS's own threads, left spinning beside torch's, slowed the
        # networks that follow (2-core CPU: +0.35-0.55 s per 640x360 GOP; one thread: +0.1-0.2)
        with one_blas_thread():
            tokens = np.stack([rate_aware_tokens(prior, one, rdo, ContextCoder3.search) for one in latents])
        return torch.from_numpy(tokens).to(z.device)
    return choose


def search_config(refine: int | RefineConfig, passes: int | None) -> RefineConfig:
    """The encoder's closed loop and token search: ``refine`` steps and ``passes`` (default
    DEFAULT_PASSES), or a whole RefineConfig given as ``refine``."""
    if isinstance(refine, RefineConfig):
        if passes is not None:
            raise ArgumentError("passes is part of the RefineConfig given as refine: set it there")
        return refine
    return RefineConfig(steps=refine) if passes is None else RefineConfig(steps=refine, passes=passes)


def coding_for(loaded: LoadedModel, runtime: Runtime, stager: HostStager, info: VideoInfo, rung: Rung,
               coder_id: int, fix: CorrectionConfig, search: RefineConfig, grey: bool) -> tuple[Header, GopEncoder]:
    """The header and the GOP encoder of an encode of ``info``'s frames at ``rung`` (scale, GOP
    length): what encode_video codes each GOP with, and tokenize_frames too."""
    header = make_header(loaded, runtime, info.width, info.height, frame_rate=info.frame_rate,
                         gop=rung.gop, scale=rung.scale, coder_id=coder_id, color=info.color)
    header.correction = fix.enabled
    header.correction_detail = header.correction_coded = fix.enabled and fix.detail
    header.grey = grey
    return header, GopEncoder(loaded, header, runtime, stager, search, fix, info.width, info.height)


def default_coder_id(loaded: LoadedModel, key_interval: int) -> int:
    """The coder an encode writes: coder 4 only where it can link, with a prior for the model's
    tokens and GOPs between key GOPs; else coder 3 (coder 2 inside it without a prior)."""
    prior = prior_for_model(loaded.sha256)
    links = key_interval > 1 and prior is not None and prior.bits == loaded.config.bits
    return DEFAULT_CODER_ID if links else UNLINKED_CODER_ID


def no_rate_model(asked: str, coder_id: int, loaded: LoadedModel) -> ModelError:
    """The error for ``asked`` (an rdo or a target rate) where nothing prices the token bits."""
    fit = (f"`tokcodec fit-prior {loaded.source}` fits one" if not loaded.shipped
           else "the trained presets have one")
    needs = (f"coder 3 or 4, not coder {coder_id}" if coder_id not in PRIOR_CODER_IDS
             else f"a coder-3 prior for the model's tokens, and {loaded.name} has none ({fit})")
    return ModelError(f"{asked} needs {needs}")


def _source_audio(src: Path, choice: AudioChoice | None, max_frames: int | None, rate: Fraction,
                  skip: int = 0) -> tuple[AudioTrack | None, str]:
    """The audio to store (of the frames from ``skip`` on; None: none) and how to describe it in the stats."""
    if choice is None:
        return None, "dropped (--no-audio)" if has_audio(src) else "none"
    track = extract_audio(src, float(max_frames / rate) if max_frames else None, float(skip / rate), choice)
    return track, track.describe() if track is not None else "none"


def _source_tags(src: Path, info: VideoInfo, keep: bool, skip: int, max_frames: int | None
                 ) -> tuple[MediaTags, list[str]]:
    """The tags and chapters to store (of the part from frame ``skip``, ``max_frames`` long),
    and the encode's warnings of what was left out of them; none for images and image sequences,
    or where not ``keep``."""
    if not keep or info.is_image or info.is_sequence:
        return MediaTags(), []
    try:
        media, notes = read_tags(src)
        MediaTags.from_json(media.to_json(), str(src))  # (what is stored must read back)
    except (av.FFmpegError, OSError, FormatError) as exc:  # (the video was read: its tags are not worth the encode)
        return MediaTags(), [f"its tags and chapters could not be read, and none are stored "
                             f"({str(exc).splitlines()[0][:160]})"]
    rate = info.frame_rate
    notes = [f"left out of the stored tags, too long or too many: {', '.join(notes[:5])}"
             + (f" and {len(notes) - 5} more" if len(notes) > 5 else "")] if notes else []
    return media.part(skip / rate, max_frames / rate if max_frames else None), notes


def opens_streams(encode: Callable[..., T]) -> Callable[..., T]:
    """``encode`` (encode_video; tokenize hands its source on to it) of a binary stream (anything
    but a path or a StreamedVideo): opened as a Y4M stream read as it comes (stream_input.open_y4m),
    and closed after; named in messages by its file's name where it has one. A stream, opened or
    not, with a target rate is refused here, before a byte of it is taken."""
    @functools.wraps(encode)
    def opened(src, *args, **kwargs):
        if isinstance(src, (str, os.PathLike)):
            return encode(src, *args, **kwargs)
        if kwargs.get("bpp") is not None or kwargs.get("bitrate") is not None:
            raise ArgumentError(STREAM_TARGET.format(name=src.name if isinstance(src, StreamedVideo) else "stream"))
        if isinstance(src, StreamedVideo):
            return encode(src, *args, **kwargs)
        with open_y4m(src, _stream_name(src)) as video:
            return encode(video, *args, **kwargs)
    return opened


def _stream_name(stream: BinaryIO) -> str:
    """What messages call a stream: its file's name where it has one (sys.stdin.buffer's "<stdin>")."""
    named = getattr(stream, "name", None)
    return named if isinstance(named, str) and named else "stream"


@opens_streams
def encode_video(src: str | Path | BinaryIO | StreamedVideo, dst: str | Path, *, model: ModelName | LoadedModel = "default",
                 gop: int | None = None, device: str = "auto", precision: str = "auto",
                 scale: float | None = None, coder_id: int | None = None, overwrite: bool = False,
                 progress: ProgressFn | None = None, max_frames: int | None = None,
                 audio: bool | AudioChoice = True, refine: int | RefineConfig = 0, passes: int | None = None,
                 correction: bool | CorrectionConfig = True, compile: bool = False,
                 rdo: float | None = None, key_interval: int = DEFAULT_KEY_INTERVAL,
                 bpp: float | None = None, bitrate: float | None = None,
                 plan_progress: ProgressFn | None = None, start: float | Fraction | str | None = None,
                 duration: float | Fraction | str | None = None, deinterlace: str = "auto",
                 scenecut: float = DEFAULT_SCENECUT, fps: float | Fraction | str | None = None,
                 metadata: bool = True) -> EncodeStats:
    """Encode a video (or image) file into a .tok file, keeping its first audio stream unless
    ``audio`` is False (an ``AudioChoice`` says how: copied by default, integer PCM packed as
    FLAC, or re-encoded to Opus), and its tags and chapters (title, creation time, place, stream
    languages: media_tags.py) unless ``metadata`` is False. ``model``: a preset name, a weights
    file, or a LoadedModel from load_tokenizer (load once and pass it to every call, from any thread: a name is loaded each
    time). ``device`` and ``precision`` as the CLI's --device and --precision ("auto": CUDA
    where there is one; bf16 on a CPU with native bf16, else fp32). ``overwrite`` replaces an
    existing ``dst`` (else OutputError). ``progress(n)`` is called with the frames each GOP just
    finished. ``max_frames``: at most this many frames. ``coder_id``: the entropy coder (None:
    coder 4 where GOPs can link, else 3; codec/entropy.py). ``passes`` (default ``DEFAULT_PASSES``, 2) runs the encoder in a closed
    loop that feeds back what the decoder missed; 0 is the encoder's one-shot tokens, the
    fastest encode. ``refine`` > 0 then searches each GOP's tokens with the decoder in the loop
    (model/refine.py): closer pictures, same format and decode speed, slower encoding. A
    ``RefineConfig`` for ``refine`` sets both (then leave ``passes`` out).
    ``correction`` (on by default) decodes each GOP at encode time and sends a coarse grid of
    colour offsets beside its tokens (codec/correction.py): closer pictures and colours for a
    few % more bits, format 2.0; False writes tokens only (format 1.x, faster encoding).
    ``compile`` wraps the networks in torch.compile (codec/accel.py: for long runs on a GPU).
    ``rdo`` (default ``DEFAULT_RDO``) lets the entropy coder's cost of each token bit sway the
    bits the encoder is unsure of (codec/rdo.py): fewer bits for a little quality; 0 is off.
    ``scale`` (default 1) tokenizes at that multiple of the size (decode restores it): below 1
    fewer bits, above 1 more detail for more bits and time. ``gop``: frames per GOP (default 17).
    ``bpp`` or ``bitrate`` (bits per second of video) set a target rate instead of ``rdo``: the
    video's bytes (all but the audio) average that rate over the file (codec/ratecontrol.py: a
    probe of a few GOPs picks ``gop`` and ``scale`` where they are not given, and each GOP's
    ``rdo`` follows the budget); ``plan_progress`` is told the frames the probe encodes.
    ``key_interval``: every that many GOPs a key GOP, coded on its own; with coder 4 (the
    default) the GOPs between code their first latent frame against the previous GOP's last
    (codec/context_coder4.py: smaller files; decoding can start, and salvage resume, at key
    GOPs); the correction records of the GOPs between may be coded against the previous GOP's
    (record kind 3). 1 makes every GOP a key GOP and, unless ``coder_id`` says otherwise, writes
    coder 3 (as for models without a coder-3 prior), which releases before coder 4 read in files
    without corrections.
    ``start`` and ``duration`` (seconds, or "1:30"-style strings) encode part of the input, as
    ffmpeg's -ss and -t do (with ``max_frames``: whichever ends first): the file starts with the
    input's first frame at or after ``start`` (reached by a seek to the key frame before it where the
    packets' timestamps allow, else by decoding the frames before it; exact to the frame either way) and
    keeps the audio from there.
    ``deinterlace`` ("auto", "on", "off"; defaults.DEINTERLACE_MODES): an interlaced input's frames are
    deinterlaced as they are read, one frame per frame (the count, rate and audio stay): "auto"
    those its stream flags as interlaced, "on" every frame, "off" none (its fields are coded woven
    together, as progressive frames: combed where things move; the stats warn).
    ``scenecut`` (code values, 0 = off): a GOP ends before a cut to another shot at least this
    sharp and the next GOP starts with it (codec/scenecut.py), so that no GOP blends two shots.
    ``src`` may be a directory of numbered images (an image sequence: io.image_sequence), stored
    at ``fps`` frames per second (default 25; for a still image too; refused for a video, which
    keeps its own rate); or a Y4M stream, read once as it comes (a pipe, ``sys.stdin.buffer``, or
    a StreamedVideo: stream_input.py; no target rate, which reads the input more than once).
    Returns sizes and timings."""
    streamed = src if isinstance(src, StreamedVideo) else None
    name = streamed.name if streamed else str(Path(src))
    src, dst = Path(name), Path(dst)  # (a stream's path is its name, for messages only)
    if not 1 <= key_interval <= MAX_KEY_INTERVAL:
        raise ArgumentError(f"key interval must be in 1..{MAX_KEY_INTERVAL} GOPs, got {key_interval}")
    search = search_config(refine, passes)
    targeted = bpp is not None or bitrate is not None
    if bpp is not None and bitrate is not None:
        raise ArgumentError("give the target rate as bpp or as bitrate, not both")
    if targeted and rdo is not None:
        raise ArgumentError("--rdo and a target rate (--bpp, --bitrate) both set the token bits' trade-off: "
                            "give one of them")
    if rdo is not None and not 0 <= rdo <= MAX_RDO:
        raise ArgumentError(f"rdo must be in [0, {MAX_RDO}], got {rdo}")
    if bpp is not None:
        check_target(bpp)
    check_deinterlace(deinterlace)
    check_scenecut(scenecut)
    fix = correction if isinstance(correction, CorrectionConfig) else CorrectionConfig(enabled=correction)
    audio_choice = audio if isinstance(audio, AudioChoice) else AudioChoice() if audio else None
    src_state = None if streamed else file_state(src)
    info = with_rate(streamed.info if streamed else probe(src), fps, src)
    skip, max_frames, info = input_part(src, info, start, duration, max_frames)
    target = bpp if bitrate is None else _bitrate_bpp(bitrate, info, src)
    check_tok_output(dst, overwrite, None if streamed else src)
    runtime = select_runtime(device, precision, encoding=True)
    loaded = prepare_model(model, runtime)
    if compile:
        compile_networks(loaded.tokenizer)
    stager = HostStager(runtime)
    cfg = loaded.config
    grey = streamed.grey if streamed else is_grey(src, skip, max_frames)  # (colour answers at its first frame)
    if coder_id is None:
        coder_id = default_coder_id(loaded, key_interval)

    @functools.lru_cache(maxsize=8)  # (a rate controller asks for a new value each GOP: kept few)
    def chooser(lam: float) -> Quantize | None:
        """The token bits' choice at ``lam`` (made once per value: a rate plan asks for some twice)."""
        return token_chooser(coder_id, loaded, lam)

    def coding_at(rung: Rung) -> tuple[Header, GopEncoder]:
        return coding_for(loaded, runtime, stager, info, rung, coder_id, fix, search, grey)

    coder = encoder_for(coder_id, loaded)
    plan = kept = None
    plan_start = time.perf_counter()
    asked = "a target rate (--bpp, --bitrate)" if target is not None else f"--rdo {rdo:g}" if rdo else None
    if asked and chooser(DEFAULT_RDO) is None:  # (both weigh token bits by the prior's cost of them)
        raise no_rate_model(asked, coder_id, loaded)
    if target is not None:
        plan, kept = _plan_rate(src, info, max_frames, target, gop, scale, coding_at, coder, chooser, key_interval,
                                lambda rung: _check_memory(coding_at(rung)[0], info, max_frames, runtime, search),
                                plan_progress, skip, deinterlace, scenecut)
        gop, scale = plan.rung.gop, plan.rung.scale
    gop = DEFAULT_GOP if gop is None else gop
    scale = 1.0 if scale is None else scale
    header, encode_gop = coding_at(Rung(scale, gop, 1.0))
    _check_memory(header, info, max_frames, runtime, search)
    track, audio_note = (None, "none") if streamed else _source_audio(
        src, None if info.is_image or info.is_sequence else audio_choice, max_frames, info.frame_rate, skip)
    header.has_audio = track is not None
    media, tag_notes = (MediaTags(), []) if streamed else _source_tags(src, info, metadata, skip, max_frames)
    header.has_tags = bool(media)
    control = None
    if plan is not None and kept is None:
        control = RateController(target, plan.content_bpp, spent_bits=8 * fixed_file_bytes(header),
                                 total_pixels=plan.frames * info.width * info.height,
                                 feedback=plan.fixed_rdo is None, fixed_rdo=plan.fixed_rdo,
                                 strength=plan.strength)
    start = time.perf_counter()
    frames = tokens = correction_bytes = gop_count = linked_count = cut_count = 0
    ended_short = False  # the GOP before ended short, so a scene cut began this one (a cut on a GOP
    # boundary needs no GOP of its own, and is not counted)
    with output_errors(dst):  # disk full, unwritable place
        def quantize_for(n: int) -> Quantize | None:
            """The token choice of the next GOP, of ``n`` frames: the controller's rdo for it, with a
            target rate."""
            lam = control.next_rdo(n * info.width * info.height, short_gop_factor(n, gop)) if control else rdo
            return chooser(DEFAULT_RDO if lam is None else lam)

        def entropy_coded(item: tuple[int, np.ndarray, bytes, np.ndarray | None]) -> tuple[int, np.ndarray, bytes, bytes]:
            n, idx, record, previous = item
            return n, idx, coder.encode(idx, cfg.bits, previous), record

        with tok_output(dst, overwrite) as (fh, seekable):
            writer = ContainerWriter(fh, header, patch_header=seekable)
            # GOPs entropy-code in worker threads while the network (and the correction's fit,
            # sharing its torch threads) works on the next ones in this thread; with a target rate
            # each GOP is coded before the next one's rdo is chosen (its size then counts at once;
            # the coder takes some 2% of a GOP's encode time, the network the rest)
            frames_in = (streamed.frames(max_frames, skip, deinterlace) if streamed
                         else iter_frames(src, max_frames, skip, deinterlace))
            network = network_stage(encode_gop, split_gops(frames_in, gop, scenecut), quantize_for, key_interval)
            # each GOP written once coded where its size steers the next (a target rate) and to
            # standard output, which a decode as it comes may be reading: not GOPs later
            coded = ((chunk for chunk in kept.chunks) if kept
                     else ordered_map(entropy_coded, network, ahead=1 if control or not seekable else None))
            # closed on the way out, failure included: the input is closed and the coder's threads stop
            with closing(network), closing(coded):
                for n, idx, payload, record in coded:  # (a short input's plan may have made the very chunks)
                    writer.add_chunk(n, idx.shape, payload, record)  # (flushed to standard output)
                    if control:
                        control.coded(8 * chunk_file_bytes(len(payload), len(record), header.correction))
                    correction_bytes += len(record)
                    gop_count += 1
                    cut_count += ended_short
                    ended_short = n < gop
                    linked_count += links_to_previous(coder, payload, record)
                    frames += n
                    tokens += idx.size
                    if progress:
                        progress(n)
                if frames == 0:
                    raise _no_frames(src, skip, streamed.frames_read if streamed else None)
                if track is not None:
                    writer.set_audio(track.data, round(track.start_offset * 1_000_000))
                if media:
                    writer.set_tags(media.to_json())
                writer.close()
    seconds = time.perf_counter() - start
    plan_seconds = start - plan_start if plan else 0.0
    if kept:  # the plan's last encode made the file: its time is the encode's
        seconds, plan_seconds = seconds + kept.seconds, plan_seconds - kept.seconds
    used_rdo, rdo_range = 0.0 if chooser(DEFAULT_RDO) is None else DEFAULT_RDO if rdo is None else rdo, None
    if plan is not None and plan.fixed_rdo is not None:  # one rdo throughout
        used_rdo, rdo_range = plan.fixed_rdo, (plan.fixed_rdo, plan.fixed_rdo)
    elif plan is not None:  # the controller's, per GOP
        used_rdo, rdo_range = control.mean_rdo, (min(control.used), max(control.used))
    stats = EncodeStats(str(src), str(dst), frames, info.width, info.height, writer.pos,
                        tokens, seconds, loaded.name, str(runtime.device), runtime.precision, scale,
                        audio=audio_note, refine=search.steps, passes=search.passes,
                        rdo=used_rdo, correction_bytes=correction_bytes,
                        sharpen=fix.sharpen_for(min(gop, frames)) if header.correction_detail else 0.0,
                        gops=gop_count, linked_gops=linked_count, gop=gop, target_bpp=target,
                        audio_bytes=writer.audio_bytes, tags_bytes=writer.tags_bytes, plan_seconds=plan_seconds,
                        rdo_range=rdo_range,
                        grey=grey, scene_cuts=cut_count,
                        deinterlaced=deinterlaces(deinterlace, info.interlaced, info.is_image or info.is_sequence,
                                                  stored_lines(info)))
    stats.warnings.extend(_encode_warnings(None if streamed else src, info, skip, stats))
    if src_state is not None and file_state(src) not in (src_state, None):
        stats.warnings.append("the input changed while it was read (a recording still being written?): its "
                              "frame count, audio and frames were read at different moments, so the audio may "
                              "end before or after the video; encode it once it is complete")
    if info.interlaced and deinterlace == "off" and not (info.is_image or info.is_sequence):
        stats.warnings.append("the input is interlaced: its two fields are coded woven together, as progressive "
                              "frames (combed where things move); --deinterlace auto deinterlaces it")
    stats.warnings.extend(not_kept(info, streams=audio_choice is not None))
    if track is not None:
        stats.warnings.extend(track.notes)
    stats.warnings.extend(tag_notes)
    if info.is_sequence:
        stats.warnings.extend(sequence_warnings(src))
    if streamed:
        stats.warnings.extend(streamed.notes())
    if streamed and streamed.grey_in_colour():
        stats.warnings.append(f"the stream's first frame is grey, but its pixel format ({info.pixel_format}) is "
                              "colour: a stream is coded as grey only by its pixel format (its frames cannot be "
                              "checked before the encode, as a file's are); for a grey video pipe it as "
                              "-pix_fmt gray: a smaller file, which decodes grey")
    stats.warnings.extend(model_warnings(loaded, coder_id))
    return stats


def model_warnings(loaded: LoadedModel, coder_id: int = DEFAULT_CODER_ID) -> list[str]:
    """What an encode with this model should say of the model itself (a batch says it once):
    untrained weights, and :func:`prior_warnings` where the coder uses a prior."""
    out = [] if loaded.trained else [untrained_warning(loaded.name)]
    return out + (prior_warnings(loaded) if coder_id in PRIOR_CODER_IDS else [])


def untrained_warning(name: str) -> str:
    return (f"{name} has untrained (random) weights: its pictures are no reconstruction of the input "
            "(a test preset; `tokcodec models` lists the trained ones)")


def prior_warnings(loaded: LoadedModel) -> list[str]:
    """Why weights of your own code without a learned prior (coder 2 inside coder 3's payload:
    larger files, and no --rdo), and priors beside them that could not be used."""
    out = list(loaded.prior_problems)
    if not loaded.shipped and prior_for_model(loaded.sha256) is None:
        out.append(_no_prior(loaded.name, loaded.source))
    return out


def prior_warnings_of(model: str) -> tuple[list[str], bool]:
    """``prior_warnings`` of the weights ``model`` names, without building the network (a batch
    says them once, before its workers start), and whether they are weights of your own with no
    usable prior (what --rdo and a target rate need)."""
    if not is_weights_file(model) or not Path(model).is_file() or Path(model).resolve().parent == WEIGHTS_DIR:
        return [], False
    digest = weights_sha256(model)
    out = use_priors_beside(Path(model), digest)
    lacking = prior_for_model(digest) is None
    if lacking:
        out.append(_no_prior(Path(model).stem, str(Path(model))))
    return out, lacking


def _no_prior(name: str, source: str) -> str:
    return (f"{name} has no coder-3 prior: its tokens are coded without one (larger files, and no --rdo); "
            f"`tokcodec fit-prior {source}` fits one (a few minutes) beside the weights, where encode and "
            "decode find it")


def _encode_warnings(src: Path | None, info: VideoInfo, skip: int, st: EncodeStats) -> list[str]:
    """What the file is not as asked: a target rate missed by more than TARGET_TOLERANCE, and a
    variable-rate input whose frames, stored at one rate, move against its timing and audio by
    more than a frame (the .tok holds one rate; a stream, ``src`` None, has one rate)."""
    out = []
    if st.target_bpp is not None and abs(st.video_bpp / st.target_bpp - 1) > TARGET_TOLERANCE:
        out.append(f"the video took {st.video_bpp:.4f} bpp, {st.video_bpp / st.target_bpp - 1:+.0%} off the "
                   f"target {st.target_bpp:.4f}: the rate plan did not reach it on this input "
                   f"({_rate_advice(st)})")
    if src is not None and not info.is_image and st.frames > 1:
        try:
            drift = timing_drift(src, info.frame_rate, skip, st.frames)
        except TokcodecError:  # (the input went away since: the file is written, say nothing)
            drift = None
        if drift is not None and drift > 1 / float(info.frame_rate):
            audio = " and its audio" if st.audio_bytes else ""
            out.append(f"the input's frame times are not those of one rate (variable frame rate): stored at "
                       f"{float(info.frame_rate):.3f} fps, its frames show up to {drift:.2f} s early or late "
                       f"against the source's timing{audio}; to keep it, make the input constant-rate first "
                       "(ffmpeg -i IN -fps_mode cfr -r 30 OUT)")
    return out


def _rate_advice(st: EncodeStats) -> str:
    """What moves a missed target's way. Over it: the correction records (some 3 kB a GOP at
    320x180, most of a small file at a low rate) and extra GOPs weigh most, which neither
    --scale nor the token bits' trade-off moves; a --scale given alone also takes the GOP back to
    17. Under it: only more tokens (a larger --scale) spend more (--passes and --refine moved a
    0.2 target's 0.0845 bpp by 0.5%)."""
    if st.video_bpp < st.target_bpp:
        return "to spend more: a larger --scale"
    if st.frames < 9:
        return "a file of so few frames is mostly its fixed overhead and correction records; to go lower: --no-correction"
    advice = ["--no-detail (the correction's detail gains, a large share of a small file's bits)",
              "a smaller --scale with a longer --gop (--scale alone keeps GOPs of 17)"]
    if st.scene_cuts:
        advice.append("--scenecut 0 (each cut began a GOP of its own)")
    return "to go lower: " + "; ".join(advice)


def file_state(path: Path) -> tuple[int, int] | None:
    """A regular file's size and modification time (None for anything else): the same before and
    after an encode unless something wrote to the file meanwhile."""
    try:
        st = path.stat()
    except (OSError, ValueError):
        return None
    return (st.st_size, st.st_mtime_ns) if stat.S_ISREG(st.st_mode) else None


def _bitrate_bpp(bitrate: float, info: VideoInfo, src: Path) -> float:
    """A target in bits per second of video as bits per pixel of the source."""
    check_bitrate(bitrate)
    if info.is_image:
        raise InputError(f"{src}: an image has no bitrate: give the target as bits per pixel (--bpp)")
    return check_target(bitrate / (float(info.frame_rate) * info.width * info.height))


def _check_memory(header: Header, info: VideoInfo, max_frames: int | None, runtime: Runtime,
                  search: RefineConfig) -> None:
    """MemoryLimitError where a CPU encode's GOPs, coded as ``header`` says, do not fit this
    process's memory (a GPU's own memory is another matter: codec/accel.py)."""
    if runtime.device.type == "cpu":
        check_encode_memory(_gop_footprint(header, info, header.gop, max_frames, runtime, search.steps > 0))


def _plan_rate(src: Path, info: VideoInfo, max_frames: int | None, target: float, gop: int | None,
               scale: float | None, coding_at: Callable[[Rung], tuple[Header, GopEncoder]], coder: TokenCoder,
               chooser: Callable[[float], Quantize | None], key_interval: int,
               check_memory: Callable[[Rung], None], progress: ProgressFn | None = None, skip: int = 0,
               deinterlace: str = "auto", scenecut: float = 0.0) -> tuple[RatePlan, MeasuredEncode | None]:
    """The rate plan for ``target`` bpp (codec/ratecontrol.py): the ladder's rungs that fit in
    memory (``check_memory`` raises for the base rung: as encode would), or only the rung of the
    ``gop`` and ``scale`` given. An input no longer than ``PROBE_WINDOWS`` of the ladder's longest
    GOPs (too few GOPs for the controller's feedback) is measured whole at each setting tried
    (``plan_short``); a longer one on ``PROBE_WINDOWS`` GOPs spread over it (coded on their own,
    so scaled by ``LINKED_RATE`` where GOPs will link), at the base rung and then at the rung
    ``plan_long`` takes from it. Where the input proves shorter than its container said, its
    frames are counted and the plan made again. With the plan, the encode of a short input's
    measurement at the settings the plan chose: the file's very chunks (None otherwise). The
    input's frames start after its first ``skip`` (encode --ss) and are read as ``deinterlace`` says;
    a whole-input measurement splits GOPs at scene cuts as encode does (``scenecut``)."""
    if gop is None and scale is None:
        base, ladder = DEFAULT_RUNG, [rung for rung in LADDER if _fits(check_memory, rung)]
    else:
        base = Rung(1.0 if scale is None else scale, 17 if gop is None else gop, 1.0)
        ladder = [base]
    check_memory(base)
    total = info.frame_count or _count_frames(src, max_frames, skip)
    if not total:
        raise _no_frames(src, skip)
    header = coding_at(base)[0]
    linked_share = LINKED_RATE if key_interval > 1 else 1.0

    def measure(rung: Rung, lam: float, groups: Iterable[list[np.ndarray]] | None = None) -> float:
        """The rate at ``rung`` and ``lam`` of ``groups``, or of the whole input (its GOPs linked,
        the chunks kept in ``whole_encodes`` with the time they took)."""
        _, encode_gop = coding_at(rung)
        if groups is not None:
            return measure_bpp(encode_gop, coder, groups, chooser(lam), progress=progress)
        start, chunks, frames = time.perf_counter(), [], iter_frames(src, max_frames, skip, deinterlace)
        input_gops = split_gops(itertools.islice(frames, total), rung.gop, scenecut)
        rate = measure_bpp(encode_gop, coder, input_gops, chooser(lam),
                           key_interval=key_interval, progress=progress, keep=chunks)
        seconds = time.perf_counter() - start
        # the chunks are the whole input's only where no frame follows (its container may have said fewer)
        if next(frames, None) is None:  # (kept without its tokens, of which a file needs the shape
            # alone: a 195-frame 4K input's are 26 MB a measurement)
            whole_encodes[(rung, lam)] = MeasuredEncode(
                [(n, np.broadcast_to(np.int32(0), idx.shape), payload, record) for n, idx, payload, record in chunks],
                seconds)
        frames.close()
        return rate

    whole_encodes: dict[tuple[Rung, float], MeasuredEncode] = {}

    def probed(rung: Rung, lam: float = DEFAULT_RDO, only: int | None = None) -> list[float] | None:
        """The rates at ``lam`` of the windows of ``rung`` spread over the input (of the ``only``-th
        alone where given), or None where it ended early. A window is split at scene cuts as
        encode splits GOPs (a window across a cut, coded whole, took more than the GOPs it becomes)."""
        rates, seen = [], 0
        try:
            with closing(probe_windows(src, max_frames, total, rung.gop, skip=skip, deinterlace=deinterlace)) as windows:
                for k, window in enumerate(windows):
                    seen += len(window)
                    if only is None or k == only:
                        rates.append(linked_share * measure(rung, lam, split_gops(iter(window), rung.gop, scenecut)))
                    if k == only:
                        return rates
        except ValueError:  # no frames at all where the windows were
            return None
        return rates if only is None and seen == PROBE_WINDOWS * rung.gop else None

    def strength(rung: Rung, rates: list[float], rate: float, wanted: float) -> float:
        """How strongly lambda acts on this input at ``rung``, whose windows took ``rates`` (on
        average ``rate``) at lambda 0.25: measured on the window of the median rate at the lambda
        the table gives for ``wanted`` (one window: the plan's cost, two more GOPs' encodes spared)."""
        lam = rdo_for_factor(wanted / max(rate, 1e-12))
        if abs(lam - DEFAULT_RDO) < STRENGTH_PROBE_RDO:
            return 1.0
        k = sorted(range(len(rates)), key=rates.__getitem__)[len(rates) // 2]
        at_lam = probed(rung, lam, only=k)
        return lambda_strength(rates[k], lam, at_lam[0]) if at_lam else 1.0

    for counted in (False, True):
        if counted:  # the container's frame count was too high: count them
            total = _count_frames(src, max_frames, skip)
            if not total:
                raise _no_frames(src, skip)
        total = min(total, max_frames) if max_frames else total
        # what the chunks may take: the target less the file's own bytes (a short file's header counts)
        chunks = max(0.05 * target, target - 8 * fixed_file_bytes(header) / max(1, total * info.width * info.height))
        if total <= PROBE_WINDOWS * max(rung.gop for rung in ladder):  # too few GOPs for feedback
            plan = replace(plan_short(chunks, total, measure, ladder, base, temporal_factor=header.temporal_factor),
                           frames=total)
            return plan, whole_encodes.get((plan.rung, plan.fixed_rdo))
        rates = probed(base)
        if rates is None:
            continue
        plan = plan_long(chunks, sum(rates) / len(rates), ladder, base)
        if plan.rung != base:
            rates = probed(plan.rung)  # the ladder's ratio was a guess: this input's rate on the rung chosen
        if rates is not None:
            rate = sum(rates) / len(rates)
            return replace(plan, content_bpp=rate, frames=total,
                           strength=strength(plan.rung, rates, rate, chunks)), None
    raise InputError(f"{src}: the input ended before its frames could be measured")


@dataclass
class MeasuredEncode:
    """A rate plan's encode of the whole input at the settings it chose: the file's chunks, and
    the seconds they took (the encode's own time)."""
    chunks: list[CodedGop]
    seconds: float


def _no_frames(src: Path, skip: int, came: int | None = None) -> InputError:
    """The error of an input that gave no frame (from frame ``skip`` on, with encode --ss); a
    stream's (``came``: its frames) ended before the part began."""
    if came is not None and skip:
        return InputError(f"{src}: the stream ended after {plural(came, 'frame')}, before frame {skip} (--ss)")
    return InputError(f"{src}: no frames decoded" + (f" from frame {skip} (--ss) on" if skip else ""))


def _count_frames(src: Path, max_frames: int | None, skip: int = 0) -> int:
    """The frames the input holds after its first ``skip`` (up to ``max_frames``), decoded and counted
    (not deinterlaced: one frame comes out of that per frame in)."""
    return sum(1 for _ in iter_frames(src, max_frames, skip, deinterlace="off"))


def input_part(src: Path, info: VideoInfo, start: float | Fraction | str | None,
                duration: float | Fraction | str | None, max_frames: int | None
                ) -> tuple[int, int | None, VideoInfo]:
    """The part of the input an encode reads (--ss, -t, --frames): the frames to pass over, the
    most to read after them, and ``info`` with the frame count left. A start at or after the
    end (when the container says how many frames it holds) is an InputError here; one past an
    unknown end, when no frame comes."""
    if max_frames is not None and max_frames < 1:
        raise ArgumentError(f"--frames must be at least 1 (leave it out for all the frames), got {max_frames}")
    if start is None and duration is None:
        return 0, max_frames, info
    if info.is_image:
        raise InputError(f"{src}: an image holds one frame: --ss and -t are for videos")
    begin, length = seconds(start), seconds(duration)
    if info.frame_count:  # a start after the end the container states is an error at once
        frame_range(info.frame_count, info.frame_rate, start=begin, source=str(src))
    # the part's length is not capped at the container's count, which can be low: the input's end ends it
    part = frame_range(sys.maxsize, info.frame_rate, start=begin, duration=length, frames=max_frames,
                       source=str(src))
    limit = None if part.stop == sys.maxsize else part.frames
    left = max(0, info.frame_count - part.start) if info.frame_count else 0
    return part.start, limit, replace(info, frame_count=left)


def with_rate(info: VideoInfo, fps: float | Fraction | str | None, src: Path) -> VideoInfo:
    """``info`` at ``fps`` frames per second where given: the rate of an image sequence or a
    still image (ArgumentError for a video, which keeps its own); 23.976 and 29.97 are taken as
    the 24000/1001 and 30000/1001 editing tools expect (io.standard_rate)."""
    if fps is None:
        return info
    from tokcodec.tokens import parse_frame_rate

    if not (info.is_image or info.is_sequence):
        raise ArgumentError(f"{src}: --fps sets the rate of an image sequence or a still image; a video "
                            "keeps its own")
    return replace(info, frame_rate=standard_rate(parse_frame_rate(str(fps), "--fps", ArgumentError)))


def _fits(check_memory: Callable[[Rung], None], rung: Rung) -> bool:
    try:
        check_memory(rung)
    except MemoryLimitError:
        return False
    return True


def model_for_header(header: Header, model: str | LoadedModel | None, source: str) -> LoadedModel:
    """The model that decodes the .tok file ``source`` (as model_for_weights picks it), checked
    to have the token grid its header states."""
    loaded = model_for_weights(header.model_name, header.weights_sha256, model, source)
    header.check_model(loaded.config, source)
    return loaded


def model_for_weights(name: str, sha256: str, model: str | LoadedModel | None, source: str) -> LoadedModel:
    """The model whose weights made ``source`` (a .tok file or a token file), which names the
    weights and records their hash: ``model`` when given (its hash must match), else the shipped
    version of preset ``name`` with that hash."""
    if model is None and resolve_name(name) not in PRESETS:
        raise ModelError(f"{source}: made with custom weights {name!r} "
                         f"(sha256 {sha256[:16]}...): pass --model with that weights file")
    if isinstance(model, LoadedModel):
        loaded = model
    elif model and resolve_name(model) != resolve_name(name):
        loaded = load_tokenizer(model, "cpu")
    else:  # the preset the file names: the version of its weights with the recorded hash
        loaded = load_tokenizer_version(name, sha256, "cpu")
    if loaded.sha256 != sha256:
        raise ModelError(f"{source}: weights hash mismatch: the file was made with {name} "
                         f"weights {sha256[:16]}..., model {loaded.name} has "
                         f"{loaded.sha256[:16]}... (pass --model with the weights used to encode)")
    return loaded


# (first frame, frames, tokens (t, h, w), correction or None) of one chunk
DecodedChunk = tuple[int, int, np.ndarray, Correction | None]


def _gop_footprint(header: Header, info: VideoInfo, gop: int, max_frames: int | None, runtime: Runtime,
                   refine: bool) -> EncodeFootprint:
    """The largest GOP this encode will put through the networks: ``gop`` frames, or the whole
    input when it is shorter, padded to 1 + 4k frames, at the coded (padded) size, from frames
    of the source's size."""
    s = header.temporal_factor
    steps = header.latent_shape(min(gop, info.frame_count or gop, max_frames or gop))[0]
    return EncodeFootprint(header.padded_width, header.padded_height, 1 + s * (steps - 1),
                           runtime.precision, refine, info.width, info.height, s)


def _decode_chunk(coder: TokenCoder, chunk: Chunk, header: Header, correction: bool = True,
                  before: Callable[[], DecodedChunk | TokcodecError | None] = lambda: None) -> DecodedChunk:
    """A chunk's tokens and, with ``correction``, its correction (the record's sizes checked
    against the header first). A linked chunk (coder 4's tokens, or a record coded against the
    previous GOP's) asks ``before`` for the chunk decoded before it (waiting for it): it must be
    the GOP just before, intact."""
    prior = None
    if _chunk_links(coder, chunk, correction):
        prior = before()
        if not isinstance(prior, tuple) or prior[0] + prior[1] != chunk.first_frame:
            before_it = f"frames up to {chunk.first_frame - 1}" if chunk.first_frame else "there is none"
            raise FormatError(f"its GOP {LINKED_TO_LOST} ({before_it}), which did not decode")
    tokens, fix = chunk_contents(coder, chunk, header, prior[2][-1] if prior else None, prior[3] if prior else None,
                                 Correction if correction else None)
    return chunk.first_frame, chunk.frames, tokens, fix


def _chunk_links(coder: TokenCoder, chunk: Chunk, correction: bool = True) -> bool:
    """Whether ``_decode_chunk`` asks for the chunk before this one (the record counts only when
    it is decoded): also the scheduler's test, so that a linked chunk is handed to a worker only
    once the one before it is done."""
    return links_to_previous(coder, chunk.payload, chunk.correction if correction else b"")


def _chunk_tokens(reader: ContainerReader | TokStream, correction: bool = True,
                  chunks: Iterable[Chunk] | None = None, ahead: int | None = None) -> Iterator[DecodedChunk]:
    """Each chunk's tokens and (with ``correction``) correction, without running the decoder
    network; chunks (all of the file's, or ``chunks``: a run of them that starts at a key chunk)
    are decoded in worker threads ahead of the caller (at most ``ahead`` of them: linked_map),
    yielded in order (a linked chunk after the one before it)."""
    coder = get_coder(reader.header.coder_id)

    def decoded(chunk: Chunk, before: Callable[[], DecodedChunk | None]) -> DecodedChunk:
        try:
            return _decode_chunk(coder, chunk, reader.header, correction, before)
        except TokcodecError as exc:
            raise type(exc)(f"{reader.source}: chunk {chunk.index}: {exc}") from None

    yield from linked_map(decoded, reader.chunks() if chunks is None else chunks,
                          partial(_chunk_links, coder, correction=correction), ahead=ahead)


def decode_tokens(reader: ContainerReader) -> Iterator[tuple[int, np.ndarray]]:
    """(frames, tokens (t, h, w)) per chunk, without running the decoder network."""
    for _, frames, tokens, _ in _chunk_tokens(reader, correction=False):
        yield frames, tokens


def _salvaged_tokens(reader: SalvageReader, lost: list[str]) -> Iterator[DecodedChunk]:
    """Tokens and corrections of the chunks that decode; the others are noted in ``lost`` (a
    linked chunk is lost with the one before it: frames are lost up to the next key GOP)."""
    coder = get_coder(reader.header.coder_id)

    def decoded(chunk: Chunk, before: Callable[[], tuple[Chunk, DecodedChunk | TokcodecError] | None]
                ) -> tuple[Chunk, DecodedChunk | TokcodecError]:
        try:
            return chunk, _decode_chunk(coder, chunk, reader.header, before=lambda: (before() or (None, None))[1])
        except MissingPriorError:
            raise  # (not damage: every chunk would be "lost")
        except TokcodecError as exc:
            return chunk, exc

    for chunk, result in linked_map(decoded, reader.chunks(), partial(_chunk_links, coder)):
        if isinstance(result, TokcodecError):
            lost.append(f"chunk {chunk.index}: {result}")
        else:
            yield result


class FrameSink(Protocol):
    """Where decoded frames go: a FrameWriter, or a list in memory."""

    def write(self, frame: np.ndarray) -> None: ...


@dataclass
class GapFiller:
    """Writes frames in order, filling frames lost to damage with the last good frame (or black).
    Positions are the file's frame numbers: a filler for part of a file starts at its first frame
    (``written``) and ends before ``stop``; frames outside it are passed over."""

    writer: FrameSink
    height: int
    width: int
    written: int = 0
    last: np.ndarray | None = None
    filled: list[tuple[int, int]] = field(default_factory=list)  # inclusive frame ranges
    stop: int | None = None

    def fill_to(self, frame_number: int) -> int:
        """Fill up to (not including) ``frame_number``; returns how many frames were filled."""
        if self.stop is not None:
            frame_number = min(frame_number, self.stop)
        count = frame_number - self.written
        if count <= 0:
            return 0
        self.filled.append((self.written, frame_number - 1))
        filler = self.last if self.last is not None else np.zeros((self.height, self.width, 3), np.uint8)
        for _ in range(count):
            self.writer.write(filler)
        self.written = frame_number
        return count

    def write(self, frame: np.ndarray) -> None:
        self.writer.write(frame)
        self.last = frame
        self.written += 1

    def put(self, position: int, frame: np.ndarray) -> bool:
        """Write frame number ``position`` if it lies in this filler's part of the file (frames
        before it lost are filled first); whether it was written. A frame before the part is kept
        as the one to repeat over lost frames at its start."""
        if position < self.written:
            self.last = frame
            return False
        if self.stop is not None and position >= self.stop:
            return False
        self.fill_to(position)
        self.write(frame)
        return True


def same_shape_batches(items: Iterator[tuple], size: int | Callable[[tuple[int, ...]], int]) -> Iterator[list[tuple]]:
    """Consecutive (first frame, frames, tokens, ...) items in lists of at most ``size`` (or of
    ``size(shape)`` for their token grids' shape, asked as each list fills: it may change between
    lists) whose token grids have one shape (a file's last GOP is often shorter), in their order.
    A full list is handed on at once, not when the next item comes (a stream's next GOP may be
    a GOP's time away, or never come)."""
    limit = size if callable(size) else (lambda shape: size)
    batch: list[tuple] = []
    for item in items:
        if batch and item[2].shape != batch[0][2].shape:
            yield batch
            batch = []
        batch.append(item)
        if len(batch) >= limit(batch[0][2].shape):
            yield batch
            batch = []
    if batch:
        yield batch


def check_gop_batch(gop_batch: int | str) -> None:
    if gop_batch != "auto" and (not isinstance(gop_batch, int) or gop_batch < 1):
        raise ArgumentError(f"--gop-batch must be 'auto' or at least 1, got {gop_batch!r}")


def decode_gops(items: Iterable[DecodedChunk], loaded: LoadedModel, runtime: Runtime, header: Header,
                out: GapFiller, gop_batch: int | str = "auto", progress: ProgressFn | None = None,
                source: str = "", longest: int | None = None) -> int:
    """Put GOPs' tokens through the decoder network, ``gop_batch`` GOPs per call ("auto": see
    decode_video), and write their frames to ``out`` in order, filling frames missing before a
    GOP. Returns the GOPs per call used (auto: the most it chose). On CPU, a
    MemoryLimitError first where the GOPs cannot fit: ``longest`` is the most frames a GOP of
    ``items`` holds (default: the header's GOP, which a short file's chunks may not reach), and
    ``source`` names the file in the error."""
    if runtime.device.type == "cpu":  # (auto: 1 GOP per call on CPU)
        latent = header.latent_shape(longest or header.gop)[0]  # (the network decodes whole latent steps)
        check_decode_memory(DecodeFootprint(header.padded_width, header.padded_height,
                                            1 + header.temporal_factor * (latent - 1), runtime.precision,
                                            1 if gop_batch == "auto" else int(gop_batch)), source)
    stager = HostStager(runtime)
    sizer = AutoGopBatch(runtime) if gop_batch == "auto" else None
    for batch in same_shape_batches(iter(items), sizer.size if sizer else int(gop_batch)):
        idx = torch.from_numpy(np.stack([item[2] for item in batch]).astype(np.int64))
        videos = decode_batch(loaded, runtime, stager, idx, sizer)
        for (first, n, _, fix), video in zip(batch, videos):
            filled = out.fill_to(first)
            if progress and filled:
                progress(filled)
            kept = sum(out.put(first + k, frame) for k, frame in
                       enumerate(tensor_to_frames(video, n, header, fix)))
            if progress:
                progress(kept)
    return sizer.largest if sizer else int(gop_batch)


def decode_batch(loaded: LoadedModel, runtime: Runtime, stager: HostStager, idx: torch.Tensor,
                 sizer: AutoGopBatch | None = None) -> list[torch.Tensor]:
    """The decoder network's frames for a batch of GOPs' token grids ``idx``, one [1, C, T, H, W]
    tensor per GOP. A batch the GPU has no memory for is decoded in halves (and ``sizer`` takes
    smaller batches of its shape from then on): a CUDA out-of-memory error ended the decode with
    "unexpected"; only a single GOP that does not fit is an error (MemoryLimitError)."""
    shape = tuple(idx.shape[1:])
    measured_from = sizer.measure_start(shape) if sizer else None
    try:
        with torch.inference_mode(), runtime.autocast():
            video = loaded.tokenizer.decode_indices(stager.to_device(idx))
    except torch.cuda.OutOfMemoryError:
        if len(idx) == 1:
            raise MemoryLimitError(f"out of GPU memory: one GOP of this file ({shape[0]} latent frames of "
                                   f"{shape[1]}x{shape[2]} tokens) does not fit; decode it with --device cpu") from None
    else:
        if sizer:
            sizer.measure_end(shape, measured_from)
        return [video[b:b + 1] for b in range(len(idx))]
    torch.cuda.empty_cache()  # (out of the except block: its traceback no longer holds the tensors)
    if sizer:
        sizer.shrink(shape, len(idx))
    half = len(idx) // 2
    return (decode_batch(loaded, runtime, stager, idx[:half], sizer)
            + decode_batch(loaded, runtime, stager, idx[half:], sizer))


def decode_video(src: str | Path | BinaryIO | TokStream, dst: str | Path, *, model: ModelName | LoadedModel | None = None,
                 device: str = "auto", precision: str = "auto", overwrite: bool = False,
                 progress: ProgressFn | None = None, audio: bool = True,
                 salvage: bool = False, gop_batch: int | str = "auto", compile: bool = False,
                 start: float | Fraction | str | None = None, duration: float | Fraction | str | None = None,
                 frames: int | None = None, metadata: bool = True) -> DecodeStats:
    """Decode a .tok file to a video file (.mp4/.mkv/.y4m), an image, or a directory of PNGs.

    The stored audio goes into .mp4/.mkv/.mov outputs unless ``audio`` is False, and so do the
    stored tags and chapters unless ``metadata`` is False. With ``salvage``,
    a damaged file decodes from its intact chunks: lost frames repeat the last good frame (black
    before the first one), so timing is kept, and ``DecodeStats.lost_frames`` lists them.
    ``gop_batch`` GOPs go through the decoder network at once (a GPU's throughput; memory grows
    with it); "auto" is 1 on CPU and on CUDA as many as half the free memory holds, measured on
    the first GOP of each length (codec/accel.py); a batch out of GPU memory is decoded in halves.
    ``compile`` wraps the decoder in torch.compile.
    ``start`` and ``duration`` (seconds, or "1:30"-style strings) and ``frames`` decode part of
    the file, as ffmpeg's -ss, -t and -frames:v do: the output (and its audio) starts at 0 with
    the first frame at or after ``start``, and only the GOPs that hold the part go through the
    network (codec/ranges.py).

    ``src`` may be a binary stream (a pipe: ``sys.stdin.buffer``) or a TokStream: it is decoded
    as it comes, each GOP once it has come (``gop_batch`` "auto" is 1 then). Its audio and
    tags come after its video, so they cannot go into the output: with an output that holds
    them, give ``audio=False`` and ``metadata=False`` (or decode a file)."""
    check_gop_batch(gop_batch)
    dst = Path(dst)
    kind = output_kind(dst)
    streamed = not isinstance(src, (str, os.PathLike))
    if streamed:
        if salvage:
            raise ArgumentError("salvage searches a damaged file for its intact GOPs, and a stream is read once as "
                                "it comes: write it to a file first (`tokcodec decode - --salvage` does)")
        check_output(dst, overwrite)
        reader = src if isinstance(src, TokStream) else TokStream(src, _stream_name(src))
        _check_stream_output(reader, dst, audio, metadata)
    else:
        src = Path(src)
        check_output(dst, overwrite, src)
        reader = open_salvage(src) if salvage else open_tok(src)
    source = reader.source if streamed else str(src)
    runtime = select_runtime(device, precision)
    with reader:
        h = reader.header
        part = decode_part(reader, start, duration, frames)
        if kind == "image" and part.frames != 1 and part.start != UNKNOWN_END:
            what = "a stream of unknown length may hold" if part.stop == UNKNOWN_END else \
                "the part asked for holds" if part.frames != reader.frame_count else "the file has"
            count = "more" if part.stop == UNKNOWN_END else part.frames
            raise OutputError(f"{dst}: an image output holds one frame, {what} {count} "
                              "(use a video extension or a directory, or --frames 1)")
        if streamed and start is None and duration is None and frames is None:
            part = FrameRange(0, UNKNOWN_END)  # (read to its end and checked, its header's frame count too)
        loaded = prepare_model(model_for_header(h, model, source), runtime)
        if compile:
            compile_networks(loaded.tokenizer)
        start_time = time.perf_counter()
        damaged: list[str] = []
        try:
            with output_errors(dst, av.FFmpegError):  # disk full, unwritable place, muxer refusal
                track = None if streamed else _stored_audio(reader, audio, damaged if salvage else None)
                stored = track is not None
                if stored and part.frames != reader.frame_count:  # to the end: all the audio, as a whole decode
                    length = float(time_of(part.frames, h.frame_rate)) if part.stop < reader.frame_count else None
                    track = track.cut(float(time_of(part.start, h.frame_rate)), length)
                    track = track if track.duration > 0 else None
                color = ColorInfo(h.color_range, h.colorspace, h.primaries, h.transfer)
                media, tags_lost = None, ""
                try:
                    media = reader.read_tags() if metadata and not streamed else None
                except FormatError as exc:  # (a damaged title is no reason to lose the video: said, and decoded)
                    tags_lost = str(exc)
                if media and part.frames != reader.frame_count:  # (as the audio: to the end, all of it)
                    length = time_of(part.frames, h.frame_rate) if part.stop < reader.frame_count else None
                    media = media.part(time_of(part.start, h.frame_rate), length)
                with staged_output(dst, kind, overwrite) as out_path, \
                        FrameWriter(out_path, h.width, h.height, h.frame_rate, color, audio=track,
                                    tags=media, grey=h.grey) as writer:
                    out = GapFiller(writer, h.height, h.width, written=part.start, stop=part.stop)
                    # a stream's GOPs one by one as they come: each decodes once it has come
                    grids = (_salvaged_tokens(reader, damaged) if salvage
                             else _chunk_tokens(reader, chunks=_chunks_for(reader, part), ahead=1 if streamed else None))
                    # closed on the way out, failure included: the entropy decoder's threads stop
                    # then, not when the exception that ended the decode is let go of
                    with closing(grids), closing(in_range(grids, part, lead_in=salvage)) as items:
                        used_batch = decode_gops(items, loaded, runtime, h, out,
                                                 1 if streamed and gop_batch == "auto" else gop_batch, progress,
                                                 source, _longest_gop(reader))
                    if streamed:
                        part = _stream_part(reader, part, start)
                        try:  # (damaged, they are said, as a file's: the output holds none anyway)
                            if metadata and reader.ended:
                                reader.read_tags()
                        except FormatError as exc:
                            tags_lost = str(exc)
                    if salvage and out.last is None:
                        # no frame decoded, so all of it black (every chunk left was linked to a
                        # lost one, or its record did not read): a video of filler helped no one
                        # (said before the filler is written: 200 GOPs of 4097 frames took minutes)
                        which = f" of its {part.frames} frames" if part.frames == reader.frame_count \
                            else f" of frames {part.start}-{part.stop - 1}"
                        linked = any(LINKED_TO_LOST in p for p in damaged)
                        raise nothing_survived(src, which, damaged + reader.problems, "could be decoded"
                                               + (" (the intact ones are linked to a lost one)" if linked else ""))
                    filled = out.fill_to(part.stop)
                    if progress and filled:
                        progress(filled)
                    audio_note, warnings, tags_note = writer.audio_note, writer.warnings, writer.tags_note
                    if track is not None and part.start == 0 and not audio_note.startswith("dropped"):
                        warnings.extend(_lead_in_left_out(track, h.frame_rate))
        except MissingPriorError:
            raise  # (an intact file: --salvage cannot help)
        except FormatError as exc:
            if salvage:
                raise
            raise FormatError(f"{exc} (--salvage decodes the intact parts)") from None
        problems = reader.problems + damaged if salvage else []
    if not audio and h.has_audio:
        audio_note = "dropped (--no-audio)"  # (as encode says it; "none" read as if there were none)
    elif streamed and h.has_audio:
        audio_note = audio_dropped(dst)
    elif h.has_audio and not stored:
        audio_note = "lost (audio block damaged)"
    elif stored and track is None:
        audio_note = "none in this part"
    if salvage and metadata and h.has_tags and reader.read_tags() is None:
        tags_note = "lost (tags block damaged)"  # (salvage's problems say how)
    elif not metadata and h.has_tags:
        tags_note = "dropped (--no-metadata)"
    elif tags_lost:
        tags_note = "lost (tags block damaged)"
        warnings.append(f"{tags_lost}: decoded without the tags and chapters (tokcodec verify checks the file)")
    elif streamed and h.has_tags:
        tags_note = tags_dropped(dst)
    return DecodeStats(source, str(dst), out.written - part.start, h.width, h.height,
                       time.perf_counter() - start_time, str(runtime.device), runtime.precision, audio_note,
                       out.filled, problems, gop_batch=used_batch, first_frame=part.start, warnings=warnings,
                       tags=tags_note)


def _longest_gop(reader: ContainerReader | SalvageReader | TokStream) -> int:
    """The most frames a chunk of the file holds (of its intact ones, salvaging; a stream's,
    which has not come yet: the header's GOP), at least 1."""
    if isinstance(reader, TokStream):
        return reader.header.gop
    counts = [s.frames for s in reader.spots] if isinstance(reader, SalvageReader) else \
        [e.frames for e in reader.entries]
    return max(counts, default=1)


def decode_part(reader: ContainerReader | SalvageReader | TokStream, start: float | Fraction | str | None = None,
                duration: float | Fraction | str | None = None, frames: int | None = None) -> FrameRange:
    """The frames decode_video writes of an open file: all of them, or the part ``start`` and
    ``duration`` (seconds, or times as ``--ss`` takes them) and ``frames`` name (an InputError
    when it holds none). A stream whose header does not state its frame count (`encode -o -`
    wrote it) is taken to run to UNKNOWN_END, cut where it ends (_stream_part)."""
    count, begin = reader.frame_count or UNKNOWN_END, seconds(start)
    if start is None and duration is None and frames is None:
        return FrameRange(0, count)
    if count == UNKNOWN_END and begin is not None and begin * reader.header.frame_rate >= UNKNOWN_END:
        return FrameRange(UNKNOWN_END, UNKNOWN_END)  # (after the end, said with its frames once it has ended)
    return frame_range(count, reader.header.frame_rate, start=begin,
                       duration=seconds(duration), frames=frames, source=str(reader.path))


def _chunks_for(reader: ContainerReader | TokStream, part: FrameRange) -> Iterator[Chunk]:
    """The chunks that decode ``part``: those that hold its frames, from the key chunk before them
    (the chunks between are entropy-decoded for the links, not put through the network). A
    stream's: all of them as they come (in_range drops those before the part)."""
    if isinstance(reader, TokStream) or part.frames == reader.frame_count:
        return reader.chunks()
    coder = get_coder(reader.header.coder_id)
    searched: dict[int, Chunk] = {}  # the chunks the key search read, handed on instead of read again

    def links(i: int) -> bool:
        searched[i] = reader.read_chunk(i)
        return _chunk_links(coder, searched[i])

    first, last = chunk_span([e.first_frame for e in reader.entries], [e.frames for e in reader.entries],
                             part, links)
    return (searched.pop(i) if i in searched else reader.read_chunk(i) for i in range(first, last + 1))


def _stream_part(reader: TokStream, part: FrameRange, start: float | Fraction | str | None) -> FrameRange:
    """``part`` of a stream, whose end was not known as it came (decode_part), cut at the frames
    it held; where it starts after them, the InputError a file's part gives."""
    if part.start >= reader.frames_read:
        frame_range(reader.frames_read, reader.header.frame_rate, start=seconds(start), source=reader.source)
    return FrameRange(part.start, min(part.stop, reader.frames_read))


def _check_stream_output(reader: TokStream, dst: Path, audio: bool, metadata: bool) -> None:
    """An ArgumentError where the stored audio or tags of a .tok decoded as it comes would go into
    ``dst``: they come after the video, which the output needs them before."""
    needed = after_video(reader.header, dst, audio, metadata)
    if needed:
        what, come, them = ("audio and tags", "come", "them") if len(needed) == 2 else \
            (needed[0], "comes" if needed == ["audio"] else "come", "it" if needed == ["audio"] else "them")
        without = ", ".join(f"{'audio' if n == 'audio' else 'metadata'}=False" for n in needed)
        raise ArgumentError(f"{reader.source}: its {what} {come} after its video, and {dst} needs {them} before "
                            f"it: decode it from a file (`tokcodec decode -` copies such a pipe to one first), "
                            f"or without {them} ({without})")


def _lead_in_left_out(track: AudioTrack, rate: Fraction) -> list[str]:
    """The warning for stored audio that plays before the first frame (an input whose video
    starts later than its audio): the output starts with the first frame, so it is left out.
    Below a frame or 50 ms (an AAC encoder's priming packet) it goes without a word."""
    lead = -track.start_offset
    if lead <= max(0.05, 1 / float(rate)):
        return []
    return [f"the stored audio begins {lead:.2f} s before the first frame; the output starts with the first "
            "frame, so that much of the audio is left out"]


def _stored_audio(reader: ContainerReader | SalvageReader, keep: bool,
                  problems: list[str] | None) -> AudioTrack | None:
    """The file's audio track; when salvaging (``problems`` given), damaged audio is noted and dropped."""
    if not keep or not reader.header.has_audio:
        return None
    try:
        block = reader.audio if isinstance(reader, SalvageReader) else reader.read_audio()
        return read_track(block.data, block.start_offset_us / 1_000_000) if block is not None else None
    except FormatError as exc:
        if problems is None:
            raise
        problems.append(f"{reader.path}: {exc} (audio dropped)")
        return None


def read_tokens(src: str | Path, model: ModelName | None = None, *, dtype: DTypeLike | None = None
                ) -> tuple[Header, list[np.ndarray], list[int]]:
    """All token grids of a .tok file (one (t, h, w) int64 array per GOP, or of ``dtype``, each
    converted as it is decoded) and each GOP's frame count. ``model``: the weights file that made
    it, where those are weights of your own (their coder-3 prior lies beside them; the network is
    not run)."""
    with open_tok(src) as reader:
        if model is not None:
            use_priors_of(model, reader.header, str(src))
        grids, frames = [], []
        for n, tokens in decode_tokens(reader):
            grids.append(tokens if dtype is None else tokens.astype(dtype, copy=False))
            frames.append(n)
        return reader.header, grids, frames


def check_reference(reference: str | Path, width: int | None, height: int | None) -> None:
    """decode --compare's reference, checked before anything is decoded: a video, image or
    image sequence (a directory of numbered images, as `decode` writes) whose frames are
    ``width`` x ``height`` (any size where None: a token file that does not record it)."""
    try:
        info = probe(reference)
    except InputError as exc:
        raise InputError(f"--compare {exc}") from None
    if width is not None and (info.width, info.height) != (width, height):
        raise InputError(f"--compare {reference}: its frames are {info.width}x{info.height}, "
                         f"the decoded ones {width}x{height}")


def compare_videos(reference: str | Path, decoded: str | Path, reference_start: int = 0) -> dict:
    """PSNR (RGB, 8-bit, uncapped: inf when identical) of a decoded video against its source over
    all frames, and the mean colour drift (the largest per-channel difference of the two videos'
    mean colours), streamed frame by frame through :class:`tokcodec.metrics.ErrorTotals`. A
    decoded part of a file (decode --ss) starts at the source's frame ``reference_start``.
    ``longer`` names the video that has frames left when the other ends ("reference", "decoded",
    or None): only the frames both have are compared. Frames are paired by number: ``rates``,
    (the reference's frame rate, the decode's), where they differ and both are videos (paired so,
    they show different moments), else None."""
    from tokcodec.io import output_kind, probe

    rates = None
    if output_kind(Path(decoded)) == "video":
        # (the reference is any input, not an output: its kind by output_kind failed an .avi or
        # .mpg source "unknown output format" after the whole decode)
        source = probe(reference)
        if not (source.is_image or source.is_sequence):
            theirs, ours = source.frame_rate, probe(decoded).frame_rate
            rates = (float(theirs), float(ours)) if theirs != ours else None
    totals = ErrorTotals()
    source_frames = iter_frames(reference, skip=reference_start)
    decoded_frames = iter_frames(decoded)
    while True:
        a, b = next(source_frames, None), next(decoded_frames, None)
        if a is None or b is None:
            longer = "reference" if a is not None else "decoded" if b is not None else None
            break
        if a.shape != b.shape:
            raise InputError(f"--compare {reference}: its frames are {a.shape[1]}x{a.shape[0]}, "
                             f"the decoded ones {b.shape[1]}x{b.shape[0]}")
        totals.add(a, b)
    return {"frames": totals.frames, "mse": totals.mse, "psnr": totals.psnr(cap=math.inf),
            "colour_drift": totals.colour_drift, "longer": longer, "rates": rates}
