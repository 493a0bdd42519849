"""`tokcodec batch`: tree mirroring, globs, isolated failures, skips on rerun, a kill -9 resumed,
Ctrl-C, decode restoring the names, the manifest, the lock and stale temporary files."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import smooth_clip, write_clip

from tokcodec.batch import MANIFEST_NAME, batch_decode, batch_encode
from tokcodec.batch.manifest import DirLock, Manifest, read_records
from tokcodec.batch.plan import (
    PART_RE,
    decode_name,
    decode_outputs,
    make_plan,
    remove_stale_parts,
    wanted,
)
from tokcodec.codec.pipeline import file_info
from tokcodec.errors import OutputError
from tokcodec.io import probe

CLIPS = {"a/c1.mkv": 9, "a/b/c2.mp4": 5, "img.png": 1}  # relative path -> frames


def default_sigint() -> None:
    """Children get Ctrl-C back even when the test run itself ignores it (a background job)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def cli(*args, wait=True, **kw):
    env = dict(os.environ, TOKCODEC_NO_REEXEC="1")
    cmd = [sys.executable, "-m", "tokcodec", "batch", *map(str, args)]
    if not wait:
        return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                preexec_fn=default_sigint, **kw)
    return subprocess.run(cmd, check=False, env=env, capture_output=True, text=True, timeout=300, **kw)


def make_tree(root: Path) -> Path:
    for i, (rel, frames) in enumerate(CLIPS.items()):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        write_clip(root / rel, smooth_clip(frames, 48, 64, seed=i))
    (root / "skip").mkdir()
    write_clip(root / "skip" / "c3.mkv", smooth_clip(5, 48, 64, seed=9))
    (root / "notes.txt").write_text("not a video")
    (root / ".hidden.mp4").write_bytes(b"hidden files are not inputs")
    return root


def part_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if PART_RE.match(p.name)]


def outputs(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")
            if p.is_file() and not p.name.startswith(".") and p.name != MANIFEST_NAME}


def mtimes(root: Path) -> dict[str, int]:
    return {rel: (root / rel).stat().st_mtime_ns for rel in outputs(root)}


@pytest.fixture(scope="module")
def encoded(tmp_path_factory):
    """One CLI run over a tree with a broken file among good ones."""
    base = tmp_path_factory.mktemp("batch")
    src = make_tree(base / "src")
    (src / "a" / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(300))
    (src / "a" / "gone.mkv").symlink_to(base / "nowhere.mkv")  # a dangling link is reported too
    res = cli("encode", src, base / "tok", "--model", "tiny", "--gop", "5", "--exclude", "skip/*", "-j", "2")
    return base, src, base / "tok", res


# --- end to end ------------------------------------------------------------------------------

def test_broken_file_is_reported_and_the_others_go_on(encoded):
    _, src, tok, res = encoded
    assert res.returncode == 1, res.stderr
    assert "Traceback" not in res.stderr
    failed = sorted(line.split("FAILED ", 1)[1] for line in res.stderr.splitlines() if "FAILED" in line)
    assert len(failed) == 2, res.stderr
    assert "a/broken.mp4: " in failed[0] and "not a readable video" in failed[0]
    assert "a/gone.mkv: broken symbolic link" in failed[1]
    assert "batch encode: 3 done, 0 skipped, 2 failed, 15 frames" in res.stderr
    assert outputs(tok) == {rel + ".tok" for rel in CLIPS}  # mirrored; .txt, hidden, skip/* left out
    assert not part_files(tok)
    for rel, frames in CLIPS.items():
        info = file_info(tok / (rel + ".tok"))
        assert info.frames == frames and info.header.gop == 5
    recs = read_records(tok / MANIFEST_NAME)
    by_input = {Path(r["input"]).relative_to(src).as_posix(): r for r in recs}
    assert len(recs) == 5 and set(by_input) == set(CLIPS) | {"a/broken.mp4", "a/gone.mkv"}
    bad = by_input["a/broken.mp4"]
    assert bad["status"] == "failed" and "not a readable video" in bad["error"]
    for rel, frames in CLIPS.items():
        r = by_input[rel]
        assert r["status"] == "done" and r["frames"] == frames and r["model"] == "tiny"
        assert r["output"] == str(tok / (rel + ".tok"))
        assert r["bytes"] == (tok / (rel + ".tok")).stat().st_size
        assert r["bpp"] == pytest.approx(8 * r["bytes"] / (frames * 64 * 48), rel=1e-4)
        assert r["seconds"] >= 0


def test_rerun_redoes_nothing_then_only_what_changed(encoded, tmp_path):
    _, src0, tok0, _ = encoded
    src, tok = tmp_path / "src", tmp_path / "tok"
    shutil.copytree(src0, src, symlinks=True)  # copy2 keeps mtimes: outputs stay newer
    shutil.copytree(tok0, tok)
    before = mtimes(tok)
    res = cli("encode", src, tok, "--model", "tiny", "--gop", "5", "--exclude", "skip/*",
              "--exclude", "broken*", "--exclude", "gone*")
    assert res.returncode == 0, res.stderr
    assert "batch encode: 0 done, 3 skipped, 0 failed, 0 frames" in res.stderr
    assert mtimes(tok) == before
    recs = read_records(tok / MANIFEST_NAME)[5:]
    assert [r["status"] for r in recs] == ["skipped"] * 3
    assert {r["frames"] for r in recs} == set(CLIPS.values())  # carried over from the done records

    later = time.time() + 5
    os.utime(src / "a" / "c1.mkv", (later, later))  # the input changed: only it is redone
    s = batch_encode(src, tok, model="tiny", gop=5, exclude=["skip/*", "broken*", "gone*"], workers=1)
    assert (s.done, s.skipped, s.failed) == (1, 2, 0)
    after = mtimes(tok)
    assert [k for k in before if after[k] != before[k]] == ["a/c1.mkv.tok"]

    s = batch_encode(src, tok, model="tiny", gop=5, exclude=["skip/*", "broken*", "gone*"], workers=1, force=True)
    assert (s.done, s.skipped, s.failed) == (3, 0, 0)
    assert s.frames == sum(CLIPS.values())


def test_decode_restores_the_names(encoded, tmp_path):
    _, _, tok, _ = encoded
    s = batch_decode(tok, tmp_path / "dec", workers=2)
    assert (s.done, s.failed) == (3, 0)
    assert outputs(tmp_path / "dec") == set(CLIPS)
    for rel, frames in CLIPS.items():
        info = probe(tmp_path / "dec" / rel)
        assert (info.width, info.height) == (64, 48)
        assert info.frame_count in (frames, 0)  # some containers do not store a count
    res = cli("decode", tok, tmp_path / "y4m", "--to", "y4m", "--include", "a/*", "-j", "1")
    assert res.returncode == 0, res.stderr
    assert outputs(tmp_path / "y4m") == {"a/c1.y4m", "a/b/c2.y4m"}
    recs = read_records(tmp_path / "y4m" / MANIFEST_NAME)
    assert sorted(r["frames"] for r in recs) == [5, 9]


def _children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def _gone(pids: list[int], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(Path(f"/proc/{p}").exists() and "Z" not in _state(p) for p in pids):
            return True
        time.sleep(0.05)
    return False


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


def _clips(folder: Path, n: int) -> dict[str, int]:
    folder.mkdir()
    for i in range(n):
        write_clip(folder / f"clip{i}.mkv", smooth_clip(41, 96, 128, seed=i))
    return {f"clip{i}.mkv.tok": 41 for i in range(n)}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc")
def test_kill_9_then_resume(tmp_path):
    expected = _clips(tmp_path / "src", 8)
    tok = tmp_path / "tok"
    proc = cli("encode", tmp_path / "src", tok, "--model", "tiny", "-j", "1", wait=False)
    deadline = time.monotonic() + 120
    while not (tok.exists() and outputs(tok)) and time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.005)
    kids = _children(proc.pid)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert kids and _gone(kids, 15), "batch workers outlived a kill -9 of the driver"
    survived = mtimes(tok)
    assert 0 < len(survived) < len(expected), "the kill came too late to test anything"
    for rel in survived:  # whatever has a final name is complete
        assert file_info(tok / rel).frames == expected[rel]

    res = cli("encode", tmp_path / "src", tok, "--model", "tiny", "-j", "2")
    assert res.returncode == 0, res.stderr
    assert f"{len(expected) - len(survived)} done, {len(survived)} skipped, 0 failed" in res.stderr
    assert outputs(tok) == set(expected)
    assert {k: v for k, v in mtimes(tok).items() if k in survived} == survived  # nothing redone
    assert not part_files(tok)
    for rel, frames in expected.items():
        assert file_info(tok / rel).frames == frames
    recs = read_records(tok / MANIFEST_NAME)
    assert {Path(r["output"]).name for r in recs if r["status"] in ("done", "skipped")} >= set(expected)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc")
def test_a_worker_that_dies_fails_only_its_file(tmp_path):
    expected = _clips(tmp_path / "src", 4)
    tok = tmp_path / "tok"
    proc = cli("encode", tmp_path / "src", tok, "--model", "tiny", "-j", "1", wait=False)
    while not (tok.exists() and outputs(tok)):
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.005)
    workers = [p for p in _children(proc.pid) if b"spawn_main" in Path(f"/proc/{p}/cmdline").read_bytes()]
    assert len(workers) == 1
    os.kill(workers[0], signal.SIGKILL)  # as the kernel's OOM killer would
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err
    assert "worker process died (signal 9" in err
    assert f"{len(expected) - 1} done, 0 skipped, 1 failed" in err
    assert not part_files(tok)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_stops_cleanly(tmp_path, signum):
    """Ctrl-C and `kill` stop a run the same way; the exit status says which (130, 143)."""
    expected = _clips(tmp_path / "src", 6)
    tok = tmp_path / "tok"
    proc = cli("encode", tmp_path / "src", tok, "--model", "tiny", "-j", "1", wait=False)
    deadline = time.monotonic() + 120
    while not (tok.exists() and outputs(tok)) and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signum, err
    how = "terminated" if signum == signal.SIGTERM else "interrupted"
    assert f"({how}; rerun to resume)" in err and "Traceback" not in err
    assert not part_files(tok)
    done = [r for r in read_records(tok / MANIFEST_NAME) if r["status"] == "done"]
    # every recorded file is there (one finished in the instant of the Ctrl-C may lack its record:
    # the next run skips it as complete)
    assert {Path(r["output"]).name for r in done} <= outputs(tok) - {".tokcodec-batch.lock"}
    for rel in outputs(tok):
        assert file_info(tok / rel).frames == expected[rel]


# --- planning, names, manifest, lock: no workers ---------------------------------------------

@pytest.mark.parametrize("name,to,expected", [
    ("clip.mp4.tok", None, "clip.mp4"),
    ("clip.mkv.tok", None, "clip.mkv"),
    ("clip.MOV.tok", None, "clip.MOV"),
    ("shot.png.tok", None, "shot.png"),
    ("clip.webm.tok", None, "clip.mkv"),     # decode cannot write webm: lossless mkv
    ("scan.tiff.tok", None, "scan.png"),
    ("clip.tok", None, "clip.mkv"),
    ("clip.mp4.tok", "mkv", "clip.mkv"),
    ("clip.mp4.tok", "y4m", "clip.y4m"),
])
def test_decode_names(name, to, expected):
    assert decode_name(name, to)[0] == expected


def test_decode_name_collisions_keep_the_original_extension(tmp_path):
    outs = decode_outputs(tmp_path, ["x/a.mp4.tok", "x/a.mkv.tok", "y/a.mp4.tok"], "mkv")
    assert [o.relative_to(tmp_path).as_posix() for o in outs] == ["x/a.mp4.mkv", "x/a.mkv.mkv", "y/a.mkv"]


def test_a_restored_name_does_not_depend_on_the_runs_selection(tmp_path, tiny_model):
    """`a.avi.tok` restored alone (--include) was named `a.mkv`; a later run with `a.mkv.tok`
    then skipped `a.mkv`, which held a.avi's pictures. Names count every .tok of the tree, and
    an output the manifest says was made from another input is redone."""
    src = tmp_path / "src"
    src.mkdir()
    write_clip(src / "avi.mkv", smooth_clip(5, 32, 48)).rename(src / "a.avi")  # (read by content)
    write_clip(src / "a.mkv", smooth_clip(9, 32, 48))
    tok = tmp_path / "tok"
    assert batch_encode(src, tok, model="tiny", workers=1, passes=0).done == 2
    out = tmp_path / "out"
    assert batch_decode(tok, out, include=["a.avi.tok"], workers=1).done == 1
    assert outputs(out) == {"a.avi.mkv"}
    assert batch_decode(tok, out, workers=1).done == 1
    assert probe(out / "a.mkv").frame_count == 9 and probe(out / "a.avi.mkv").frame_count == 5
    # an output made from one input, and now another's name (a .tok added to the tree later)
    (tok / "a.mkv.tok").rename(tmp_path / "later.tok")
    again = tmp_path / "again"
    batch_decode(tok, again, workers=1)
    assert probe(again / "a.mkv").frame_count == 5  # a.avi.tok, alone: the preferred name
    (tmp_path / "later.tok").rename(tok / "a.mkv.tok")
    (tok / "a.mkv.tok").touch()
    os.utime(again / "a.mkv")  # (newer than its input: only the manifest tells)
    summary = batch_decode(tok, again, workers=1)
    assert summary.done == 2 and probe(again / "a.mkv").frame_count == 9
    assert probe(again / "a.avi.mkv").frame_count == 5


def test_workers_get_their_tasks_without_a_multiprocessing_queue(tmp_path, monkeypatch):
    """A Queue's named semaphore made Python's resource tracker warn of a "leaked semaphore" at
    the end of about one run in two or three (through the installed `tokcodec` script); the
    tasks go through pipes."""
    import multiprocessing

    import tokcodec.batch.local as local

    real = multiprocessing.get_context

    class NoQueues:
        def __init__(self, ctx):
            self.ctx = ctx

        def Queue(self, *args, **kwargs):  # noqa: N802 - multiprocessing's name
            raise AssertionError("a multiprocessing.Queue")

        def __getattr__(self, name):
            return getattr(self.ctx, name)

    monkeypatch.setattr(local.mp, "get_context", lambda method=None: NoQueues(real(method)))
    src = tmp_path / "src"
    src.mkdir()
    write_clip(src / "a.mkv", smooth_clip(5, 32, 48))
    assert batch_encode(src, tmp_path / "tok", model="tiny", workers=1, passes=0).done == 1


def test_a_job_that_could_not_be_sent_goes_to_the_next_worker(tmp_path):
    """A worker that died between jobs broke its task pipe: the send failed and ended the run
    (a Queue never failed there). The job now waits for the worker that replaces it."""
    from collections import deque
    from types import SimpleNamespace

    from tokcodec.batch.local import LocalPool, _Slot
    from tokcodec.batch.plan import Job
    from tokcodec.batch.work import BatchOptions

    class BrokenPipe:
        def send(self, message):
            raise BrokenPipeError(32, "Broken pipe")

    finished, started = [], []
    pool = LocalPool(BatchOptions(op="encode"), 1, SimpleNamespace(finished=lambda job, r: finished.append(r)))
    dead = SimpleNamespace(is_alive=lambda: False, exitcode=0)
    pool._slots = [_Slot(0, dead, BrokenPipe(), SimpleNamespace(closed=False), "cpu")]
    pool._start = lambda wid, device: started.append(wid) or _Slot(wid, dead, BrokenPipe(), None, device)
    job = Job(0, tmp_path / "a.mkv", tmp_path / "a.mkv.tok", "a.mkv", False)
    pending = deque([job])
    pool._dispatch(pool._slots[0], pending)  # (no exception)
    assert pool._slots[0].unsent and pool._slots[0].job is job
    pool._dispatch = lambda slot, queue: None  # (the successor takes it from pending)
    assert pool._replace_dead(pending) == 1
    assert finished == [] and list(pending) == [job] and started == [0]


def test_decode_names_never_meet(tmp_path):
    outs = decode_outputs(tmp_path, ["a.avi.tok", "a.mkv.tok", "a.avi.mkv.tok"], None)
    assert [o.name for o in outs] == ["a.avi.tok.mkv", "a.mkv", "a.avi.mkv.tok.mkv"]


def test_a_name_too_long_once_coded_fails_alone(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    write_clip(src / "ok.mkv", smooth_clip(5, 32, 48))
    long_name = "x" * 248 + ".mkv"  # (252 bytes: 256 with .tok)
    (src / long_name).write_bytes((src / "ok.mkv").read_bytes())
    plan = make_plan("encode", src, tmp_path / "tok")
    assert [j.rel for j in plan.todo] == ["ok.mkv"]
    assert len(plan.errors) == 1 and "a name of 256 bytes" in plan.errors[0][1] and long_name in plan.errors[0][0]


def test_worker_threads_take_omp_num_threads_up_to_their_share(monkeypatch):
    from tokcodec.batch.local import cpu_count, worker_threads

    share = max(1, cpu_count() // 1)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert worker_threads(1) == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "512")
    assert worker_threads(1) == share
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert worker_threads(1) == share


def test_files_left_out_are_named(tmp_path):
    root = make_tree(tmp_path / "src")
    plan = make_plan("encode", root, tmp_path / "dst")
    assert plan.left_out == ["notes.txt"]  # (hidden files are not inputs, and not named)
    assert plan.left_out_note() == f"1 file of {root} left out, not video or image by name: notes.txt (--include takes them)"
    assert make_plan("encode", root, tmp_path / "dst", include=["*.mkv"]).left_out == []  # chosen, not passed over
    assert make_plan("decode", root, tmp_path / "dst").left_out == []
    assert make_plan("encode", root, root).left_out == []  # (in place: its own outputs are no news)


def test_globs():
    assert wanted("encode", "a/b/x.MP4", (), ())
    assert not wanted("encode", "a/notes.txt", (), ())
    assert not wanted("encode", "a/x.mp4.tok", (), ())
    assert wanted("decode", "a/x.mp4.tok", (), ())
    assert wanted("tokens", "a/x.mp4.tok", (), ()) and wanted("tokens", "a/x.MP4", (), ())
    assert not wanted("tokens", "a/notes.txt", (), ()) and not wanted("tokens", "a/x.safetensors", (), ())
    assert wanted("encode", "cam1/x.mkv", ("cam1/*",), ())
    assert not wanted("encode", "cam2/x.mkv", ("cam1/*",), ())
    assert not wanted("encode", "a/b/x.mkv", (), ("*.mkv",))   # a bare pattern matches the name
    assert not wanted("encode", "a/b/x.mkv", (), ("a/**",))
    assert wanted("encode", "a/raw.dat", ("*.dat",), ())       # --include replaces the default


def test_plan_skips_complete_outputs_and_leaves_dst_inside_src_alone(tmp_path):
    src = make_tree(tmp_path / "src")
    dst = src / "out"
    (dst / "a").mkdir(parents=True)
    (dst / "a" / "c1.mkv.tok").write_bytes(b"x")          # newer than its input: complete
    old = src / "a" / "b" / "c2.mp4"
    (dst / "a" / "b").mkdir()
    (dst / "a" / "b" / "c2.mp4.tok").write_bytes(b"x")
    os.utime(dst / "a" / "b" / "c2.mp4.tok", ns=(old.stat().st_mtime_ns - 10**9,) * 2)  # stale
    write_clip(dst / "decoy.mkv", smooth_clip(1, 16, 16))   # inside DST: never an input
    plan = make_plan("encode", src, dst)
    assert [j.rel for j in plan.skipped] == ["a/c1.mkv"]
    assert {j.rel: j.overwrite for j in plan.todo} == {"a/b/c2.mp4": True, "img.png": False,
                                                       "skip/c3.mkv": False}
    forced = make_plan("encode", src, dst, force=True)
    assert len(forced.todo) == 4 and not forced.skipped


def test_stale_temporary_files_of_dead_writers_are_removed(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    (tmp_path / "a").mkdir()
    stale = tmp_path / "a" / f".clip.mp4.part-{dead.pid}.tok"
    live = tmp_path / "a" / f".other.mp4.part-{os.getpid()}.tok"
    keep = tmp_path / "a" / ".notes.part-x.txt"
    for p in (stale, live, keep):
        p.write_bytes(b"partial")
    assert remove_stale_parts(tmp_path) == 1
    assert not stale.exists() and live.exists() and keep.exists()
    assert remove_stale_parts(tmp_path, pids=[os.getpid()]) == 1 and not live.exists()


def test_a_second_run_on_the_same_dst_is_refused(tmp_path):
    with DirLock(tmp_path / ".lock"):
        second = DirLock(tmp_path / ".lock")
        with pytest.raises(OutputError, match="another batch run is using this folder"):
            second.__enter__()
    with DirLock(tmp_path / ".lock"):  # released on exit
        pass


def test_manifest_survives_a_torn_last_line(tmp_path):
    path = tmp_path / MANIFEST_NAME
    path.write_text('{"output": "x", "status": "done", "frames": 3}\n{"output": "y", "sta')
    with Manifest(path) as m:
        assert m.previous == {"x": {"output": "x", "status": "done", "frames": 3}}
        m.write({"output": "z", "status": "done"})
    assert [r["output"] for r in read_records(path)] == ["x", "z"]


def test_cli_errors_are_one_line(tmp_path):
    from typer.testing import CliRunner

    from tokcodec.cli import app

    for args, needle, status in [
        (("encode", tmp_path / "nope", tmp_path / "o"), "no such file", 1),
        (("decode", tmp_path, tmp_path), "different from SRC", 1),
        (("decode", tmp_path, tmp_path / "o", "--to", "avi"), "--to must be one of", 2),  # (usage errors: 2)
        (("encode", tmp_path, tmp_path / "o", "--model", "tiny", "--gop", "4"), "--gop must be", 2),
        (("encode", tmp_path, tmp_path / "o", "--model", "nonesuch"), "nonesuch", 1),
    ]:
        res = CliRunner().invoke(app, ["batch", *map(str, args)])
        lines = [line for line in res.stderr.splitlines() if line.strip()]
        assert res.exit_code == status and len(lines) == 1, (res.exit_code, res.stderr)
        assert lines[0].startswith("tokcodec: error:") and needle in lines[0], lines[0]


def test_refine_reaches_every_file(tmp_path):
    from tokcodec.codec.pipeline import read_tokens

    (tmp_path / "in").mkdir()
    src = write_clip(tmp_path / "in" / "c.mkv", smooth_clip(5, 32, 48))
    plain = batch_encode(src.parent, tmp_path / "plain", model="tiny", workers=1)
    refined = batch_encode(src.parent, tmp_path / "refined", model="tiny", workers=1, refine=3)
    assert plain.done == refined.done == 1
    _, grids_plain, _ = read_tokens(tmp_path / "plain" / "c.mkv.tok")
    _, grids_refined, _ = read_tokens(tmp_path / "refined" / "c.mkv.tok")
    assert not all(np.array_equal(a, b) for a, b in zip(grids_plain, grids_refined))
    done = [r for r in read_records(tmp_path / "refined" / MANIFEST_NAME) if r["status"] == "done"]
    assert [r["refine"] for r in done] == [3]
    with pytest.raises(ValueError, match="--refine"):
        batch_encode(src.parent, tmp_path / "bad", model="tiny", workers=1, refine=-1)


def test_correction_options_reach_every_file(tmp_path):
    """batch encode --no-detail / --no-correction write the formats encode does: 2.0 / 1.0."""
    from tokcodec.codec.pipeline import file_info

    (tmp_path / "in").mkdir()
    src = write_clip(tmp_path / "in" / "c.mkv", smooth_clip(5, 32, 48))
    for name, kwargs, version in (("full", {}, (2, 2)), ("offsets", {"detail": False}, (2, 0)),
                                  ("tokens", {"correction": False}, (1, 0))):
        assert batch_encode(src.parent, tmp_path / name, model="tiny", workers=1, **kwargs).done == 1
        assert file_info(tmp_path / name / "c.mkv.tok").header.version == version, name


def test_key_interval_reaches_every_file(tmp_path):
    """batch encode --key-interval: linked GOPs (coder 4) by default, none with 1 (coder 3); the
    manifest counts them; out of range it is refused before any file is encoded."""
    import json

    (tmp_path / "in").mkdir()
    src = write_clip(tmp_path / "in" / "c.mkv", smooth_clip(17, 32, 48))
    for name, kwargs, coder in (("default", {}, 4), ("keys", {"key_interval": 1}, 3)):
        assert batch_encode(src.parent, tmp_path / name, gop=5, workers=1, **kwargs).done == 1
        assert file_info(tmp_path / name / "c.mkv.tok").header.coder_id == coder, name
        record = json.loads((tmp_path / name / "manifest.jsonl").read_text().splitlines()[-1])
        assert (record["linked_gops"] > 0) == (coder == 4), record
    with pytest.raises(ValueError, match="--key-interval"):
        batch_encode(src.parent, tmp_path / "bad", model="tiny", workers=1, key_interval=0)
    assert not (tmp_path / "bad").exists()


def test_sharpen_reaches_every_file(tmp_path):
    """batch encode --sharpen 0 sends no detail gains where the default sends some; out of
    range it is refused before any file is encoded."""
    from tokcodec.codec.container import open_tok
    from tokcodec.codec.correction import Correction

    (tmp_path / "in").mkdir()
    src = write_clip(tmp_path / "in" / "c.mkv", smooth_clip(9, 32, 48))

    def gains(out: str, **kw) -> np.ndarray:
        assert batch_encode(src.parent, tmp_path / out, model="tiny", workers=1, **kw).done == 1
        with open_tok(tmp_path / out / "c.mkv.tok") as reader:
            return Correction.unpack(reader.read_chunk(0).correction, reader.header.width,
                                     reader.header.height).gains

    assert gains("default").any() and not gains("flat", sharpen=0).any()
    with pytest.raises(ValueError, match="--sharpen"):
        batch_encode(src.parent, tmp_path / "bad", model="tiny", workers=1, sharpen=5)
    with pytest.raises(ValueError, match="--no-detail"):
        batch_encode(src.parent, tmp_path / "bad", model="tiny", workers=1, sharpen=2, detail=False)
    assert not (tmp_path / "bad").exists()
    done = [r for r in read_records(tmp_path / "flat" / MANIFEST_NAME) if r["status"] == "done"]
    assert [r["sharpen"] for r in done] == [0.0]


def test_a_target_rate_reaches_every_file(tmp_path):
    """batch encode --bpp: each file gets its own plan (the manifest says the target, GOP and
    scale); --bpp with --rdo, or with --bitrate, is refused before any file is encoded."""
    import json

    (tmp_path / "in").mkdir()
    src = write_clip(tmp_path / "in" / "c.mkv", smooth_clip(9, 32, 48))
    assert batch_encode(src.parent, tmp_path / "out", workers=1, bpp=0.3).done == 1
    record = json.loads((tmp_path / "out" / "manifest.jsonl").read_text().splitlines()[-1])
    assert record["target_bpp"] == 0.3 and record["gop"] in (17, 33, 65) and "scale" in record
    for kwargs, needle in (({"bpp": 0.3, "rdo": 0.5}, "--rdo"), ({"bpp": 0.3, "bitrate": 1e5}, "not both")):
        with pytest.raises(ValueError, match=needle):
            batch_encode(src.parent, tmp_path / "bad", workers=1, **kwargs)
    assert not (tmp_path / "bad").exists() or not any((tmp_path / "bad").rglob("*.tok"))


def test_tokens_of_a_tree(encoded, tmp_path):
    """batch tokens: videos tokenized as tokens alone (the tokens of encode --no-correction with the
    same options), .tok files' tokens exported, names mirrored with .safetensors appended; a rerun
    skips what is complete and the manifest keeps the frames."""
    from tokcodec.batch import batch_tokens
    from tokcodec.codec.pipeline import encode_video
    from tokcodec.tokens import read_token_file, token_file_of

    _, src, tok, _ = encoded
    mixed = tmp_path / "mixed"
    shutil.copytree(src / "a" / "b", mixed / "videos")
    shutil.copy(tok / "a" / "c1.mkv.tok", mixed / "c1.mkv.tok")
    s = cli("tokens", mixed, tmp_path / "tokens", "--model", "tiny", "--gop", "5", "-j", "1")
    assert s.returncode == 0, s.stderr
    assert outputs(tmp_path / "tokens") == {"videos/c2.mp4.safetensors", "c1.mkv.tok.safetensors"}
    exported = read_token_file(tmp_path / "tokens" / "c1.mkv.tok.safetensors")
    assert np.array_equal(exported.tokens, token_file_of(mixed / "c1.mkv.tok").tokens)
    encode_video(mixed / "videos" / "c2.mp4", tmp_path / "c2.tok", model="tiny", gop=5, correction=False)
    video = read_token_file(tmp_path / "tokens" / "videos" / "c2.mp4.safetensors")
    assert np.array_equal(video.tokens, token_file_of(tmp_path / "c2.tok").tokens)
    assert video.gop_frames == [5] and exported.gop_frames == [5, 4]
    again = batch_tokens(mixed, tmp_path / "tokens", model="tiny", gop=5, workers=1)
    assert (again.done, again.skipped, again.failed) == (0, 2, 0)
    records = read_records(tmp_path / "tokens" / MANIFEST_NAME)
    assert {r["op"] for r in records} == {"tokens"}
    assert sorted(r["frames"] for r in records if r["status"] == "skipped") == [5, 9]
    # --split: sub-tokens, as `tokens --split` writes them, checked against the model up front
    from tokcodec.errors import ArgumentError
    from tokcodec.tokens import join_tokens
    split = batch_tokens(mixed, tmp_path / "split", model="tiny", gop=5, workers=1, split_bits=9)
    assert split.done == 2
    parts = read_token_file(tmp_path / "split" / "c1.mkv.tok.safetensors")
    assert parts.split_bits == 9 and parts.tokens.shape == (*exported.tokens.shape, 2)
    assert np.array_equal(join_tokens(parts.tokens, 18, 9), exported.tokens)
    with pytest.raises(ArgumentError, match="--split 5: 18-bit tokens"):
        batch_tokens(mixed, tmp_path / "split5", model="tiny", workers=1, split_bits=5)
    assert not (tmp_path / "split5").exists()
