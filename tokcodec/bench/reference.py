"""The one reference every codec is measured against: a clip decoded once to RGB frames.

From the RGB frames we derive, once per clip, the files codecs read: raw 8-bit yuv420p for the
ffmpeg encoders (BT.709, limited range; see ``ffmpeg.rgb_to_yuv420``), its exact 10-bit version for
vvenc, and a lossless RGB FFV1 .mkv for tokcodec. Width and height are cropped to even numbers
(4:2:0 needs them) so that all codecs code exactly the same pixels.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Optional

import numpy as np

from tokcodec.bench.ffmpeg import FFmpeg, rgb_to_yuv420, yuv8_to_yuv10
from tokcodec.errors import InputError
from tokcodec.ffmpeg_names import TAG_ERRORS, ffmpeg_name
from tokcodec.io import probe, reformatted

__all__ = ["Reference", "read_rgb_frames", "write_ffv1_rgb", "load_reference"]


def read_rgb_frames(path: Path, max_frames: Optional[int] = None) -> tuple[np.ndarray, Fraction]:
    """Decode a video with PyAV to (T, H, W, 3) uint8 RGB, at most ``max_frames`` frames."""
    import av

    frames: list[np.ndarray] = []
    try:
        with av.open(ffmpeg_name(path), metadata_errors=TAG_ERRORS) as container:
            if not container.streams.video:
                raise InputError(f"{path}: no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            # the rate encode and info read (a DV file's average_rate said 60000 fps, and the anchors
            # encoded at it decoded short)
            rate = probe(path).frame_rate
            for frame in container.decode(stream):
                frames.append(reformatted(frame, format="rgb24").to_ndarray())
                if max_frames is not None and len(frames) >= max_frames:
                    break
    except av.error.FFmpegError as e:
        raise InputError(f"{path}: cannot decode ({e})") from e
    if not frames:
        raise InputError(f"{path}: no frames decoded")
    return np.stack(frames), Fraction(rate)


def write_ffv1_rgb(frames: np.ndarray, dst: Path, fps: Fraction) -> None:
    """Write RGB frames losslessly (FFV1, bgr0 pixel format) to a .mkv file."""
    import av

    t, h, w, _ = frames.shape
    with av.open(ffmpeg_name(dst), "w") as container:
        stream = container.add_stream("ffv1", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "bgr0"
        for i in range(t):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frames[i]), format="rgb24").reformat(format="bgr0")
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


@dataclass
class Reference:
    """A clip's reference frames plus the derived input files in ``workdir``."""

    name: str
    source: Path
    rgb: np.ndarray  # (T, H, W, 3) uint8
    fps: Fraction
    ff: FFmpeg
    workdir: Path
    notes: list[str] = field(default_factory=list)
    _yuv: Optional[Path] = None
    _yuv10: Optional[Path] = None
    _ffv1: Optional[Path] = None

    @property
    def frames(self) -> int:
        return int(self.rgb.shape[0])

    @property
    def height(self) -> int:
        return int(self.rgb.shape[1])

    @property
    def width(self) -> int:
        return int(self.rgb.shape[2])

    @property
    def pixels(self) -> int:
        return self.frames * self.width * self.height

    def yuv420(self) -> Path:
        """Raw 8-bit yuv420p of the reference (the input of every ffmpeg encoder)."""
        if self._yuv is None:
            self._yuv = self.workdir / "ref.yuv"
            rgb_to_yuv420(self.ff, self.rgb, self._yuv, self.fps)
        return self._yuv

    def yuv420_10bit(self) -> Path:
        """The same pixels as :meth:`yuv420` shifted to 10 bits (vvenc takes only yuv420p10le)."""
        if self._yuv10 is None:
            self._yuv10 = self.workdir / "ref10.yuv"
            yuv8_to_yuv10(self.yuv420(), self._yuv10)
        return self._yuv10

    def ffv1_rgb(self) -> Path:
        """A lossless RGB .mkv of the reference (tokcodec's input)."""
        if self._ffv1 is None:
            self._ffv1 = self.workdir / "ref_rgb.mkv"
            write_ffv1_rgb(self.rgb, self._ffv1, self.fps)
        return self._ffv1


def load_reference(path: Path, ff: FFmpeg, workdir: Path, max_frames: Optional[int] = None,
                   name: Optional[str] = None) -> Reference:
    """Decode ``path`` once to RGB (cropped to even size) and set up its work folder."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    rgb, fps = read_rgb_frames(path, max_frames)
    notes: list[str] = []
    t, h, w, _ = rgb.shape
    if h % 2 or w % 2:
        rgb = np.ascontiguousarray(rgb[:, : h - h % 2, : w - w % 2])
        notes.append(f"cropped {w}x{h} to {rgb.shape[2]}x{rgb.shape[1]} (4:2:0 needs even sizes)")
    if rgb.shape[1] < 16 or rgb.shape[2] < 16:
        raise InputError(f"{path}: {w}x{h} is too small to bench (need at least 16x16)")
    workdir.mkdir(parents=True, exist_ok=True)
    return Reference(name or path.stem, path, rgb, fps, ff, workdir, notes)
