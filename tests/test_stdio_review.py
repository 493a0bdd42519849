"""What a tester of locales, odd file names and terminals met (December 2026): a command started
without stderr (`2>&-`) failed without a word, one without stdout lost its output with exit 0,
`./-` was taken for standard output, an output that was a link to nothing cost a whole encode
before "appeared while this output was being written", and names longer than a file system
takes ended in "unexpected OSError". Each test is one finding, fixed."""
from __future__ import annotations

import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import smooth_clip, write_clip
from tokcodec.cli import app
from tokcodec.codec.outputs import NAME_MAX, temp_path
from tokcodec.codec.pipeline import encode_video

runner = CliRunner()


@pytest.fixture(scope="module")
def coded(tmp_path_factory, tiny_model) -> tuple[Path, Path]:
    """(a 5-frame clip, its .tok with the tiny model)."""
    d = tmp_path_factory.mktemp("stdio")
    clip = write_clip(d / "clip.mkv", smooth_clip(5, 32, 48), Fraction(25))
    encode_video(clip, d / "clip.tok", model=tiny_model, gop=5)
    return clip, d / "clip.tok"


def _shell(command: str, cwd: Path) -> subprocess.CompletedProcess:
    """``command`` in sh, ``tokcodec`` being this checkout's, run as a user's shell runs it."""
    tokcodec = f"{sys.executable} -m tokcodec"
    return subprocess.run(["sh", "-c", command.replace("tokcodec", tokcodec)], cwd=cwd, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX shell")
def test_without_stderr_a_command_runs_silently(coded, tmp_path) -> None:
    """sys.stderr is None without fd 2: the progress bar's isatty() crashed, and with the message
    that said so going nowhere, encode, decode and batch exited 1 without a word or an output."""
    clip, tok = coded
    res = _shell(f"tokcodec encode '{clip}' -o e.tok --model tiny --gop 5 --passes 0 2>&- && "
                 f"tokcodec decode '{tok}' -o d.mkv 2>&-", tmp_path)
    assert res.returncode == 0, res.stdout
    assert (tmp_path / "e.tok").stat().st_size > 0 and (tmp_path / "d.mkv").stat().st_size > 0


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX shell")
def test_without_stdout_or_stdin_what_goes_there_fails_and_says_so(coded, tmp_path) -> None:
    """`info X >&-` and `--json >&-` exited 0 with their output lost; `-o - >&-` and `- <&-`
    ended in "unexpected AttributeError"."""
    clip, tok = coded
    for command, said in [
        (f"tokcodec info '{tok}' >&-", "standard output is closed"),
        (f"tokcodec info '{tok}' --json >&-", "standard output is closed"),
        (f"tokcodec decode '{tok}' -o d.mkv --json >&-", "standard output, which is closed"),  # (before the work)
        ("tokcodec --version >&-", "standard output is closed"),
        (f"tokcodec decode '{tok}' -o - >&-", "-: standard output is closed"),
        ("tokcodec encode - -o e.tok --model tiny <&-", "-: standard input is closed"),
    ]:
        res = _shell(command, tmp_path)
        assert res.returncode == 1 and said in res.stderr and "unexpected" not in res.stderr, (command, res.stderr)
    assert list(tmp_path.iterdir()) == []


def test_dot_slash_dash_is_a_file_named_dash(coded, tmp_path, monkeypatch) -> None:
    """pathlib makes "./-" (the shell's way to name a file called "-") "-", so the .tok went to
    standard output and `info ./-` refused standard input."""
    clip, tok = coded
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["encode", str(clip), "-o", "./-", "--model", "tiny", "--gop", "5", "--passes", "0"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "-").read_bytes()[:4] == tok.read_bytes()[:4]
    assert res.stdout == ""                           # the file's bytes went to it
    res = runner.invoke(app, ["info", "./-"])
    assert res.exit_code == 0 and "5 frames" in res.stdout, res.output


def test_an_output_that_is_a_link_to_nothing_is_refused_before_the_work(coded, tmp_path) -> None:
    """The check before encoding followed the link and found nothing there; the encode ran, then
    its commit met the link: "appeared while this output was being written"."""
    clip, tok = coded
    for name, args in (("l.tok", ["encode", str(clip), "--model", "tiny", "--gop", "5"]),
                       ("l.mkv", ["decode", str(tok)]), ("frames", ["decode", str(tok)])):
        link = tmp_path / name
        link.symlink_to(tmp_path / "nowhere" / name)
        res = runner.invoke(app, [*args, "-o", str(link)])
        assert res.exit_code == 1 and "already exists (a link to nothing)" in res.output, res.output
        assert "appeared" not in res.output
    (tmp_path / "empty.mkv").mkdir()     # (let through as an empty folder output; failed after the decode)
    res = runner.invoke(app, ["decode", str(tok), "-o", str(tmp_path / "empty.mkv"), "-y"])
    assert res.exit_code == 1 and "is a directory; a .mkv file cannot replace it" in res.output, res.output
    res = runner.invoke(app, ["encode", str(clip), "--model", "tiny", "--gop", "5", "-o", str(tmp_path / "l.tok"), "-y"])
    assert res.exit_code == 0 and not (tmp_path / "l.tok").is_symlink()    # -y: the link is replaced, itself
    assert not (tmp_path / "nowhere").exists()


def test_names_longer_than_a_file_system_takes_are_said_so(coded, tmp_path) -> None:
    """"unexpected OSError: [Errno 36] File name too long" from decode, tokens and encode's input,
    and from verify, exit status 2 (verify itself failed) instead of 1 (a bad file)."""
    clip, tok = coded
    long = "i" * 252
    for args in (["decode", str(tok), "-o", str(tmp_path / f"{long}.mkv")],
                 ["decode", str(tok), "-o", str(tmp_path / f"{long}iiii")],    # (a directory of PNGs)
                 ["tokens", str(tok), "-o", str(tmp_path / f"{long}.npy")],
                 ["encode", str(clip), "-o", str(tmp_path / f"{long}.tok"), "--model", "tiny"]):
        res = runner.invoke(app, args)
        assert res.exit_code == 1 and "a name of 256 bytes, more than the 255" in res.output, (args, res.output)
    for args, status in ((["encode", str(tmp_path / f"{long}.mp4"), "-o", str(tmp_path / "x.tok")], 1),
                         (["info", str(tmp_path / f"{long}.tok")], 1), (["verify", str(tmp_path / f"{long}.tok")], 1)):
        res = runner.invoke(app, args)
        assert res.exit_code == status and "its name is longer than the file system takes" in res.output, res.output
        assert "unexpected" not in res.output
    assert list(tmp_path.iterdir()) == []


def test_a_temporary_name_fits_where_the_output_name_does() -> None:
    """Only the stem was cut to make room for ".part-PID": a valid 252-byte name whose "extension"
    was 251 bytes gave a temporary name over 255 bytes, and "cannot write (File name too long)"."""
    for name in ("x." + "y" * 250, "é" * 127, "v" * 250 + ".mkv", "clip.tok"):
        assert len(os.fsencode(name)) <= NAME_MAX
        tmp = temp_path(Path("/d") / name, 1000)
        assert len(os.fsencode(tmp.name)) <= NAME_MAX and tmp.name.startswith("."), tmp.name
        assert tmp != temp_path(Path("/d") / (name[:-1] + "z"), 1000)
    assert temp_path(Path("/d/clip.mkv")).suffix == ".mkv"   # (muxers are chosen by it)


def test_option_values_out_of_range_are_usage_errors(coded, tmp_path) -> None:
    """--gop 10, --device gpu and --precision FP32 exited 1, where --passes 17 and other
    out-of-range values exit 2 (click's usage error) as documented."""
    clip, tok = coded
    for args in (["encode", str(clip), "-o", str(tmp_path / "a.tok"), "--gop", "10", "--model", "tiny"],
                 ["encode", str(clip), "-o", str(tmp_path / "a.tok"), "--device", "gpu"],
                 ["decode", str(tok), "-o", str(tmp_path / "a.mkv"), "--precision", "FP32"],
                 ["encode", str(clip), "-o", str(tmp_path / "a.tok"), "--bpp", "0.05", "--rdo", "1"]):
        res = runner.invoke(app, args)
        assert res.exit_code == 2 and "Traceback" not in res.output, (args, res.output)
    assert list(tmp_path.iterdir()) == []
