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
from contextlib import ExitStack
from pathlib import Path

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


@pytest.mark.skipif(not hasattr(os, "fork") or sys.platform == "darwin", reason="POSIX fork")
def test_a_forked_child_keeps_its_threads_until_it_calls_tokcodec() -> None:
    """Importing tokcodec registered a fork hook that set every forked child to one torch thread:
    a pre-forking server's workers ran models of their own on one thread. Now only a child's
    first tokcodec call does (which the hang it prevents needs: test_dataloader_review)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        pid = os.fork()
        if pid == 0:
            try:
                before = torch.get_num_threads()
                select_runtime("cpu")
                os._exit(10 * before + torch.get_num_threads())
            finally:
                os._exit(99)
    finally:
        torch.set_num_threads(threads)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 21  # 2 threads, then 1


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
@pytest.mark.skipif(signal.getsignal(signal.SIGINT) is not signal.default_int_handler,
                    reason="Ctrl-C must raise KeyboardInterrupt here")
def test_a_ctrl_c_as_a_temporary_output_is_made_leaves_nothing(tmp_path, monkeypatch) -> None:
    """A Ctrl-C between the open and the close of a new temporary output (os.close(os.open(...)))
    leaked the descriptor, and one between making it and taking it as the output's left a
    hidden .NAME.part-PID file: a long-lived process collected both."""
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
