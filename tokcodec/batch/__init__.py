"""Batch encode/decode/tokens of folder trees, locally (a process pool) or on a Ray cluster.

    from tokcodec.batch import batch_encode, batch_decode
    summary = batch_encode("videos/", "tok/", model="small", workers=2)   # -> BatchSummary
    print(summary.line(), summary.failures)
    batch_decode("tok/", "restored/", to="mkv")
    batch_tokens("videos/", "tokens/")      # token files for language models (x.mp4.safetensors)

Outputs are written under temporary names and renamed when complete, complete outputs newer than
their input are skipped on a rerun, and every file gets a line in DST/manifest.jsonl.
``summary.to_dict()`` is the run as JSON. Called from the main thread, a run takes SIGTERM as it
takes Ctrl-C (workers stopped, partial outputs removed, BatchInterrupted raised) and puts the
previous SIGTERM handler back when it ends; from another thread it leaves signals alone.
"""
from __future__ import annotations

from tokcodec.batch.plan import MANIFEST_NAME
from tokcodec.batch.run import (
           BatchInterrupted,
           BatchSummary,
           batch_decode,
           batch_encode,
           batch_tokens,
           run_batch,
)
from tokcodec.batch.work import BatchOptions, FileResult

__all__ = [
           "MANIFEST_NAME",
           "BatchInterrupted",
           "BatchOptions",
           "BatchSummary",
           "FileResult",
           "batch_decode",
           "batch_encode",
           "batch_tokens",
           "run_batch",
]
