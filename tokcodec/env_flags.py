"""Switches read from the environment (TOKCODEC_DEBUG, TOKCODEC_NO_NUMBA, TOKCODEC_NO_REEXEC): on
for any value but an empty one, 0, false, no or off, as scripts write them (`TOKCODEC_NO_REEXEC=0`
turned the re-exec off). Imports nothing heavy."""
from __future__ import annotations

import os

OFF = frozenset({"", "0", "false", "no", "off"})


def env_flag(name: str) -> bool:
    """Whether the switch ``name`` is on."""
    return os.environ.get(name, "").strip().lower() not in OFF
