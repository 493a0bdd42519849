"""The CLI's start-up environment: glibc's allocator policy and a short OpenMP spin, set by one
re-exec before torch loads; what the user set is kept."""
from __future__ import annotations

import importlib
import sys

import pytest

from tokcodec.startup import has_startup_environment, startup_environment


def test_the_spin_is_set_unless_the_user_set_how_threads_wait():
    env = startup_environment({"PATH": "/bin"})
    assert env["GOMP_SPINCOUNT"] == "1000" and env["MALLOC_MMAP_MAX_"] == "0" and env["PATH"] == "/bin"
    assert has_startup_environment(env) and not has_startup_environment({"PATH": "/bin"})
    for mine in ({"OMP_WAIT_POLICY": "ACTIVE"}, {"GOMP_SPINCOUNT": "infinite"}):
        env = startup_environment(mine)
        assert all(env[k] == v for k, v in mine.items()) and env.get("GOMP_SPINCOUNT") == mine.get("GOMP_SPINCOUNT")
        assert has_startup_environment(env)
    # the allocator policy alone (what an earlier tokcodec's re-exec set) is not all of it, and a
    # user's own allocator values stay (they were overwritten once the spin made a re-exec run)
    mine = {"MALLOC_MMAP_MAX_": "65536", "MALLOC_TRIM_THRESHOLD_": "1000"}
    assert not has_startup_environment(mine)
    assert startup_environment(mine) == {**mine, "GOMP_SPINCOUNT": "1000"}
    # an empty OMP_WAIT_POLICY (a leftover `export OMP_WAIT_POLICY=`) is none: libgomp spins long on it
    env = startup_environment({"OMP_WAIT_POLICY": " "})
    assert "OMP_WAIT_POLICY" not in env and env["GOMP_SPINCOUNT"] == "1000"


def test_heavy_commands_re_exec_with_it(monkeypatch):
    cli_app = importlib.import_module("tokcodec.cli.app")  # (tokcodec.cli.app is also the Typer app's name)

    calls = []
    monkeypatch.setattr(cli_app.os, "execve", lambda exe, argv, env: calls.append((argv, env)))
    monkeypatch.setattr(sys, "platform", "linux")
    for name in ("TOKCODEC_NO_REEXEC", "GOMP_SPINCOUNT", "OMP_WAIT_POLICY", "MALLOC_MMAP_MAX_"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(sys, "argv", ["tokcodec", "decode", "a.tok", "-o", "a.mkv"])
    monkeypatch.setenv("TOKCODEC_NO_REEXEC", "0")  # ("0" is off: it turned the re-exec off)
    cli_app._maybe_reexec()
    (argv, env), = calls
    assert argv[1] == "-c" and argv[3:] == ["decode", "a.tok", "-o", "a.mkv"]
    assert env["GOMP_SPINCOUNT"] == "1000" and env["TOKCODEC_NO_REEXEC"] == "1"
    calls.clear()
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")  # the user's choice: kept, and still re-exec'd for malloc
    cli_app._maybe_reexec()
    (argv, env), = calls
    assert env["OMP_WAIT_POLICY"] == "ACTIVE" and "GOMP_SPINCOUNT" not in env


@pytest.mark.parametrize("command", ["info", "verify", "models"])
def test_light_commands_do_not(monkeypatch, command):
    cli_app = importlib.import_module("tokcodec.cli.app")  # (tokcodec.cli.app is also the Typer app's name)

    monkeypatch.setattr(cli_app.os, "execve", lambda *a: pytest.fail("re-executed"))
    monkeypatch.delenv("TOKCODEC_NO_REEXEC", raising=False)
    monkeypatch.setattr(sys, "argv", ["tokcodec", command])
    cli_app._maybe_reexec()


@pytest.mark.parametrize("value, on", [("1", True), ("yes", True), ("0", False), ("", False), (" Off ", False),
                                       ("false", False), ("no", False)])
def test_switches_read_0_as_off(monkeypatch, value, on):
    from tokcodec.env_flags import env_flag

    monkeypatch.setenv("TOKCODEC_DEBUG", value)
    assert env_flag("TOKCODEC_DEBUG") is on
