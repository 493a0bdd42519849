"""A walk-through with a screen reader, a plain terminal and logs: where progress goes, what a
log gets from a long run, and what exits 2."""
from __future__ import annotations

import sys

import pytest
from typer.testing import CliRunner

from conftest import smooth_clip, write_clip
from tokcodec.batch.progress import LineReporter, RichReporter, default_reporter
from tokcodec.cli import progress
from tokcodec.cli.app import app
from tokcodec.codec.pipeline import encode_video
from tokcodec.text import clock, live_terminal
from tokcodec.train.trainer import _Progress

runner = CliRunner()


class Tty:
    def isatty(self) -> bool:
        return True


def test_a_dumb_terminal_gets_the_lines_a_log_gets(monkeypatch):
    """rich draws nothing under TERM=dumb (Emacs shells, some screen-reader set-ups): batch,
    encode and train showed no progress at all there."""
    monkeypatch.setenv("TERM", "dumb")
    assert not live_terminal(Tty())
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert isinstance(default_reporter(False), LineReporter)
    monkeypatch.setenv("TERM", "xterm-256color")
    assert live_terminal(Tty()) and isinstance(default_reporter(False), RichReporter)


def test_a_long_run_logged_to_a_file_says_where_it_is(capsys):
    """`encode ... 2>log` wrote nothing until its stats line (hours at 1080p)."""
    now = [0.0]
    lines = progress.LogLines([("encode", 472), ("write", None)], every=60, now=lambda: now[0])
    encode, write = lines.advancer(0), lines.advancer(1)
    now[0] = 30.0
    encode(100)
    assert capsys.readouterr().err == ""  # (a short run: nothing but its stats line)
    now[0] = 60.0
    encode(20)
    assert capsys.readouterr().err == "encode: 120/472 frames (25%), 2.0 fps, 2:56 left\n"
    now[0] = 100.0
    write(10)
    now[0] = 130.0
    write(30)
    assert capsys.readouterr().err == "write: 40 frames, 0.6 fps\n"  # (from the encode's last step, at 60 s)
    # a stage's first step counts from the last advance before it (a rate plan's end): the first
    # line of a stage that began over a minute after the last line said 17000000000.0 fps
    now[0] = 200.0
    lines = progress.LogLines([("rate plan", None), ("encode", 472)], every=60, now=lambda: now[0])
    plan, encode = lines.advancer(0), lines.advancer(1)
    now[0] = 230.0
    plan(17)
    now[0] = 300.0
    encode(17)
    assert capsys.readouterr().err == "encode: 17/472 frames (4%), 0.2 fps, 31:14 left\n"
    assert clock(3725) == "1:02:05" and clock(59.6) == "1:00"


def test_progress_lines_are_the_default_off_a_terminal(monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    with progress.staged_progress([("encode", 10)], quiet=False) as (advance,):
        assert callable(advance)
    with progress.staged_progress([("encode", 10)], quiet=True) as (advance,):
        assert advance is None


def test_training_progress_goes_to_standard_error(capsys, monkeypatch):
    """The bar was drawn on standard output after a look at standard error: `train | tee log`
    showed and logged nothing until the end."""
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    bar = _Progress(10, 0, enabled=True)
    bar.update(1, {"loss": 0.5, "psnr": 20.0, "bit_entropy_mean": 0.9})
    bar.message("checkpoint written")
    out = capsys.readouterr()
    assert out.out == "" and "step 1/10 loss 0.5000" in out.err and "checkpoint written" in out.err
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    monkeypatch.setenv("TERM", "xterm")
    bar = _Progress(10, 0, enabled=True)
    try:
        assert bar.progress.console.stderr
    finally:
        bar.close()


@pytest.fixture(scope="module")
def tok(tmp_path_factory, tiny_model):
    root = tmp_path_factory.mktemp("a11y")
    src = write_clip(root / "in.mkv", smooth_clip(5, 32, 48, seed=1))
    encode_video(src, root / "a.tok", model=tiny_model, gop=5)
    return src, root / "a.tok"


@pytest.mark.parametrize("args", [["encode", "SRC", "-o", "-", "--json"], ["decode", "TOK", "-o", "-", "--json"],
                                  ["decode", "TOK", "-o", "-", "--compare", "SRC"],
                                  ["tokens", "TOK", "-o", "OUT.npy", "--gop", "9"],
                                  ["encode", "SRC", "-o", "OUT.tok", "--bpp", "0.05", "--rdo", "0.3"]])
def test_options_against_one_another_exit_2_as_documented(args, tok, tmp_path):
    src, tok_file = tok
    names = {"SRC": str(src), "TOK": str(tok_file), "OUT.npy": str(tmp_path / "t.npy"),
             "OUT.tok": str(tmp_path / "b.tok")}
    res = runner.invoke(app, [names.get(a, a) for a in args] + ["--model", "tiny"])
    assert res.exit_code == 2, res.output
    assert "--" in res.output.split("error:", 1)[1]  # (the message names the options)


def test_help_on_a_narrow_terminal_keeps_every_option_name(monkeypatch):
    """At 40 columns (a braille display's width) rich cut 23 of encode's option names to fit
    (`--outp…`, `--no-c…`): help is laid out in 80 columns there, the terminal wrapping its lines."""
    import os
    import shutil

    import typer.rich_utils

    from tokcodec.cli.app import HELP_MIN_WIDTH, help_at_least

    monkeypatch.setattr(typer.rich_utils, "MAX_WIDTH", None)
    monkeypatch.setattr(shutil, "get_terminal_size", lambda *a, **k: os.terminal_size((40, 24)))
    help_at_least(HELP_MIN_WIDTH)
    assert typer.rich_utils.MAX_WIDTH == 80
    text = runner.invoke(app, ["encode", "--help"]).output
    assert "…" not in text and all(name in text for name in ("--no-correction", "--no-detail", "--overwrite",
                                                               "--precision", "--key-interval"))
    monkeypatch.setattr(typer.rich_utils, "MAX_WIDTH", None)
    monkeypatch.setenv("TERMINAL_WIDTH", "40")  # as the user said
    help_at_least(HELP_MIN_WIDTH)
    assert typer.rich_utils.MAX_WIDTH is None


def test_a_coding_command_collects_garbage_only_among_what_its_work_makes():
    """The collector scanned the imports' objects (torch, numba, typer's) during the imports and
    again at exit: 0.7 s of a 51-frame 640x360 decode of 4.5 s. main() turns it off for a coding
    command's imports; the work's progress turns it back on, those objects frozen out of it."""
    import gc

    from tokcodec.cli.app import GC_AFTER_IMPORTS

    assert {"encode", "decode", "tokens", "detokenize"} <= GC_AFTER_IMPORTS
    gc.disable()
    try:
        with progress.staged_progress([("decode", 10)], quiet=True):
            assert gc.isenabled() and gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.enable()
