"""Findings of a walk-through under resource limits (December 2026): the open-file limit, and
the out-of-memory message when memory has run out."""
from __future__ import annotations

import builtins
import errno

import pytest
import typer

from tokcodec.cli import policy


def test_too_many_open_files_says_which_limit(capsys) -> None:
    """`ulimit -n 16` and a batch run: "unexpected OSError: [Errno 24] Too many open files"."""
    with pytest.raises(typer.Exit) as stop, policy.errors():
        raise OSError(errno.EMFILE, "Too many open files")
    assert stop.value.exit_code == 1
    err = capsys.readouterr().err
    assert "too many open files" in err and "ulimit -n" in err and "unexpected" not in err


def test_the_out_of_memory_note_imports_nothing(monkeypatch) -> None:
    """Out of address space, importing ``resource`` there failed in turn (a traceback)."""
    real_import = builtins.__import__

    def no_imports(name, *args, **kwargs):
        if name == "resource":
            raise MemoryError
        return real_import(name, *args, **kwargs)
    monkeypatch.setattr(builtins, "__import__", no_imports)
    assert isinstance(policy.address_space_note(), str)
