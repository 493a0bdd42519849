"""A library user's type checker against the public API: what it accepts must work."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import tokcodec
from conftest import smooth_clip, write_clip
from tokcodec.device import select_runtime
from tokcodec.model import zoo


@pytest.fixture(scope="module")
def own(tmp_path_factory):
    root = tmp_path_factory.mktemp("types")
    weights = root / "mine.safetensors"
    model = zoo.random_init(zoo.get_preset("tiny"), 3)
    zoo.save_weights(model.state_dict(), model.cfg, weights, fp16=False)
    (root / "in").mkdir()
    src = write_clip(root / "in" / "a.mkv", smooth_clip(5, 32, 48, seed=1))
    return root, weights, src


def test_a_weights_file_given_as_a_path_object(own):
    """Every call that takes ``model`` ended in "AttributeError: 'PosixPath' object has no
    attribute 'endswith'" for one (every path elsewhere in the API is str or Path), which no
    `except TokcodecError` caught."""
    root, weights, src = own
    assert tokcodec.load_tokenizer(weights).name == "mine"
    tokcodec.encode_video(src, root / "a.tok", model=weights, gop=5)
    tokcodec.decode_video(root / "a.tok", root / "a.y4m", model=weights)
    assert tokcodec.verify_file(root / "a.tok", model=weights).ok
    header, grids, frames = tokcodec.read_tokens(root / "a.tok", weights, dtype="int32")
    assert grids[0].dtype == np.int32 and frames == [5]
    assert tokcodec.tokenize(src, model=weights, gop=5).tokens.shape[0] == 2
    summary = tokcodec.batch_encode(root / "in", root / "out", model=weights, workers=1, gop=5)
    assert summary.failed == 0
    record = json.loads((root / "out" / "manifest.jsonl").read_text().splitlines()[-1])
    assert record["status"] == "done" and record["model"] == "mine"


def test_a_torch_device_is_taken_where_a_device_name_is():
    """load_tokenizer took a torch.device; encode, decode and tokenize ended in AttributeError."""
    assert select_runtime(torch.device("cpu"), "fp32").device == torch.device("cpu")


def test_the_lazy_exports_still_load_and_misspellings_still_fail():
    assert tokcodec.encode_video.__name__ == "encode_video"
    with pytest.raises(AttributeError, match="encode_vidoe"):
        tokcodec.encode_vidoe  # noqa: B018
