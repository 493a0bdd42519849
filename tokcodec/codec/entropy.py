"""Token entropy coders: their interface and their registry.

Every coder maps a GOP's token grid ``(t, h, w)`` of ``bits``-bit indices to bytes and back. The
container stores the coder id in its header, so new coders can be added without breaking old
files: decoders look the id up here. The registry names each coder's module and class; a module
is imported the first time its id is asked for (so reading a file's header stays cheap), and a
coder is built from a :class:`CoderContext` (what it may need of the model: coder 3 picks the
prior fitted to the model's tokens by the weights' SHA-256). Coders do not register themselves,
and no coder module imports this one.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from tokcodec.codec.raw import RawBitsCoder, check_tokens  # noqa: F401  (coder 1, re-exported)
from tokcodec.errors import FormatError, SetupError


class TokenCoder(Protocol):
    coder_id: int
    name: str

    def encode(self, tokens: np.ndarray, bits: int, previous: np.ndarray | None = None) -> bytes:
        """Code an int array of shape (t, h, w) with values in [0, 2**bits). ``previous``: the
        last latent frame (h, w) of the GOP before, which a coder may code the first latent
        frame against (coder 4's linked GOPs; the others ignore it); None for a key GOP."""

    def links(self, payload: bytes) -> bool:
        """Whether decoding ``payload`` needs the previous GOP's last latent frame."""

    def decode(self, payload: bytes, shape: tuple[int, int, int], bits: int,
               previous: np.ndarray | None = None) -> np.ndarray:
        """Inverse of encode (``previous`` as given there, needed where ``links``); raise
        FormatError on malformed payloads."""

    def frame_bits(self, payload: bytes, shape: tuple[int, int, int], bits: int) -> list[int]:
        """Bits spent on each latent frame (for `tokcodec info`), without decoding if possible."""


@dataclass(frozen=True)
class CoderContext:
    """What a coder may know of the tokenizer whose tokens it codes. Decoders need none of it:
    a payload names whatever it was coded with (coder 3: its prior's key)."""

    model_sha256: str | None = None  # the weights' SHA-256 (coder 3: which prior to encode with)


# coder id -> (module, class); each class has ``from_context(CoderContext) -> coder``
CODERS: dict[int, tuple[str, str]] = {
    1: ("tokcodec.codec.raw", "RawBitsCoder"),
    2: ("tokcodec.codec.context_coder", "ContextCoder"),
    3: ("tokcodec.codec.context_coder3", "ContextCoder3"),
    4: ("tokcodec.codec.context_coder4", "ContextCoder4"),
}
DEFAULT_CODER_ID = 4  # the learned-prior coder with linked GOPs; 1, 2 and 3 stay decodable
UNLINKED_CODER_ID = 3  # the default where no GOP can link (key GOPs only, no prior): readable before coder 4


def get_coder(coder_id: int, context: CoderContext | None = None) -> TokenCoder:
    """The coder for an id (read from a file, or chosen to write one). An unknown id is a clean
    FormatError; a known coder whose module fails to import is a SetupError saying so."""
    try:
        module, name = CODERS[coder_id]
    except (KeyError, TypeError):
        raise FormatError(
            f"unknown entropy coder id {coder_id} (this tokcodec knows {sorted(CODERS)}); "
            "a newer tokcodec may be needed"
        ) from None
    try:
        cls = getattr(importlib.import_module(module), name)
    except ImportError as exc:
        raise SetupError(f"entropy coder {coder_id} ({module}) cannot be loaded: {exc}; "
                         "this installation of tokcodec is broken or lacks a dependency") from exc
    return cls.from_context(context or CoderContext())


def coder_ids() -> list[int]:
    return sorted(CODERS)
