"""One adapter per codec: its operating points, how to encode the reference and decode it back.

Every adapter returns the decoded video as RGB frames (compared with the reference RGB) and as a
raw 8-bit yuv420p file (what VMAF reads), plus the real size of the coded file and timings.

Byte counts: ffmpeg codecs write raw elementary streams (HEVC/H.264/VVC Annex-B, AV1 low-overhead
OBUs), so no container overhead is counted; x265's settings SEI is turned off (``info=0``) and
x264's is removed with the ``filter_units`` bitstream filter, since those ~0.5-2 KB of text would
dominate the rate of a short small clip. tokcodec is charged for its whole .tok file (header,
chunks, index).
"""
from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from tokcodec.bench.ffmpeg import (
    TAG_BT709,
    FFmpeg,
    FFmpegError,
    raw_input_args,
    rgb_to_yuv420,
    yuv10_to_yuv8,
    yuv420_frame_bytes,
    yuv420_to_rgb,
)
from tokcodec.bench.reference import Reference, read_rgb_frames

__all__ = [
    "OperatingPoint",
    "Encoded",
    "Decoded",
    "Codec",
    "FFmpegCodec",
    "TokcodecCodec",
    "CODEC_KEYS",
    "make_codecs",
    "tokcodec_api",
]


@dataclass(frozen=True)
class OperatingPoint:
    label: str  # e.g. "crf=32", "scale=0.5", "scale=1,gop=33"
    value: float
    gop: Optional[int] = None  # tokcodec: frames per GOP at this point (None: the series' own)


@dataclass
class Encoded:
    path: Path
    bytes: int
    seconds: float


@dataclass
class Decoded:
    rgb: np.ndarray  # (T, H, W, 3) uint8
    yuv: Path  # raw 8-bit yuv420p of the decoded video (BT.709, limited range)
    seconds: float


class Codec(ABC):
    """A codec at one configuration, i.e. one RD curve ("series")."""

    key: str  # the --codecs name
    series: str
    container: str  # what the counted bytes are

    @abstractmethod
    def unavailable(self, ff: FFmpeg) -> Optional[str]:
        """Why this codec cannot run here, or None when it can."""

    @abstractmethod
    def points(self, quick: bool) -> list[OperatingPoint]:
        ...

    def points_for(self, ref: Reference, quick: bool) -> list[OperatingPoint]:
        """The points to run on this clip (by default the same for every clip)."""
        return self.points(quick)

    @abstractmethod
    def encode(self, ref: Reference, point: OperatingPoint, dst: Path) -> Encoded:
        """Encode the reference to ``dst`` (the file whose size is the rate)."""

    @abstractmethod
    def decode(self, ref: Reference, enc: Encoded, workdir: Path) -> Decoded:
        ...

    @property
    def ext(self) -> str:
        return ".bin"

    def notes(self) -> list[str]:
        """Facts worth printing with the results (e.g. an untrained model)."""
        return []

    @abstractmethod
    def describe(self) -> str:
        """How each point is made, enough to reproduce it (results.json settings.encoders)."""


@dataclass
class FFmpegCodec(Codec):
    """An ffmpeg encoder driven from the raw yuv420p reference at a list of rate parameters."""

    key: str
    series: str
    encoder: str
    param: str  # the ffmpeg option swept: "crf" or "qp"
    full_points: tuple[float, ...]
    quick_points: Optional[tuple[float, ...]]  # None: this series is left out of --quick
    muxer: str
    file_ext: str
    container: str
    args: list[str] = field(default_factory=list)
    bsf: Optional[str] = None
    ten_bit: bool = False  # vvenc: the encoder takes yuv420p10le only
    ff: Optional[FFmpeg] = None

    @property
    def ext(self) -> str:
        return self.file_ext

    def unavailable(self, ff: FFmpeg) -> Optional[str]:
        self.ff = ff
        if not ff.has_encoder(self.encoder):
            return f"encoder {self.encoder} not in this ffmpeg ({ff.exe})"
        return None

    def points(self, quick: bool) -> list[OperatingPoint]:
        values = self.quick_points if quick else self.full_points
        return [OperatingPoint(f"{self.param}={v:g}", v) for v in (values or ())]

    def describe(self) -> str:
        pix = "yuv420p10le (the 8-bit reference << 2)" if self.ten_bit else "yuv420p"
        bsf = f" -bsf:v {self.bsf}" if self.bsf else ""
        return (f"ffmpeg -f rawvideo -pix_fmt {pix} -i REF -vf {TAG_BT709} -c:v {self.encoder} "
                f"{' '.join(self.args)} -{self.param} POINT{bsf} -f {self.muxer}").replace("  ", " ")

    def _ff(self) -> FFmpeg:
        if self.ff is None:
            raise RuntimeError("call unavailable(ff) first")
        return self.ff

    def encode(self, ref: Reference, point: OperatingPoint, dst: Path) -> Encoded:
        ff = self._ff()
        if self.ten_bit:
            src, pix = ref.yuv420_10bit(), "yuv420p10le"
        else:
            src, pix = ref.yuv420(), "yuv420p"
        args = raw_input_args(pix, ref.width, ref.height, ref.fps, src)
        args += ["-vf", TAG_BT709, "-c:v", self.encoder, *self.args, f"-{self.param}", f"{point.value:g}"]
        if self.bsf:
            args += ["-bsf:v", self.bsf]
        args += ["-f", self.muxer, str(dst)]
        res = ff.run(args, benchmark=True)
        return Encoded(dst, dst.stat().st_size, res.seconds)

    def decode(self, ref: Reference, enc: Encoded, workdir: Path) -> Decoded:
        ff = self._ff()
        out = workdir / "dec.yuv"
        raw = workdir / "dec10.yuv" if self.ten_bit else out
        pix = "yuv420p10le" if self.ten_bit else "yuv420p"
        res = ff.run(["-i", str(enc.path), "-f", "rawvideo", "-pix_fmt", pix, str(raw)], benchmark=True)
        if self.ten_bit:
            yuv10_to_yuv8(raw, out)
            raw.unlink()
        n = out.stat().st_size // yuv420_frame_bytes(ref.width, ref.height)
        if n != ref.frames:
            raise FFmpegError(f"{enc.path.name}: decoded {n} frames, expected {ref.frames}")
        rgb = yuv420_to_rgb(ff, out, ref.width, ref.height, ref.fps)
        return Decoded(rgb, out, res.seconds)


def tokcodec_api() -> tuple[Optional[Callable[..., Any]], Optional[Callable[..., Any]]]:
    """tokcodec's (encode_video, decode_video)."""
    import tokcodec

    return tokcodec.encode_video, tokcodec.decode_video


def _seconds(stats: Any, wall: float) -> float:
    """The coding time the API reports (model loading excluded, like ffmpeg's rtime excludes
    start-up), else the wall time of the call."""
    s = getattr(stats, "seconds", None)
    return float(s) if isinstance(s, (int, float)) and s > 0 else wall


def _untrained(tok: Path) -> Optional[bool]:
    try:
        from tokcodec import file_info
    except ImportError:
        return None
    try:
        return file_info(tok).untrained_model
    except Exception:  # noqa: BLE001 - only a note; never fail the bench for it
        return None


@dataclass
class TokcodecCodec(Codec):
    """tokcodec through its library API; the rate knob is ``scale`` (tokenise a resized video), at
    tokcodec's default --rdo unless ``rdo`` is set.

    Timings are the ``seconds`` the API returns for ``encode_video`` / ``decode_video`` (the
    coding loop including reading the input and writing the output file, but not loading the
    model), or the wall time of the call if it returns none. The decoded video is written as
    .mkv, which decode_video makes lossless (FFV1 RGB), and read back with PyAV.
    """

    model: str = "default"
    device: str = "auto"
    refine: int = 0  # encode --refine steps; 0 = the encoder's own tokens
    passes: int | None = None  # encode --passes; None = tokcodec's default
    rdo: float | None = None  # encode --rdo; None = tokcodec's default
    correction: bool = True  # encode's correction grid (--no-correction: tokens only)
    gop: int = 17
    # (scale, GOP) pairs. Scale 1.25 (tokenize finer) reaches further up the quality range; below
    # the default, longer GOPs are the cheaper rate knob (one 1-frame latent step and one
    # correction record per GOP, not per 17 frames), then a smaller scale: on 130-frame windows
    # of three training videos GOPs of 33 / 65 frames took 28-36% / 42-54% of the bits off for
    # 0.2-0.8 / 0.4-1.4 dB PSNR and 1.5-4.3 / 3.3-8.7 VMAF, where scale 0.75 took 18-24% off for
    # 0.4-0.9 dB and 6.5-8.8 VMAF (docs/usage.md).
    # The --quick clips are 17 frames: one GOP whatever its length, so there the knob is scale.
    full_points: tuple[tuple[float, int], ...] = ((1.25, 17), (1.0, 17), (1.0, 33), (1.0, 65), (0.75, 65),
                                                  (0.5, 65))
    quick_points: tuple[tuple[float, int], ...] = ((1.0, 17), (0.5, 17))
    # longest GOP a point may use, in coded pixels x frames: a GOP's encode memory grows with
    # both (peak RSS 2.3 GB at 65 frames of 640x360 on CPU, codec/memory.py); a point over it
    # falls back to shorter GOPs (65 -> 33 -> 17, never under ``gop``) and notes() says so
    max_gop_pixels: int = 20_000_000
    fallbacks: list[str] = field(default_factory=list)
    decoded_ext: str = ".mkv"  # decode_video picks the writer by extension; .mkv is its lossless one
    key: str = "tokcodec"
    container: str = "whole .tok file (header, chunks, index)"
    ff: Optional[FFmpeg] = None
    untrained: Optional[bool] = None  # from the .tok header once a file was written

    def describe(self) -> str:
        from tokcodec.model.zoo import weights_sha256

        try:
            digest = weights_sha256(self.model)[:16] + "..."
        except Exception:  # noqa: BLE001 - only a description
            digest = "unknown"
        options = [f"--model {self.model} (weights sha256 {digest})", f"--device {self.device}"]
        options += [f"--passes {self.passes}"] if self.passes is not None else []
        options += [f"--rdo {self.rdo:g}"] if self.rdo is not None else []
        options += [f"--refine {self.refine}"] if self.refine else []
        options += [] if self.correction else ["--no-correction"]
        return (f"tokcodec encode REF.mkv -o OUT.tok {' '.join(options)} --scale S --gop G at POINT = "
                "scale=S[,gop=G] (GOP 17 unless given); decode_video to lossless .mkv")

    def notes(self) -> list[str]:
        notes = list(self.fallbacks)
        if self.untrained:
            notes.append(f"{self.series}: model '{self.model}' has untrained (random) weights, so its "
                         "quality numbers say nothing about the codec yet")
        return notes

    @property
    def series(self) -> str:  # type: ignore[override]
        # a weights file is named by its stem: the series names result files and folders
        model = Path(self.model).stem if self.model.endswith(".safetensors") else self.model
        name = "tokcodec" if model == "default" else f"tokcodec-{model}"
        name = f"{name}-passes{self.passes}" if self.passes is not None else name
        name = f"{name}-rdo{self.rdo:g}" if self.rdo is not None else name
        name = f"{name}-refine{self.refine}" if self.refine else name
        return name if self.correction else f"{name}-nocorr"

    @property
    def ext(self) -> str:
        return ".tok"

    def unavailable(self, ff: FFmpeg) -> Optional[str]:
        self.ff = ff
        enc, _ = tokcodec_api()
        if enc is None:
            return "tokcodec API not available (no tokcodec.encode_video / decode_video yet)"
        return None

    def points(self, quick: bool) -> list[OperatingPoint]:
        # the series' own GOP is the shortest: a longer one (no CLI option sets it) lifts them all
        return [self._point(s, max(g, self.gop)) for s, g in (self.quick_points if quick else self.full_points)]

    def points_for(self, ref: Reference, quick: bool) -> list[OperatingPoint]:
        """The points with each GOP cut to the clip (a GOP no longer than its frames, padded to
        1 + 4k) and then shortened, halving its latent steps but never under the series' own
        ``gop``, while a GOP of the coded size would exceed ``max_gop_pixels``; a point that then
        repeats an earlier one is dropped, and notes() lists what changed and why."""
        out: list[OperatingPoint] = []
        whole_clip = 1 + 4 * math.ceil((ref.frames - 1) / 4)
        budget = self.max_gop_pixels // (3 if self.refine else 1)  # --refine: ~3x the memory per pixel
        for point in self.points(quick):
            gop = max(self.gop, min(point.gop or self.gop, whole_clip))
            why = f"the clip has {ref.frames} frames" if gop < (point.gop or self.gop) else ""
            while gop > self.gop and gop * ref.width * ref.height * point.value ** 2 > budget:
                gop = max(self.gop, 1 + 4 * ((gop - 1) // 8))
                why = f"a longer GOP at {ref.width}x{ref.height} would need too much memory"
            fitted = self._point(point.value, gop)
            if fitted != point:
                self.fallbacks.append(f"{self.series} {point.label} on {ref.name}: GOPs of {gop} frames, as {why}"
                                      + (" (the same as an earlier point: left out)" if fitted in out else ""))
            if fitted not in out:
                out.append(fitted)
        return out

    def _point(self, scale: float, gop: int) -> OperatingPoint:
        return OperatingPoint(f"scale={scale:g}" if gop == self.gop else f"scale={scale:g},gop={gop}", scale, gop)

    def encode(self, ref: Reference, point: OperatingPoint, dst: Path) -> Encoded:
        enc, _ = tokcodec_api()
        assert enc is not None
        src = ref.ffv1_rgb()
        t0 = time.perf_counter()
        # passed only when set, so the bench still runs a tokcodec whose API predates --refine
        extra: dict = {"refine": self.refine} if self.refine else {}
        if self.passes is not None:
            extra["passes"] = self.passes
        if self.rdo is not None:
            extra["rdo"] = self.rdo
        if not self.correction:
            extra["correction"] = False
        stats = enc(src, dst, model=self.model, gop=point.gop or self.gop, device=self.device, scale=point.value,
                    overwrite=True, **extra)
        seconds = _seconds(stats, time.perf_counter() - t0)
        if self.untrained is None:
            self.untrained = _untrained(dst)
        return Encoded(dst, dst.stat().st_size, seconds)

    def decode(self, ref: Reference, enc: Encoded, workdir: Path) -> Decoded:
        _, dec = tokcodec_api()
        assert dec is not None
        out = workdir / f"dec{self.decoded_ext}"
        t0 = time.perf_counter()
        stats = dec(enc.path, out, device=self.device, overwrite=True)
        seconds = _seconds(stats, time.perf_counter() - t0)
        rgb, _ = read_rgb_frames(out)
        out.unlink()
        if rgb.shape != ref.rgb.shape:
            raise RuntimeError(f"{enc.path.name}: decoded shape {rgb.shape}, expected {ref.rgb.shape}")
        yuv = workdir / "dec.yuv"
        rgb_to_yuv420(self.ff, rgb, yuv, ref.fps)
        return Decoded(rgb, yuv, seconds)


CODEC_KEYS: tuple[str, ...] = ("x265", "vvenc", "svtav1", "x264", "tokcodec")


def make_codecs(keys: list[str], *, model: str = "default", device: str = "auto",
                refine: int = 0, passes: int | None = None, rdo: float | None = None,
                correction: bool = True) -> list[Codec]:
    """The RD series for the given --codecs keys, in the order given (vvenc gives two presets).

    Points were placed from a probe on the 640x360 bench clips so that every curve spans roughly
    25-46 dB PSNR-Y (SVT-AV1 stops near 31-33 dB at its maximum CRF 63) and the --quick pairs of
    different codecs overlap in quality; tokcodec's full sweep also has a point above its own
    size (``--scale 1.25``).
    """
    table: dict[str, list[Codec]] = {
        "x265": [FFmpegCodec(
            "x265", "x265-medium", "libx265", "crf", (19, 25, 31, 37, 43, 51), (27, 45),
            "hevc", ".hevc", "raw HEVC Annex-B stream",
            args=["-preset", "medium", "-x265-params", "info=0:log-level=error"],
        )],
        "vvenc": [
            FFmpegCodec(
                "vvenc", "vvenc-medium", "libvvenc", "qp", (22, 29, 36, 43, 50, 57), None,
                "vvc", ".266", "raw VVC Annex-B stream", args=["-preset", "medium"], ten_bit=True,
            ),
            FFmpegCodec(
                "vvenc", "vvenc-faster", "libvvenc", "qp", (22, 29, 36, 43, 50, 57), (30, 48),
                "vvc", ".266", "raw VVC Annex-B stream", args=["-preset", "faster"], ten_bit=True,
            ),
        ],
        "svtav1": [FFmpegCodec(
            "svtav1", "svtav1-default", "libsvtav1", "crf", (20, 30, 40, 50, 57, 63), (40, 63),
            "obu", ".obu", "AV1 low-overhead OBU stream",
        )],
        "x264": [FFmpegCodec(
            "x264", "x264-medium", "libx264", "crf", (19, 25, 31, 37, 43, 51), (27, 45),
            "h264", ".h264", "raw H.264 Annex-B stream, SEI removed",
            args=["-preset", "medium"], bsf="filter_units=remove_types=6",
        )],
        "tokcodec": [TokcodecCodec(model=model, device=device, refine=refine, passes=passes, rdo=rdo,
                                   correction=correction)],
    }
    out: list[Codec] = []
    for k in keys:
        out.extend(table[k])
    return out
