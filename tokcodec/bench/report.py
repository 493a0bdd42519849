"""Writing a bench report: results.json, points.csv, bdrate.csv, report.md and RD plots (PNG)."""
from __future__ import annotations

import csv
import json
import math
from dataclasses import fields
from pathlib import Path
from typing import Optional

from tokcodec.bench.results import METRIC_LABELS, METRICS, BenchReport, PointResult
from tokcodec.text import plural

__all__ = ["markdown", "write_all", "write_csv", "write_json", "plot_rd"]


def _fmt(v: Optional[float], digits: int) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.{digits}f}"


def write_json(report: BenchReport, path: Path) -> None:
    path.write_text(json.dumps(report.to_dict(), indent=2, allow_nan=False, default=str) + "\n")


def write_csv(report: BenchReport, points_path: Path, bd_path: Path) -> None:
    names = [f.name for f in fields(PointResult)]
    with points_path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=names)
        w.writeheader()
        for p in report.points:
            w.writerow({n: getattr(p, n) for n in names})
    with bd_path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["clip", "series", "anchor", "metric", "bd_rate_percent", "note", "quality_from", "quality_to",
                    "anchor_points", "test_points"])
        for e in report.bd_rates:
            w.writerow([e.clip, e.series, report.anchor, e.metric,
                        "" if e.value is None else f"{e.value:.3f}", e.reason or "",
                        "" if e.quality_from is None else f"{e.quality_from:.6g}",
                        "" if e.quality_to is None else f"{e.quality_to:.6g}",
                        "" if e.anchor_points is None else e.anchor_points,
                        "" if e.test_points is None else e.test_points])


def markdown(report: BenchReport) -> str:
    """The points table per clip, then one BD-rate table (series x metric) per clip and the mean."""
    out: list[str] = []
    mode = "quick" if report.quick else "full"
    out.append(f"# tokcodec bench ({mode})\n")
    for n in report.notes:
        out.append(f"**Note:** {n}.\n")
    if report.settings.get("metrics"):
        out.append(f"Metrics: {report.settings['metrics']}.\n")
    for clip in report.clips:
        out.append(f"## {clip.name}: {clip.width}x{clip.height}, {plural(clip.frames, 'frame')} @ {clip.fps} fps\n")
        out.append(f"RGB -> YUV 4:2:0 -> RGB round trip alone (the ceiling of the ffmpeg codecs): "
                   f"PSNR-RGB {_fmt(clip.yuv420_psnr_rgb, 2)} dB, PSNR-Y {_fmt(clip.yuv420_psnr_y, 2)} dB.")
        for n in clip.notes:
            out.append(f"Note: {n}.")
        out.append("")
        out.append("| codec | point | bpp | PSNR-Y | PSNR-RGB | SSIM | MS-SSIM | VMAF | enc fps | dec fps |")
        out.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for p in report.points:
            if p.clip != clip.name:
                continue
            out.append(
                f"| {p.series} | {p.point} | {p.bpp:.4f} | {_fmt(p.psnr_y, 2)} | {_fmt(p.psnr_rgb, 2)} | "
                f"{_fmt(p.ssim, 4)} | {_fmt(p.ms_ssim, 4)} | {_fmt(p.vmaf, 2)} | {_fmt(p.enc_fps, 1)} | "
                f"{_fmt(p.dec_fps, 1)} |"
            )
        out.append("")
    if report.bd_rates:
        scopes = list(dict.fromkeys(e.clip for e in report.bd_rates))
        for scope in scopes:
            title = "mean over clips" if scope == "mean" else scope
            out.append(f"## BD-rate vs {report.anchor}: {title}\n")
            out.append("Negative = fewer bits than the anchor at equal quality; "
                       "\"no overlap\" = the quality ranges do not meet (nothing is extrapolated). "
                       "Log-rate is interpolated (PCHIP) against quality and averaged over the quality "
                       "range both curves share: bdrate.csv gives that range (quality_from, quality_to) "
                       "and the points on each curve" + (" (2 with --quick: straight lines)" if report.quick else "")
                       + ".\n")
            out.append("| codec | " + " | ".join(METRIC_LABELS[m] for m in METRICS) + " |")
            out.append("|---|" + "---:|" * len(METRICS))
            series = list(dict.fromkeys(e.series for e in report.bd_rates if e.clip == scope))
            for s in series:
                cells = []
                for m in METRICS:
                    e = next((e for e in report.bd_rates if e.clip == scope and e.series == s and e.metric == m), None)
                    if e is None:
                        cells.append("-")
                    elif e.value is None:
                        cells.append(e.reason or "n/a")
                    else:
                        cells.append(f"{e.value:+.1f}%" + (f" ({e.reason})" if e.reason else ""))
                out.append(f"| {s} | " + " | ".join(cells) + " |")
            out.append("")
    elif report.points:
        if not any(p.series == report.anchor for p in report.points):
            why = report.skipped.get(report.anchor) or ("its points failed (below)" if report.failures
                                                          else "it is not among --codecs")
            out.append(f"No BD-rates: the anchor {report.anchor} has no points: {why}.\n")
        else:
            out.append(f"No BD-rates: no other codec has points to compare with the anchor {report.anchor}"
                       + (" (see the failures below)" if report.failures else "") + ".\n")
    if report.skipped:
        out.append("## Not run\n")
        for k, v in report.skipped.items():
            out.append(f"- {k}: {v}")
        out.append("")
    if report.failures:
        out.append("## Failures\n")
        for f in report.failures:
            out.append(f"- {f}")
        out.append("")
    if report.settings.get("quick"):
        out.append(f"Quick mode: {report.settings['quick']}.")
    if report.elapsed_seconds is not None:
        out.append(f"Elapsed: {report.elapsed_seconds:.1f} s on {report.environment.get('cpus')} CPUs.")
    return "\n".join(out).rstrip() + "\n"


def plot_rd(report: BenchReport, folder: Path) -> list[Path]:
    """One PNG per clip and metric: quality vs bits per pixel (log axis), one line per codec."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for clip in report.clips:
        pts = [p for p in report.points if p.clip == clip.name]
        if not pts:
            continue
        for metric in METRICS:
            fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=100)
            drew = False
            for s in report.series_names():
                sp = sorted((p for p in pts if p.series == s and p.metric(metric) is not None), key=lambda p: p.bpp)
                if not sp:
                    continue
                kw: dict = {"marker": "o", "linewidth": 1.4, "markersize": 4}
                if s == report.anchor:
                    kw.update(color="black", marker="s", linestyle="--", label=f"{s} (anchor)")
                elif s.startswith("tokcodec"):
                    kw.update(color="crimson", linewidth=2.4, markersize=6)
                kw.setdefault("label", s)
                ax.plot([p.bpp for p in sp], [p.metric(metric) for p in sp], **kw)
                drew = True
            if not drew:
                plt.close(fig)
                continue
            ax.set_xscale("log")
            ax.set_xlabel("bits per pixel")
            ax.set_ylabel(METRIC_LABELS[metric])
            ax.set_title(f"{clip.name} ({clip.width}x{clip.height}, {clip.frames} frames)")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=8)
            fig.tight_layout()
            path = folder / f"{clip.name}_{metric}.png"
            fig.savefig(path)
            plt.close(fig)
            written.append(path)
    return written


def write_all(report: BenchReport, out: Path, plots: bool = True) -> dict[str, Path]:
    """Write every artefact into ``out``; returns their paths by kind."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": out / "results.json",
        "csv": out / "points.csv",
        "bd_csv": out / "bdrate.csv",
        "markdown": out / "report.md",
    }
    write_json(report, paths["json"])
    write_csv(report, paths["csv"], paths["bd_csv"])
    paths["markdown"].write_text(markdown(report))
    if plots:
        plot_rd(report, out / "plots")
        paths["plots"] = out / "plots"
    return paths
