"""What a data engineer running batch over thousands of files, resumed many times, met (December
2026): an output truncated or emptied after its run was skipped on every rerun, and the run said
all was done. Each test is one finding, fixed."""
from __future__ import annotations

import os

from test_batch import encoded, mtimes  # noqa: F401  (the fixture: one run over a small tree)
from tokcodec.batch import batch_decode, batch_encode


def test_an_output_cut_short_since_its_run_is_redone(encoded, tmp_path):  # noqa: F811
    """A rerun skipped an output that was there and newer than its input, whatever its size: a
    `.tok` truncated to 100 bytes or emptied stayed so, found only when decoding it. The size the
    run that made it recorded must match now."""
    _, src, tok, _ = encoded   # (in place: the manifest names its outputs by their paths)
    before = mtimes(tok)
    cut, emptied = tok / "a" / "c1.mkv.tok", sorted(before)[-1]
    stamp = os.stat(cut).st_mtime_ns
    os.truncate(cut, 100)
    os.utime(cut, ns=(stamp, stamp))                        # (as new as before: only its size tells)
    (tok / emptied).write_bytes(b"")
    exclude = ["skip/*", "broken*", "gone*"]
    s = batch_encode(src, tok, model="tiny", gop=5, exclude=exclude, workers=1)
    assert (s.done, s.skipped, s.failed) == (2, 1, 0)
    redone = {k for k in before if mtimes(tok)[k] != before[k]}
    assert redone == {"a/c1.mkv.tok", emptied}
    s = batch_encode(src, tok, model="tiny", gop=5, exclude=exclude, workers=1)
    assert (s.done, s.skipped, s.failed) == (0, 3, 0)      # (and then they are done)
    d = batch_decode(tok, tmp_path / "out", workers=1)
    assert (d.done, d.failed) == (3, 0)
    d = batch_decode(tok, tmp_path / "out", workers=1)
    assert (d.done, d.skipped) == (0, 3)                   # (a decode's recorded size is its file's)
