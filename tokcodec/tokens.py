"""Tokens for language models, both ways: the indices of a .tok file or of a video as .npy or
.safetensors (`tokcodec tokens`, `tokcodec batch tokens`), and token arrays (exported, or written
by a model) decoded back to video (`tokcodec detokenize`).

A token array is (latent frames, h, w) of ``bits``-bit indices, GOPs concatenated along the
first axis, or (..., parts) split into sub-tokens (``--split``). The decoder network turns each
GOP's grid into 1 + s*(t - 1) frames of 8h x 8w pixels (``fast-deep``: s = 4, 8x8 pixels per
token). A .tok file's correction records are not tokens: tokens decoded alone give the picture
of ``encode --no-correction`` tokens' quality or below, not ``decode``'s.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence, TypeVar

import numpy as np

from tokcodec.codec.container import MAX_DIM, MAX_GOP, Header, check_display_size
from tokcodec.codec.outputs import check_output, output_errors, staged_output
from tokcodec.defaults import DEFAULT_GOP, DEFAULT_TOKEN_SCENECUT, check_gop
from tokcodec.errors import ArgumentError, FormatError, InputError, ModelError, OutputError, why_not_a_file

if TYPE_CHECKING:
    from typing import BinaryIO

    from tokcodec.codec.stats import DecodeStats
    from tokcodec.device import Runtime
    from tokcodec.model.refine import RefineConfig
    from tokcodec.model.zoo import LoadedModel, ModelName
    from tokcodec.stream_input import StreamedVideo

TOKENS_KEY = "tokens"
#: the integer dtypes of safetensors, by their name there
SAFETENSORS_INTS = {f"{k}{n}": np.dtype(f"{t}{n}") for k, t in (("I", "int"), ("U", "uint")) for n in (8, 16, 32, 64)}
T = TypeVar("T")
#: frames per GOP of a bare array (.npy, or an array handed to detokenize): encode's default
DEFAULT_TOKEN_GOP = DEFAULT_GOP
MAX_FRAME_RATE = 1000


def check_split(bits: int, sub_bits: int) -> None:
    """ArgumentError unless ``bits``-bit tokens split into ``sub_bits``-bit parts (--split)."""
    if sub_bits <= 0 or bits % sub_bits:
        raise ArgumentError(f"--split {sub_bits}: {bits}-bit tokens do not split into {sub_bits}-bit parts")


def split_tokens(tokens: np.ndarray, bits: int, sub_bits: int) -> np.ndarray:
    """Token factorisation (MAGVIT-v2): each ``bits``-bit index -> bits/sub_bits sub-tokens, low bits first."""
    check_split(bits, sub_bits)
    shifts = np.arange(bits // sub_bits, dtype=np.int64) * sub_bits
    return ((tokens[..., None].astype(np.int64) >> shifts) & ((1 << sub_bits) - 1)).astype(np.int32)


def join_tokens(parts: np.ndarray, bits: int, sub_bits: int) -> np.ndarray:
    """The inverse of :func:`split_tokens`: (..., bits/sub_bits) sub-tokens -> int64 indices;
    InputError when the parts do not make ``bits``-bit tokens."""
    if sub_bits <= 0 or bits % sub_bits or parts.shape[-1] != bits // sub_bits:
        raise InputError(f"sub-tokens of {sub_bits} bits, {parts.shape[-1]} per token, do not make "
                         f"the model's {bits}-bit tokens")
    _check_range(parts, sub_bits, "sub-token")
    shifts = np.arange(bits // sub_bits, dtype=np.int64) * sub_bits
    return (parts.astype(np.int64) << shifts).sum(-1)


@dataclass(frozen=True)
class TokenFile:
    """A token array and what its file records about decoding it (None: not recorded)."""

    tokens: np.ndarray                       # (latent frames, h, w) or (..., parts) when split
    source: str = "tokens"                   # where they came from, for messages
    split_bits: int | None = None            # bits per sub-token when the last axis holds parts
    bits: int | None = None
    gop_latent_frames: list[int] | None = None
    gop_frames: list[int] | None = None
    model: str | None = None
    weights_sha256: str | None = None
    frame_rate: Fraction | None = None
    size: tuple[int, int] | None = None          # (width, height) as displayed
    coded_size: tuple[int, int] | None = None    # (width, height) the tokens cover, before padding
    color: tuple[int, int, int, int] | None = None  # range, space, primaries, transfer (FFmpeg enums)
    grey: bool = False                           # the source was grey: decode shows grey (Header.grey)
    #: how the tokens were made (precision, device, threads, versions, encoder settings): tokens
    #: are reproducible only where these match (docs/usage.md)
    made: dict[str, str | int | float] | None = None
    #: what tokenizing had to say (as EncodeStats.warnings: a variable frame rate, the model); not
    #: written to files
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        """What `tokcodec info` shows of a token file (JSON-ready; None where not recorded)."""
        rate = self.frame_rate
        return {"file": self.source, "shape": list(self.tokens.shape), "dtype": self.tokens.dtype.name,
                "bits": self.bits, "split_bits": self.split_bits,
                "gops": len(self.gop_latent_frames) if self.gop_latent_frames is not None else None,
                "gop_latent_frames": self.gop_latent_frames, "gop_frames": self.gop_frames,
                "frames": sum(self.gop_frames) if self.gop_frames is not None else None,
                "model": self.model, "weights_sha256": self.weights_sha256,
                "frame_rate": f"{rate.numerator}/{rate.denominator}" if rate is not None else None,
                "size": list(self.size) if self.size else None,
                "coded_size": list(self.coded_size) if self.coded_size else None,
                "color": list(self.color) if self.color else None, "grey": self.grey,
                "tokens_per_second": self.tokens_per_second(), "made": self.made}

    def tokens_per_second(self) -> float | None:
        """Whole tokens per second of video, where the frames and the rate are recorded."""
        frames = sum(self.gop_frames) if self.gop_frames else 0
        if not frames or self.frame_rate is None:
            return None
        count = int(np.prod(self.tokens.shape[:3]))
        return round(count * float(self.frame_rate) / frames, 1)


def token_file_of(src: str | Path, model: str | None = None) -> TokenFile:
    """A .tok file's tokens (entropy decoded, no network run) with what decoding them needs;
    ``model``: the weights file of your own that made it (for the coder-3 prior beside it)."""
    from tokcodec.codec.pipeline import read_tokens

    h, grids, frames = read_tokens(src, model, dtype=np.int32)  # (int32 GOP by GOP: the whole file is held)
    return TokenFile(np.concatenate(grids, 0), str(src), bits=h.bits,
                     gop_latent_frames=[g.shape[0] for g in grids], gop_frames=frames,
                     model=h.model_name, weights_sha256=h.weights_sha256, frame_rate=h.frame_rate,
                     size=(h.width, h.height), coded_size=(h.coded_width, h.coded_height),
                     color=(h.color_range, h.colorspace, h.primaries, h.transfer), grey=h.grey,
                     made={"precision": h.precision})


def made_here(runtime_device: str, precision: str, weights_sha256: str, rdo: float,
              **settings: str | int | float) -> dict[str, str | int | float]:
    """What a tokenization here depends on beyond its input and weights: the precision, device,
    torch threads (results vary with them: docs/usage.md), versions, the coder-3 prior that
    priced the token bits (``rdo`` above 0; a refit changes it, not the weights), then
    ``settings``."""
    import torch

    from tokcodec import __version__
    from tokcodec.codec.context_coder3 import prior_for_model

    made: dict[str, str | int | float] = {
        "precision": precision, "device": runtime_device, "threads": torch.get_num_threads(),
        "tokcodec": __version__, "torch": torch.__version__.split("+")[0], "rdo": rdo, **settings}
    prior = prior_for_model(weights_sha256) if rdo > 0 else None
    if prior is not None:
        made["prior"] = prior.key.hex()
    return made


def write_token_file(tokens: TokenFile, dst: str | Path, split_bits: int | None = None,
                     overwrite: bool = False) -> tuple[int, ...]:
    """Write whole tokens as one int32 array (latent frames, h, w[, parts]); a .safetensors
    output also records what :func:`detokenize` needs (the TokenFile's fields that are known)."""
    dst = Path(dst)
    if not isinstance(tokens, TokenFile):
        raise TypeError("write_token_file takes a TokenFile: for an array of your own, TokenFile(array, bits=18, "
                        "...) with what you know of decoding it (model, weights_sha256, gop_latent_frames, "
                        "frame_rate, size); np.save writes the bare array")
    check_token_output(dst, overwrite)
    if tokens.tokens.ndim != 3 or tokens.bits is None:
        raise ArgumentError("write_token_file takes whole tokens (latent frames, h, w) of a known width (bits)")
    _check_consistent(tokens)
    array = tokens.tokens.astype(np.int32, copy=False)  # (a copy only where it is another type)
    if split_bits:
        array = split_tokens(array, tokens.bits, split_bits)
    with output_errors(dst), staged_output(dst, "file", overwrite) as tmp:  # disk full, unwritable place
        if dst.suffix == ".npy":
            np.save(tmp, array, allow_pickle=False)
        else:
            from safetensors.numpy import save

            from tokcodec.model.weights_delta import canonical_safetensors
            # bytes, then a plain write: the same tokens give the same file (sorted metadata), and
            # it takes the umask's mode (the library's own save_file made it 0600)
            tmp.write_bytes(canonical_safetensors(save({TOKENS_KEY: array}, metadata=_metadata(tokens, split_bits))))
    return array.shape


def _check_consistent(t: TokenFile) -> None:
    """ArgumentError where a TokenFile's fields disagree with its tokens or would not read back."""
    latent = t.tokens.shape[0]
    if t.gop_latent_frames is not None and sum(t.gop_latent_frames) != latent:
        raise ArgumentError(f"gop_latent_frames add up to {sum(t.gop_latent_frames)} latent frames, the tokens "
                            f"have {latent}")
    if t.gop_frames is not None and len(t.gop_frames) != len(t.gop_latent_frames or ()):
        raise ArgumentError(f"gop_frames lists {len(t.gop_frames)} GOPs, gop_latent_frames "
                            f"{len(t.gop_latent_frames or ())}")
    try:
        _check_range(t.tokens, t.bits, "token")
    except InputError as exc:
        raise ArgumentError(str(exc)) from None
    if t.made is not None and not _plain_record(t.made):
        raise ArgumentError(f"made: metadata 'made' {MADE_RULE}")  # (what read_token_file would say)


def _metadata(t: TokenFile, split_bits: int | None) -> dict[str, str]:
    meta = {"bits": str(t.bits), "split_bits": str(split_bits or 0)}
    if t.gop_latent_frames is not None:
        meta["gop_latent_frames"] = json.dumps(t.gop_latent_frames)
    if t.gop_frames is not None:
        meta["gop_frames"] = json.dumps(t.gop_frames)
    if t.weights_sha256 is not None:
        meta.update(model=t.model or "", weights_sha256=t.weights_sha256)
    if t.frame_rate is not None:
        meta["frame_rate"] = f"{t.frame_rate.numerator}/{t.frame_rate.denominator}"
    if t.size is not None:
        meta.update(width=str(t.size[0]), height=str(t.size[1]))
    if t.coded_size is not None:
        meta.update(coded_width=str(t.coded_size[0]), coded_height=str(t.coded_size[1]))
    if t.color is not None:
        meta["color"] = json.dumps(list(t.color))
    if t.grey:
        meta["grey"] = "true"
    if t.made:
        meta["made"] = json.dumps(t.made, sort_keys=True)
    return meta


def export_tokens(src: str | Path, dst: str | Path, split_bits: int | None = None,
                  overwrite: bool = False, model: ModelName | None = None) -> tuple[int, ...]:
    """A .tok file's tokens as .npy or .safetensors (:func:`write_token_file`); returns the shape.
    ``model``: as :func:`token_file_of`'s."""
    check_token_output(Path(dst), overwrite)  # before the file is read
    return write_token_file(token_file_of(src, model), dst, split_bits, overwrite)


def bare_array_warning(tokens: TokenFile, dst: str | Path) -> str | None:
    """The warning for a .npy of tokens whose GOPs vary in length before the last (scene cuts):
    a bare array does not say where they end, and detokenize would cut it into GOPs of one length."""
    lengths = list(tokens.gop_latent_frames or [])
    one_length = len(set(lengths[:-1])) <= 1 and (len(lengths) < 2 or lengths[-1] <= lengths[0])
    if Path(dst).suffix.lower() != ".npy" or one_length:  # (a short last GOP: as detokenize cuts it)
        return None
    return (f"{dst}: its GOPs vary in length (scene cuts: latent frames {', '.join(map(str, lengths[:8]))}"
            f"{'...' if len(lengths) > 8 else ''}), which a bare .npy array does not record: detokenize would "
            "cut it wrong; write .safetensors (it records them), or tokenize with --scenecut 0")


def check_token_output(dst: Path, overwrite: bool) -> None:
    if dst.suffix not in (".npy", ".safetensors"):
        raise OutputError(f"{dst}: tokens are written as .npy or .safetensors")
    check_output(dst, overwrite)
    if dst.is_dir():
        raise OutputError(f"{dst}: is a directory")


def tokenize(src: str | Path | BinaryIO | StreamedVideo, *, model: ModelName | LoadedModel = "default", gop: int | None = None,
             scale: float | None = None, passes: int | None = None, rdo: float | None = None,
             refine: int | RefineConfig = 0,
             max_frames: int | None = None, device: str = "auto", precision: str = "auto",
             progress: Callable[[int], None] | None = None, start: float | Fraction | str | None = None,
             duration: float | Fraction | str | None = None, deinterlace: str = "auto",
             scenecut: float = DEFAULT_TOKEN_SCENECUT, fps: float | Fraction | str | None = None) -> TokenFile:
    """A video's (or image's) tokens, encoded as tokens alone (``encode --no-correction``: no
    correction layer beside them, so that they stand on their own), with what decoding them
    back needs; ``start``/``duration``/``max_frames``: of part of it, ``deinterlace``,
    ``scenecut`` (GOPs that end before scene cuts; default off here: GOPs of one length) and
    ``fps`` (of an image sequence): as encode_video's; ``src`` as encode_video's too (a Y4M
    stream is read as it comes).
    Streams like encode: memory does not grow with the video's length beyond the tokens
    themselves."""
    import tempfile

    from tokcodec.codec.pipeline import encode_video

    with tempfile.TemporaryDirectory(prefix="tokcodec-") as tmp:
        tok = Path(tmp) / "tokens.tok"
        st = encode_video(src, tok, model=model, gop=gop, scale=scale, passes=passes, rdo=rdo, refine=refine,
                          max_frames=max_frames, device=device, precision=precision, progress=progress,
                          correction=False, audio=False, start=start, duration=duration, deinterlace=deinterlace,
                          scenecut=scenecut, fps=fps)
        tokens = token_file_of(tok)
        made = made_here(st.device, st.precision, tokens.weights_sha256 or "", st.rdo, passes=st.passes,
                         refine=st.refine, scale=st.scale, scenecut=scenecut,
                         **({"deinterlaced": 1} if st.deinterlaced else {}))
        source = str(src) if isinstance(src, (str, Path)) else st.input  # (a stream's name)
        return replace(tokens, source=source, made=made, warnings=tuple(st.warnings))


def read_token_file(path: str | Path, header_only: bool = False) -> TokenFile:
    """A .npy (a bare array) or .safetensors token file (a ``tokens`` tensor and, as `tokcodec
    tokens` writes it, metadata), every shape and field checked before the array is read.
    ``header_only``: the tokens are not read (``tokens`` is a zero-filled read-only view of their
    shape and dtype), for what the metadata says."""
    path = Path(path)
    reason = why_not_a_file(path)
    if reason:
        raise InputError(f"{path}: {reason}")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        with path.open("rb") as fh:
            magic = fh.read(6)
        if magic.startswith(b"PK"):
            raise FormatError(f"{path}: an .npz archive, not one .npy array")
        if magic != b"\x93NUMPY":
            raise FormatError(f"{path}: not a .npy array (no NumPy header)")
        try:  # the header is parsed and the shape checked against the file's length, no data read
            tokens = np.load(path, mmap_mode="r", allow_pickle=False)
        except Exception as exc:  # noqa: BLE001 - numpy's header parser raises what its tokenizer does
            raise FormatError(f"{path}: not a readable .npy array ({type(exc).__name__}: {str(exc)[:80]})") from None
        _check_array(tokens, str(path))
        return TokenFile(tokens, str(path))
    if suffix == ".safetensors":
        return _read_safetensors(path, header_only)
    raise InputError(f"{path}: token files are .npy or .safetensors")


def _read_safetensors(path: Path, header_only: bool) -> TokenFile:
    from safetensors import SafetensorError, safe_open

    src = str(path)
    try:
        with safe_open(src, framework="np") as f:
            if TOKENS_KEY not in f.keys():
                keys = sorted(f.keys())
                listed = ", ".join(k[:40] for k in keys[:5]) + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")
                raise FormatError(f"{src}: no {TOKENS_KEY!r} tensor (has: {listed or 'none'})")
            meta = f.metadata() or {}
            view = f.get_slice(TOKENS_KEY)
            if str(view.get_dtype()).upper() not in SAFETENSORS_INTS:
                raise FormatError(f"{src}: tokens are {view.get_dtype()}, not integers")
            _check_shape(tuple(view.get_shape()), src)
            if header_only:
                tokens = np.broadcast_to(np.zeros((), SAFETENSORS_INTS[str(view.get_dtype()).upper()]),
                                         tuple(view.get_shape()))
            else:
                tokens = f.get_tensor(TOKENS_KEY)
    except SafetensorError as exc:
        raise FormatError(f"{src}: not a readable safetensors file ({exc})") from None
    except (ValueError, TypeError) as exc:  # a dtype numpy has no type for
        raise FormatError(f"{src}: cannot read {TOKENS_KEY!r} ({exc})") from None
    _check_array(tokens, src)
    split = _int_field(meta, "split_bits", src, 0, 32)
    size = _size_field(meta, "width", "height", src)
    coded = _size_field(meta, "coded_width", "coded_height", src)
    color = _int_list(meta, "color", src, 0, 255)
    if color is not None and len(color) != 4:
        raise FormatError(f"{src}: metadata 'color' needs 4 values, has {len(color)}")
    return TokenFile(
        tokens, src, split_bits=split or None, bits=_int_field(meta, "bits", src, 1, 32),
        gop_latent_frames=_int_list(meta, "gop_latent_frames", src, 1, MAX_GOP),
        gop_frames=_int_list(meta, "gop_frames", src, 1, MAX_GOP),
        model=meta.get("model") or None, weights_sha256=_sha_field(meta, src),
        frame_rate=_rate_field(meta.get("frame_rate"), src), size=size, coded_size=coded,
        color=tuple(color) if color is not None else None, grey=meta.get("grey") == "true",
        made=_made_field(meta, src))


MADE_RULE = "must be a JSON object of at most 32 short names and values"


def _plain_record(made: object) -> bool:
    """Whether ``made`` is what a 'made' record may hold: at most 32 short names of plain values."""
    return (isinstance(made, dict) and len(made) <= 32
            and all(isinstance(k, str) and len(k) <= 40 and type(v) in (str, int, float) and len(str(v)) <= 200
                    for k, v in made.items()))


def _made_field(meta: dict[str, str], source: str) -> dict[str, str | int | float] | None:
    """The 'made' record (``_plain_record``), FormatError where it is not one."""
    if "made" not in meta:
        return None
    try:
        made = json.loads(meta["made"])
    except (ValueError, RecursionError):
        made = None
    if not _plain_record(made):
        raise FormatError(f"{source}: metadata 'made' {MADE_RULE}")
    return made


def _check_shape(shape: tuple[int, ...], source: str) -> None:
    if len(shape) not in (3, 4) or not all(n > 0 for n in shape):
        raise FormatError(f"{source}: tokens of shape {shape}: expected (latent frames, h, w) "
                          "or (latent frames, h, w, sub-tokens)")
    if max(shape[1:3]) > MAX_DIM:
        raise FormatError(f"{source}: a token grid of {shape[2]}x{shape[1]} is larger than any video")


def _check_array(tokens: np.ndarray, source: str) -> None:
    if tokens.dtype.kind not in "iu":
        raise FormatError(f"{source}: tokens are {tokens.dtype}, not integers")
    _check_shape(tokens.shape, source)


def _named_errors(source: str, check: Callable[..., T], *args: object) -> T:
    """``check(*args)``, its InputError naming ``source`` as every other error of a token file does."""
    try:
        return check(*args)
    except InputError as exc:
        raise InputError(f"{source}: {exc}") from None


def _check_range(tokens: np.ndarray, bits: int, what: str) -> None:
    low, high = int(tokens.min()), int(tokens.max())
    if low < 0 or high >= 1 << bits:
        raise InputError(f"{what}s range over [{low}, {high}]: {bits}-bit {what}s lie in [0, {(1 << bits) - 1}]")


def _int_field(meta: dict[str, str], key: str, source: str, low: int, high: int) -> int | None:
    if key not in meta:
        return None
    try:
        value = int(meta[key])
    except ValueError:
        raise FormatError(f"{source}: metadata {key!r} is not a whole number: {meta[key][:40]!r}") from None
    if not low <= value <= high:
        raise FormatError(f"{source}: metadata {key!r} = {value} out of range [{low}, {high}]")
    return value


def _int_list(meta: dict[str, str], key: str, source: str, low: int, high: int) -> list[int] | None:
    if key not in meta:
        return None
    try:
        values = json.loads(meta[key])
    except (ValueError, RecursionError):
        values = None
    if not isinstance(values, list) or not all(type(v) is int and low <= v <= high for v in values):
        raise FormatError(f"{source}: metadata {key!r} must be a list of whole numbers in [{low}, {high}]")
    return values


def _size_field(meta: dict[str, str], wkey: str, hkey: str, source: str) -> tuple[int, int] | None:
    w, h = _int_field(meta, wkey, source, 1, MAX_DIM), _int_field(meta, hkey, source, 1, MAX_DIM)
    if (w is None) != (h is None):
        raise FormatError(f"{source}: metadata has {wkey if w is not None else hkey} without the other")
    return (w, h) if w is not None else None


def _sha_field(meta: dict[str, str], source: str) -> str | None:
    sha = meta.get("weights_sha256")
    if sha is None:
        return None
    if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        raise FormatError(f"{source}: metadata 'weights_sha256' is not a SHA-256 in hex")
    return sha


def _rate_field(text: str | None, source: str) -> Fraction | None:
    return None if text is None else parse_frame_rate(text, f"{source}: metadata 'frame_rate'", FormatError)


def parse_frame_rate(text: str, what: str = "--fps", error: type[Exception] = InputError) -> Fraction:
    """'25', '30000/1001' or '29.97' -> a Fraction in (0, 1000] frames per second."""
    try:
        rate = Fraction(text.strip()).limit_denominator(1_000_000)
    except (ValueError, ZeroDivisionError):
        raise error(f"{what}: {text[:40]!r} is not a frame rate (e.g. 25, 30000/1001)") from None
    if not 0 < rate <= MAX_FRAME_RATE:
        raise error(f"{what}: {text[:40]} frames per second is out of range (0, {MAX_FRAME_RATE}]")
    return rate


@dataclass
class _FrameList:
    frames: list[np.ndarray] = field(default_factory=list)

    def write(self, frame: np.ndarray) -> None:
        self.frames.append(frame)


@dataclass(frozen=True)
class _Plan:
    """A token array made ready to decode: GOP grids, frames per GOP, the header tensor_to_frames reads."""

    grids: list[np.ndarray]
    frames: list[int]
    header: Header
    source: str

    @property
    def frame_count(self) -> int:
        return sum(self.frames)

    def items(self) -> list[tuple[int, int, np.ndarray, None]]:
        firsts = np.cumsum([0] + self.frames[:-1])
        return [(int(first), n, grid, None) for first, n, grid in zip(firsts, self.frames, self.grids)]


def _plan(src: TokenFile, loaded: LoadedModel, runtime: Runtime, gop: int | None, split_bits: int | None,
          frame_rate: Fraction | None) -> _Plan:
    source = src.source
    cfg = loaded.config
    s, f, bits = cfg.temporal_factor, cfg.spatial_factor, cfg.bits
    if src.bits is not None and src.bits != bits:
        raise InputError(f"{source}: {src.bits}-bit tokens; model {loaded.name} has {bits}-bit tokens")
    tokens = src.tokens
    if src.split_bits is not None:
        if split_bits is not None and split_bits != src.split_bits:
            raise InputError(f"{source}: the file records sub-tokens of {src.split_bits} bits, not --split {split_bits}")
        if tokens.ndim != 4:
            raise FormatError(f"{source}: the file records sub-tokens of {src.split_bits} bits, "
                              f"but its tokens {tokens.shape} have no axis of them")
    split_bits = split_bits or src.split_bits
    if tokens.ndim == 4:
        if not split_bits:
            raise InputError(f"{source}: tokens of shape {tokens.shape} have a fourth axis: pass --split BITS "
                             "if it holds sub-tokens")
        tokens = _named_errors(source, join_tokens, tokens, bits, split_bits)
    elif split_bits:
        raise InputError(f"{source}: --split {split_bits} needs a fourth axis of sub-tokens; the tokens are {tokens.shape}")
    else:
        _named_errors(source, _check_range, tokens, bits, "token")  # (own dtype: decoded GOP by GOP)
    latent, th, tw = tokens.shape
    lengths = _gop_lengths(src, latent, gop, s)
    if max(lengths) > 1 + (MAX_GOP - 1) // s:
        raise FormatError(f"{source}: a GOP of {max(lengths)} latent frames is longer than any encode makes "
                          f"({MAX_GOP} frames)")
    frames = src.gop_frames or [1 + s * (n - 1) for n in lengths]
    if len(frames) != len(lengths):
        raise FormatError(f"{source}: metadata lists {len(frames)} GOPs' frames for {len(lengths)} GOPs")
    for n, t in zip(frames, lengths):
        if not 1 + s * (t - 2) < n <= 1 + s * (t - 1):  # the frames a GOP of t latent frames codes
            raise FormatError(f"{source}: a GOP of {t} latent frames cannot hold {n} frames")
    padded = (tw * f, th * f)
    if max(padded) > MAX_DIM:
        raise InputError(f"{source}: a token grid of {tw}x{th} decodes to {padded[0]}x{padded[1]}, "
                         f"larger than {MAX_DIM} pixels")
    coded = src.coded_size or padded
    if not all(p - f < c <= p for c, p in zip(coded, padded)):
        raise FormatError(f"{source}: coded size {coded[0]}x{coded[1]} does not fit a token grid of {tw}x{th}")
    width, height = src.size or coded
    check_display_size(width, height, coded[0], coded[1], source)
    color = src.color or (0, 2, 2, 2)
    header = Header(width, height, coded[0], coded[1], padded[0], padded[1],
                    frame_rate or src.frame_rate or Fraction(25), sum(frames), 1 + s * (max(lengths) - 1), s, f, bits,
                    0, loaded.name, loaded.sha256, runtime.precision, *color, grey=src.grey)
    bounds = np.cumsum([0] + lengths)
    return _Plan([tokens[a:b] for a, b in zip(bounds[:-1], bounds[1:])], frames, header, source)


def _gop_lengths(src: TokenFile, latent: int, gop: int | None, s: int) -> list[int]:
    """Latent frames per GOP: as the file records, or GOPs of ``gop`` frames (default 17)."""
    if src.gop_latent_frames is not None:
        if gop is not None:
            raise ArgumentError(f"{src.source}: the file records its GOPs; --gop is for bare arrays")
        if sum(src.gop_latent_frames) != latent:
            raise FormatError(f"{src.source}: metadata GOPs hold {sum(src.gop_latent_frames)} latent frames, "
                              f"the tokens {latent}")
        return list(src.gop_latent_frames)
    gop = DEFAULT_TOKEN_GOP if gop is None else gop
    check_gop(gop, s)
    per_gop = 1 + (gop - 1) // s
    full, rest = divmod(latent, per_gop)
    return [per_gop] * full + ([rest] if rest else [])


#: a token file's path, a TokenFile, one array (latent frames, h, w[, parts]), or one such array
#: per GOP (as read_tokens returns them)
TokenSource = str | Path | TokenFile | np.ndarray | Sequence[np.ndarray]


def _token_file(src: TokenSource) -> TokenFile:
    if isinstance(src, (str, Path)):
        return read_token_file(src)
    if isinstance(src, TokenFile):
        return src
    if isinstance(src, (list, tuple)) and src and all(isinstance(g, np.ndarray) for g in src):
        grids = list(src)
        if any(g.ndim not in (3, 4) or not g.shape[0] or g.ndim != grids[0].ndim or g.shape[1:] != grids[0].shape[1:]
               for g in grids):
            raise InputError("tokens per GOP must be arrays of one grid size (latent frames, h, w[, parts])")
        return TokenFile(np.concatenate(grids), gop_latent_frames=[g.shape[0] for g in grids])
    return TokenFile(np.asarray(src))


def _prepared(src: TokenSource, model: str | LoadedModel | None, device: str, precision: str, gop: int | None,
              split_bits: int | None, frame_rate: float | Fraction | str | None
              ) -> tuple[Runtime, LoadedModel, _Plan]:
    from tokcodec.codec.pipeline import model_for_weights, prepare_model
    from tokcodec.device import select_runtime
    from tokcodec.model.presets import PRESETS, resolve_name
    from tokcodec.model.zoo import load_tokenizer

    tokens = _token_file(src)
    _check_array(tokens.tokens, tokens.source)
    rate = parse_frame_rate(str(frame_rate)) if frame_rate is not None else None
    runtime = select_runtime(device, precision)
    if tokens.weights_sha256 is not None:
        loaded = model_for_weights(tokens.model or "?", tokens.weights_sha256, model, tokens.source)
    elif model is None or isinstance(model, str):
        named = tokens.model
        if model is None and named and resolve_name(named) not in PRESETS:
            # (a file's metadata names weights: a preset, never a path to load from)
            raise ModelError(f"{tokens.source}: its metadata names weights {named[:60]!r}, not a preset: "
                             "pass --model with that weights file")
        loaded = load_tokenizer(model or named or "default", "cpu")
    else:
        loaded = model
    plan = _plan(tokens, loaded, runtime, gop, split_bits, rate)
    return runtime, prepare_model(loaded, runtime), plan


def detokenize(src: TokenSource, dst: str | Path, *, model: ModelName | LoadedModel | None = None,
               gop: int | None = None, split_bits: int | None = None,
               frame_rate: float | Fraction | str | None = None, device: str = "auto", precision: str = "auto",
               overwrite: bool = False, progress: Callable[[int], None] | None = None,
               gop_batch: int | str = "auto") -> DecodeStats:
    """Decode a token array (a file `tokcodec tokens` wrote, any (latent frames, h, w) array of
    ``bits``-bit indices, e.g. a language model's) to a video file, an image or a directory of
    PNGs; returns DecodeStats.

    What a .safetensors file from `tokcodec tokens` records is used: GOP boundaries and frames,
    the weights (their hash must match ``model`` when given), frame rate, size and colour. A bare
    array is cut into GOPs of ``gop`` frames (default 17, encode's) and decoded at 8 pixels per
    token by ``model`` (default: the default preset) at ``frame_rate`` (default 25)."""
    import av

    from tokcodec.codec.pipeline import GapFiller, check_gop_batch, decode_gops
    from tokcodec.codec.stats import DecodeStats
    from tokcodec.io import ColorInfo, FrameWriter, output_kind

    check_gop_batch(gop_batch)
    dst = Path(dst)
    kind = output_kind(dst)
    check_output(dst, overwrite)
    runtime, loaded, plan = _prepared(src, model, device, precision, gop, split_bits, frame_rate)
    h = plan.header
    if kind == "image" and plan.frame_count != 1:
        raise OutputError(f"{dst}: an image output holds one frame, the tokens decode to {plan.frame_count} "
                          "(use a video extension or a directory)")
    start = time.perf_counter()
    color = ColorInfo(h.color_range, h.colorspace, h.primaries, h.transfer)
    with output_errors(dst, av.FFmpegError), staged_output(dst, kind, overwrite) as out_path, \
            FrameWriter(out_path, h.width, h.height, h.frame_rate, color) as writer:  # muxer refusal too
        out = GapFiller(writer, h.height, h.width)
        used_batch = decode_gops(plan.items(), loaded, runtime, h, out, gop_batch, progress, plan.source)
    return DecodeStats(plan.source, str(dst), out.written, h.width, h.height, time.perf_counter() - start,
                       str(runtime.device), runtime.precision, gop_batch=used_batch, warnings=writer.warnings)


def detokenize_frames(src: TokenSource, *, model: ModelName | LoadedModel | None = None, gop: int | None = None,
                      split_bits: int | None = None, device: str = "auto", precision: str = "auto") -> np.ndarray:
    """:func:`detokenize` into memory: uint8 RGB frames (T, H, W, 3), as a PNG output holds them."""
    from tokcodec.codec.pipeline import GapFiller, decode_gops

    runtime, loaded, plan = _prepared(src, model, device, precision, gop, split_bits, None)
    frames = _FrameList()
    decode_gops(plan.items(), loaded, runtime, plan.header, GapFiller(frames, plan.header.height, plan.header.width),
                source=plan.source)
    return np.stack(frames.frames)
