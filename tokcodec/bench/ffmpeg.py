"""The ffmpeg binary: finding it, probing what it can do, running it, and raw-video conversions.

All colour conversions between RGB and YUV 4:2:0 go through :func:`rgb_to_yuv420` and
:func:`yuv420_to_rgb`, which pin the BT.709 matrix, limited ("tv") range and accurate rounding, so
every codec sees the same YUV input and is converted back to RGB the same way.
"""
from __future__ import annotations

import os
import re
import subprocess
import time
from dataclasses import dataclass
from fractions import Fraction
from functools import cached_property
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from tokcodec.errors import InputError

__all__ = [
    "FFmpeg",
    "FFmpegError",
    "TAG_BT709",
    "RunResult",
    "find_ffmpeg",
    "rgb_to_yuv420",
    "yuv420_to_rgb",
    "yuv10_to_yuv8",
    "yuv420_frame_bytes",
]

SWS_FLAGS = "accurate_rnd+full_chroma_int+bitexact"
_TO_YUV = f"scale=out_color_matrix=bt709:out_range=tv:flags={SWS_FLAGS},format=yuv420p"
_TO_RGB = f"scale=in_color_matrix=bt709:in_range=tv:flags={SWS_FLAGS},format=rgb24"
# Tags the frames fed to an encoder as BT.709 limited range *without converting them*. (Output
# options such as -colorspace would make ffmpeg >= 7.1 negotiate a conversion from the untagged
# raw input, shifting every pixel: lossless x265 then differed by up to 12 levels.)
TAG_BT709 = "setparams=color_primaries=bt709:color_trc=bt709:colorspace=bt709:range=tv"

_RTIME = re.compile(r"bench: utime=[\d.]+s stime=[\d.]+s rtime=([\d.]+)s")


class FFmpegError(RuntimeError):
    """An ffmpeg run failed; the message carries the command and the tail of its log."""


@dataclass
class RunResult:
    stdout: bytes
    stderr: str
    wall_seconds: float
    rtime: Optional[float]
    """ffmpeg's own ``-benchmark`` real time of the transcode (excludes process start-up)."""

    @property
    def seconds(self) -> float:
        return self.rtime if self.rtime is not None else self.wall_seconds


@dataclass
class FFmpeg:
    """One ffmpeg executable and what it supports."""

    exe: Path

    def run(
        self,
        args: Sequence[str],
        *,
        cwd: Optional[Path] = None,
        stdin: Optional[bytes] = None,
        benchmark: bool = False,
        timeout: Optional[float] = None,
    ) -> RunResult:
        """Run ``ffmpeg -hide_banner -nostdin ... args``; raise FFmpegError on failure."""
        cmd = [str(self.exe), "-hide_banner", "-nostats", "-y"]
        if stdin is None:
            cmd.append("-nostdin")
        cmd += ["-loglevel", "info" if benchmark else "error"]
        if benchmark:
            cmd.append("-benchmark")
        cmd += [str(a) for a in args]
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(
                cmd, input=stdin, capture_output=True, cwd=cwd, timeout=timeout,
                stdin=None if stdin is not None else subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired as e:
            raise FFmpegError(f"ffmpeg timed out after {timeout} s: {' '.join(cmd)}") from e
        wall = time.perf_counter() - t0
        err = proc.stderr.decode("utf-8", "replace")
        if proc.returncode != 0:
            tail = "\n".join(err.strip().splitlines()[-12:])
            raise FFmpegError(f"ffmpeg failed (exit {proc.returncode}): {' '.join(cmd)}\n{tail}")
        m = _RTIME.search(err)
        return RunResult(proc.stdout, err, wall, float(m.group(1)) if m else None)

    def _list(self, what: str) -> str:
        proc = subprocess.run([str(self.exe), "-hide_banner", what], capture_output=True, stdin=subprocess.DEVNULL)
        return proc.stdout.decode("utf-8", "replace")

    @cached_property
    def version(self) -> str:
        lines = self._list("-version").splitlines()
        return lines[0] if lines else "unknown"

    @cached_property
    def encoders(self) -> frozenset[str]:
        """Encoder names from ``ffmpeg -encoders`` (lines like `` V....D libx265  ...``)."""
        names = set()
        for line in self._list("-encoders").splitlines():
            parts = line.split()
            if len(parts) >= 2 and len(parts[0]) == 6 and parts[0][0] in "VAS." and parts[1] != "=":
                names.add(parts[1])
        return frozenset(names)

    @cached_property
    def filters(self) -> frozenset[str]:
        names = set()
        for line in self._list("-filters").splitlines():
            parts = line.split()
            if len(parts) >= 3 and "->" in parts[2]:
                names.add(parts[1])
        return frozenset(names)

    def has_encoder(self, name: str) -> bool:
        return name in self.encoders

    @cached_property
    def vmaf_model_option(self) -> Optional[str]:
        """The libvmaf option selecting the built-in model, or None to rely on the default.

        libvmaf >= 2 builds take ``model=version=vmaf_v0.6.1``; older ones had ``model_path``
        and no built-in models, in which case we pass nothing and let the filter use its default.
        """
        if "libvmaf" not in self.filters:
            return None
        proc = subprocess.run([str(self.exe), "-hide_banner", "-h", "filter=libvmaf"],
                              capture_output=True, stdin=subprocess.DEVNULL)
        text = proc.stdout.decode("utf-8", "replace")
        if re.search(r"^\s+model\s", text, re.M):
            return "model=version=vmaf_v0.6.1"
        return None


def find_ffmpeg(path: Optional[Path] = None) -> FFmpeg:
    """The ffmpeg at ``path``, else the one shipped in the imageio-ffmpeg wheel."""
    if path is not None:
        p = Path(path)
        if not p.is_file() or not os.access(p, os.X_OK):
            raise InputError(f"--ffmpeg {p}: not an executable file")
        return FFmpeg(p)
    try:
        import imageio_ffmpeg
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise InputError("no ffmpeg: install imageio-ffmpeg (pip install 'tokcodec[bench]') or pass --ffmpeg PATH") from e
    return FFmpeg(Path(imageio_ffmpeg.get_ffmpeg_exe()))


def yuv420_frame_bytes(width: int, height: int, bytes_per_sample: int = 1) -> int:
    return (width * height + 2 * ((width + 1) // 2) * ((height + 1) // 2)) * bytes_per_sample


def raw_input_args(pix_fmt: str, width: int, height: int, fps: Fraction, src: str | Path) -> list[str]:
    """Input options that read a headerless raw video file (or ``pipe:0``)."""
    return ["-f", "rawvideo", "-pix_fmt", pix_fmt, "-s", f"{width}x{height}", "-framerate", str(fps), "-i", str(src)]


def rgb_to_yuv420(ff: FFmpeg, rgb: np.ndarray, dst: Path, fps: Fraction = Fraction(25)) -> None:
    """Write (T, H, W, 3) uint8 RGB as raw 8-bit yuv420p (BT.709, limited range) to ``dst``."""
    t, h, w, _ = rgb.shape
    ff.run(raw_input_args("rgb24", w, h, fps, "pipe:0") + ["-vf", _TO_YUV, "-f", "rawvideo", str(dst)],
           stdin=np.ascontiguousarray(rgb).tobytes())


def yuv420_to_rgb(ff: FFmpeg, src: Path, width: int, height: int, fps: Fraction = Fraction(25)) -> np.ndarray:
    """Read raw 8-bit yuv420p (BT.709, limited range) from ``src`` as (T, H, W, 3) uint8 RGB."""
    res = ff.run(raw_input_args("yuv420p", width, height, fps, src) + ["-vf", _TO_RGB, "-f", "rawvideo", "pipe:1"])
    data = np.frombuffer(res.stdout, np.uint8)
    frame = width * height * 3
    if data.size % frame:
        raise FFmpegError(f"{src}: decoded size {data.size} is not a whole number of {width}x{height} frames")
    return data.reshape(-1, height, width, 3)


def yuv10_to_yuv8(src: Path, dst: Path) -> None:
    """yuv420p10le -> yuv420p by rounding (v + 2) >> 2, no dithering (vvenc output back to 8 bit)."""
    v = np.fromfile(src, dtype="<u2").astype(np.uint32)
    np.minimum((v + 2) >> 2, 255).astype(np.uint8).tofile(dst)


def yuv8_to_yuv10(src: Path, dst: Path) -> None:
    """yuv420p -> yuv420p10le by an exact left shift (v << 2), the input vvenc needs."""
    (np.fromfile(src, dtype=np.uint8).astype("<u2") << 2).tofile(dst)
