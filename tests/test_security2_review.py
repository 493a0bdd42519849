"""A second security review, of what reads files and writes beside them."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import smooth_clip, write_clip
from tokcodec.batch import batch_encode
from tokcodec.batch.manifest import read_records
from tokcodec.errors import FormatError, OutputError, SetupError
from tokcodec.text import printable
from tokcodec.tokens import read_token_file
from tokcodec.train import trainer


@pytest.fixture
def tree(tmp_path) -> tuple[Path, Path, Path]:
    (tmp_path / "src").mkdir()
    (tmp_path / "dst").mkdir()
    write_clip(tmp_path / "src" / "a.mkv", smooth_clip(5, 32, 48, seed=1))
    victim = tmp_path / "victim.txt"
    victim.write_text("IMPORTANT USER DATA\n")
    return tmp_path / "src", tmp_path / "dst", victim


@pytest.mark.parametrize("name", [".tokcodec-batch.lock", "manifest.jsonl"])
def test_a_link_planted_in_dst_is_not_followed(tree, name):
    """The lock was truncated and rewritten, the manifest appended to, through a link planted in
    a shared DST: another user's batch run destroyed whatever file it named."""
    src, dst, victim = tree
    (dst / name).symlink_to(victim)
    with pytest.raises(OutputError, match="a link, which is not followed"):
        batch_encode(src, dst, model="tiny", workers=1, gop=5)
    assert victim.read_text() == "IMPORTANT USER DATA\n"


def test_a_fifo_as_the_lock_is_refused_not_hung(tree):
    src, dst, _ = tree
    os.mkfifo(dst / ".tokcodec-batch.lock")
    with pytest.raises(OutputError, match="not a regular file"):
        batch_encode(src, dst, model="tiny", workers=1, gop=5)


def test_nested_json_is_a_bad_line_or_field_not_a_crash(tmp_path):
    """'[' * 100000: "unexpected RecursionError" from the manifest's reader (a DST no run could use
    until the file was edited) and from a token file's metadata."""
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("[" * 100000 + "]" * 100000 + "\n" + json.dumps({"output": "x", "status": "done"}) + "\n")
    assert [r["output"] for r in read_records(manifest)] == ["x"]
    from safetensors.numpy import save_file

    path = tmp_path / "t.safetensors"
    save_file({"tokens": np.zeros((1, 2, 3), np.int32)}, str(path),
              metadata={"format": "tokcodec-tokens", "made": "[" * 200000 + "]" * 200000})
    with pytest.raises(FormatError, match="metadata 'made'"):
        read_token_file(path)


def test_what_a_file_says_of_itself_reaches_the_terminal_escaped():
    shown = printable("model  ab\x1b]0;PWNED\x07\x1b[2J\r\nverify: OK\tx\n\x9bq")
    assert shown == "model  ab\\x1b]0;PWNED\\x07\\x1b[2J\\x0d\nverify: OK\tx\n\\x9bq"


def test_a_checkpoint_is_not_unpickled_by_a_torch_whose_weights_only_can_be_bypassed(tmp_path, monkeypatch):
    """torch before 2.6 (the package takes 2.2 on, for Intel Macs): CVE-2025-32434."""
    torch.save({"step": 1}, tmp_path / "c.pt")
    monkeypatch.setattr(torch, "__version__", "2.5.1")
    with pytest.raises(SetupError, match="needs torch 2.6 or newer"):
        trainer.read_checkpoint(tmp_path / "c.pt")
    monkeypatch.setattr(torch, "__version__", "2.6.0+cpu")
    with pytest.raises(Exception, match="not a training checkpoint"):
        trainer.read_checkpoint(tmp_path / "c.pt")


def test_the_y4m_frame_count_does_not_open_a_fifo_again(tmp_path):
    """Counting a Y4M input's frames opened it a second time: a named pipe waited for ever."""
    from tokcodec.io import _y4m_frames

    os.mkfifo(tmp_path / "p.y4m")
    assert _y4m_frames(tmp_path / "p.y4m", 100) == 0
