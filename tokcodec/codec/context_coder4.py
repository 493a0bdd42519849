"""Coder 4: coder 3 with linked GOPs: a GOP's first latent frame predicted from the GOP before.

Within a GOP, coder 3 predicts each latent frame from the one before it (motion-compensated), so
later latent frames cost 3.5-6 bits per token on the real training videos; but the first latent
frame of each GOP is coded on its own, from its spatial neighbours alone: 10-12 bits per token,
about a third of all token bits at the default GOP of 17 frames. Consecutive GOPs show the same
scene, so their tokens agree: a GOP's first latent frame agrees in 75-86% of its bits with the
previous GOP's last one. Coder 4 codes the first latent frame exactly as coder 3 codes a later
one, with the previous GOP's last latent frame as its predecessor (its own motion vector), where
that makes the payload smaller; everything else is coder 3's, with the same prior. After that
frame the adaptive counts are reset (all zero, the probabilities back to the prior's): frames
1.. then code as in coder 3 from fresh counts. (Kept, the counts learnt on the cross-GOP frame,
which agrees less with its predecessor than frames within a GOP do, made later frames 0.1-0.3
bits/token dearer.)

The price is a dependency: a linked GOP's tokens decode only after those of the GOP before it
(the encoder's choice, per GOP; ``payload_links`` reads it from the first byte). The encoder
(codec/pipeline.py) makes every ``key_interval``-th GOP a key GOP that never links, so decoding
can start there, a damaged chunk loses frames only up to the next key GOP (``--salvage``), and
separate runs of GOPs still decode in parallel.

Payload: coder 3's (modes 0 raw, 1 context, 2 coder 2: an unlinked GOP, the same bytes coder 3
writes), or mode 3, linked::

    u8  mode             3
    u32 crc32            of the tokens as little-endian u32
    4 bytes              prior key, as coder 3
    t x u8               motion of latent frame 0 against the previous GOP's last latent frame,
                         then of each frame f >= 1 against frame f-1, as coder 3
    t x varint           segment f: (byte length << 1) | raw flag
    segments             as coder 3; frame 0 coded as a later frame whose predecessor is the
                         previous GOP's last latent frame (same grid size and bit width), then
                         the counts reset before frame 1
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tokcodec.codec import lattice
from tokcodec.codec.context_coder3 import (KEY_BYTES, ContextCoder3, coded_segments, decode_segments,
                                           prior_for_model)
from tokcodec.codec.lattice import HEADER_BYTES
from tokcodec.codec.raw import check_tokens
from tokcodec.codec.segments import append_segments, pack_motion, read_motion, read_segments
from tokcodec.errors import FormatError

MODE_LINKED = 3


def payload_links(payload: bytes) -> bool:
    """Does this coder-4 payload need the previous GOP's last latent frame to decode?"""
    return payload[:1] == bytes([MODE_LINKED])


def _check_previous(previous: np.ndarray, shape: tuple[int, int, int], bits: int) -> np.ndarray:
    if previous.shape != shape[1:]:
        raise FormatError(f"linked GOP: the previous GOP's latent frames are {previous.shape[0]}x"
                          f"{previous.shape[1]} tokens, this GOP's {shape[1]}x{shape[2]}")
    return check_tokens(previous[None], bits)[0]


@dataclass(frozen=True)
class ContextCoder4(ContextCoder3):
    """Coder 4: coder 3 plus linked GOPs (see the module docstring)."""

    coder_id: int = 4
    name: str = "context-lfq-prior-linked"

    def links(self, payload: bytes) -> bool:
        return payload_links(payload)

    def encode(self, tokens: np.ndarray, bits: int, previous: np.ndarray | None = None) -> bytes:
        """Coder 3's payload, or, given ``previous`` (the last latent frame (h, w) of the GOP
        before) and where it is smaller, the linked one."""
        own = super().encode(tokens, bits)
        if previous is None:
            return own
        arr = check_tokens(tokens, bits)
        prior = prior_for_model(self.model_sha256)
        if prior is None or prior.bits != bits or arr.size == 0 or previous.shape != arr.shape[1:]:
            return own
        previous = check_tokens(previous[None], bits)[0]
        chain = np.concatenate([previous[None], arr])
        motions = [lattice.search_motion(chain[f - 1], chain[f], self.search) for f in range(1, chain.shape[0])]
        segments = coded_segments(arr, bits, prior, motions, previous)
        out = bytearray([MODE_LINKED]) + lattice.token_crc(arr).to_bytes(4, "little") + prior.key
        out += pack_motion([(0, 0)] + motions)      # pack_motion skips the first entry
        append_segments(out, segments)
        return bytes(out) if len(out) < len(own) else own

    def decode(self, payload: bytes, shape: tuple[int, int, int], bits: int,
               previous: np.ndarray | None = None) -> np.ndarray:
        """Tokens (t, h, w); a linked payload needs ``previous``, the last latent frame of the
        GOP before (a FormatError names what is missing)."""
        payload = bytes(payload)
        if not payload_links(payload):
            return super().decode(payload, shape, bits)
        if previous is None:
            raise FormatError("linked GOP: its first latent frame is coded against the previous GOP's "
                              "last one, whose tokens are missing")
        t, h, w = lattice.check_shape(shape, len(payload), bits)
        previous = _check_previous(previous, (t, h, w), bits)
        if len(payload) < HEADER_BYTES + KEY_BYTES:
            raise FormatError("linked payload ends inside its header")
        crc = int.from_bytes(payload[1:HEADER_BYTES], "little")
        key = payload[HEADER_BYTES:HEADER_BYTES + KEY_BYTES]
        moved, pos = read_motion(payload, HEADER_BYTES + KEY_BYTES, t + 1)
        motions = moved[1:]
        spans, pos = read_segments(payload, pos, (t, h, w), bits, word_aligned=False)
        out = decode_segments(payload, key, spans, pos, (t, h, w), bits, motions, previous, "coder-4")
        if lattice.token_crc(out) != crc:
            raise FormatError("context-coded payload is corrupt (token checksum mismatch)")
        return out

    def frame_bits(self, payload: bytes, shape: tuple[int, int, int], bits: int) -> list[int]:
        """Bits of each latent frame's segment; the payload header is counted in frame 0."""
        payload = bytes(payload)
        if not payload_links(payload):
            return super().frame_bits(payload, shape, bits)
        t, h, w = lattice.check_shape(shape, len(payload), bits)
        _, pos = read_motion(payload, HEADER_BYTES + KEY_BYTES, t + 1)
        spans, start = read_segments(payload, pos, (t, h, w), bits, word_aligned=False)
        per = [8 * n for _, n in spans]
        if per:
            per[0] += 8 * start
        return per
