"""The rate-distortion sweep: every codec at every operating point on every clip, then BD-rates."""
from __future__ import annotations

import os
import platform
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from tokcodec.bench.bdrate import bd_rate_detail
from tokcodec.bench.codecs import CODEC_KEYS, Codec, OperatingPoint, make_codecs
from tokcodec.bench.ffmpeg import FFmpeg, find_ffmpeg, yuv420_to_rgb
from tokcodec.bench.measure import quality, vmaf
from tokcodec.bench.reference import Reference, load_reference
from tokcodec.bench.results import METRICS, BDEntry, BenchReport, ClipInfo, PointResult
from tokcodec.defaults import DEFAULT_PASSES, DEFAULT_RDO
from tokcodec.errors import InputError
from tokcodec.metrics import psnr, psnr_y

__all__ = ["BenchConfig", "QUICK_FRAMES", "parse_codecs", "run_bench", "compute_bd_rates"]

QUICK_FRAMES = 17
Log = Callable[[str], None]


@dataclass
class BenchConfig:
    clips: list[Path]
    out: Path
    codecs: list[str] = field(default_factory=lambda: list(CODEC_KEYS))
    quick: bool = False
    ffmpeg: Optional[Path] = None
    frames: Optional[int] = None  # cap per clip; --quick defaults it to QUICK_FRAMES
    anchor: str = "x265"  # a series name ("x265-medium") or a --codecs key (its first series)
    model: str = "default"
    device: str = "auto"
    refine: int = 0  # tokcodec encode --refine steps (decoder-in-the-loop token search)
    passes: int | None = None  # tokcodec encode --passes (None: its default)
    rdo: float | None = None  # tokcodec encode --rdo (None: its default)
    correction: bool = True  # tokcodec encode's correction grid
    with_vmaf: bool = True
    plots: bool = True
    keep_work: bool = False

    def frame_cap(self) -> Optional[int]:
        if self.frames is not None:
            return self.frames
        return QUICK_FRAMES if self.quick else None


def parse_codecs(text: str) -> list[str]:
    keys = [k.strip().lower() for k in text.split(",") if k.strip()]
    bad = [k for k in keys if k not in CODEC_KEYS]
    if bad:
        raise InputError(f"unknown codec(s) {', '.join(bad)}; choose from {', '.join(CODEC_KEYS)}")
    if not keys:
        raise InputError("--codecs is empty")
    return list(dict.fromkeys(keys))


def _loadavg() -> Optional[float]:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:  # pragma: no cover - not on every platform
        return None


def _resolve_anchor(anchor: str, codecs: list[Codec]) -> Optional[str]:
    for c in codecs:
        if c.series == anchor:
            return c.series
    for c in codecs:
        if c.key == anchor:
            return c.series
    return None


def _run_point(codec: Codec, ref: Reference, point: OperatingPoint, cfg: BenchConfig, ff: FFmpeg,
               bitstreams: Path) -> PointResult:
    tag = point.label.replace("=", "").replace(".", "p").replace(",", "_")
    dst = bitstreams / f"{codec.series}_{tag}{codec.ext}"
    enc = codec.encode(ref, point, dst)
    work = ref.workdir / "point"
    work.mkdir(exist_ok=True)
    try:
        dec = codec.decode(ref, enc, work)
        q = quality(ref.rgb, dec.rgb)
        v = vmaf(ff, dec.yuv, ref.yuv420(), ref.width, ref.height, ref.fps, work) if cfg.with_vmaf else None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return PointResult(
        clip=ref.name, series=codec.series, codec=codec.key, point=point.label,
        bitstream=str(dst.relative_to(cfg.out)), container=codec.container,
        bytes=enc.bytes, frames=ref.frames, width=ref.width, height=ref.height,
        bpp=8.0 * enc.bytes / ref.pixels, vmaf=v,
        enc_fps=ref.frames / enc.seconds if enc.seconds > 0 else None,
        dec_fps=ref.frames / dec.seconds if dec.seconds > 0 else None,
        **q,
    )


def compute_bd_rates(report: BenchReport) -> list[BDEntry]:
    """BD-rate of every series vs the anchor, per clip and metric, plus the mean over clips."""
    entries: list[BDEntry] = []
    clips = [c.name for c in report.clips]
    series = [s for s in report.series_names() if s != report.anchor]
    for metric in METRICS:
        for s in series:
            per_clip: list[BDEntry] = []
            for clip in clips:
                a = [p for p in report.points if p.clip == clip and p.series == report.anchor]
                t = [p for p in report.points if p.clip == clip and p.series == s]
                if not a or not t:
                    continue
                r = bd_rate_detail([p.bpp for p in a], [p.metric(metric) for p in a],
                                   [p.bpp for p in t], [p.metric(metric) for p in t])
                per_clip.append(BDEntry(clip, s, metric, r.value, r.reason))
            entries.extend(per_clip)
            if len(per_clip) > 1:
                # averaging over a subset of clips would compare different things: all or nothing
                vals = [e.value for e in per_clip if e.value is not None]
                if len(vals) == len(per_clip):
                    entries.append(BDEntry("mean", s, metric, sum(vals) / len(vals)))
                else:
                    reasons = {e.reason for e in per_clip if e.value is None}
                    n_bad = len(per_clip) - len(vals)
                    why = reasons.pop() if len(reasons) == 1 else "undefined"
                    entries.append(BDEntry("mean", s, metric, None,
                                           why if n_bad == len(per_clip) else f"{why} on {n_bad}/{len(per_clip)} clips"))
    return entries


def run_bench(cfg: BenchConfig, log: Log = print) -> BenchReport:
    """Run the sweep, write nothing but bitstreams and work files; ``report.write_all`` saves results."""
    t_start = time.perf_counter()
    ff = find_ffmpeg(cfg.ffmpeg)
    for c in cfg.clips:
        if not Path(c).exists():
            raise InputError(f"{c}: no such file")
    cfg.out.mkdir(parents=True, exist_ok=True)
    codecs = make_codecs(cfg.codecs, model=cfg.model, device=cfg.device, refine=cfg.refine,
                         passes=cfg.passes, rdo=cfg.rdo, correction=cfg.correction)
    report = BenchReport(anchor="", quick=cfg.quick)
    runnable: list[Codec] = []
    for c in codecs:
        reason = c.unavailable(ff)
        if reason:
            report.skipped[c.series] = reason
            log(f"skip {c.series}: {reason}")
        elif not c.points(cfg.quick):
            report.skipped[c.series] = "not part of --quick"
        else:
            runnable.append(c)
    anchor = _resolve_anchor(cfg.anchor, runnable)
    report.anchor = anchor or cfg.anchor
    if anchor is None:
        log(f"anchor {cfg.anchor} is not running: no BD-rates")
    if "libvmaf" not in ff.filters and cfg.with_vmaf:
        report.skipped["vmaf"] = f"no libvmaf filter in {ff.exe}"
    report.settings = {
        "codecs": cfg.codecs,
        "frames_cap": cfg.frame_cap(),
        "points": {c.series: [p.label for p in c.points(cfg.quick)] for c in runnable},
        "containers": {c.series: c.container for c in runnable},
        "model": cfg.model,
        "device": cfg.device,
        "refine": cfg.refine,
        "passes": cfg.passes if cfg.passes is not None else DEFAULT_PASSES,
        "rdo": cfg.rdo if cfg.rdo is not None else DEFAULT_RDO,  # (off for a model without a coder-3 prior)
        "correction": cfg.correction,
        "colour": "RGB -> yuv420p BT.709 limited range (swscale accurate_rnd) for ffmpeg codecs; "
                  "vvenc gets the same pixels << 2 as yuv420p10le and its output is rounded back "
                  "((v + 2) >> 2, no dithering)",
        "metrics": "on full-resolution RGB vs the reference: PSNR over all pixels of all frames; "
                   "PSNR-Y/SSIM/MS-SSIM on BT.709 luma; VMAF vmaf_v0.6.1 on yuv420p",
        "fps": "frames / ffmpeg -benchmark rtime for ffmpeg codecs (raw yuv in, bitstream out / "
               "bitstream in, raw yuv out); wall time of encode_video/decode_video for tokcodec",
    }
    if cfg.quick:
        report.settings["quick"] = (f"2 points per codec, at most {cfg.frame_cap()} frames per clip, "
                                    "vvenc with preset faster only")
    report.environment = {
        "ffmpeg": str(ff.exe),
        "ffmpeg_version": ff.version,
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_average_start": _loadavg(),
    }

    work_root = cfg.out / "work"
    for clip in cfg.clips:
        clip = Path(clip)
        name = clip.stem
        ref = load_reference(clip, ff, work_root / name, cfg.frame_cap(), name)
        ceiling = yuv420_to_rgb(ff, ref.yuv420(), ref.width, ref.height, ref.fps)
        info = ClipInfo(name, str(clip), ref.frames, ref.width, ref.height, str(ref.fps),
                        psnr(ref.rgb, ceiling), psnr_y(ref.rgb, ceiling), list(ref.notes))
        del ceiling
        report.clips.append(info)
        log(f"{name}: {ref.width}x{ref.height}, {ref.frames} frames @ {ref.fps} fps "
            f"(4:2:0 round trip alone: PSNR-RGB {info.yuv420_psnr_rgb:.2f} dB)")
        bitstreams = cfg.out / "bitstreams" / name
        bitstreams.mkdir(parents=True, exist_ok=True)
        for codec in runnable:
            for point in codec.points_for(ref, cfg.quick):
                try:
                    p = _run_point(codec, ref, point, cfg, ff, bitstreams)
                except Exception as e:  # noqa: BLE001 - one failing point must not stop the sweep
                    msg = f"{name} {codec.series} {point.label}: {type(e).__name__}: {e}"
                    report.failures.append(msg)
                    log(f"FAILED {msg}")
                    continue
                report.points.append(p)
                vm = f"{p.vmaf:.2f}" if p.vmaf is not None else "-"
                log(f"  {codec.series:15s} {point.label:14s} bpp {p.bpp:.4f}  PSNR-Y {p.psnr_y:.2f}  "
                    f"MS-SSIM {p.ms_ssim:.4f}  VMAF {vm}  enc {p.enc_fps:.1f} fps  dec {p.dec_fps:.1f} fps")
        if not cfg.keep_work:
            shutil.rmtree(ref.workdir, ignore_errors=True)
    if not cfg.keep_work:
        shutil.rmtree(work_root, ignore_errors=True)
    for c in runnable:
        report.notes.extend(c.notes())
    report.environment["load_average_end"] = end_load = _loadavg()
    cpus = os.cpu_count() or 1
    busy = [x for x in (report.environment["load_average_start"], end_load) if x is not None and x > cpus]
    if busy:
        report.notes.append(f"the machine was busy (1-minute load average up to {max(busy):.1f} on {cpus} "
                            "CPUs): enc/dec fps are lower than on an idle machine")
    if anchor is not None:
        report.bd_rates = compute_bd_rates(report)
    report.elapsed_seconds = time.perf_counter() - t_start
    return report
