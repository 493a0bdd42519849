"""What a user who installs tokcodec with pip met (a walk-through of the wheel and sdist, December
2026): each test is one finding, fixed."""
from __future__ import annotations

import os
import re
import stat
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from tokcodec.cli.app import app

runner = CliRunner()


def _adder(a: np.ndarray) -> int:  # a kernel to compile: module-level, as numba caches only those
    total = 0
    for v in a:
        total += v
    return total


def test_kernels_compile_where_numba_finds_no_cache_location(tmp_path, monkeypatch) -> None:
    """A read-only install run by a user without a writable home: numba's cache=True raised "no
    locator available" at import, and encode, decode and verify failed with it. The kernels are
    now cached in a private temporary directory, else compiled in memory."""
    numba = pytest.importorskip("numba")
    from tokcodec import compiled

    if not hasattr(numba.config, "CACHE_LOCATOR_CLASSES"):
        pytest.skip("this numba cannot be told which cache locators to try")
    # only the locator of a user-provided directory (unset: none) and the one of zipped modules
    monkeypatch.setattr(numba.config, "CACHE_LOCATOR_CLASSES", "UserProvidedCacheLocator,ZipCacheLocator")
    monkeypatch.setattr(numba.config, "CACHE_DIR", "")
    with pytest.raises(RuntimeError, match="no locator"):
        numba.njit(cache=True)(_adder)  # what tokcodec did
    monkeypatch.setattr(compiled.tempfile, "gettempdir", lambda: str(tmp_path))
    kernel = compiled.cached_njit(_adder)
    assert kernel(np.arange(10)) == 45
    private = compiled.private_cache_dir()
    assert private is not None and private.parent == tmp_path and numba.config.CACHE_DIR == ""
    assert stat.S_IMODE(os.stat(private).st_mode) == 0o700
    assert any(private.rglob("*.nbi")), "the kernel was not cached in the private directory"
    # no private directory either: compiled in memory, and it still runs
    monkeypatch.setattr(compiled, "private_cache_dir", lambda: None)
    assert compiled.cached_njit(_adder)(np.arange(4)) == 6


@pytest.mark.skipif(not hasattr(os, "getuid"), reason="POSIX owners and modes")
def test_the_private_cache_is_refused_when_others_can_write_it(tmp_path, monkeypatch) -> None:
    """numba's cache index is a pickle: a directory someone else can write to is not used."""
    from tokcodec import compiled

    monkeypatch.setattr(compiled.tempfile, "gettempdir", lambda: str(tmp_path))
    path = tmp_path / f"tokcodec-numba-{os.getuid()}"
    path.mkdir(mode=0o777)
    os.chmod(path, 0o777)  # (mkdir's mode is masked by the umask)
    assert compiled.private_cache_dir() is None
    os.chmod(path, 0o700)
    assert compiled.private_cache_dir() == path
    path.rmdir()
    path.write_text("not a directory")
    assert compiled.private_cache_dir() is None


def test_version_option() -> None:
    """`tokcodec --version` was a usage error; the version of what a bug report needs is there."""
    from tokcodec import __version__

    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0, res.output
    first, second = res.output.splitlines()[:2]
    assert first == f"tokcodec {__version__}"
    assert second.startswith(f"Python {sys.version.split()[0]}, torch ") and " av " in second
    assert re.fullmatch(r"CPUs: \d+ usable of \d+ \((CPU quota [\d.]+|no CPU quota)\)", res.output.splitlines()[2])


def test_the_version_has_one_source() -> None:
    """The version was written twice, in pyproject.toml and tokcodec/__init__.py."""
    pyproject = (Path(__file__).parents[1] / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in pyproject and 'attr = "tokcodec.__version__"' in pyproject
    assert not re.search(r'^version\s*=\s*"', pyproject, re.M)


def test_declared_dependencies_cover_what_encode_imports() -> None:
    """The correction fit imports scipy, which came only as scikit-image's dependency; the
    trainer imports tomllib, which Python 3.10 (allowed by requires-python) does not have."""
    pyproject = (Path(__file__).parents[1] / "pyproject.toml").read_text()
    assert re.search(r'"scipy>=', pyproject)
    assert re.search(r"\"tomli>=[^\"]*; python_version < '3.11'\"", pyproject)
    trainer = (Path(__file__).parents[1] / "tokcodec" / "train" / "trainer.py").read_text()
    assert "import tomli as tomllib" in trainer


def test_verify_tells_a_failed_check_from_a_bad_file(tmp_path, monkeypatch) -> None:
    """verify exited 1 both for a bad file and when it could not check at all (an unexpected
    error): scripts could not tell them apart. A failed check now exits 2."""
    res = runner.invoke(app, ["verify", str(tmp_path)])  # a folder without .tok files
    assert res.exit_code == 2 and "a folder without .tok files" in res.output
    bad = tmp_path / "bad.tok"
    bad.write_bytes(b"TOKCODEC" + bytes(200))
    res = runner.invoke(app, ["verify", str(bad)])
    assert res.exit_code == 1 and "BAD" in res.output

    def broken(*args, **kwargs):
        raise RuntimeError("cannot cache function")

    monkeypatch.setattr("tokcodec.codec.verify.verify_file", broken)
    res = runner.invoke(app, ["verify", str(bad)])
    assert res.exit_code == 2 and "unexpected RuntimeError" in res.output


def test_a_missing_training_config_says_where_the_shipped_ones_are(tmp_path, monkeypatch) -> None:
    """`tokcodec train --config configs/fast_real.toml` outside a checkout said only "No such file
    or directory": the configs are not in the wheel."""
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["train", "--config", "configs/fast_real.toml"])
    assert res.exit_code == 1
    assert "configs/fast_real.toml: no such config file (the training configs are in configs/ of tokcodec's " \
           "source: a checkout or the sdist)" in res.output


def test_the_sdist_is_the_whole_source_release() -> None:
    """The sdist shipped tests that run scripts/gpu_train.sh without the script (nor the
    Makefile, configs or docs)."""
    manifest = (Path(__file__).parents[1] / "MANIFEST.in").read_text()
    for part in ("graft bench", "graft configs", "graft docs", "graft scripts", "graft tests", "Makefile"):
        assert part in manifest
