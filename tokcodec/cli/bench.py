"""The ``tokcodec bench`` command over the installed RD bench (tokcodec/bench/).

Importing this module is cheap: numpy, matplotlib, PyAV and torch are imported only when a bench
runs. Standalone use: ``python -m tokcodec.bench CLIP... -o DIR``. Errors follow the CLI's one
policy (tokcodec/cli/policy.py): one line, exit 1.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from tokcodec.cli.options import Device, NoCorrection, Refine
from tokcodec.cli.policy import errors
from tokcodec.defaults import MAX_PASSES, MAX_RDO

__all__ = ["bench", "main"]


def bench(
    clips: Annotated[list[Path], typer.Argument(help="Video files to bench (anything PyAV reads).",
                                                show_default=False)],
    out: Annotated[Path, typer.Option("-o", "--output", "--out", help="Output folder (results, plots, bitstreams).")],
    codecs: Annotated[str, typer.Option(help="Comma-separated: x265, vvenc, svtav1, x264, tokcodec.")] =
        "x265,vvenc,svtav1,x264,tokcodec",
    quick: Annotated[bool, typer.Option("--quick", help="2 points per codec, 17 frames (unless --frames), "
                                        "vvenc preset faster only.")] = False,
    ffmpeg: Annotated[Optional[Path], typer.Option(help="ffmpeg binary (default: the imageio-ffmpeg one).")] = None,
    frames: Annotated[Optional[int], typer.Option(min=1, help="Use at most N frames of each clip.")] = None,
    anchor: Annotated[str, typer.Option(help="BD-rate anchor: a codec key or series name.")] = "x265",
    model: Annotated[str, typer.Option("--model", "-m", help="tokcodec model: preset name or .safetensors weights "
                                       "file.")] = "default",
    device: Device = "auto",
    passes: Annotated[Optional[int], typer.Option(
        "--passes", min=0, max=MAX_PASSES, show_default=False,
        help="tokcodec encode --passes \\[default: tokcodec's]; the series is then named with it.")] = None,
    rdo: Annotated[Optional[float], typer.Option(
        "--rdo", min=0, max=MAX_RDO, show_default=False,
        help="tokcodec encode --rdo \\[default: tokcodec's]; the series is then named with it.")] = None,
    refine: Refine = 0,
    no_correction: NoCorrection = False,
    vmaf: Annotated[bool, typer.Option("--vmaf/--no-vmaf", help="Measure VMAF with ffmpeg libvmaf.")] = True,
    plots: Annotated[bool, typer.Option("--plots/--no-plots", help="Write RD plots (PNG).")] = True,
    keep_work: Annotated[bool, typer.Option("--keep-work", help="Keep the raw intermediate files.")] = False,
    overwrite: Annotated[bool, typer.Option("-y", "--overwrite", help="Replace an earlier bench's results "
                                            "in the output folder (with its bitstreams and plots).")] = False,
) -> None:
    """Rate-distortion of tokcodec against HEVC (x265), VVC (vvenc), AV1 (SVT-AV1) and x264.

    Writes results.json, points.csv, bdrate.csv, report.md and plots into the output folder; exit
    status 1 when any point or clip failed (the others are still measured and reported)."""
    with errors():
        from tokcodec.bench.rd import BenchConfig, parse_codecs, run_bench
        from tokcodec.bench.report import markdown, write_all

        cfg = BenchConfig(
            clips=list(clips), out=out, codecs=parse_codecs(codecs), quick=quick, ffmpeg=ffmpeg,
            frames=frames, anchor=anchor, model=model, device=device, refine=refine, passes=passes,
            rdo=rdo, correction=not no_correction, with_vmaf=vmaf,
            plots=plots, keep_work=keep_work, overwrite=overwrite,
        )
        report = run_bench(cfg, log=lambda s: typer.echo(s, err=True))
        paths = write_all(report, out, plots=plots)
    typer.echo(markdown(report))
    typer.echo(f"wrote {paths['json']}, {paths['csv']}, {paths['bd_csv']}, {paths['markdown']}"
               + (f", {paths['plots']}/*.png" if "plots" in paths else ""), err=True)
    if report.interrupted:
        typer.echo("tokcodec: interrupted (the results so far are written)", err=True)
        raise typer.Exit(130)
    if report.failures:
        typer.echo(f"tokcodec: error: {len(report.failures)} point(s) or clip(s) failed, listed in {paths['markdown']}",
                   err=True)
    if not report.points or report.failures:
        raise typer.Exit(1)


def main() -> None:
    typer.run(bench)
