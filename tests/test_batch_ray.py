"""`tokcodec batch encode --engine ray` against a local Ray instance: same outputs, skips and
manifest as the local engine (ray comes with `make test` through the test extra)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import smooth_clip, write_clip

from tokcodec.batch import MANIFEST_NAME, batch_encode
from tokcodec.batch.manifest import read_records
from tokcodec.codec.pipeline import file_info

pytest.importorskip("ray")


def test_ray_engine_on_three_clips(tmp_path):
    src, tok = tmp_path / "src", tmp_path / "tok"
    (src / "sub").mkdir(parents=True)
    frames = {"a.mkv": 9, "b.mp4": 5, "sub/c.mkv": 13}
    for i, (rel, n) in enumerate(frames.items()):
        write_clip(src / rel, smooth_clip(n, 48, 64, seed=i))
    env = dict(os.environ, TOKCODEC_NO_REEXEC="1")
    env.pop("RAY_ADDRESS", None)  # a new local instance, whatever the environment says
    res = subprocess.run([sys.executable, "-m", "tokcodec", "batch", "encode", str(src), str(tok),
                          "--engine", "ray", "--workers", "2", "--model", "tiny", "--gop", "5"],
                         check=False, capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stderr
    assert "batch encode: 3 done, 0 skipped, 0 failed, 27 frames" in res.stderr
    for rel, n in frames.items():
        info = file_info(tok / f"{rel}.tok")
        assert info.frames == n and info.header.gop == 5
    assert not [p for p in tok.rglob(".*part-*")]
    recs = read_records(tok / MANIFEST_NAME)
    assert sorted((r["status"], r["frames"]) for r in recs) == [("done", 5), ("done", 9), ("done", 13)]

    # the same skip rule holds: nothing to do, so Ray is not even started
    s = batch_encode(src, tok, model="tiny", gop=5, engine="ray")
    assert (s.done, s.skipped, s.failed) == (0, 3, 0)
