"""What an ML engineer embedding tokcodec in a long-lived process met (a walk-through of the
Python API in notebooks, thread pools and pre-forking servers, December 2026): process-wide
settings changed for good, a stray ValueError on every batch error off the main thread, a
temporary file and a descriptor left by a well-timed Ctrl-C, and torch's compiler imported by
every model load. Each test is one finding, fixed."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pytest
import torch

from tokcodec.codec import outputs
from tokcodec.codec.outputs import new_file, staged_output
from tokcodec.device import one_blas_thread, select_runtime
from tokcodec.interrupts import sigterm_as_interrupt


def _blas_threads() -> list[int]:
    from threadpoolctl import threadpool_info

    return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]


def test_overlapping_calls_give_back_the_blas_threads_the_program_had() -> None:
    """Each token choice set BLAS to one thread and restored what it had seen: two calls that
    overlapped (thread pools) left the whole process's NumPy on one thread for good."""
    from threadpoolctl import threadpool_limits

    if not _blas_threads():
        pytest.skip("NumPy has no BLAS threadpoolctl knows")
    with threadpool_limits(limits=2, user_api="blas"):
        first, second = ExitStack(), ExitStack()
        first.enter_context(one_blas_thread())
        second.enter_context(one_blas_thread())
        assert set(_blas_threads()) == {1}
        first.close()                       # the first call ends while the second runs
        assert set(_blas_threads()) == {1}
        second.close()
        assert set(_blas_threads()) == {2}


def _child_status(child: Callable[[], int], timeout: float = 120) -> int:
    """The exit status of ``child()`` run in an os.fork() child (-1: it hung)."""
    pid = os.fork()
    if pid == 0:
        try:
            os._exit(child())
        finally:
            os._exit(99)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return -1


@pytest.mark.skipif(not hasattr(os, "fork") or sys.platform == "darwin", reason="POSIX fork")
def test_a_forked_child_keeps_its_threads_unless_tokcodec_ran_before_the_fork(monkeypatch) -> None:
    """Importing tokcodec registered a fork hook that set every forked child to one torch thread:
    a pre-forking server's workers ran models of their own on one thread. A child of a process
    that made no tokcodec call now keeps its threads until its own first call; one of a process
    that did starts on one (its parent's OpenMP threads would hang it: below)."""
    from tokcodec import device

    def threads_then_after_a_call() -> int:
        before = torch.get_num_threads()
        select_runtime("cpu")
        return 10 * before + torch.get_num_threads()

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        monkeypatch.setattr(device, "_ran_here", False)
        assert _child_status(threads_then_after_a_call) == 21        # 2 threads, then 1
        select_runtime("cpu")
        assert device._ran_here
        assert _child_status(threads_then_after_a_call) == 11        # 1 from the start
    finally:
        torch.set_num_threads(threads)


@pytest.mark.skipif(not hasattr(os, "fork") or sys.platform == "darwin", reason="POSIX fork")
def test_a_forked_child_runs_the_network_itself_after_the_parent_did(tiny_model) -> None:
    """The diff review's case against a hook that only waited for the child's first tokcodec
    call: a model loaded and run in the parent (2 torch threads), then run directly in a forked
    child (``loaded.tokenizer``, no tokcodec call there), hung for good."""
    import tokcodec

    clip = torch.rand(1, 3, 5, 32, 48) * 2 - 1
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        tokcodec.tokenize_frames(np.zeros((5, 32, 48, 3), np.uint8), model=tiny_model)
        with torch.inference_mode():
            indices = tiny_model.tokenizer.encode_indices(clip)

        def decode_directly() -> int:
            with torch.inference_mode():
                return 0 if tiny_model.tokenizer.decode_indices(indices).shape[2] == 5 else 3
        assert _child_status(decode_directly) == 0, "the child hung (-1) or decoded wrongly (3)"
    finally:
        torch.set_num_threads(threads)


@pytest.mark.skipif(not hasattr(os, "fork") or sys.platform == "darwin", reason="POSIX fork")
def test_a_child_forked_inside_a_blas_limit_has_its_own(monkeypatch) -> None:
    """A child forked while another thread held the shared BLAS limit inherited its count of
    holders: its own calls never set the limit (and a held lock would have hung it)."""
    from tokcodec import device

    if not _blas_threads():
        pytest.skip("NumPy has no BLAS threadpoolctl knows")
    with one_blas_thread():
        def fresh() -> int:
            return 0 if (device._blas_users, device._blas_limits, device._blas_lock.locked()) == (0, None, False) else 3
        assert _child_status(fresh) == 0


def test_a_batch_error_off_the_main_thread_carries_no_stray_context() -> None:
    """Off the main thread, sigterm_as_interrupt yielded inside its `except ValueError:`: every
    error a batch run raised there read "During handling of the above exception (signal only
    works in main thread) ...". Its handlers stay as they are there."""
    caught: list[BaseException] = []
    before = signal.getsignal(signal.SIGTERM)

    def run() -> None:
        try:
            with sigterm_as_interrupt():
                raise LookupError("the caller's own")
        except LookupError as exc:
            caught.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    worker.join()
    assert caught and caught[0].__context__ is None
    assert signal.getsignal(signal.SIGTERM) is before


def _interrupt_after(real, name: str):
    """``real``, followed by a Ctrl-C delivered as soon as it returns (for calls on ``name``)."""
    def call(path, *args, **kwargs):
        result = real(path, *args, **kwargs)
        if Path(path).name.startswith(name):
            signal.raise_signal(signal.SIGINT)
        return result
    return call


def _descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
def test_a_ctrl_c_as_a_temporary_output_is_made_leaves_nothing(tmp_path, monkeypatch) -> None:
    """A Ctrl-C between the open and the close of a new temporary output (os.close(os.open(...)))
    leaked the descriptor, and one between making it and taking it as the output's left a
    hidden .NAME.part-PID file: a long-lived process collected both."""
    # Ctrl-C as Python's own handler takes it (a module imported before, ray's, may have set another)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        _ctrl_c_while_made(tmp_path, monkeypatch)
    finally:
        signal.signal(signal.SIGINT, previous)


def _ctrl_c_while_made(tmp_path: Path, monkeypatch) -> None:
    dst = tmp_path / "out.tok"
    monkeypatch.setattr(outputs.os, "open", _interrupt_after(os.open, ".out."))
    fds = _descriptors()
    for _ in range(3):
        with pytest.raises(KeyboardInterrupt), staged_output(dst, "file"):
            pytest.fail("the Ctrl-C comes before the block")
        with pytest.raises(KeyboardInterrupt):
            new_file(tmp_path / ".out.png.part")
        (tmp_path / ".out.png.part").unlink()
    monkeypatch.undo()
    assert _descriptors() == fds
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    monkeypatch.setattr(outputs, "_made_new", _interrupt_after(outputs._made_new, ".out."))
    with pytest.raises(KeyboardInterrupt), staged_output(dst, "file"):
        pytest.fail("the Ctrl-C comes before the block")
    assert list(tmp_path.iterdir()) == []


def test_loading_a_model_does_not_import_torchs_compiler() -> None:
    """Building the model on the meta device (shapes only, before reading a weights file) ran
    the quantizer's codebook through torch's Python decompositions, which import torch._dynamo:
    about 800 modules and a second or more on every command that loads a model."""
    code = ("import sys\n"
            "from tokcodec.model.zoo import load_tokenizer\n"
            "load_tokenizer('default')\n"
            "print(sorted(m for m in ('torch._dynamo', 'torch.fx.experimental.symbolic_shapes') if m in sys.modules))\n")
    started = time.monotonic()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", f"imported: {out.stdout.strip()} ({time.monotonic() - started:.1f} s)"


def test_the_quantizer_codebook_is_the_same_built_anywhere() -> None:
    from tokcodec.model.lfq import LFQ

    with torch.device("meta"):
        meta = LFQ(18)
    cpu = LFQ(18)
    assert meta.group_codebook.device.type == "cpu"
    assert torch.equal(meta.group_codebook, cpu.group_codebook)
    assert cpu.group_codebook.shape == (512, 9)
    assert cpu.group_codebook[5].tolist() == [1, -1, 1, -1, -1, -1, -1, -1, -1]  # 5 = bits 0 and 2
