"""What an ML engineer feeding tokens to a model from a data pipeline met (a walk-through of the
Python API under DataLoader workers, threads and fork, December 2026): each test is one
finding, fixed."""
from __future__ import annotations

import os
import signal
import sys
import time

import numpy as np
import pytest


@pytest.mark.skipif(not hasattr(os, "fork") or sys.platform == "darwin", reason="POSIX fork")
def test_a_forked_child_tokenizes_after_the_parent_ran_torch_threads(tiny_model) -> None:
    """After a call with 2 torch threads, the same call in an os.fork() child hung for ever in
    torch's first parallel operation (GNU OpenMP does not survive a fork)."""
    import torch

    import tokcodec

    clip = np.random.default_rng(0).integers(0, 255, (9, 32, 48, 3), dtype=np.uint8)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        parent = tokcodec.tokenize_frames(clip, model=tiny_model).tokens
        pid = os.fork()
        if pid == 0:  # the child: same tokens, then out without pytest's clean-up
            try:
                child = tokcodec.tokenize_frames(clip, model=tiny_model).tokens
                os._exit(0 if np.array_equal(parent, child) else 3)
            finally:
                os._exit(4)
    finally:
        torch.set_num_threads(threads)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.waitstatus_to_exitcode(status) == 0, "the child's tokens differ (3) or it failed (4)"
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    pytest.fail("the forked child hung")
