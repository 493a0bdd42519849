"""Small wording helpers shared by the CLI's and batch's messages."""
from __future__ import annotations


def plural(count: int, noun: str) -> str:
    """'1 frame', '2 frames'."""
    return f"{count} {noun}" + ("" if count == 1 else "s")
