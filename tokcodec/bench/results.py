"""Result records of a bench run (plain dataclasses, serialised to JSON/CSV by ``report``)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Optional

METRICS: tuple[str, ...] = ("psnr_y", "psnr_rgb", "ssim", "ms_ssim", "vmaf")
"""Quality metrics measured at every point, in report order."""

METRIC_LABELS: dict[str, str] = {
    "psnr_y": "PSNR-Y (dB)",
    "psnr_rgb": "PSNR-RGB (dB)",
    "ssim": "SSIM",
    "ms_ssim": "MS-SSIM",
    "vmaf": "VMAF",
}


@dataclass
class PointResult:
    """One codec at one operating point on one clip."""

    clip: str
    series: str  # e.g. "x265-medium": one RD curve
    codec: str  # the --codecs key, e.g. "x265"
    point: str  # e.g. "crf=32"
    bitstream: str  # file name of the coded video inside the output folder
    container: str  # what the byte count includes, e.g. "raw HEVC Annex-B"
    bytes: int
    frames: int
    width: int
    height: int
    bpp: float
    psnr_y: Optional[float] = None
    psnr_rgb: Optional[float] = None
    ssim: Optional[float] = None
    ms_ssim: Optional[float] = None
    vmaf: Optional[float] = None
    enc_fps: Optional[float] = None
    dec_fps: Optional[float] = None

    def metric(self, name: str) -> Optional[float]:
        return getattr(self, name)


@dataclass
class ClipInfo:
    name: str
    source: str
    frames: int
    width: int
    height: int
    fps: str
    yuv420_psnr_rgb: Optional[float] = None
    """RGB PSNR of the reference after the RGB -> YUV 4:2:0 -> RGB round trip alone: the ceiling
    of every ffmpeg codec here (tokcodec codes RGB directly and does not pay it)."""
    yuv420_psnr_y: Optional[float] = None
    notes: list[str] = field(default_factory=list)


@dataclass
class BDEntry:
    clip: str  # a clip name, or "mean" for the average over clips where every clip has a value
    series: str
    metric: str
    value: Optional[float]  # percent; None when undefined
    reason: Optional[str] = None  # "no overlap", "too few points", "not measured", ...
    quality_from: Optional[float] = None  # the quality range both curves share, over which the
    quality_to: Optional[float] = None    # rate difference is averaged (per clip; None for the mean)
    anchor_points: Optional[int] = None   # points on each curve (2 with --quick: straight lines)
    test_points: Optional[int] = None


@dataclass
class BenchReport:
    anchor: str
    quick: bool
    clips: list[ClipInfo] = field(default_factory=list)
    points: list[PointResult] = field(default_factory=list)
    bd_rates: list[BDEntry] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # codec/series -> why it did not run
    failures: list[str] = field(default_factory=list)  # per-point errors that did not stop the run
    notes: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    elapsed_seconds: Optional[float] = None
    interrupted: bool = False  # Ctrl-C: the points measured so far

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def series_names(self) -> list[str]:
        seen: list[str] = []
        for p in self.points:
            if p.series not in seen:
                seen.append(p.series)
        return seen
