"""One end-to-end `tokcodec bench --quick` on a tiny generated clip, through the typer command."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

pytest.importorskip("imageio_ffmpeg")
pytest.importorskip("matplotlib")

import typer  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from tokcodec.bench import clips  # noqa: E402
from tokcodec.cli.bench import bench  # noqa: E402
from tokcodec.bench.codecs import tokcodec_api  # noqa: E402
from tokcodec.bench.ffmpeg import find_ffmpeg  # noqa: E402
from tokcodec.bench.results import METRICS  # noqa: E402

ENCODERS = {"x265-medium": "libx265", "vvenc-faster": "libvvenc", "svtav1-default": "libsvtav1",
            "x264-medium": "libx264"}


def test_bench_quick_end_to_end(tmp_path: Path) -> None:
    clip = clips.generate(tmp_path / "clips", ["objects"], width=128, height=72, frames=9)[0]
    out = tmp_path / "out"
    app = typer.Typer()
    app.command()(bench)
    res = CliRunner().invoke(app, [str(clip), "-o", str(out), "--quick"])
    assert res.exit_code == 0, res.output

    report = json.loads((out / "results.json").read_text())
    for name in ("points.csv", "bdrate.csv", "report.md"):
        assert (out / name).stat().st_size > 0
    assert report["quick"] and report["failures"] == []
    assert report["clips"][0]["frames"] == 9 and report["clips"][0]["width"] == 128

    ff = find_ffmpeg()
    points = report["points"]
    by_series: dict[str, list[dict]] = {}
    for p in points:
        by_series.setdefault(p["series"], []).append(p)
    for series, encoder in ENCODERS.items():
        if ff.has_encoder(encoder):
            assert len(by_series.get(series, [])) == 2, series
        else:
            assert encoder in report["skipped"][series]
    assert "vvenc-medium" not in by_series  # quick mode uses vvenc's faster preset only

    if tokcodec_api()[0] is None:
        assert "tokcodec API not available" in report["skipped"]["tokcodec"]
    else:
        assert len(by_series.get("tokcodec", [])) == 2

    untrained = any("untrained" in n for n in report["notes"])
    for p in points:
        assert p["bytes"] > 0 and p["bpp"] > 0
        assert p["bpp"] == pytest.approx(8 * (out / p["bitstream"]).stat().st_size / (9 * 128 * 72))
        # an untrained tokcodec model (random weights) decodes to noise: only require finite numbers
        floor = 5.0 if p["codec"] == "tokcodec" and untrained else 15.0
        assert floor < p["psnr_y"] < 60.0 and floor < p["psnr_rgb"] < 60.0, p
        assert -1.0 <= p["ssim"] <= 1.0 and 0.0 <= p["ms_ssim"] <= 1.0
        assert p["vmaf"] is None or 0.0 <= p["vmaf"] <= 100.0
        assert p["enc_fps"] > 0 and p["dec_fps"] > 0
    # the rate knob works: the point with more bits has the higher quality (and for tokcodec,
    # scale 1 costs more bits than scale 0.5; its quality order holds only for a trained model)
    for series, ps in by_series.items():
        lo, hi = sorted(ps, key=lambda p: p["bpp"])
        assert lo["bpp"] < hi["bpp"], series
        if series.startswith("tokcodec"):
            assert hi["point"] == "scale=1", ps
            if untrained:
                continue
        assert hi["psnr_y"] > lo["psnr_y"], series

    # BD-rate vs the anchor for every other series and metric: a number or an explicit reason
    assert report["anchor"] == "x265-medium"
    bd = {(e["series"], e["metric"]): e for e in report["bd_rates"]}
    for series in by_series:
        if series == report["anchor"]:
            continue
        for metric in METRICS:
            e = bd[(series, metric)]
            assert (e["value"] is not None and math.isfinite(e["value"])) or e["reason"] == "no overlap", e

    md = (out / "report.md").read_text()
    assert "| codec | point | bpp | PSNR-Y | PSNR-RGB | SSIM | MS-SSIM | VMAF | enc fps | dec fps |" in md
    assert "BD-rate vs x265-medium" in md
    assert sorted(p.name for p in (out / "plots").glob("*.png")) == sorted(f"objects_{m}.png" for m in METRICS)


def test_ffmpeg_path_is_exact_when_lossless(tmp_path: Path) -> None:
    """The reference -> encoder -> decoder path adds no colour conversion of its own: lossless
    x265 gives back the reference YUV exactly, both in 8 bit and through the 10-bit path used for
    vvenc (v << 2 in, (v + 2) >> 2 out)."""
    from tokcodec.bench.codecs import FFmpegCodec, OperatingPoint
    from tokcodec.bench.reference import load_reference

    ff = find_ffmpeg()
    clip = clips.generate(tmp_path, ["pan_china"], width=64, height=48, frames=3)[0]
    ref = load_reference(clip, ff, tmp_path / "work")
    for ten_bit in (False, True):
        codec = FFmpegCodec("x265", "x265-lossless", "libx265", "crf", (0,), None, "hevc", ".hevc", "raw",
                            args=["-x265-params", "lossless=1:log-level=error"], ten_bit=ten_bit)
        assert codec.unavailable(ff) is None
        enc = codec.encode(ref, OperatingPoint("crf=0", 0), tmp_path / f"ll{int(ten_bit)}.hevc")
        dec = codec.decode(ref, enc, tmp_path / "work")
        assert dec.yuv.read_bytes() == ref.yuv420().read_bytes(), f"ten_bit={ten_bit}"


def test_bench_refine_is_its_own_series(tmp_path: Path) -> None:
    clip = clips.generate(tmp_path / "clips", ["objects"], width=128, height=72, frames=9)[0]
    out = tmp_path / "out"
    app = typer.Typer()
    app.command()(bench)
    res = CliRunner().invoke(app, [str(clip), "-o", str(out), "--quick", "--codecs", "tokcodec",
                                   "--refine", "2", "--no-vmaf", "--no-plots"])
    assert res.exit_code == 0, res.output
    report = json.loads((out / "results.json").read_text())
    assert report["settings"]["refine"] == 2
    assert sorted(p["series"] for p in report["points"]) == ["tokcodec-refine2"] * 2


def test_a_weights_file_names_its_series_by_its_stem():
    """The series names result folders and files: a path in it would point into folders that
    do not exist."""
    from tokcodec.bench.codecs import TokcodecCodec

    assert TokcodecCodec(model="some/dir/mine.safetensors").series == "tokcodec-mine"
    assert TokcodecCodec(model="small", refine=4).series == "tokcodec-small-refine4"
    assert TokcodecCodec().series == "tokcodec"


def test_the_full_tokcodec_ladder_lengthens_gops_within_a_memory_budget():
    """Below the default size the full sweep's rate knob is the GOP length (then the scale); a
    point whose GOP would not fit the memory budget at the clip's size falls back to shorter
    GOPs, never under the series' own, and says so in the report's notes."""
    from types import SimpleNamespace

    from tokcodec.bench.codecs import TokcodecCodec

    codec = TokcodecCodec()
    full = codec.points(quick=False)
    assert [p.label for p in full] == ["scale=1.25", "scale=1", "scale=1,gop=33", "scale=1,gop=65",
                                       "scale=0.75,gop=65", "scale=0.5,gop=65"]
    assert [p.gop for p in codec.points(quick=True)] == [17, 17]
    small = SimpleNamespace(name="small", width=640, height=360, frames=130)
    assert codec.points_for(small, quick=False) == full and [p.gop for p in full] == [17, 17, 33, 65, 65, 65]
    assert codec.notes() == []
    big = codec.points_for(SimpleNamespace(name="big", width=1920, height=1080, frames=130), quick=False)
    assert [(p.label, p.gop) for p in big] == [("scale=1.25", 17), ("scale=1", 17), ("scale=0.75", 17),
                                                ("scale=0.5,gop=33", 33)]
    assert len(codec.notes()) == 4
    assert "scale=1,gop=65 on big: GOPs of 17 frames, as a longer GOP at 1920x1080 would need too much" \
        in codec.notes()[1]
    assert "left out" in codec.notes()[1] and "left out" not in codec.notes()[3]
    # a GOP no longer than the clip: 30 frames fit in one of 33, so the GOP of 65 repeats it
    short = TokcodecCodec().points_for(SimpleNamespace(name="short", width=640, height=360, frames=30), quick=False)
    assert [p.label for p in short] == ["scale=1.25", "scale=1", "scale=1,gop=33", "scale=0.75,gop=33",
                                        "scale=0.5,gop=33"]
    refined = TokcodecCodec(refine=4).points_for(small, quick=False)  # --refine: a third of the budget
    assert [p.label for p in refined] == ["scale=1.25", "scale=1", "scale=0.75,gop=33", "scale=0.5,gop=65"]
    longer = TokcodecCodec(gop=33)
    assert [p.gop for p in longer.points_for(small, quick=True)] == [33, 33] and longer.notes() == []
    tiny = TokcodecCodec().points_for(SimpleNamespace(name="tiny", width=64, height=48, frames=5), quick=False)
    assert [(p.label, p.gop) for p in tiny] == [("scale=1.25", 17), ("scale=1", 17), ("scale=0.75", 17),
                                                ("scale=0.5", 17)]  # never under the series' own GOP


def test_vmaf_neg_scores_a_sharpened_copy_below_vmaf(tmp_path: Path) -> None:
    """measure.vmaf(neg=True) runs libvmaf's vmaf_v0.6.1neg model, which discounts enhancement:
    a copy sharpened by an unsharp mask scores lower on it than on plain VMAF."""
    import numpy as np

    from tokcodec.bench.ffmpeg import rgb_to_yuv420
    from tokcodec.bench.measure import vmaf
    from tokcodec.bench.reference import load_reference
    from tokcodec.io import read_frames

    ff = find_ffmpeg()
    if "libvmaf" not in ff.filters or ff.vmaf_model_option is None:
        pytest.skip("this ffmpeg has no libvmaf with built-in models")
    clip = clips.generate(tmp_path, ["pan_china"], width=96, height=64, frames=4)[0]
    ref = load_reference(clip, ff, tmp_path / "work")
    frames = read_frames(clip).astype(np.float64)
    blur = (frames + np.roll(frames, 1, 1) + np.roll(frames, -1, 1) + np.roll(frames, 1, 2)
            + np.roll(frames, -1, 2)) / 5
    sharp = np.clip(np.rint(frames + 1.5 * (frames - blur)), 0, 255).astype(np.uint8)
    rgb_to_yuv420(ff, sharp[:, :ref.height, :ref.width], tmp_path / "s.yuv", ref.fps)
    plain, neg = (vmaf(ff, tmp_path / "s.yuv", ref.yuv420(), ref.width, ref.height, ref.fps, tmp_path, neg=n)
                  for n in (False, True))
    assert plain is not None and neg is not None
    assert 0 <= neg < plain, (neg, plain)
