"""The segment format coders 2 and 3 share: after a payload's header, one varint per latent frame
((byte length << 1) | raw flag), then the frames' segments back to back; plus the motion vectors
that precede them. Readers check every length against the grid and the payload before use."""
from __future__ import annotations

import numpy as np

from tokcodec.codec.lattice import HEADER_BYTES, MAX_MOTION, MODE_CONTEXT, MODE_RAW, raw_frame_bytes
from tokcodec.errors import FormatError


def put_varint(out: bytearray, v: int) -> None:
    while True:
        byte, v = v & 0x7F, v >> 7
        out.append(byte | (0x80 if v else 0))
        if not v:
            return


def get_varint(buf: bytes, pos: int, limit: int, what: str) -> tuple[int, int]:
    v, shift = 0, 0
    while True:
        if pos >= len(buf):
            raise FormatError(f"context-coded payload ends inside the {what}")
        byte = buf[pos]
        pos += 1
        v |= (byte & 0x7F) << shift
        if v > limit:
            raise FormatError(f"{what} is {v}, more than the limit {limit}")
        if not byte & 0x80:
            return v, pos
        shift += 7


def read_mode(payload: bytes) -> tuple[int, int]:
    """The payload header: (mode, CRC-32 of the tokens); MODE_RAW or MODE_CONTEXT only."""
    if len(payload) < HEADER_BYTES:
        raise FormatError(f"context-coded payload has {len(payload)} bytes, needs at least {HEADER_BYTES}")
    if payload[0] not in (MODE_RAW, MODE_CONTEXT):
        raise FormatError(f"context-coded payload has unknown mode {payload[0]}")
    return payload[0], int.from_bytes(payload[1:HEADER_BYTES], "little")


def pack_motion(motions: list[tuple[int, int]]) -> bytearray:
    """One byte per latent frame after the first: (dy + 8) << 4 | (dx + 8)."""
    return bytearray(((dy + 8) << 4 | (dx + 8)) for dy, dx in motions[1:])


def append_segments(out: bytearray, segments: list[tuple[bool, bytes]]) -> None:
    """The segment table and then the segments themselves: (raw?, bytes) per latent frame."""
    for raw, data in segments:
        put_varint(out, (len(data) << 1) | int(raw))
    for _, data in segments:
        out += data


def read_motion(payload: bytes, pos: int, t: int) -> tuple[list[tuple[int, int]], int]:
    """The per-frame motion vectors at ``pos`` ((0, 0) for frame 0) and the position after them."""
    need = max(t - 1, 0)
    if len(payload) < pos + need:
        raise FormatError("context-coded payload ends inside the motion vectors")
    packed = np.frombuffer(payload, np.uint8, count=need, offset=pos).astype(int)
    mv = np.stack([(packed >> 4) - 8, (packed & 15) - 8], 1)
    if mv.size and np.abs(mv).max() > MAX_MOTION:
        raise FormatError(f"context-coded payload has a motion vector beyond {MAX_MOTION} cells")
    return [(0, 0)] + [(int(a), int(b)) for a, b in mv], pos + need


def read_segments(payload: bytes, pos: int, shape: tuple[int, int, int], bits: int,
                   word_aligned: bool) -> tuple[list[tuple[bool, int]], int]:
    """The per-latent-frame segment table at ``pos``: (raw, byte length) each, checked against the
    raw frame size and against the payload's length; with ``word_aligned``, coded segments must be whole
    u32 words (coder 2's range coder writes words, coder 3's writes bytes)."""
    t, h, w = shape
    raw_len = raw_frame_bytes(h, w, bits)
    limit = 2 * (4 * (h * w * bits + 64)) + 1     # (bytes << 1) | flag, far above any real frame
    segments = []
    for f in range(t):
        v, pos = get_varint(payload, pos, limit, f"segment length of latent frame {f}")
        raw, n = bool(v & 1), v >> 1
        if raw and n != raw_len:
            raise FormatError(f"raw segment of latent frame {f} has {n} bytes, expected {raw_len}")
        if word_aligned and not raw and n % 4:
            raise FormatError(f"range-coded segment of latent frame {f} has {n} bytes, not whole words")
        segments.append((raw, n))
    if pos + sum(n for _, n in segments) != len(payload):
        raise FormatError(
            f"context-coded payload has {len(payload) - pos} bytes of segments, "
            f"its header announces {sum(n for _, n in segments)}"
        )
    return segments, pos
