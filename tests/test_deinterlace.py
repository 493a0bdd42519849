"""Interlaced input (io.iter_frames, --deinterlace): an interlaced stream's frames are deinterlaced
as they are read, one frame per frame, by default; progressive input is read exactly as before."""
from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
from typer.testing import CliRunner

from tokcodec.cli.app import app
from tokcodec.errors import ArgumentError
from tokcodec.io import iter_frames, probe

FRAMES, HEIGHT, WIDTH = 23, 64, 96


def _woven(i: int) -> np.ndarray:
    """Frame ``i`` of a moving bar over a texture, its two fields taken half a frame apart (the top
    field, even rows, at time i; the bottom field at i + 0.5), as an interlaced camera films it."""
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    frame = np.empty((HEIGHT, WIDTH, 3), np.uint8)
    for field in (0, 1):
        t = i + 0.5 * field
        picture = np.stack([90 + 40 * np.sin(xx / 6.0 + c) * np.cos(yy / 9.0) for c in range(3)], -1)
        x0 = int(8 + 6 * t) % (WIDTH - 16)
        picture[:, x0:x0 + 12] = (230, 210, 60)
        frame[field::2] = picture[field::2].astype(np.uint8)
    return frame


def _write(path: Path, interlaced: bool, codec: str = "libx264") -> Path:
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=25)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        if codec == "libx264":  # a key frame every 5: parts are reached by a seek
            stream.options = {"x264-params": ("interlaced=1:tff=1:" if interlaced else "")
                              + "qp=6:keyint=5:min-keyint=5:scenecut=0"}
        else:
            stream.options = {"flags": "+ildct+ilme", "qscale": "2"} if interlaced else {"qscale": "2"}
        for i in range(FRAMES):
            for packet in stream.encode(av.VideoFrame.from_ndarray(_woven(i), format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("interlaced")
    return {"interlaced": _write(d / "interlaced.mkv", True), "progressive": _write(d / "progressive.mkv", False),
            "mpeg2": _write(d / "broadcast.ts", True, "mpeg2video")}


def _combing(frames: list[np.ndarray]) -> float:
    """Mean distance of each line from the mean of the lines above and below it: the comb of two
    fields from different times woven together."""
    a = np.stack(frames).astype(np.float64)
    return float(np.abs(a[:, 1:-1] - (a[:, :-2] + a[:, 2:]) / 2).mean())


def test_probe_says_interlaced(clips):
    assert probe(clips["interlaced"]).interlaced
    assert probe(clips["mpeg2"]).interlaced
    assert not probe(clips["progressive"]).interlaced


@pytest.mark.parametrize("name", ["interlaced", "mpeg2"])
def test_interlaced_frames_are_deinterlaced_by_default(clips, name):
    woven = list(iter_frames(clips[name], deinterlace="off"))
    read = list(iter_frames(clips[name]))
    assert len(read) == len(woven) == FRAMES  # one frame out per frame in: count, rate and audio stay
    assert _combing(read) < 0.75 * _combing(woven)
    assert all(f.shape == (HEIGHT, WIDTH, 3) and f.dtype == np.uint8 for f in read)


def test_progressive_input_is_read_as_before(clips):
    auto = list(iter_frames(clips["progressive"]))
    off = list(iter_frames(clips["progressive"], deinterlace="off"))
    assert all(np.array_equal(a, b) for a, b in zip(auto, off, strict=True))
    forced = list(iter_frames(clips["progressive"], deinterlace="on"))  # unflagged interlaced content
    assert len(forced) == FRAMES and _combing(forced) < 0.75 * _combing(off)


@pytest.mark.parametrize("skip", [1, 4, 5, 6, 11])
def test_a_part_is_the_whole_reads_frames(clips, skip):
    """The deinterlacer looks at the frames before and after: a part (encode --ss) starts one frame
    earlier, so that its frames are those of a whole read, through a seek (a key frame every 5) or not."""
    whole = list(iter_frames(clips["interlaced"]))
    part = list(iter_frames(clips["interlaced"], 4, skip))
    assert len(part) == 4
    assert all(np.array_equal(a, b) for a, b in zip(part, whole[skip:skip + 4]))


def test_an_unknown_mode_is_refused(clips):
    with pytest.raises(ArgumentError, match="deinterlace must be one of auto, on, off"):
        next(iter_frames(clips["interlaced"], deinterlace="yes"))


def test_encode_deinterlaces_and_says_so(clips, tmp_path, tiny_model):
    from tokcodec.codec.pipeline import encode_video

    st = encode_video(clips["interlaced"], tmp_path / "a.tok", model=tiny_model, passes=0, max_frames=9)
    assert st.deinterlaced and st.frames == 9
    assert not any("interlaced" in w for w in st.warnings)
    st = encode_video(clips["interlaced"], tmp_path / "b.tok", model=tiny_model, passes=0, max_frames=9,
                      deinterlace="off")
    assert not st.deinterlaced
    assert any("interlaced: its two fields are coded woven together" in w for w in st.warnings)
    st = encode_video(clips["progressive"], tmp_path / "c.tok", model=tiny_model, passes=0, max_frames=9)
    assert not st.deinterlaced and not any("interlaced" in w for w in st.warnings)
    with pytest.raises(ArgumentError):
        encode_video(clips["progressive"], tmp_path / "d.tok", model=tiny_model, deinterlace="both")


def test_cli_option(clips, tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["encode", str(clips["interlaced"]), "-o", str(tmp_path / "a.tok"), "-m", "tiny",
                              "--frames", "5", "--passes", "0"])
    assert res.exit_code == 0, res.output
    assert "deinterlaced" in res.output
    res = runner.invoke(app, ["encode", str(clips["interlaced"]), "-o", str(tmp_path / "b.tok"), "-m", "tiny",
                              "--deinterlace", "sometimes"])
    assert res.exit_code == 2 and "deinterlace must be one of" in res.output
    res = runner.invoke(app, ["tokens", str(tmp_path / "a.tok"), "-o", str(tmp_path / "t.npy"),
                              "--deinterlace", "off"])
    assert res.exit_code != 0 and "--deinterlace applies only to a video, image or image sequence input" in res.output


def test_batch_records_deinterlacing(clips, tmp_path):
    from tokcodec.batch.run import batch_encode, batch_tokens

    src = tmp_path / "src"
    src.mkdir()
    for name in ("interlaced", "progressive"):
        (src / clips[name].name).write_bytes(clips[name].read_bytes())
    batch_encode(src, tmp_path / "tok", model="tiny", passes=0, max_frames=5, workers=1)
    records = {Path(r["input"]).name: r for r in map(json.loads, (tmp_path / "tok" / "manifest.jsonl").open())}
    assert records["interlaced.mkv"]["deinterlaced"] is True
    assert "deinterlaced" not in records["progressive.mkv"]
    summary = batch_tokens(src, tmp_path / "tokens", model="tiny", passes=0, max_frames=5, workers=1,
                           deinterlace="off")
    assert summary.failed == 0
    records = [json.loads(line) for line in (tmp_path / "tokens" / "manifest.jsonl").open()]
    assert records and not any(r.get("deinterlaced") for r in records)
    with pytest.raises(ArgumentError):
        batch_encode(src, tmp_path / "tok2", model="tiny", deinterlace="never")
