"""The environment the CLI runs in: settings that the C libraries under torch read once, when the
process starts or torch loads, so the CLI re-executes itself once with them (cli/app.py) and its
batch workers inherit them. Imports nothing heavy."""
from __future__ import annotations

import os
from collections.abc import Mapping

from tokcodec.allocator import ALLOCATOR_POLICY

#: how long torch's OpenMP threads (libgomp) spin for more work before they sleep: 1000 turns
#: instead of libgomp's 300 000. On a machine busy with other work (a second encode, a build)
#: spinning threads hold the cores that the rest of their team needs, and each parallel step
#: waits for a thread the kernel has set aside: two 640x360 encodes side by side on 2 cores took
#: 51-59 s with libgomp's spin, 19 s with this, and one alone ran as fast (docs/results.md,
#: "Sound as it was recorded ..."). Set only where the user named neither this nor OMP_WAIT_POLICY.
THREAD_WAIT_POLICY = {"GOMP_SPINCOUNT": "1000"}
USER_WAIT_SETTINGS = ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")


def startup_environment(env: dict[str, str] | None = None) -> dict[str, str]:
    """``env`` (default: this process's) with the allocator policy and, unless it sets how
    OpenMP threads wait, the thread wait policy, for a re-exec or a child process; a variable
    ``env`` sets already keeps its value."""
    base = _without_empty_waits(os.environ if env is None else env)
    waits = {} if any(name in base for name in USER_WAIT_SETTINGS) else THREAD_WAIT_POLICY
    return {**{k: str(v) for k, v in ALLOCATOR_POLICY.items()}, **waits, **base}  # (the user's own win)


def has_startup_environment(env: dict[str, str] | None = None) -> bool:
    """Whether ``env`` (default: this process's) already has what startup_environment would add."""
    names = set(_without_empty_waits(os.environ if env is None else env))
    return set(ALLOCATOR_POLICY) <= names and any(name in names for name in USER_WAIT_SETTINGS)


def _without_empty_waits(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` less a wait setting left empty (a job script's `export OMP_WAIT_POLICY=`): libgomp
    calls it invalid and spins its long default, so it counts as unset."""
    return {k: v for k, v in env.items() if k not in USER_WAIT_SETTINGS or v.strip()}
