"""Video input and output with PyAV: RGB uint8 frames (H, W, 3) in, frames out by file extension.

Input: anything ffmpeg reads (mp4, mkv, webm, avi, y4m, 8- or 10-bit, odd sizes) and still images
(a 1-frame video). Output: .mp4 (H.264, high quality), .mkv (lossless FFV1 RGB), .y4m (4:4:4),
.png/.jpg (a single frame), or a directory (numbered PNGs).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av
import numpy as np

from tokcodec.errors import InputError, OutputError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
VIDEO_OUTPUT_SUFFIXES = {".mp4", ".mkv", ".y4m", ".mov"}
DEFAULT_IMAGE_RATE = Fraction(25, 1)
MAX_DIMENSION = 16384


@dataclass
class ColorInfo:
    """FFmpeg colour enums (AVCOL_*) as read from the input; 2 means unspecified."""

    color_range: int = 0
    colorspace: int = 2
    primaries: int = 2
    transfer: int = 2


@dataclass
class VideoInfo:
    width: int
    height: int
    frame_rate: Fraction
    frame_count: int            # as reported by the container; 0 when unknown
    pixel_format: str
    is_image: bool
    color: ColorInfo = field(default_factory=ColorInfo)


def _open_input(path: Path) -> av.container.InputContainer:
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, expected a video or image file")
    try:
        container = av.open(str(path), "r")
    except (av.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not a readable video or image ({_reason(exc)})") from None
    if not container.streams.video:
        container.close()
        raise InputError(f"{path}: contains no video stream")
    return container


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return text.split("\n")[0][:200]


def _enum(value: object, default: int) -> int:
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return default


def probe(path: Path | str) -> VideoInfo:
    path = Path(path)
    container = _open_input(path)
    try:
        stream = container.streams.video[0]
        ctx = stream.codec_context
        width, height = ctx.width, ctx.height
        if not (0 < width <= MAX_DIMENSION and 0 < height <= MAX_DIMENSION):
            raise InputError(f"{path}: unsupported frame size {width}x{height}")
        is_image = path.suffix.lower() in IMAGE_SUFFIXES or container.format.name in (
            "image2", "png_pipe", "jpeg_pipe", "webp_pipe", "bmp_pipe", "tiff_pipe")
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        rate = Fraction(rate) if rate else DEFAULT_IMAGE_RATE
        if is_image or rate <= 0:
            rate = DEFAULT_IMAGE_RATE
        color = ColorInfo(_enum(getattr(ctx, "color_range", 0), 0), _enum(getattr(ctx, "colorspace", 2), 2),
                          _enum(getattr(ctx, "color_primaries", 2), 2), _enum(getattr(ctx, "color_trc", 2), 2))
        pix = ctx.format.name if ctx.format is not None else "unknown"
        return VideoInfo(width, height, rate, int(stream.frames or 0), pix, is_image, color)
    finally:
        container.close()


def iter_frames(path: Path | str, max_frames: int | None = None) -> Iterator[np.ndarray]:
    """Decoded frames as RGB uint8 (H, W, 3), converted with the source's own colour matrix."""
    path = Path(path)
    container = _open_input(path)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        count = 0
        try:
            for frame in container.decode(stream):
                src_cs = frame.colorspace if frame.colorspace not in (None, 2) else None
                kwargs = {"src_colorspace": src_cs} if src_cs is not None else {}
                try:
                    rgb = frame.reformat(format="rgb24", **kwargs)
                except (ValueError, av.FFmpegError):
                    rgb = frame.reformat(format="rgb24")
                yield rgb.to_ndarray()
                count += 1
                if max_frames is not None and count >= max_frames:
                    return
        except av.FFmpegError as exc:
            if count == 0:
                raise InputError(f"{path}: cannot decode video ({_reason(exc)})") from None
            raise InputError(f"{path}: decoding failed after {count} frames ({_reason(exc)})") from None
    finally:
        container.close()


def read_frames(path: Path | str, max_frames: int | None = None) -> np.ndarray:
    frames = list(iter_frames(path, max_frames))
    if not frames:
        raise InputError(f"{path}: no frames decoded")
    return np.stack(frames)


def output_kind(path: Path) -> str:
    """'video', 'image' or 'dir', from the extension (a path without one is a directory)."""
    suffix = path.suffix.lower()
    if suffix in VIDEO_OUTPUT_SUFFIXES:
        return "video"
    if suffix in IMAGE_SUFFIXES:
        return "image"
    if suffix == "" or path.is_dir():
        return "dir"
    raise OutputError(f"{path}: unknown output format {suffix!r} "
                      "(use .mp4, .mkv, .y4m, .png or a directory)")


class FrameWriter:
    """Writes RGB uint8 frames to a video, one image, or a directory of numbered PNGs."""

    def __init__(self, path: Path, width: int, height: int, rate: Fraction,
                 color: ColorInfo | None = None, crf: int = 12) -> None:
        self.path, self.width, self.height = path, width, height
        self.kind = output_kind(path)
        self.count = 0
        self.container: av.container.OutputContainer | None = None
        self.stream = None
        self.color = color or ColorInfo()
        if self.kind == "dir":
            path.mkdir(parents=True, exist_ok=True)
            return
        suffix = path.suffix.lower()
        try:
            if self.kind == "image":
                self.container = av.open(str(path), "w", format="image2", options={"update": "1"})
                codec = "png" if suffix == ".png" else ("mjpeg" if suffix in (".jpg", ".jpeg") else "png")
                self.stream = self.container.add_stream(codec, rate=1)
                self.stream.pix_fmt = "rgb24" if codec == "png" else "yuvj444p"
            else:
                self.container = av.open(str(path), "w")
                if suffix == ".mkv":
                    self.stream = self.container.add_stream("ffv1", rate=rate)
                    self.stream.pix_fmt = "bgr0"
                    self.stream.options = {"level": "3", "g": "1"}
                elif suffix == ".y4m":
                    self.stream = self.container.add_stream("rawvideo", rate=rate)
                    self.stream.pix_fmt = "yuv444p"
                else:
                    self.stream = self.container.add_stream("libx264", rate=rate)
                    even = width % 2 == 0 and height % 2 == 0
                    self.stream.pix_fmt = "yuv420p" if even else "yuv444p"
                    self.stream.options = {"crf": str(crf), "preset": "medium"}
                    self.stream.codec_context.color_range = 1  # limited range, the usual for H.264
                    self.stream.codec_context.colorspace = 1    # BT.709 matrix
                    self.stream.codec_context.color_primaries = 1
                    self.stream.codec_context.color_trc = 1
            self.stream.width, self.stream.height = width, height
        except (av.FFmpegError, OSError, ValueError) as exc:
            self.close()
            raise OutputError(f"{path}: cannot open for writing ({_reason(exc)})") from None

    def write(self, frame: np.ndarray) -> None:
        if frame.shape != (self.height, self.width, 3) or frame.dtype != np.uint8:
            raise ValueError(f"frame must be uint8 {(self.height, self.width, 3)}, got {frame.dtype} {frame.shape}")
        if self.kind == "dir":
            self._write_png(self.path / f"frame_{self.count:06d}.png", frame)
        else:
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            if self.stream.pix_fmt.startswith("yuv") and self.path.suffix.lower() == ".mp4":
                vf = vf.reformat(format=self.stream.pix_fmt, dst_colorspace="ITU709")
            for packet in self.stream.encode(vf):
                self.container.mux(packet)
        self.count += 1

    @staticmethod
    def _write_png(path: Path, frame: np.ndarray) -> None:
        tmp = path.with_name(path.name + ".part")
        with av.open(str(tmp), "w", format="image2", options={"update": "1"}) as c:
            s = c.add_stream("png", rate=1)
            s.width, s.height, s.pix_fmt = frame.shape[1], frame.shape[0], "rgb24"
            for p in s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                c.mux(p)
            for p in s.encode():
                c.mux(p)
        os.replace(tmp, path)

    def close(self) -> None:
        if self.container is not None:
            try:
                if self.stream is not None and self.count:
                    for packet in self.stream.encode():
                        self.container.mux(packet)
            finally:
                self.container.close()
                self.container = None

    def __enter__(self) -> "FrameWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
