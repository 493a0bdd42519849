"""The `tokcodec` command line: a thin typer layer over tokcodec's library API.

- ``app.py``: the commands (encode, decode, info, verify, tokens, models, train, export-weights)
  and the entry point, which registers ``batch.py`` (``tokcodec batch``) and ``bench.py``
  (``tokcodec bench``);
- ``options.py``: options several commands share; ``policy.py``: the one error and exit-code
  policy; ``progress.py``: progress bars and stats lines.
"""
from tokcodec.cli.app import CODING_COMMANDS, HEAVY_COMMANDS, app, main

__all__ = ["CODING_COMMANDS", "HEAVY_COMMANDS", "app", "main"]
