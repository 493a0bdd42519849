"""What coders 2 and 3 share of their bitstream: the payload header's constants, the lattice
(the order in which a latent frame's cells are coded, coarse to fine, and each cell's already
coded neighbours), motion search, bit planes, and the checks every decoder makes before it
allocates. A change here changes both coders' bytes: tests/test_coder_conformance.py pins them.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from tokcodec.errors import FormatError

MODE_RAW = 0
MODE_CONTEXT = 1
HEADER_BYTES = 5            # mode + crc32
PROB_BITS = 12
PROB_ONE = 1 << PROB_BITS
MAX_BITS = 20
MAX_MOTION = 7              # |motion component| in cells a payload may carry
MAX_TOKENS = 1 << 22        # per GOP (4.2 M: 8K video), checked before any allocation


@dataclass(frozen=True)
class Pass:
    start: int               # cells [start, stop) of the pass order
    stop: int
    nbr: np.ndarray          # (4, n) pass-order positions of coded neighbours; hw = "none"
    known: np.ndarray        # (n,) int32 number of coded neighbours
    base: np.ndarray         # (n,) int32 k(k+1)/2, the known-count part of the spatial digit
    has_nbrs: bool
    known_u8: np.ndarray     # (n,) uint8 copy of known


@dataclass(frozen=True)
class Geometry:
    """Cells of an h x w grid in pass order: state arrays are kept in this order so a pass is a
    contiguous slice; row hw of the neighbour-read arrays is a sentinel that reads as zero."""

    h: int
    w: int
    order: np.ndarray        # pass-order position -> row-major cell
    passes: tuple[Pass, ...]


@lru_cache(maxsize=64)
def geometry(h: int, w: int, levels: int) -> Geometry:
    yy, xx = np.mgrid[0:h, 0:w]
    done = np.zeros((h, w), bool)
    stride = 1 << levels
    steps: list[tuple[np.ndarray, list[tuple[int, int]]]] = []
    first = (yy % stride == 0) & (xx % stride == 0)
    steps.append((first, []))
    done |= first
    while stride > 1:
        half = stride // 2
        centre = (yy % stride == half) & (xx % stride == half)
        steps.append((centre, [(-half, -half), (-half, half), (half, -half), (half, half)]))
        done |= centre
        edge = ~done & (yy % half == 0) & (xx % half == 0)
        steps.append((edge, [(-half, 0), (half, 0), (0, -half), (0, half)]))
        done |= edge
        stride = half
    order = np.concatenate([np.flatnonzero(m) for m, _ in steps])
    position = np.empty(h * w + 1, np.int64)
    position[order] = np.arange(h * w)
    position[h * w] = h * w
    passes, start = [], 0
    for mask, offsets in steps:
        cells = np.flatnonzero(mask)
        if cells.size == 0:
            continue
        cy, cx = cells // w, cells % w
        nbr = np.full((4, cells.size), h * w, np.int64)
        for j, (dy, dx) in enumerate(offsets):
            ny, nx = cy + dy, cx + dx
            inside = (ny >= 0) & (ny < h) & (nx >= 0) & (nx < w)
            nbr[j] = position[np.where(inside, ny * w + nx, h * w)]
        known = (nbr < h * w).sum(0).astype(np.int32)
        base = (known * (known + 1) // 2).astype(np.int32)
        passes.append(Pass(start, start + cells.size, nbr, known, base, bool(known.any()),
                            known.astype(np.uint8)))
        start += cells.size
    return Geometry(h, w, order, tuple(passes))


def popcount(x: np.ndarray) -> np.ndarray:
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(x)
    table = np.array([i.bit_count() for i in range(256)], np.uint8)
    b = x.view(np.uint8).reshape(x.shape + (x.itemsize,))
    return table[b].sum(-1, dtype=np.uint8)


def search_motion(prev: np.ndarray, cur: np.ndarray, search: int) -> tuple[int, int]:
    """Encoder only: the shift (dy, dx) of prev (h, w tokens) with the fewest differing bits,
    counted over interior cells that every candidate shift keeps inside the frame (every other
    row and column on larger grids). Any choice decodes, since it is stored."""
    h, w = cur.shape
    r = min(search, MAX_MOTION, (h - 1) // 2, (w - 1) // 2)
    if r <= 0:
        return 0, 0
    step = 2 if (h - 2 * r) * (w - 2 * r) >= 512 else 1
    target = cur[r:h - r:step, r:w - r:step].astype(np.uint32)
    win = np.lib.stride_tricks.sliding_window_view(prev.astype(np.uint32), (h - 2 * r, w - 2 * r))
    diff = popcount(win[:, :, ::step, ::step] ^ target).sum((2, 3), dtype=np.int64)
    d = np.arange(r, -r - 1, -1)                     # window offset i <-> shift r - i
    cost = diff * (4 * r + 1) + np.abs(d)[:, None] + np.abs(d)[None, :]   # ties -> small shifts
    iy, ix = np.unravel_index(int(np.argmin(cost)), cost.shape)
    return int(d[iy]), int(d[ix])


def unpack_bits(tokens: np.ndarray, bits: int) -> np.ndarray:
    """int tokens (...,) -> uint8 bit planes (..., bits), LSB first."""
    return ((tokens[..., None] >> np.arange(bits, dtype=tokens.dtype)) & 1).astype(np.uint8)


def pack_bits(planes: np.ndarray) -> np.ndarray:
    """Bit planes (..., bits), LSB first (0/1 or bool) -> int64 tokens (...,): unpack_bits' inverse."""
    return (planes.astype(np.int64) << np.arange(planes.shape[-1], dtype=np.int64)).sum(-1)


def raw_frame_bytes(h: int, w: int, bits: int) -> int:
    return (h * w * bits + 7) // 8


def token_crc(tokens: np.ndarray) -> int:
    """CRC-32 of a token grid (as little-endian u32), stored in every payload's header."""
    return zlib.crc32(np.ascontiguousarray(tokens, dtype="<u4").tobytes())


def check_bits(bits: int) -> None:
    if not 1 <= bits <= MAX_BITS:
        raise ValueError(f"bits must be in 1..{MAX_BITS}, got {bits}")


def check_shape(shape: tuple[int, int, int], payload_len: int, bits: int) -> tuple[int, int, int]:
    """Reject grids no payload of this length could hold, before allocating anything."""
    if len(shape) != 3 or any(int(s) < 0 for s in shape):
        raise FormatError(f"token grid shape must be (t, h, w) with no negative size, got {shape}")
    t, h, w = (int(s) for s in shape)
    n = t * h * w
    # a coded bit costs at least -log2(4094/4096) > 1/1500 bit, so a payload bounds its tokens
    if n > MAX_TOKENS or n * bits > (payload_len * 8 + 64 * (t + 1)) * 2048:
        raise FormatError(f"a {payload_len}-byte payload cannot hold a {t}x{h}x{w} token grid")
    return t, h, w
