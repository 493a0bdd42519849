"""What a DevOps engineer's walk-through found, wiring tokcodec into scripts, cron and CI
(December 2026): SIGTERM left temporary outputs, an interrupted decode to a folder left a mix of
two videos, a full disk crashed a batch run, --salvage of nothing "succeeded", and more. Each
test is one finding, fixed."""
from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import smooth_clip, write_clip
from test_hardening import damaged
from tokcodec.cli import app
from tokcodec.codec.pipeline import decode_video, encode_video
from tokcodec.errors import BusyError, OutputError

runner = CliRunner()


@pytest.fixture(scope="module")
def coded(tmp_path_factory, tiny_model) -> tuple[Path, Path, Path]:
    """(a 17-frame clip coded in GOPs of 5, its first 9 frames, 17 frames of another clip), all
    with the tiny model."""
    d = tmp_path_factory.mktemp("devops")
    clip = write_clip(d / "clip.mkv", smooth_clip(17, 32, 48), Fraction(25))
    other = write_clip(d / "other.mkv", smooth_clip(17, 32, 48, seed=9), Fraction(25))
    encode_video(clip, d / "clip.tok", model=tiny_model, gop=5)
    encode_video(clip, d / "short.tok", model=tiny_model, gop=5, max_frames=9)
    encode_video(other, d / "other.tok", model=tiny_model, gop=5)
    return d / "clip.tok", d / "short.tok", d / "other.tok"


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_sigterm_removes_the_temporary_output_and_exits_143(tmp_path) -> None:
    """`timeout`, systemd and Kubernetes stop with SIGTERM, which killed the process at once and
    left `.clip.part-PID.tok` behind each time; Ctrl-C already cleaned up."""
    clip = write_clip(tmp_path / "clip.mkv", smooth_clip(120, 96, 160, seed=4), Fraction(25))
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "TOKCODEC_NO_REEXEC": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "tokcodec", "encode", str(clip), "-o", str(out / "clip.tok")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    deadline = time.monotonic() + 120
    while not _hidden(out) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _hidden(out), "the encode never made its temporary output"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "tokcodec: terminated" in err
    assert list(out.iterdir()) == []


def test_an_interrupted_decode_to_a_folder_leaves_the_earlier_frames(coded, tmp_path, monkeypatch) -> None:
    """`decode -o DIR -y` wrote over the earlier decode's frames one by one: stopped half way, the
    folder held new frames, then old ones, and a `.png.part`, and looked complete."""
    from tokcodec.io import FrameWriter

    _, short, other = coded
    frames = tmp_path / "frames"
    decode_video(other, frames)
    (frames / "notes.txt").write_text("mine")
    before = {p.name: p.read_bytes() for p in frames.iterdir()}
    write = FrameWriter.write

    def stop_after_three(self, frame):
        if self.count == 3:
            raise KeyboardInterrupt
        write(self, frame)

    monkeypatch.setattr(FrameWriter, "write", stop_after_three)
    with pytest.raises(KeyboardInterrupt):
        decode_video(short, frames, overwrite=True)
    assert {p.name: p.read_bytes() for p in frames.iterdir()} == before
    assert _hidden(tmp_path) == []
    monkeypatch.setattr(FrameWriter, "write", write)
    decode_video(short, frames, overwrite=True)  # completed: 9 new frames, the 8 after them gone
    names = sorted(p.name for p in frames.iterdir())
    assert names == [f"frame_{i:06d}.png" for i in range(9)] + ["notes.txt"]
    assert _hidden(tmp_path) == []


def test_a_new_folder_output_appears_only_when_complete(coded, tmp_path, monkeypatch) -> None:
    from tokcodec.io import FrameWriter

    tok = coded[0]
    frames = tmp_path / "frames"
    seen = []
    write = FrameWriter.write

    def look(self, frame):
        seen.append(frames.exists())
        write(self, frame)

    monkeypatch.setattr(FrameWriter, "write", look)
    decode_video(tok, frames)
    assert seen == [False] * 17 and len(list(frames.iterdir())) == 17


def test_a_folder_that_appears_meanwhile_is_left_alone_without_y(coded, tmp_path, monkeypatch) -> None:
    from tokcodec.io import FrameWriter

    tok = coded[0]
    frames = tmp_path / "frames"
    write = FrameWriter.write

    def other_process_writes(self, frame):
        if self.count == 0:
            frames.mkdir()
            (frames / "theirs.png").write_bytes(b"theirs")
        write(self, frame)

    monkeypatch.setattr(FrameWriter, "write", other_process_writes)
    with pytest.raises(OutputError, match="appeared while this output was being written"):
        decode_video(tok, frames)
    assert [p.name for p in frames.iterdir()] == ["theirs.png"] and _hidden(tmp_path) == []


def test_a_full_disk_under_the_manifest_names_it(tmp_path) -> None:
    """A full disk during `batch encode` ended in "unexpected OSError: [Errno 28] ...", naming no
    file, and no summary."""
    from tokcodec.batch.manifest import Manifest

    class Full:
        def write(self, data: bytes) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

        def close(self) -> None:
            pass

    manifest = Manifest(tmp_path / "manifest.jsonl")
    manifest._fh.close()
    manifest._fh = Full()
    with pytest.raises(OutputError, match=r"manifest.jsonl: cannot write the manifest \(No space left on device\)"):
        manifest.write({"status": "done"})


def test_salvage_of_a_file_with_nothing_intact_is_an_error(coded, tmp_path) -> None:
    """All 17 frames lost gave a black video and exit status 0."""
    tok = coded[0]
    head = tmp_path / "head.tok"
    head.write_bytes(tok.read_bytes()[:200])  # the header and the start of the first chunk
    res = runner.invoke(app, ["decode", "--salvage", str(head), "-o", str(tmp_path / "h.mkv")])
    assert res.exit_code == 1 and "no GOP of its 17 frames survived intact" in res.output, res.output
    assert not (tmp_path / "h.mkv").exists()


def test_lost_frames_are_said_even_with_q(coded, tmp_path) -> None:
    """With -q the lost frames were said only in the stats line, which -q hides."""
    bad = damaged(coded[0], tmp_path / "bad.tok", flip_chunk=3)
    res = runner.invoke(app, ["decode", "--salvage", "-q", str(bad), "-o", str(tmp_path / "s.mkv")])
    assert res.exit_code == 0
    assert res.output.strip().splitlines()[-1] == "tokcodec: warning: LOST 2 frames (15-16) of 17, filled by " \
                                                  "repeating the last good frame (black before any)"


def test_the_batch_summary_counts_lost_frames() -> None:
    from tokcodec.batch.run import BatchSummary
    from tokcodec.batch.work import FileResult

    summary = BatchSummary("decode", "src", "dst", "dst/manifest.jsonl", 1, "local",
                           [FileResult("a.tok", "a.mkv", "done", 40, lost_frames=40),
                            FileResult("b.tok", "b.mkv", "done", 9, lost_frames=0)])
    assert "(40 LOST, filled)" in summary.line() and summary.to_dict()["lost_frames"] == 40


def test_a_busy_batch_folder_exits_75(coded, tmp_path) -> None:
    """"Another batch run is using this folder" exited 1, as a failed file does: a cron job could
    not tell "still running" from a failure."""
    from tokcodec.batch.manifest import DirLock

    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    dst.mkdir()
    (src / "a.tok").write_bytes(coded[1].read_bytes())
    with DirLock(dst / ".tokcodec-batch.lock"):  # (another run's flock: this process's other descriptor)
        with pytest.raises(BusyError, match="another batch run is using this folder"):
            DirLock(dst / ".tokcodec-batch.lock").__enter__()
        res = runner.invoke(app, ["batch", "decode", str(src), str(dst), "--workers", "1"])
    assert res.exit_code == 75 and "another batch run is using this folder" in res.output, res.output


def test_encode_and_decode_print_json(coded, tmp_path) -> None:
    """`decode --compare -q` printed nothing, and the numbers were only in the human stats line."""
    tok = coded[0]
    clip = tok.with_name("clip.mkv")
    res = runner.invoke(app, ["decode", str(tok), "-o", str(tmp_path / "d.mkv"), "--compare", str(clip), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["frames"] == 17 and doc["compare"]["frames"] == 17 and 5 < doc["compare"]["psnr"] < 60
    res = runner.invoke(app, ["encode", str(clip), "-o", str(tmp_path / "e.tok"), "--model", "tiny", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["frames"] == 17
    res = runner.invoke(app, ["decode", str(tok), "-o", "-", "--json"])
    assert res.exit_code == 2 and "--json prints on standard output" in res.output


def test_json_text_is_strict_json() -> None:
    from tokcodec.cli.app import json_text

    text = json_text({"psnr": float("inf"), "a": [1.5, float("nan")], "b": (2, {"c": -float("inf")})})
    assert json.loads(text) == {"psnr": None, "a": [1.5, None], "b": [2, {"c": None}]}


def test_verify_json_q_prints_only_bad_files(coded, tmp_path) -> None:
    tok = coded[0]
    bad = damaged(tok, tmp_path / "bad.tok", flip_chunk=1)
    res = runner.invoke(app, ["verify", "--json", "-q", str(tok), str(bad)])
    assert res.exit_code == 1
    lines = [json.loads(line) for line in res.stdout.splitlines()]
    assert [d["file"] for d in lines] == [str(bad)] and not lines[0]["ok"]


def test_encoding_a_tok_file_says_what_it_is(coded, tmp_path) -> None:
    tok = coded[0]
    res = runner.invoke(app, ["encode", str(tok), "-o", str(tmp_path / "again.tok")])
    assert res.exit_code == 1 and "is a .tok file, already encoded" in res.output


def test_a_folder_output_is_named_as_such(coded, tmp_path) -> None:
    """`-o noext` (an extension forgotten) wrote a folder of PNGs without a word."""
    res = runner.invoke(app, ["decode", str(coded[1]), "-o", str(tmp_path / "noext")])
    assert res.exit_code == 0 and "noext/ (a directory of PNGs)" in res.output
    assert sorted(p.name for p in (tmp_path / "noext").iterdir()) == [f"frame_{i:06d}.png" for i in range(9)]


def test_a_folder_that_exists_is_written_in_place(coded, tmp_path, monkeypatch) -> None:
    """The diff review of the staged folder output: `-o .` failed ("has an empty name"), a mount
    point or a link to a folder could not be renamed over, and an existing folder lost its mode.
    An existing folder now stages its frames inside itself and keeps what it is."""
    short = coded[1]
    names = [f"frame_{i:06d}.png" for i in range(9)]
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    decode_video(short, Path("."))
    assert sorted(p.name for p in here.iterdir()) == names
    kept = tmp_path / "kept"
    kept.mkdir()
    kept.chmod(0o2750)
    decode_video(short, kept)
    assert sorted(p.name for p in kept.iterdir()) == names and kept.stat().st_mode & 0o7777 == 0o2750
    target = tmp_path / "target"
    target.mkdir()
    (tmp_path / "link").symlink_to(target)
    decode_video(short, tmp_path / "link")
    assert (tmp_path / "link").is_symlink() and sorted(p.name for p in target.iterdir()) == names


def test_a_file_in_the_way_of_a_folder_is_refused_before_decoding(coded, tmp_path, monkeypatch) -> None:
    from tokcodec.io import FrameWriter

    (tmp_path / "frames").write_text("mine")
    monkeypatch.setattr(FrameWriter, "write", lambda self, frame: pytest.fail("decoded before refusing"))
    with pytest.raises(OutputError, match="is a file, not a directory"):
        decode_video(coded[1], tmp_path / "frames", overwrite=True)
    assert (tmp_path / "frames").read_text() == "mine"
