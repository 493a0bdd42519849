"""Training on any device: device choice, worker batches, the time budget with exports, the EMA
warm-up, training packs (no video decoder) and the one-shot run kit (scripts/gpu_train.sh)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

from test_real_data import _fake_raw
from tokcodec.train.corpus import build_corpus, read_manifest
from tokcodec.train.kit import split_file
from tokcodec.train.pack import PackConfig, build_pack
from tokcodec.train.trainer import Budget, Trainer, TrainConfig, export_weights, is_image_step

ROOT = Path(__file__).resolve().parent.parent
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")

# a sitecustomize that makes PyAV, zstandard and constriction unimportable, as on a lent GPU
BLOCKER = '''
import sys
class _Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("av", "zstandard", "constriction"):
            raise ImportError(name + " is not installed on this machine")
sys.meta_path.insert(0, _Block())
'''


def tiny_cfg(tmp_path, **kw) -> TrainConfig:
    base = dict(preset="tiny", out_dir=str(tmp_path / "run"), steps=6, batch_size=2, frames=5, size=32,
                image_every=3, image_batch_mult=2, log_every=2, val_every=100, val_clips=1,
                ckpt_every=100, gan_weight=0.0, warmup_steps=2, bf16=False, export_at_end=False)
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def pack(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    build_corpus(root, sources=_fake_raw(root / ".raw"), holdout=frozenset({"held.mkv"}))
    out = root.parent / (root.name + "-pack")
    build_pack(root, out, PackConfig(max_mib=1, window=9, video_short=32, holdout_frames=17))
    return out


def test_a_pack_is_a_corpus_of_jpeg_frames_within_its_size(pack):
    entries = read_manifest(pack)
    kinds = {(e.kind, e.split) for e in entries}
    assert kinds == {("photo", "train"), ("video", "train"), ("video", "holdout")}
    total = sum(f.stat().st_size for f in pack.rglob("*.jpg"))
    assert total <= 2**20 and json.loads((pack / "pack.json").read_text())["bytes"] == total
    train = [e for e in entries if e.kind == "video" and e.split == "train"]
    # windows of 9 frames, the short side scaled to at most 32, and where each came from
    assert all(e.frames == 9 and min(e.width, e.height) <= 32 and "#" in e.origin for e in train)
    starts = sorted(int(e.origin.rsplit("#", 1)[1].split("-")[0]) for e in train if "cam.mkv" in e.origin)
    assert starts == [0, 12] and all((pack / e.file).is_dir() for e in train)


def test_a_small_pack_takes_windows_round_robin_until_it_is_full(tmp_path, pack):
    corpus = Path(json.loads((pack / "pack.json").read_text())["corpus"])
    # room for the photo, the held-out window and about one training window
    photo_and_holdout = sum(f.stat().st_size for f in pack.rglob("*.jpg")
                            if "/photos/" in str(f) or "holdout" in str(f))
    small = tmp_path / "small"
    build_pack(corpus, small, PackConfig(max_mib=(photo_and_holdout + 12_000) / 2**20, window=9,
                                         video_short=32))
    windows = [e for e in read_manifest(small) if e.kind == "video" and e.split == "train"]
    assert 0 < len(windows) < 3 and json.loads((small / "pack.json").read_text())["bytes"] <= photo_and_holdout + 12_000
    with pytest.raises(FileExistsError):
        build_pack(corpus, small)


def test_a_pack_trains_and_validates_without_a_video_decoder(tmp_path, pack):
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(BLOCKER)
    script = f"""
import sys
from tokcodec.train.trainer import Trainer, TrainConfig
cfg = TrainConfig(preset="tiny", out_dir={str(tmp_path / 'run')!r}, sources=("synthetic", {str(pack)!r}),
                  steps=2, batch_size=2, frames=5, size=32, real_probability=1.0, flat_probability=0.0,
                  val_clips=1, val_height=32, val_width=32, bf16=False)
t = Trainer(cfg)
t.train_step()
val = t.validate()
assert "real_psnr" in val and len(t._val_real) == 1, val
for banned in ("av", "zstandard", "constriction"):
    assert banned not in sys.modules, banned
print("ok")
"""
    env = dict(os.environ, PYTHONPATH=f"{tmp_path / 'site'}{os.pathsep}{ROOT}")
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_the_kit_dry_run_brings_back_weights_metrics_and_a_summary(tmp_path, pack):
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(BLOCKER)
    config = tmp_path / "kit.toml"
    config.write_text(f'preset = "tiny"\nsources = ["synthetic", "{pack}"]\nsteps = 100000\n'
                      'batch_size = 2\nframes = 5\nsize = 32\nlog_every = 1000\nval_clips = 1\n')
    out = tmp_path / "out"
    env = dict(os.environ, OUT=str(out), PYTHON=sys.executable,
               PYTHONPATH=str(tmp_path / "site"))
    done = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_train.sh"), str(config), "0.15", "--dry-run",
                           "--run-dir", str(tmp_path / "run")], env=env, capture_output=True, text=True,
                          timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["dry_run"] and summary["device"] == "cpu" and summary["step"] > 0
    assert sorted(p.name for p in out.iterdir()) == sorted(summary["files"]) == sorted(
        ["ema.safetensors", "raw.safetensors", "metrics.jsonl", "train_config.json", "summary.json"])
    # the training budget (0.15 min = 9 s) ended the run with both exports in it
    saved = json.loads((out / "train_config.json").read_text())
    assert saved["device"] == "cpu" and saved["max_minutes"] == 0.15 and saved["batch_size"] == 2
    assert summary["train_seconds"] < 0.15 * 60 + 5
    for name in ("ema", "raw"):
        assert summary[name]["sha256"] and summary[name]["psnr"] > 5 and "real_psnr" in summary[name]
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert lines and lines[-1]["step"] == summary["step"]


def test_the_kit_explains_its_arguments():
    done = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_train.sh")], capture_output=True, text=True)
    assert done.returncode == 2 and "CONFIG MINUTES" in done.stderr


def test_large_files_come_back_in_parts_that_rejoin(tmp_path):
    data = np.random.default_rng(0).integers(0, 256, 2500, dtype=np.uint8).tobytes()
    path = tmp_path / "w.safetensors"
    path.write_bytes(data)
    parts = split_file(path, limit=1000)
    assert [p.name for p in parts] == [f"w.safetensors.part{i:03d}" for i in range(3)] and not path.exists()
    assert b"".join(p.read_bytes() for p in parts) == data
    small = tmp_path / "s.json"
    small.write_text("{}")
    assert split_file(small, limit=1000) == [small]


def test_the_budget_keeps_room_for_what_must_follow():
    budget = Budget(10.0)
    assert budget.fits(2.0, 3.0)
    budget.start -= 6.0  # 4 s left
    assert budget.fits(1.0, 1.5) and not budget.fits(1.0, 2.5)
    for s in (0.1, 0.5, 0.2):
        budget.note_step(s)
    assert budget.step == 0.5  # the slowest recent step
    assert Budget(0).fits(1e9, 1e9)  # no budget


def test_a_time_budget_ends_the_run_with_both_exports(tmp_path):
    cfg = tiny_cfg(tmp_path, steps=10**6, max_minutes=0.05, export_at_end=True)
    tr = Trainer(cfg)
    start = time.time()
    tr.fit(progress=False)
    assert 0 < tr.step < 10**6 and time.time() - start < 60
    for name, ema in (("ema", True), ("raw", False)):
        path = tmp_path / "run" / f"{name}.safetensors"
        again = tmp_path / f"{name}-again.safetensors"
        export_weights(tr.ckpt_path, again, ema=ema)
        # the same weights and metadata as an export of the last checkpoint (safetensors orders
        # metadata keys as it likes, so the bytes may differ)
        with safe_open(str(path), "pt") as a, safe_open(str(again), "pt") as b:
            assert a.metadata() == b.metadata() and a.metadata()["averaging"] == ("ema" if ema else "none")
            assert all(torch.equal(a.get_tensor(k), b.get_tensor(k)) for k in b.keys())


def test_ema_warmup_follows_a_fine_tune_from_its_first_steps(tmp_path):
    src = Trainer(tiny_cfg(tmp_path / "src", steps=1))
    src.fit(progress=False)
    weights = tmp_path / "start.safetensors"
    export_weights(src.ckpt_path, weights, fp16=False)
    key = None
    drift = {}
    for warm in (False, True):
        tr = Trainer(tiny_cfg(tmp_path / f"ft{warm}", ema_warmup=warm, lr=1e-2, warmup_steps=1))
        tr.init_from_weights(str(weights))
        start = {k: v.clone() for k, v in tr.model.state_dict().items()}
        for _ in range(3):
            tr.train_step()
            tr.step += 1
        key = key or next(k for k, v in start.items() if v.is_floating_point() and v.numel() > 8
                          and not torch.equal(v, tr.model.state_dict()[k]))
        moved = (tr.model.state_dict()[key] - start[key]).abs().max()
        drift[warm] = float((tr.ema.shadow[key] - start[key]).abs().max() / moved)
    assert drift[False] < 0.01 and drift[True] > 0.5


def test_worker_processes_deliver_each_steps_batch_in_order(tmp_path):
    cfg = tiny_cfg(tmp_path, workers=2, steps=6)
    tr = Trainer(cfg)
    kinds = []
    for step in range(6):
        tr.step = step
        x, images = tr.next_batch()
        kinds.append(images)
        assert x.shape[2] == (1 if images else 5)
    assert kinds == [is_image_step(s, cfg) for s in range(6)] == [False, False, True] * 2
    # the same start step gives the same batches (each worker's stream is seeded by it)
    first = Trainer(tiny_cfg(tmp_path / "a", workers=2))
    second = Trainer(tiny_cfg(tmp_path / "b", workers=2))
    assert torch.equal(first.next_batch()[0], second.next_batch()[0])
    tr.fit(progress=False)  # and training runs on them
    assert tr.step == 6


def test_training_on_an_unavailable_device_is_refused(tmp_path):
    from tokcodec.errors import DeviceError

    if torch.cuda.is_available():
        pytest.skip("CUDA is present")
    with pytest.raises(DeviceError, match="CUDA is not available"):
        Trainer(tiny_cfg(tmp_path, device="cuda"))


@cuda
def test_a_checkpoint_resumes_exactly_across_devices(tmp_path):
    straight = Trainer(tiny_cfg(tmp_path / "a", device="cpu"))
    straight.fit(progress=False)
    first = Trainer(tiny_cfg(tmp_path / "b", device="cpu", steps=3))
    first.fit(progress=False)
    on_gpu = Trainer(tiny_cfg(tmp_path / "b", device="cuda", steps=3))
    on_gpu.load()
    assert all(v.device.type == "cuda" for v in on_gpu.model.state_dict().values())
    on_gpu.save()
    back = Trainer(tiny_cfg(tmp_path / "b", device="cpu"))
    back.load()
    back.fit(progress=False)
    for k, v in straight.model.state_dict().items():
        assert torch.equal(v, back.model.state_dict()[k]), k


@cuda
def test_the_synthetic_engine_renders_the_same_clips_on_the_gpu():
    from tokcodec.train.data import ClipSampler, DataConfig

    cpu = ClipSampler(DataConfig(frames=9, size=64), seed=3).batch(4)
    gpu = ClipSampler(DataConfig(frames=9, size=64), seed=3, device=torch.device("cuda")).batch(4)
    assert gpu.device.type == "cuda" and (gpu.cpu() - cpu).abs().max() < 1e-4
