"""Encode defaults shared by the library and the CLI, in a module that imports nothing heavy:
the CLI declares its options (and ``tokcodec --help`` runs) without loading torch."""
from __future__ import annotations

DEFAULT_PASSES = 2  # closed-loop encoder passes per GOP (tokcodec/model/refine.py)
MAX_PASSES = 16
