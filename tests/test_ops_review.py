"""What an ops engineer met running tokcodec from cron and job scripts: a re-exec that ran a
`tokcodec.py` in the current folder, and hidden parts that killed encodes left behind."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from conftest import smooth_clip, write_clip


def test_the_re_exec_runs_this_tokcodec_not_one_in_the_current_folder(tmp_path):
    """`python -m tokcodec` put the current folder first: a `tokcodec.py` there ran instead, and
    the job exited 0 with nothing written."""
    write_clip(tmp_path / "c.mkv", smooth_clip(5, 32, 48))
    (tmp_path / "tokcodec.py").write_text("print('not tokcodec')\n")
    env = {k: v for k, v in os.environ.items()
           if k not in ("TOKCODEC_NO_REEXEC", "GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}  # (so that it re-execs)
    script = Path(sys.executable).parent / "tokcodec"
    command = [str(script)] if script.exists() else [sys.executable, "-c", "from tokcodec.cli import main; main()"]
    done = subprocess.run([*command, "encode", "c.mkv", "-o", "c.tok", "-m", "tiny", "--passes", "0", "-q"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "not tokcodec" not in done.stdout, done.stdout + done.stderr
    assert (tmp_path / "c.tok").stat().st_size > 0


def test_an_encode_takes_away_what_a_killed_one_left(tmp_path):
    """A single encode killed outright (kill -9, the kernel at a memory limit) left its hidden
    .NAME.part-PID.tok, and no later encode to that name removed it (batch did)."""
    write_clip(tmp_path / "c.mkv", smooth_clip(5, 32, 48))
    killed = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    killed.kill()
    killed.wait()
    dead = tmp_path / f".c.part-{killed.pid}.tok"
    dead.write_bytes(b"half an encode")
    alive = tmp_path / f".c.part-{os.getpid()}-2.tok"  # (a live writer's: kept)
    alive.write_bytes(b"being written")
    other = tmp_path / f".d.part-{killed.pid}.tok"  # (another output's: kept)
    other.write_bytes(b"not ours")
    recent = tmp_path / f".c.part-{killed.pid}-2.tok"  # (written a minute ago: perhaps another host's writer)
    recent.write_bytes(b"maybe alive elsewhere")
    hours_ago = time.time() - 2 * 3600
    for part in (dead, alive, other):
        os.utime(part, (hours_ago, hours_ago))
    os.utime(recent, (time.time() - 60, time.time() - 60))
    done = subprocess.run([sys.executable, "-m", "tokcodec", "encode", "c.mkv", "-o", "c.tok", "-m", "tiny",
                           "--passes", "0", "-q"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert not dead.exists() and alive.exists() and other.exists() and recent.exists()
