"""Token entropy coders and their registry.

Every coder maps a GOP's token grid ``(t, h, w)`` of ``bits``-bit indices to bytes and back.
The container stores the coder id in its header, so new coders can be added without breaking
old files: decoders look the id up here.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from tokcodec.errors import FormatError


class TokenCoder(Protocol):
    coder_id: int
    name: str

    def encode(self, tokens: np.ndarray, bits: int) -> bytes:
        """Code an int array of shape (t, h, w) with values in [0, 2**bits)."""

    def decode(self, payload: bytes, shape: tuple[int, int, int], bits: int) -> np.ndarray:
        """Inverse of encode; raise FormatError on malformed payloads."""

    def frame_bits(self, payload: bytes, shape: tuple[int, int, int], bits: int) -> list[int]:
        """Bits spent on each latent frame (for `tokcodec info`), without decoding if possible."""


def _check_tokens(tokens: np.ndarray, bits: int) -> np.ndarray:
    if tokens.ndim != 3:
        raise ValueError(f"tokens must have shape (t, h, w), got {tokens.shape}")
    arr = np.asarray(tokens, dtype=np.int64)
    if arr.size and (arr.min() < 0 or arr.max() >= (1 << bits)):
        raise ValueError(f"token values must lie in [0, 2**{bits})")
    return arr


@dataclass(frozen=True)
class RawBitsCoder:
    """Coder 1: every token's ``bits`` bits packed LSB-first, frame by frame (byte-aligned per frame)."""

    coder_id: int = 1
    name: str = "raw-bits"

    def encode(self, tokens: np.ndarray, bits: int) -> bytes:
        arr = _check_tokens(tokens, bits)
        out = []
        for frame in arr:
            flat = frame.reshape(-1)
            bitplanes = ((flat[:, None] >> np.arange(bits)) & 1).astype(np.uint8)
            out.append(np.packbits(bitplanes.reshape(-1), bitorder="little").tobytes())
        return b"".join(out)

    def _frame_nbytes(self, shape: tuple[int, int, int], bits: int) -> int:
        return (shape[1] * shape[2] * bits + 7) // 8

    def decode(self, payload: bytes, shape: tuple[int, int, int], bits: int) -> np.ndarray:
        t, h, w = shape
        per = self._frame_nbytes(shape, bits)
        if len(payload) != per * t:
            raise FormatError(f"raw-bits payload has {len(payload)} bytes, expected {per * t}")
        raw = np.frombuffer(payload, dtype=np.uint8).reshape(t, per)
        out = np.empty((t, h * w), dtype=np.int32)
        weights = (1 << np.arange(bits)).astype(np.int64)
        for i in range(t):
            flat_bits = np.unpackbits(raw[i], bitorder="little")[: h * w * bits]
            out[i] = (flat_bits.reshape(h * w, bits).astype(np.int64) @ weights).astype(np.int32)
        return out.reshape(t, h, w)

    def frame_bits(self, payload: bytes, shape: tuple[int, int, int], bits: int) -> list[int]:
        return [self._frame_nbytes(shape, bits) * 8] * shape[0]


_REGISTRY: dict[int, Callable[[], TokenCoder]] = {1: RawBitsCoder}
DEFAULT_CODER_ID = 3  # the learned-prior coder (tokcodec/codec/context_coder3.py); 1 and 2 stay decodable


def register_coder(coder_id: int, factory: Callable[[], TokenCoder]) -> None:
    _REGISTRY[coder_id] = factory


def get_coder(coder_id: int) -> TokenCoder:
    """Return the coder for an id read from a file; unknown ids are a clean FormatError."""
    _load_optional_coders()
    try:
        return _REGISTRY[coder_id]()
    except KeyError:
        raise FormatError(
            f"unknown entropy coder id {coder_id} (this tokcodec knows {sorted(_REGISTRY)}); "
            "a newer tokcodec may be needed"
        ) from None


def coder_ids() -> list[int]:
    _load_optional_coders()
    return sorted(_REGISTRY)


def _load_optional_coders() -> None:
    """Import coder modules that register themselves (kept separate so each has one job)."""
    try:
        from tokcodec.codec import context_coder  # noqa: F401
    except ImportError:
        pass
    try:
        from tokcodec.codec import context_coder3  # noqa: F401
    except ImportError:
        pass
