"""Entropy coding in worker threads: results in order, errors in their turn, files unchanged."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from conftest import smooth_clip, write_clip
from tokcodec.codec.parallel import coder_threads, ordered_map
from tokcodec.codec.pipeline import decode_video, encode_video, read_tokens


def test_results_come_back_in_input_order_whatever_finishes_first():
    def slow_for_even(i: int) -> tuple[int, str]:
        time.sleep(0.02 if i % 2 == 0 else 0.0)
        return i, threading.current_thread().name

    out = list(ordered_map(slow_for_even, range(12), threads=3))
    assert [i for i, _ in out] == list(range(12))
    assert out[0][1] == threading.current_thread().name  # the first item warms up in the caller
    assert any(name.startswith("tokcodec-coder") for _, name in out[1:])
    assert list(ordered_map(lambda i: i * 2, range(5), threads=1)) == [0, 2, 4, 6, 8]
    assert list(ordered_map(lambda i: i, [], threads=4)) == []


def test_an_error_is_raised_at_its_items_turn_and_stops_the_rest():
    started: list[int] = []

    def fails_at_3(i: int) -> int:
        started.append(i)
        if i == 3:
            raise ValueError("bad chunk 3")
        return i

    got = []
    with pytest.raises(ValueError, match="bad chunk 3"):
        for r in ordered_map(fails_at_3, range(100), threads=2, ahead=2):
            got.append(r)
    assert got == [0, 1, 2] and max(started) < 10  # items are consumed only a few ahead


def test_thread_count_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("TOKCODEC_CODER_THREADS", "3")
    assert coder_threads() == 3
    monkeypatch.setenv("TOKCODEC_CODER_THREADS", "many")
    with pytest.raises(ValueError, match="not a number"):
        coder_threads()


def test_files_and_frames_are_the_same_with_one_thread_or_four(tmp_path, tiny_model, monkeypatch):
    src = write_clip(tmp_path / "in.mkv", smooth_clip(25, 32, 48, seed=4))
    outputs = {}
    for threads in ("1", "4"):
        monkeypatch.setenv("TOKCODEC_CODER_THREADS", threads)
        tok = tmp_path / f"t{threads}.tok"
        encode_video(src, tok, model=tiny_model, gop=5)
        decode_video(tok, tmp_path / f"t{threads}.y4m", model=tiny_model)
        outputs[threads] = (tok.read_bytes(), (tmp_path / f"t{threads}.y4m").read_bytes(), read_tokens(tok)[1])
    assert outputs["1"][0] == outputs["4"][0] and outputs["1"][1] == outputs["4"][1]
    assert len(outputs["1"][2]) == 5 and all(np.array_equal(a, b) for a, b in zip(outputs["1"][2], outputs["4"][2]))


def test_gops_batched_through_the_network_decode_the_same_frames(tmp_path, tiny_model):
    """--gop-batch N: N GOPs of one shape at a time (the last, shorter one alone), in order, the
    same frames as one by one (the batched convolutions may round differently: 50 dB at least);
    with --salvage, gaps are filled in order too."""
    from tokcodec.codec.pipeline import compare_videos, same_shape_batches

    src = write_clip(tmp_path / "in.mkv", smooth_clip(23, 32, 48, seed=6))  # 4 GOPs of 5, one of 3
    encode_video(src, tmp_path / "a.tok", model=tiny_model, gop=5)
    decode_video(tmp_path / "a.tok", tmp_path / "one.y4m", model=tiny_model)
    st = decode_video(tmp_path / "a.tok", tmp_path / "three.y4m", model=tiny_model, gop_batch=3)
    assert st.frames == 23
    assert compare_videos(tmp_path / "one.y4m", tmp_path / "three.y4m")["psnr"] >= 50
    grids = [(i, 1, np.zeros(shape)) for i, shape in enumerate([(2, 4, 4)] * 4 + [(1, 4, 4)])]
    assert [[i for i, _, _ in b] for b in same_shape_batches(iter(grids), 3)] == [[0, 1, 2], [3], [4]]
    for bad in (0, "all"):
        with pytest.raises(ValueError, match="at least 1"):
            decode_video(tmp_path / "a.tok", tmp_path / "x.y4m", model=tiny_model, gop_batch=bad)
    # a size asked as each list fills (--gop-batch auto: 1 until the first GOP was measured)
    size, batches = [1], []
    for b in same_shape_batches(iter(grids), lambda shape: size[0]):
        batches.append([i for i, _, _ in b])
        size[0] = 3  # measured after the first batch
    assert batches == [[0], [1, 2, 3], [4]]


def test_auto_gop_batch_and_staging_on_cpu(tmp_path, tiny_model):
    """On CPU --gop-batch auto is 1 and the stager is a plain copy; on CUDA the batch comes from
    the memory one GOP took (gop_batch_for), within its bounds."""
    import torch

    from tokcodec.codec.accel import AutoGopBatch, HostStager, gop_batch_for
    from tokcodec.codec.pipeline import compare_videos
    from tokcodec.device import select_runtime

    cpu = select_runtime("cpu")
    sizer = AutoGopBatch(cpu)
    assert sizer.size((5, 2, 3)) == 1
    sizer.measure_end((5, 2, 3), sizer.measure_start((5, 2, 3)))
    assert sizer.size((5, 2, 3)) == 1 and sizer.largest == 1
    x = torch.arange(12).reshape(3, 4)
    assert torch.equal(HostStager(cpu).to_device(x), x)
    gib = 2 ** 30
    assert gop_batch_for(per_gop_bytes=2 * gib, free_bytes=70 * gib) == 17
    assert gop_batch_for(per_gop_bytes=50 * gib, free_bytes=70 * gib) == 1       # never 0
    assert gop_batch_for(per_gop_bytes=gib // 8, free_bytes=70 * gib) == 32       # capped
    assert gop_batch_for(per_gop_bytes=0, free_bytes=gib, limit=4) == 4
    src = write_clip(tmp_path / "in.mkv", smooth_clip(11, 32, 48, seed=3))
    encode_video(src, tmp_path / "a.tok", model=tiny_model, gop=5)
    decode_video(tmp_path / "a.tok", tmp_path / "auto.y4m", model=tiny_model)  # "auto" is the default
    decode_video(tmp_path / "a.tok", tmp_path / "one.y4m", model=tiny_model, gop_batch=1)
    assert compare_videos(tmp_path / "one.y4m", tmp_path / "auto.y4m")["psnr"] == float("inf")


def test_compile_wraps_each_network_once(tmp_path, tiny_model, monkeypatch):
    """--compile hands the encoder and decoder to torch.compile once, however many files a
    model object codes (a real compile of the tiny model takes ~50 s on CPU: not run here)."""
    import torch

    from tokcodec.codec.pipeline import compare_videos
    from tokcodec.model.zoo import load_tokenizer

    compiled = []

    class Wrapped(torch.nn.Module):  # what torch.compile returns, minus the compiling
        def __init__(self, net):
            super().__init__()
            self._orig_mod = net
            compiled.append(type(net).__name__)

        def forward(self, *args, **kwargs):
            return self._orig_mod(*args, **kwargs)

    monkeypatch.setattr(torch, "compile", Wrapped)
    model = load_tokenizer("tiny")
    src = write_clip(tmp_path / "in.mkv", smooth_clip(6, 32, 48, seed=4))
    encode_video(src, tmp_path / "c.tok", model=model, compile=True)
    decode_video(tmp_path / "c.tok", tmp_path / "c.y4m", model=model, compile=True)
    decode_video(tmp_path / "c.tok", tmp_path / "d.y4m", model=model, compile=True)
    assert compiled == ["Encoder", "Decoder"]
    encode_video(src, tmp_path / "e.tok", model=tiny_model)
    decode_video(tmp_path / "e.tok", tmp_path / "e.y4m", model=tiny_model)
    assert (tmp_path / "c.tok").read_bytes() == (tmp_path / "e.tok").read_bytes()
    assert compare_videos(tmp_path / "e.y4m", tmp_path / "c.y4m")["psnr"] == float("inf")
