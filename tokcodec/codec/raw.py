"""Coder 1 (raw bits) and the token-grid check every coder shares."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tokcodec.errors import FormatError


def check_tokens(tokens: np.ndarray, bits: int) -> np.ndarray:
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

    def encode(self, tokens: np.ndarray, bits: int, previous: np.ndarray | None = None) -> bytes:
        # ``previous`` (the GOP before's last latent frame) is for coder 4: this coder ignores it
        arr = check_tokens(tokens, bits)
        out = []
        for frame in arr:
            flat = frame.reshape(-1)
            bitplanes = ((flat[:, None] >> np.arange(bits)) & 1).astype(np.uint8)
            out.append(np.packbits(bitplanes.reshape(-1), bitorder="little").tobytes())
        return b"".join(out)

    def _frame_nbytes(self, shape: tuple[int, int, int], bits: int) -> int:
        return (shape[1] * shape[2] * bits + 7) // 8

    def links(self, payload: bytes) -> bool:
        """Whether ``payload`` needs the previous GOP's tokens to decode: never, here."""
        return False

    def decode(self, payload: bytes, shape: tuple[int, int, int], bits: int,
               previous: np.ndarray | None = None) -> np.ndarray:
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

    @classmethod
    def from_context(cls, context: object = None) -> "RawBitsCoder":
        return cls()
