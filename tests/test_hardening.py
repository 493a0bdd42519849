"""Damaged files: `verify` finds them, `decode --salvage` keeps what is intact, weights are checked."""
from __future__ import annotations

import json
import shutil
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import smooth_clip, write_clip
from tokcodec.cli import app
from tokcodec.codec.container import CHUNK_MAGIC, HEADER_SIZE
from tokcodec.codec.pipeline import decode_video, encode_video
from tokcodec.codec.salvage import open_salvage
from tokcodec.codec.verify import verify_file
from tokcodec.errors import FormatError, ModelError
from tokcodec.io import read_frames

runner = CliRunner()
GOP = 5


@pytest.fixture(scope="module")
def coded(tmp_path_factory, tiny_model) -> tuple[Path, np.ndarray]:
    """A 17-frame clip coded in GOPs of 5: chunks hold frames 0-4, 5-9, 10-14, 15-16."""
    d = tmp_path_factory.mktemp("hard")
    clip = write_clip(d / "clip.mkv", smooth_clip(17, 32, 48), Fraction(25))
    encode_video(clip, d / "clip.tok", model=tiny_model, gop=GOP)
    return d / "clip.tok", read_frames(clip)


def chunk_offsets(data: bytes) -> list[int]:
    out, pos = [], HEADER_SIZE
    while (pos := data.find(CHUNK_MAGIC, pos)) >= 0:
        out.append(pos)
        pos += 1
    return out


def damaged(src: Path, dst: Path, *, flip_chunk: int | None = None, keep: float | None = None) -> Path:
    data = bytearray(src.read_bytes())
    if flip_chunk is not None:
        data[chunk_offsets(bytes(data))[flip_chunk] + 40] ^= 0x10
    if keep is not None:
        data = data[:int(len(data) * keep)]
    dst.write_bytes(bytes(data))
    return dst


def test_verify_good_and_bad_files(coded, tmp_path: Path) -> None:
    tok, _ = coded
    bad = damaged(tok, tmp_path / "bad.tok", flip_chunk=2)
    trunc = damaged(tok, tmp_path / "trunc.tok", keep=0.7)
    ok = runner.invoke(app, ["verify", str(tok)])
    assert ok.exit_code == 0 and "OK (17 frames, 4 chunks" in ok.output
    res = runner.invoke(app, ["verify", str(tok), str(bad), str(trunc)])
    assert res.exit_code == 1
    lines = res.output.strip().splitlines()
    assert lines[0].endswith("OK (17 frames, 4 chunks, model tiny)")
    assert "bad.tok: BAD:" in lines[1] and "chunk 2 (frames 10-14) checksum mismatch" in lines[1]
    assert "trunc.tok: BAD:" in lines[2] and "truncated" in lines[2]
    reports = [json.loads(x) for x in runner.invoke(app, ["verify", "--json", str(tok), str(bad)]).output.splitlines()]
    assert [r["ok"] for r in reports] == [True, False]


def test_verify_checks_weights_hash(coded) -> None:
    tok, _ = coded
    report = verify_file(tok, model="small")    # the file was made with the tiny preset
    assert not report.ok and "weights" in report.problems[0] and "sha256" in report.problems[0]
    assert verify_file(tok, weights=False).ok


def test_decode_of_damaged_file_fails_cleanly_and_suggests_salvage(coded, tmp_path: Path) -> None:
    bad = damaged(coded[0], tmp_path / "bad.tok", flip_chunk=1)
    with pytest.raises(FormatError, match="--salvage"):
        decode_video(bad, tmp_path / "out.mkv")
    assert not (tmp_path / "out.mkv").exists() and not list(tmp_path.glob(".*part*"))


def test_salvage_fills_lost_gop_and_keeps_timing(coded, tmp_path: Path, tiny_model) -> None:
    tok, _ = coded
    good = read_frames(tmp_path / "good.mkv") if decode_video(tok, tmp_path / "good.mkv", model=tiny_model) else None
    bad = damaged(tok, tmp_path / "bad.tok", flip_chunk=1)
    st = decode_video(bad, tmp_path / "salvaged.mkv", model=tiny_model, salvage=True)
    assert st.frames == 17 and st.lost_frames == [(5, 9)]
    assert any("1 of 4 chunks are damaged" in p for p in st.problems)
    out = read_frames(tmp_path / "salvaged.mkv")
    assert len(out) == 17
    np.testing.assert_array_equal(out[:5], good[:5])
    np.testing.assert_array_equal(out[10:], good[10:])
    for i in range(5, 10):                       # the lost GOP repeats the last good frame
        np.testing.assert_array_equal(out[i], good[4])


def test_salvage_without_index_and_with_lost_first_gop(coded, tmp_path: Path, tiny_model) -> None:
    tok, _ = coded
    data = bytearray(tok.read_bytes())
    data[chunk_offsets(bytes(data))[0] + 40] ^= 1          # first GOP damaged
    cut = bytes(data[:chunk_offsets(bytes(data))[3] + 10])  # index, trailer and most of GOP 3 gone
    (tmp_path / "cut.tok").write_bytes(cut)
    with open_salvage(tmp_path / "cut.tok") as reader:
        assert reader.frame_count == 17                    # from the header, patched at encode
        assert [(s.first_frame, s.frames) for s in reader.spots] == [(5, 5), (10, 5)]
        assert reader.lost_ranges() == [(0, 4), (15, 16)]
    st = decode_video(tmp_path / "cut.tok", tmp_path / "cut.mkv", model=tiny_model, salvage=True)
    assert st.lost_frames == [(0, 4), (15, 16)]
    out = read_frames(tmp_path / "cut.mkv")
    assert len(out) == 17 and not out[:5].any()             # black before the first good frame
    np.testing.assert_array_equal(out[15], out[14])


def test_salvage_needs_the_header(coded, tmp_path: Path) -> None:
    data = bytearray(coded[0].read_bytes())
    data[20] ^= 1
    (tmp_path / "h.tok").write_bytes(bytes(data))
    with pytest.raises(FormatError, match="header is needed"):
        open_salvage(tmp_path / "h.tok")
    res = runner.invoke(app, ["decode", "--salvage", str(tmp_path / "h.tok"), "-o", str(tmp_path / "h.mkv")])
    assert res.exit_code == 1 and "header checksum mismatch" in res.output


def test_salvage_cli_reports_lost_ranges(coded, tmp_path: Path) -> None:
    bad = damaged(coded[0], tmp_path / "bad.tok", flip_chunk=3)
    res = runner.invoke(app, ["decode", "--salvage", str(bad), "-o", str(tmp_path / "s.mkv")])
    assert res.exit_code == 0, res.output
    assert "LOST 2 frames (15-16)" in res.output and "warning: " in res.output


def test_shipped_weights_verified_before_use(tmp_path: Path, monkeypatch) -> None:
    from tokcodec.model import zoo

    weights = tmp_path / "weights"
    weights.mkdir()
    shutil.copy(zoo.shipped_weights_path("medium"), weights / "medium.safetensors")
    shutil.copy(zoo.WEIGHTS_DIR / "SHA256SUMS", weights / "SHA256SUMS")
    monkeypatch.setattr(zoo, "WEIGHTS_DIR", weights)
    assert zoo.load_tokenizer("medium").trained           # intact copy loads
    with (weights / "medium.safetensors").open("r+b") as fh:
        fh.seek(5000)
        byte = fh.read(1)
        fh.seek(5000)
        fh.write(bytes([byte[0] ^ 1]))
    with pytest.raises(ModelError, match="damaged"):
        zoo.load_tokenizer("medium")
    (weights / "SHA256SUMS").write_text("")
    with pytest.raises(ModelError, match="not listed"):
        zoo.load_tokenizer("medium")


def test_verify_does_without_torch(tmp_path: Path) -> None:
    """verify checks the weights hash from the weights file's bytes and decodes the tokens with the
    entropy coder alone: torch is never imported (it took half of verify's time)."""
    import subprocess
    import sys

    clip = write_clip(tmp_path / "c.mkv", smooth_clip(5, 32, 48), Fraction(25))
    encode_video(clip, tmp_path / "c.tok", model="default", passes=0)
    code = ("import sys; from tokcodec.codec.verify import verify_file; "
            f"r = verify_file({str(tmp_path / 'c.tok')!r}); print(r.ok, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "False"], out
