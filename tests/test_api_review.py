"""The library as a program of one's own uses it (found on a Python-API walk-through): a model
shared by threads, two writers of one output, one exception family, warnings in the results,
JSON-ready summaries, the package's public names."""
import json
import threading
from pathlib import Path

import pytest
import torch

import tokcodec
from conftest import smooth_clip, write_clip
from tokcodec.batch.plan import PART_RE
from tokcodec.codec.outputs import staged_output
from tokcodec.codec.pipeline import encode_video, prepare_model
from tokcodec.device import select_runtime
from tokcodec.errors import ArgumentError, DeviceError, OutputError, TokcodecError
from tokcodec.model.zoo import load_tokenizer


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return write_clip(tmp_path_factory.mktemp("api") / "c.mkv", smooth_clip(9, 32, 48))


def test_threads_sharing_a_fresh_model_leave_its_weights_alone(clip, tmp_path):
    """Four threads start encoding with one model that no call has placed yet. Placing it (layout,
    device) swapped each weight's storage under the other threads' running convolutions: weights
    changed for good in 5 runs out of 5 with the shipped model, and a run could crash."""
    for _ in range(2):
        model = load_tokenizer("default")
        before = {k: v.clone() for k, v in model.tokenizer.state_dict().items()}
        barrier = threading.Barrier(4)
        failures = []

        def encode(i: int) -> None:
            barrier.wait()
            try:
                encode_video(clip, tmp_path / f"{i}.tok", model=model, overwrite=True, audio=False)
            except BaseException as exc:  # noqa: BLE001 - reported below
                failures.append(exc)

        threads = [threading.Thread(target=encode, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not failures
        after = model.tokenizer.state_dict()
        assert [k for k in before if not torch.equal(before[k], after[k])] == []


def test_a_placed_model_is_left_as_it_is(monkeypatch):
    """Once placed, a model is not moved again (a move swaps storage under other threads)."""
    model = load_tokenizer("tiny")
    runtime = select_runtime("cpu", "fp32")
    prepare_model(model, runtime)
    moves = []
    monkeypatch.setattr(model.tokenizer, "to", lambda *a, **k: moves.append((a, k)) or model.tokenizer)
    prepare_model(model, runtime)
    assert moves == []
    model.tokenizer.train()  # (not in eval mode: placed again)
    prepare_model(model, runtime)
    assert len(moves) == 2


def test_two_writers_of_one_output_each_write_their_own_file(tmp_path):
    dst = tmp_path / "same.tok"
    with staged_output(dst, "file") as a, staged_output(dst, "file") as b:
        assert a != b and PART_RE.match(a.name) and PART_RE.match(b.name)
        a.write_bytes(b"first, whole")
        b.write_bytes(b"second, whole")
    assert dst.read_bytes() in (b"first, whole", b"second, whole")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["same.tok"]
    with staged_output(dst, "file") as c:  # names are free again once written
        assert c == a
        c.write_bytes(b"third")
    assert dst.read_bytes() == b"third"


def test_argument_errors_are_tokcodec_errors_and_value_errors(clip, tmp_path, tiny_model):
    for kwargs in ({"gop": 10}, {"rdo": -1.0}, {"bpp": 0.05, "bitrate": 3e5}, {"max_frames": 0}, {"scale": 0.0},
                   {"key_interval": 0}, {"refine": -1}):
        with pytest.raises(ArgumentError) as caught:
            encode_video(clip, tmp_path / "a.tok", model=tiny_model, **kwargs)
        assert isinstance(caught.value, TokcodecError) and isinstance(caught.value, ValueError), kwargs
    with pytest.raises(DeviceError, match="unknown device 'gpu'"):
        load_tokenizer("tiny", device="gpu")
    assert tokcodec.ArgumentError is ArgumentError and tokcodec.DeviceError is DeviceError


def test_encode_warns_of_untrained_weights_and_batch_says_it_once(clip, tmp_path, tiny_model):
    st = encode_video(clip, tmp_path / "a.tok", model=tiny_model, audio=False)
    assert [w for w in st.warnings if "untrained" in w] == [
        "tiny has untrained (random) weights: its pictures are no reconstruction of the input (a test preset; "
        "`tokcodec models` lists the trained ones)"]
    assert not [w for w in encode_video(clip, tmp_path / "b.tok", audio=False).warnings if "untrained" in w]
    src = tmp_path / "src"
    src.mkdir()
    for name in ("x.mkv", "y.mkv"):
        (src / name).write_bytes(clip.read_bytes())
    summary = tokcodec.batch_encode(src, tmp_path / "out", model="tiny", workers=1, passes=0)
    assert summary.done == 2 and len([w for w in summary.warnings if "untrained" in w]) == 1
    assert all(not r.warnings for r in summary.results)
    record = json.loads(json.dumps(summary.to_dict()))
    assert record["done"] == 2 and record["ok"] and {r["status"] for r in record["results"]} == {"done"}
    assert {r["precision"] for r in record["results"]} == {select_runtime().precision}


def test_a_directory_as_the_tok_output_is_refused_before_encoding(clip, tmp_path, tiny_model):
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine")
    called = []
    with pytest.raises(OutputError, match="is a directory"):
        encode_video(clip, taken, model=tiny_model, overwrite=True, progress=called.append)
    assert called == [] and (taken / "keep.txt").read_text() == "mine"


def test_the_package_names_what_it_exports():
    public = [n for n in dir(tokcodec) if not n.startswith("__")]
    assert public == sorted(n for n in tokcodec.__all__ if n != "__version__") and "Any" not in public and "importlib" not in public
    for name in public:
        assert getattr(tokcodec, name) is not None, name
    assert {"tokenize_frames", "FileInfo", "VerifyReport", "BatchSummary", "LoadedModel", "InputError"} <= set(public)
    assert (Path(tokcodec.__file__).parent / "py.typed").is_file()


def test_tokenizing_says_what_encoding_says(clip, tiny_model):
    """tokenize dropped encode's warnings (a variable frame rate, the model); they come back in
    TokenFile.warnings (not written to files), tokenize_frames' too."""
    from tokcodec.io import iter_frames
    from tokcodec.frame_tokens import tokenize_frames
    from tokcodec.tokens import tokenize

    for tokens in (tokenize(clip, model=tiny_model), tokenize_frames(list(iter_frames(clip)), model=tiny_model)):
        assert [w for w in tokens.warnings if "tiny has untrained" in w], tokens.warnings
    assert tokenize(clip).warnings == ()
