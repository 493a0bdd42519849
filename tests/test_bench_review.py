"""What a video engineer's walk through `tokcodec bench` found: clips that share a file name,
a clip that cannot be read, failed points, reruns into an earlier bench's folder, and what the
report says about its BD-rates and metrics."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

pytest.importorskip("imageio_ffmpeg")

import typer  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from tokcodec.bench import clips  # noqa: E402
from tokcodec.bench.rd import clip_names, compute_bd_rates, prepare_output  # noqa: E402
from tokcodec.bench.report import markdown  # noqa: E402
from tokcodec.bench.results import BenchReport, ClipInfo, PointResult  # noqa: E402
from tokcodec.cli.bench import bench  # noqa: E402
from tokcodec.errors import InputError  # noqa: E402


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command()(bench)
    return app


def test_clips_get_distinct_names():
    assert clip_names([Path("a/clip.mp4"), Path("b/clip.mkv"), Path("c/other.mp4")]) == ["a-clip", "b-clip", "other"]
    assert clip_names([Path("x/mean.mp4"), Path("y/z.mp4")]) == ["x-mean", "z"]  # "mean" names the average
    assert clip_names([Path("d/clip.mp4"), Path("d/clip.mkv")]) == ["d-clip", "d-clip-2"]
    assert clip_names([Path("A/Clip.mp4"), Path("B/clip.mp4")]) == ["A-Clip", "B-clip"]


def test_an_earlier_bench_is_not_replaced_without_y(tmp_path):
    out = tmp_path / "out"
    prepare_output(out, overwrite=False)  # a new folder
    (out / "results.json").write_text("{}")
    (out / "bitstreams" / "old").mkdir(parents=True)
    (out / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="earlier bench's results.*-y"):
        prepare_output(out, overwrite=False)
    prepare_output(out, overwrite=True)
    assert not (out / "results.json").exists() and not (out / "bitstreams").exists()
    assert (out / "notes.txt").read_text() == "mine"  # only what a bench writes is removed


def _point(clip: str, series: str, bpp: float, q: float, vmaf: float | None = None) -> PointResult:
    return PointResult(clip, series, series.split("-")[0], f"p={bpp}", "x", "raw", 100, 9, 64, 48, bpp,
                       psnr_y=q, psnr_rgb=q, ssim=q / 50, ms_ssim=q / 50, vmaf=vmaf)


def test_bd_rates_record_their_quality_range_and_vmaf_not_measured():
    report = BenchReport(anchor="x265-medium", quick=True)
    report.clips = [ClipInfo("c", "c.mp4", 9, 64, 48, "25")]
    report.points = [_point("c", "x265-medium", 0.1, 30), _point("c", "x265-medium", 0.2, 34),
                     _point("c", "x264-medium", 0.12, 31), _point("c", "x264-medium", 0.3, 35)]
    entries = {e.metric: e for e in compute_bd_rates(report)}
    assert entries["psnr_y"].value is not None
    assert (entries["psnr_y"].quality_from, entries["psnr_y"].quality_to) == (31, 34)
    assert (entries["psnr_y"].anchor_points, entries["psnr_y"].test_points) == (2, 2)
    assert entries["vmaf"].value is None and entries["vmaf"].reason == "not measured"


def test_the_report_says_why_there_are_no_bd_rates():
    report = BenchReport(anchor="x265-medium", quick=True)
    report.clips = [ClipInfo("c", "c.mp4", 9, 64, 48, "25")]
    report.points = [_point("c", "x265-medium", 0.1, 30)]
    assert "no other codec has points to compare with the anchor x265-medium" in markdown(report)
    report.points = [_point("c", "x264-medium", 0.1, 30)]
    report.failures = ["c x265-medium crf=32: boom"]
    assert "the anchor x265-medium has no points: its points failed" in markdown(report)
    report.failures, report.skipped = [], {"x265-medium": "encoder libx265 not in this ffmpeg"}
    assert "has no points: encoder libx265 not in this ffmpeg" in markdown(report)


def test_bench_checks_every_clip_before_coding_any(tmp_path):
    good = clips.generate(tmp_path / "clips", ["objects"], width=64, height=48, frames=3)[0]
    bad = tmp_path / "clips" / "text.mp4"
    bad.write_text("not a video")
    out = tmp_path / "out"
    res = CliRunner().invoke(_app(), [str(good), str(bad), "-o", str(out), "--quick", "--codecs", "x264",
                                      "--no-vmaf", "--no-plots"])
    assert res.exit_code == 1 and "text.mp4" in res.output and "checked before the bench starts" in res.output
    assert not (out / "bitstreams").exists()  # nothing was coded


def test_bench_of_clips_sharing_a_name_keeps_them_apart(tmp_path):
    from tokcodec.bench.ffmpeg import find_ffmpeg

    if not find_ffmpeg().has_encoder("libx264"):
        pytest.skip("no libx264 in this ffmpeg")
    a = clips.generate(tmp_path / "a", ["objects"], width=64, height=48, frames=3)[0]
    b = clips.generate(tmp_path / "b", ["pan_china"], width=64, height=48, frames=3)[0]
    b = b.rename(b.with_name(a.name))  # another clip, the same file name
    out = tmp_path / "out"
    args = [str(a), str(b), "-o", str(out), "--quick", "--codecs", "x264", "--anchor", "x264", "--no-vmaf",
            "--no-plots"]
    res = CliRunner().invoke(_app(), args)
    assert res.exit_code == 0, res.output
    report = json.loads((out / "results.json").read_text())
    names = [c["name"] for c in report["clips"]]
    assert names == ["a-objects", "b-objects"] and {p["clip"] for p in report["points"]} == set(names)
    assert all(len([p for p in report["points"] if p["clip"] == n]) == 2 for n in names)
    for n in names:
        assert len(list((out / "bitstreams" / n).iterdir())) == 2
    assert "clips named apart" in (out / "report.md").read_text()
    assert "encoders" in report["settings"] and "libx264" in report["settings"]["encoders"]["x264-medium"]
    with (out / "bdrate.csv").open() as fh:
        assert "quality_from" in next(csv.reader(fh))
    res = CliRunner().invoke(_app(), args)  # a rerun into the same folder
    assert res.exit_code == 1 and "use -y" in res.output
    assert CliRunner().invoke(_app(), args + ["-y"]).exit_code == 0


def test_an_interrupted_bench_writes_the_results_so_far(tmp_path, monkeypatch):
    from tokcodec.bench import rd
    from tokcodec.bench.ffmpeg import find_ffmpeg

    if not find_ffmpeg().has_encoder("libx264"):
        pytest.skip("no libx264 in this ffmpeg")
    clip = clips.generate(tmp_path / "clips", ["objects"], width=64, height=48, frames=3)[0]
    real, calls = rd._run_point, []

    def interrupted_at_the_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(rd, "_run_point", interrupted_at_the_second)
    out = tmp_path / "out"
    res = CliRunner().invoke(_app(), [str(clip), "-o", str(out), "--quick", "--codecs", "x264", "--anchor", "x264",
                                      "--no-vmaf", "--no-plots"])
    assert res.exit_code == 130 and "results so far" in res.output
    report = json.loads((out / "results.json").read_text())
    assert report["interrupted"] and len(report["points"]) == 1
    assert not (out / "work").exists()


def test_the_mean_over_clips_is_over_all_of_them_or_says_why_not():
    report = BenchReport(anchor="x265-medium", quick=True)
    report.clips = [ClipInfo("c", "c.mp4", 9, 64, 48, "25"), ClipInfo("d", "d.mp4", 9, 64, 48, "25")]
    report.points = [_point("c", "x265-medium", 0.1, 30), _point("c", "x265-medium", 0.2, 34),
                     _point("c", "x264-medium", 0.12, 31), _point("c", "x264-medium", 0.3, 35),
                     _point("d", "x265-medium", 0.1, 30), _point("d", "x265-medium", 0.2, 34)]
    means = [e for e in compute_bd_rates(report) if e.clip == "mean" and e.metric == "psnr_y"]
    assert len(means) == 1 and means[0].value is None and means[0].reason == "no points on 1/2 clips"
