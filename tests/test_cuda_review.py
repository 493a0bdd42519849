"""A review of the CUDA code paths on a machine without a GPU: each test fakes what CUDA would
do (where torch puts a tensor, what its allocator says, an out-of-memory error) at the point the
code branches on it."""
from __future__ import annotations

import copy
import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from test_train import tiny_cfg
from tokcodec.codec import correction
from tokcodec.codec.accel import AutoGopBatch, HostStager
from tokcodec.codec.memory import MemoryLimitError
from tokcodec.codec.pipeline import decode_batch, prepare_model, same_shape_batches
from tokcodec.device import Runtime, select_runtime
from tokcodec.errors import GPU_OUT_OF_MEMORY, InputError, is_gpu_out_of_memory
from tokcodec.train.data import ClipSampler
from tokcodec.train.trainer import Trainer
from conftest import smooth_clip, write_clip


class OnTheGpu:
    """A tensor as a checkpoint read onto the GPU (map_location="cuda") holds it: ``set_rng_state``
    refuses it (it takes a CPU ByteTensor) until ``.cpu()`` brings it back."""

    def __init__(self, tensor: torch.Tensor) -> None:
        self.tensor = tensor

    def cpu(self) -> torch.Tensor:
        return self.tensor


def test_a_training_run_resumes_with_its_random_state_loaded_onto_the_gpu(tmp_path, monkeypatch):
    """map_location=cuda moved the saved RNG state to the GPU too: every resume on a GPU ended in
    "RNG state must be a torch.ByteTensor"."""
    first = Trainer(tiny_cfg(tmp_path, steps=2))
    first.train_step()
    first.step += 1
    first.save()
    real_load = torch.load

    def load_on_gpu(*args, **kwargs):
        state = real_load(*args, **kwargs)
        state["torch_rng"] = OnTheGpu(state["torch_rng"])
        return state

    monkeypatch.setattr(torch, "load", load_on_gpu)
    resumed = Trainer(tiny_cfg(tmp_path, steps=2))
    resumed.load()
    assert resumed.step == 1


def fake_cuda_memory(monkeypatch, per_frame: int, free: int) -> list[int]:
    """torch.cuda's memory counters for a network call whose peak is ``per_frame`` bytes per output
    frame of each GOP it decodes (1 + 4 (T - 1) frames for T latent frames)."""
    peak = [0]
    for name in ("synchronize", "reset_peak_memory_stats"):
        monkeypatch.setattr(torch.cuda, name, lambda *a, **k: None)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda *a, **k: 0)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda *a, **k: peak[0])
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda *a, **k: (free, 2 * free))
    return peak


def test_auto_gop_batch_is_measured_for_each_shape_of_gop(monkeypatch):
    """A file whose first GOP is short (a scene cut after a 2-frame leader) had every later batch
    sized from it: 17-frame GOPs in the number a 2-frame one allowed, several times the memory."""
    gib = 2 ** 30
    peak = fake_cuda_memory(monkeypatch, per_frame=gib // 4, free=64 * gib)
    sizer = AutoGopBatch(Runtime(torch.device("cuda"), "bf16"))
    grids = [np.zeros(shape) for shape in [(1, 4, 4)] + [(5, 4, 4)] * 40]
    calls = []
    for batch in same_shape_batches(((i, 1, g) for i, g in enumerate(grids)), sizer.size):
        shape = batch[0][2].shape
        before = sizer.measure_start(shape)
        peak[0] = len(batch) * (1 + 4 * (shape[0] - 1)) * gib // 4  # what this call took
        sizer.measure_end(shape, before)
        calls.append((shape[0], len(batch)))
        assert len(batch) * (1 + 4 * (shape[0] - 1)) * gib // 4 <= 32 * gib  # never past half the free memory
    assert calls[:3] == [(1, 1), (5, 1), (5, 7)]  # the 17-frame GOPs measured on one of their own
    assert sizer.size((5, 4, 4)) == 7 and sizer.size((1, 4, 4)) == 32 and sizer.largest == 32


class OutOfMemoryAbove:
    """A decoder network that, like a GPU, runs out of memory on batches of more than ``most``
    GOPs (torch.cuda.OutOfMemoryError, a RuntimeError)."""

    def __init__(self, tokenizer: torch.nn.Module, most: int) -> None:
        self.tokenizer, self.most, self.batches = tokenizer, most, []

    def decode_indices(self, idx: torch.Tensor) -> torch.Tensor:
        self.batches.append(len(idx))
        if len(idx) > self.most:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return self.tokenizer.decode_indices(idx)


def test_a_batch_of_gops_the_gpu_cannot_hold_is_decoded_in_halves(tiny_model):
    runtime = select_runtime("cpu", "fp32")
    loaded = prepare_model(tiny_model, runtime)
    idx = torch.randint(0, 2 ** loaded.config.bits, (6, 2, 3, 4))
    with torch.inference_mode():
        whole = [loaded.tokenizer.decode_indices(idx[b:b + 1]) for b in range(6)]
    flaky = OutOfMemoryAbove(loaded.tokenizer, most=2)
    sizer = AutoGopBatch(runtime)
    videos = decode_batch(dataclasses.replace(loaded, tokenizer=flaky), runtime, HostStager(runtime), idx, sizer)
    assert len(videos) == 6 and all(torch.allclose(a, b, atol=1e-4) for a, b in zip(videos, whole))
    assert flaky.batches == [6, 3, 1, 2, 3, 1, 2]  # halves, then halves of those
    assert sizer.size((2, 3, 4)) == 1  # its later batches: smaller from the start
    one = OutOfMemoryAbove(loaded.tokenizer, most=0)
    with pytest.raises(MemoryLimitError, match=r"out of GPU memory: one GOP of this file \(2 latent frames"):
        decode_batch(dataclasses.replace(loaded, tokenizer=one), runtime, HostStager(runtime), idx[:1])


def test_a_cuda_out_of_memory_error_is_told_as_such():
    """It reached the user as "unexpected OutOfMemoryError" with no advice."""
    exc = torch.cuda.OutOfMemoryError("CUDA out of memory.")
    assert is_gpu_out_of_memory(exc) and not is_gpu_out_of_memory(RuntimeError("CUDA out of memory."))
    from tokcodec.batch.work import one_line

    assert one_line(exc) == GPU_OUT_OF_MEMORY


def test_the_cli_says_out_of_gpu_memory(tmp_path):
    """Out of GPU memory anywhere else (an encode's network): one line that says so, exit 1."""
    src = write_clip(tmp_path / "in.mkv", smooth_clip(5, 32, 48, seed=1))
    script = f"""
import sys, torch
import tokcodec.codec.pipeline as pipeline
def oom(*args, **kwargs):
    raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
pipeline.encode_video = oom
from tokcodec.cli.app import main
sys.argv = ["tokcodec", "encode", {str(src)!r}, "-o", {str(tmp_path / 'a.tok')!r}, "--model", "tiny"]
main()
"""
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "TOKCODEC_NO_REEXEC": "1"})
    assert run.returncode == 1
    assert run.stderr.strip().endswith(GPU_OUT_OF_MEMORY) and "unexpected" not in run.stderr, run.stderr


def test_a_model_used_on_the_cpu_first_is_not_left_channels_last_for_the_gpu(tiny_model):
    """Module.to(cuda) keeps the channels-last layout the CPU path gives the weights; placing
    checked the layout on the CPU only, so a shared model ran channels-last on the GPU."""
    loaded = prepare_model(copy.deepcopy(tiny_model), select_runtime("cpu", "fp32"))

    def conv() -> torch.Tensor:
        return next(p for p in loaded.tokenizer.parameters() if p.ndim == 5 and p.shape[-1] > 1)

    assert conv().is_contiguous(memory_format=torch.channels_last_3d) and not conv().is_contiguous()
    prepare_model(loaded, Runtime(torch.device("meta"), "fp32"))  # (a device other than the CPU, as CUDA is)
    assert conv().device.type == "meta" and conv().is_contiguous()


def test_the_correction_s_upsampling_matrices_are_made_once_per_size_and_device():
    """Made anew and copied to the device for every frame: on a GPU a copy that waits, 2.4 MB a
    1080p frame. Made outside inference mode, so code with gradients can use them too."""
    correction.upsample_tensor.cache_clear()
    grid = torch.rand(3, 5, 7)
    with torch.inference_mode():
        a = correction._upsampled(grid, 40, 56)
        b = correction._upsampled(grid, 40, 56)
    assert torch.equal(a, b) and correction.upsample_tensor.cache_info().hits == 2
    m = correction.upsample_tensor(40, 5, torch.float32, torch.device("cpu"))
    assert not m.is_inference()
    w = torch.rand(3, 5, 7, requires_grad=True)
    correction._upsampled(w, 40, 56).sum().backward()  # (an inference tensor here raised)
    assert w.grad is not None


def test_the_host_stager_records_its_copy_on_the_device_it_copies_to(monkeypatch):
    """With --device cuda:1 the event went on the current device's stream (cuda:0): the wait
    before a buffer is refilled guarded nothing, and a context opened on GPU 0."""
    recorded = []

    class Event:
        def record(self, stream=None):
            recorded.append(stream)

    monkeypatch.setattr(torch.cuda, "Event", Event)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: f"stream of {device}")
    monkeypatch.setattr(torch.Tensor, "to", lambda self, *a, **k: self)
    real_empty = torch.empty
    monkeypatch.setattr(torch, "empty", lambda *a, pin_memory=False, **k: real_empty(*a, **k))
    stager = HostStager(Runtime(torch.device("cuda", 1), "bf16"))
    stager.to_device(torch.zeros(2, 3))
    assert recorded == ["stream of cuda:1"]


def test_a_training_source_that_is_not_there_is_named(tmp_path):
    """On a GPU machine without PyAV, a pack left behind (configs/gpu.toml names data/pack) was
    taken for a folder of videos, whose reader imports PyAV: "No module named 'av'"."""
    cfg = tiny_cfg(tmp_path, sources=("synthetic", str(tmp_path / "pack")))
    with pytest.raises(InputError, match="training source .*pack: no such file or folder"):
        ClipSampler(cfg, 0)


def test_speed_bench_loads_its_model_once():
    """Each encode and decode loaded the model anew: with --compile, compiled anew each time."""
    text = (Path(__file__).parent.parent / "bench" / "speed.py").read_text()
    body = text[text.index("    for size in sizes:"):]
    assert "model=a.model" not in body and "model=model" in body
