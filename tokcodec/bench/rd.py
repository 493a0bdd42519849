"""The rate-distortion sweep: every codec at every operating point on every clip, then BD-rates."""
from __future__ import annotations

import os
import platform
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from tokcodec.bench.bdrate import bd_rate_detail
from tokcodec.bench.codecs import CODEC_KEYS, Codec, OperatingPoint, make_codecs
from tokcodec.bench.ffmpeg import FFmpeg, find_ffmpeg, yuv420_to_rgb
from tokcodec.bench.measure import quality, vmaf
from tokcodec.bench.reference import Reference, load_reference
from tokcodec.bench.results import METRICS, BDEntry, BenchReport, ClipInfo, PointResult
from tokcodec.cpus import usable_cpus
from tokcodec.defaults import DEFAULT_PASSES, DEFAULT_RDO
from tokcodec.errors import InputError
from tokcodec.metrics import psnr, psnr_y
from tokcodec.text import plural

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
    overwrite: bool = False  # replace an earlier bench's results in ``out`` (else refused)

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


RESERVED_NAMES = {"mean"}  # the BD-rate table over all clips is named so
RESULT_FILES = ("results.json", "points.csv", "bdrate.csv", "report.md")
RESULT_DIRS = ("bitstreams", "plots", "work")


def clip_names(clips: list[Path]) -> list[str]:
    """A distinct name per clip (its rows, tables, bitstream folder and plots are named by it):
    the file's stem; where stems collide, or a stem is reserved, the parent folder's name and the
    stem, then a number."""
    stems = [Path(c).stem for c in clips]
    taken = Counter(stem.lower() for stem in stems)
    names: list[str] = []
    used: set[str] = set()
    for clip, stem in zip(clips, stems):
        name = stem
        if taken[stem.lower()] > 1 or stem.lower() in RESERVED_NAMES:
            parent = Path(os.path.abspath(clip)).parent.name
            name = f"{parent}-{stem}" if parent else stem
        base, k = name, 2
        while name.lower() in used or name.lower() in RESERVED_NAMES:
            name, k = f"{base}-{k}", k + 1
        used.add(name.lower())
        names.append(name)
    return names


def check_clips(clips: list[Path]) -> None:
    """Every clip exists and its first frame decodes, before any codec runs: a bad file late in
    the list must not cost the hours spent on the clips before it."""
    import av

    from tokcodec.errors import TokcodecError
    from tokcodec.io import iter_frames, probe

    for clip in clips:
        path = Path(clip)
        if not path.is_file():
            raise InputError(f"{path}: {'is a directory, expected a video file' if path.is_dir() else 'no such file'}")
        try:
            probe(path)
            first = next(iter_frames(path, 1), None)
        except (TokcodecError, OSError, av.FFmpegError) as exc:
            raise InputError(f"{exc} (checked before the bench starts)") from None
        if first is None:
            raise InputError(f"{path}: no video frame could be decoded (checked before the bench starts)")


def prepare_output(out: Path, overwrite: bool) -> None:
    """``out`` for a new bench: an earlier bench's results there are refused, or with
    ``overwrite`` removed first (with its bitstreams and plots, so that none of them is stale)."""
    earlier = [out / name for name in RESULT_FILES if (out / name).exists()]
    if earlier and not overwrite:
        raise InputError(f"{out}: holds an earlier bench's results ({earlier[0].name}); "
                         "use -y to replace them, or another -o")
    if earlier:
        for name in RESULT_FILES:
            (out / name).unlink(missing_ok=True)
        for name in RESULT_DIRS:
            shutil.rmtree(out / name, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)


def _version() -> str:
    import tokcodec

    return getattr(tokcodec, "__version__", "unknown")


def _loadavg() -> Optional[float]:
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):  # (no os.getloadavg on Windows)
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
                measured = [p.metric(metric) for p in a + t if p.metric(metric) is not None]
                if not measured:  # (VMAF with --no-vmaf, or no libvmaf)
                    per_clip.append(BDEntry(clip, s, metric, None, "not measured"))
                    continue
                r = bd_rate_detail([p.bpp for p in a], [p.metric(metric) for p in a],
                                   [p.bpp for p in t], [p.metric(metric) for p in t])
                per_clip.append(BDEntry(clip, s, metric, r.value, r.reason, r.q_lo, r.q_hi, len(a), len(t)))
            entries.extend(per_clip)
            if len(clips) > 1 and len(per_clip) < len(clips):  # a clip without points for either series
                entries.append(BDEntry("mean", s, metric, None,
                                       f"no points on {len(clips) - len(per_clip)}/{len(clips)} clips"))
            elif len(per_clip) > 1:
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
    check_clips(cfg.clips)
    names = clip_names(cfg.clips)
    codecs = make_codecs(cfg.codecs, model=cfg.model, device=cfg.device, refine=cfg.refine,
                         passes=cfg.passes, rdo=cfg.rdo, correction=cfg.correction)
    if "tokcodec" in cfg.codecs:  # a device that is not there fails here, not at every point
        from tokcodec.device import select_runtime

        select_runtime(cfg.device)
    prepare_output(cfg.out, cfg.overwrite)
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
        "metrics": "against the reference's RGB frames at full resolution: PSNR-RGB over all pixels "
                   "of all frames; PSNR-Y, SSIM and MS-SSIM on full-range BT.709 luma computed from RGB "
                   "(peak 255), so PSNR-Y reads about 1.3 dB below ffmpeg's psnr filter on limited-range "
                   "Y (20 log10(255/219)); MS-SSIM uses as many of its 5 scales as the size holds (one "
                   "11-pixel window at the coarsest: below 22 pixels a side it is SSIM); VMAF vmaf_v0.6.1 "
                   "on yuv420p",
        "fps": "frames / ffmpeg -benchmark rtime for ffmpeg codecs (raw yuv in, bitstream out / "
               "bitstream in, raw yuv out; 1 ms resolution, coarse on short clips); the seconds "
               "encode_video/decode_video report for tokcodec (model loading excluded, the first GOP's "
               "warm-up included)",
    }
    if cfg.quick:
        report.settings["quick"] = (f"2 points per codec, at most {cfg.frame_cap()} frames per clip, "
                                    "vvenc with preset faster only")
    report.environment = {
        "ffmpeg": str(ff.exe),
        "ffmpeg_version": ff.version,
        "cpus": os.cpu_count(),
        "usable_cpus": usable_cpus(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_average_start": _loadavg(),
        "tokcodec": _version(),
    }

    report.settings["encoders"] = {c.series: c.describe() for c in runnable}
    renamed = {str(c): n for c, n in zip(cfg.clips, names) if Path(c).stem != n}
    if renamed:
        report.notes.append("clips named apart (their file names collide or are reserved): "
                            + ", ".join(f"{c} as {n}" for c, n in renamed.items()))
    work_root = cfg.out / "work"
    try:  # (Ctrl-C: the points so far are still reported)
        for clip, name in zip(cfg.clips, names):
            clip = Path(clip)
            try:
                ref = load_reference(clip, ff, work_root / name, cfg.frame_cap(), name)
            except Exception as e:  # noqa: BLE001 - a clip that fails to load must not lose the others
                msg = f"{name}: cannot read {clip}: {type(e).__name__}: {e}"
                report.failures.append(msg)
                log(f"FAILED {msg}")
                continue
            ceiling = yuv420_to_rgb(ff, ref.yuv420(), ref.width, ref.height, ref.fps)
            info = ClipInfo(name, str(clip), ref.frames, ref.width, ref.height, str(ref.fps),
                            psnr(ref.rgb, ceiling), psnr_y(ref.rgb, ceiling), list(ref.notes))
            del ceiling
            report.clips.append(info)
            log(f"{name}: {ref.width}x{ref.height}, {plural(ref.frames, 'frame')} @ {ref.fps} fps "
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
    except KeyboardInterrupt:
        report.interrupted = True
        report.notes.append(f"interrupted after {len(report.points)} points: the results so far")
        log("interrupted: writing the results so far")
    if not cfg.keep_work:
        shutil.rmtree(work_root, ignore_errors=True)
    for c in runnable:
        report.notes.extend(c.notes())
    report.environment["load_average_end"] = end_load = _loadavg()
    cpus = os.cpu_count() or 1  # (the load average counts the whole machine's)
    busy = [x for x in (report.environment["load_average_start"], end_load) if x is not None and x > cpus]
    if busy:
        report.notes.append(f"the machine was busy (1-minute load average up to {max(busy):.1f} on {cpus} "
                            "CPUs): enc/dec fps are lower than on an idle machine")
    if anchor is not None:
        report.bd_rates = compute_bd_rates(report)
    report.elapsed_seconds = time.perf_counter() - t_start
    return report
