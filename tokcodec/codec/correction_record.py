"""The correction record's format, without torch: its constants, limits, pack and unpack.

What a record holds and how the decoder applies it is codec/correction.py's docstring; the
bytes are specified in docs/FORMAT.md. Readers that only check or describe files (``tokcodec
info``, the container's size limits) import this module alone, so they start without loading
torch (about 1.5 s of a 2-s ``tokcodec info`` before).
"""
from __future__ import annotations

import math
import struct
from dataclasses import dataclass

import numpy as np

from tokcodec.defaults import DEFAULT_SHARPEN, MAX_SHARPEN
from tokcodec.errors import ArgumentError, FormatError
from tokcodec.zstd_frames import ZSTD_MAGIC, decompress_bounded

KIND_GRID = 1
KIND_GRID_DETAIL = 2         # offsets and detail gains (format 2.1)
KIND_GRID_DETAIL_CODED = 3   # kind 2's content, its grids range coded (codec/record_coder.py; format 2.2)
FLAG_PREDICTED = 1           # kind 3: the grids' contexts hold the previous GOP's record
GAIN_UNIT = 1 / 64           # detail gain per unit of a record's gain step
TEMPORAL_UNIT = 1 / 64       # temporal blend per unit of a kind 2 record's temporal value
MIN_POOL = 2
MAX_GOP_FRAMES = 4097        # the container's MAX_GOP: most frames a kind 2 record can describe
MIN_CELL = 8
MAX_CELL = 255
LONG_GOP_CELL = 8            # default cell of GOPs of LONG_GOP_FRAMES or more (16 before December 2026)
SHORT_GOP_CELL = 24          # and of shorter ones
LONG_GOP_FRAMES = 9
DC_UNIT = 0.25               # code values per unit of a record's dc
MAX_DC = 1020                # |dc| limit: 255 code values
_RECORD = struct.Struct("<BBBBHH3h")
RECORD_HEADER_SIZE = _RECORD.size
_DETAIL = struct.Struct("<BBH")  # pool, gain step, frames
_EARLY_DETAIL_SIZE = 2  # pool, gain step: kind 2 before its frame count (_unpack_early_detail)


@dataclass(frozen=True)
class CorrectionConfig:
    """``enabled``: send the correction (files then use .tok format 2.x). ``cell``: pixels per
    grid step, 0 = by GOP length (8 for GOPs of 9 frames or more, one cell per token; 24 for
    shorter ones, where the grid's bits are shared by fewer frames: on single training photos 24
    gave +0.37 dB over 32 for 5% more bits, 16 another +0.67 for 15% more). On the training
    windows (2 passes, --rdo 0.1) cells of 16 / 12 / 10 / 8 gave 26.88 / 27.15 / 27.33 / 27.57
    dB at 0.0432 / 0.0467 / 0.0501 / 0.0563 bpp: finer cells buy 0.019-0.033 dB per 1% of rate,
    more than --rdo costs, so the default pairs the finest cells with a larger --rdo
    (docs/usage.md). ``step``: quantiser step of the grid values around
    their exact mean, in code values. ``detail``: also send detail gains, a temporal blend and
    a dc per frame (record kind 2, format 2.1); the gains on
    ``pool`` x ``pool``-pixel low-pass blocks, quantised in steps of ``gain_step`` / 64, fitted
    with a ridge of ``ridge`` times the mean curvature (gains where a frame holds no detail go
    to 0 instead of chasing noise). A pool of 8 with --rdo 0.3 was tried against 16 with 0.25 on
    the training windows (cells of 8): 27.46 dB at 0.0477 bpp against 27.42 at 0.0481, but the
    flat clips' tokens alone then drifted up to 9.2 code values instead of 5.3 (docs/usage.md).

    ``sharpen`` multiplies the quantised gains (in steps, rounded to the nearest step, halves to
    even: at 1.5 a one-step gain becomes two steps, two steps three, three four): 1 sends the
    least-squares fit, which the ridge shrinks and the coarse gain step rounds towards 0; gains
    that quantise to 0 stay 0, so nothing is sharpened where the fit found no detail to restore.
    None (the default since December 2026) is 1.5 for GOPs of LONG_GOP_FRAMES or more, which
    on the training windows sent crisper pictures and a higher PSNR too for ~1.3% more bits
    (docs/results.md; scaling before quantising instead cost twice the extra bits for less),
    and 1 for shorter GOPs and images, whose coarser cells lost 0.08 dB with it on training
    photos. Larger values trade PSNR for sharpness. It changes what the encoder sends, not the
    format."""
    enabled: bool = True
    cell: int = 0
    step: int = 4
    detail: bool = True
    pool: int = 16
    gain_step: int = 24
    ridge: float = 0.03
    sharpen: float | None = None

    def __post_init__(self) -> None:
        if self.cell and not MIN_CELL <= self.cell <= MAX_CELL:
            raise ArgumentError(f"correction cell must be 0 (auto) or {MIN_CELL}..{MAX_CELL} pixels, got {self.cell}")
        if not 1 <= self.step <= 64:
            raise ArgumentError(f"correction step must be 1..64 code values, got {self.step}")
        if not MIN_POOL <= self.pool <= 255 or not 1 <= self.gain_step <= 255 or not self.ridge >= 0:
            raise ArgumentError(f"detail pool must be {MIN_POOL}..255 pixels, gain step 1..255 (64ths), ridge >= 0; "
                             f"got {self.pool}, {self.gain_step}, {self.ridge}")
        if self.sharpen is not None and not 0 <= self.sharpen <= MAX_SHARPEN:
            raise ArgumentError(f"sharpen must be in [0, {MAX_SHARPEN:g}], got {self.sharpen}")
        if self.sharpen is not None and not (self.enabled and self.detail):
            raise ArgumentError("sharpen scales the correction's detail gains: it cannot be set without them "
                             "(drop --no-detail / --no-correction, or --sharpen)")

    def cell_for(self, frames: int) -> int:
        return self.cell or (LONG_GOP_CELL if frames >= LONG_GOP_FRAMES else SHORT_GOP_CELL)

    def sharpen_for(self, frames: int) -> float:
        """The detail gains' multiplier for a GOP of ``frames`` frames (``sharpen`` when set)."""
        if self.sharpen is not None:
            return self.sharpen
        return DEFAULT_SHARPEN if frames >= LONG_GOP_FRAMES else 1.0

    def grid_for(self, width: int, height: int, frames: int) -> tuple[int, int]:
        """(rows, columns) of the grid of a GOP of ``frames`` frames of ``width`` x ``height``."""
        return grid_shape(width, height, self.cell_for(frames))


def max_record_bytes(width: int, height: int) -> int:
    """Largest record a frame of this size can need (finest cell, incompressible grid)."""
    n = 2 * 3 * math.ceil(height / MIN_CELL) * math.ceil(width / MIN_CELL)  # offsets and gains
    n += 3 + 3 * MAX_GOP_FRAMES  # temporal blends and per-frame dc
    return RECORD_HEADER_SIZE + _DETAIL.size + n + n // 128 + 512


def grid_shape(width: int, height: int, cell: int) -> tuple[int, int]:
    """(rows, columns) of a correction grid over ``width`` x ``height`` frames."""
    return math.ceil(height / cell), math.ceil(width / cell)


def _grid_values(data: bytes, size: int) -> np.ndarray:
    """The ``size`` int8 values of a record's zstd frame; FormatError unless it holds exactly those."""
    try:
        raw = decompress_bounded(data, size)
    except ValueError as exc:
        raise FormatError(f"correction grid does not decompress ({exc})") from None
    if len(raw) != size:
        raise FormatError(f"correction grid holds {len(raw)} values, expected {size}")
    return np.frombuffer(raw, np.int8)


@dataclass(frozen=True)
class CorrectionRecord:
    """One GOP's correction record as numbers (its format: pack, unpack); applying it to frames
    is codec/correction.py's Correction."""
    cell: int
    step: int
    dc: tuple[int, int, int]     # per channel, in quarter code values (DC_UNIT)
    steps: np.ndarray            # int8 (3, grid height, grid width), in units of ``step`` around dc
    pool: int = 0                # detail low-pass block size in pixels; 0: no detail gains (kind 1)
    gain_step: int = 0           # detail gain quantiser step, in 64ths (GAIN_UNIT)
    gains: np.ndarray | None = None  # int8 (3, grid height, grid width), in units of ``gain_step``
    temporal: tuple[int, int, int] = (0, 0, 0)  # kind 2: per channel, in 64ths (TEMPORAL_UNIT)
    frame_dc: np.ndarray | None = None  # kind 2: int8 (frames, 3), quarter code values per frame

    def grids(self) -> np.ndarray:
        """int8 (2, 3, gh, gw): the offsets' steps and the detail gains (a record with gains)."""
        return np.stack([self.steps, self.gains]).astype(np.int8)

    def predicts(self, other: CorrectionRecord | None) -> bool:
        """Whether this record (with gains) can be coded against ``other``'s grids (kind 3)."""
        return _can_reference(other, self.steps.shape)

    @property
    def has_detail(self) -> bool:
        return self.gains is not None

    def grid(self) -> np.ndarray:
        """(3, gh, gw) offsets in code values."""
        return DC_UNIT * np.asarray(self.dc, np.float64)[:, None, None] + self.step * self.steps.astype(np.float64)

    @property
    def uses_neighbours(self) -> bool:
        """Whether correcting a frame reads the decoded frames beside it (a temporal blend)."""
        return self.gains is not None and any(self.temporal)

    def pack(self, previous: CorrectionRecord | None = None, coded: bool = True) -> bytes:
        """The record's bytes: kind 1 without detail gains; with them kind 2 (zstd; format 2.1)
        or, with ``coded`` and where it is smaller, kind 3 (the grids range coded, against
        ``previous``'s, the previous GOP's record, where that is smaller still)."""
        import zstandard  # here, not at the top: the trainer (and its GPU kit) fits without it

        gh, gw = self.steps.shape[1:]
        grids = [np.ascontiguousarray(self.steps, np.int8).tobytes()]
        kind, extra = KIND_GRID, b""
        small = b""
        if self.gains is not None:
            frame_dc = self.frame_dc
            if frame_dc is None:
                raise ValueError("a record with detail gains needs its per-frame dc (frames, 3)")
            kind, extra = KIND_GRID_DETAIL, _DETAIL.pack(self.pool, self.gain_step, len(frame_dc))
            small = np.asarray(self.temporal, np.int8).tobytes() + np.ascontiguousarray(frame_dc, np.int8).tobytes()
            grids += [np.ascontiguousarray(self.gains, np.int8).tobytes(), small]
        data = zstandard.ZstdCompressor(level=19).compress(b"".join(grids))
        record = _RECORD.pack(kind, self.cell, self.step, 0, gh, gw, *self.dc) + extra + data
        if self.gains is None or not coded:
            return record
        from tokcodec.codec.record_coder import encode_grids

        values = self.grids()
        body, flags = encode_grids(values), 0
        if self.predicts(previous):
            other = encode_grids(values, previous.grids())
            if len(other) < len(body):
                body, flags = other, FLAG_PREDICTED
        if len(small) + len(body) >= len(data):  # e.g. noise-like grids, which zstd stores nearly raw
            return record
        return _RECORD.pack(KIND_GRID_DETAIL_CODED, self.cell, self.step, flags, gh, gw, *self.dc) \
            + extra + small + body

    @classmethod
    def unpack(cls, record: bytes, width: int, height: int, frames: int | None = None,
               previous: CorrectionRecord | None = None,
               newest_kind: int = KIND_GRID_DETAIL_CODED) -> "CorrectionRecord":
        """The record of a GOP of ``frames`` frames (None: not checked) of ``width`` x ``height``;
        FormatError unless every field fits (the grids are allocated only after their sizes
        have been checked). A kind 3 record predicted from the previous GOP's (``predicted``)
        needs that record as ``previous``. ``newest_kind``: the newest kind the file's version
        allows (``Header.newest_record_kind``)."""
        if len(record) < RECORD_HEADER_SIZE:
            raise FormatError("correction record truncated")
        kind, cell, step, flags, gh, gw, *dc = _RECORD.unpack_from(record)
        if kind not in (KIND_GRID, KIND_GRID_DETAIL, KIND_GRID_DETAIL_CODED):
            raise FormatError(f"unknown correction kind {kind} (made by a newer tokcodec?)")
        if kind > newest_kind:
            raise FormatError(f"correction record of kind {kind} in a file whose version allows kinds up to "
                              f"{newest_kind} (file corrupted)")
        if flags & ~(FLAG_PREDICTED if kind == KIND_GRID_DETAIL_CODED else 0):
            raise FormatError(f"correction record of kind {kind} has unknown flags {flags:#x}")
        if not MIN_CELL <= cell <= MAX_CELL or step < 1 or any(abs(v) > MAX_DC for v in dc):
            raise FormatError(f"invalid correction fields (cell {cell}, step {step}, dc {dc})")
        if (gh, gw) != grid_shape(width, height, cell):
            raise FormatError(f"correction grid {gw}x{gh} does not fit {width}x{height} frames at cell {cell}")
        offset, pool, gain_step, count = RECORD_HEADER_SIZE, 0, 0, 0
        n = 3 * gh * gw
        size = n
        if kind != KIND_GRID:
            if len(record) < offset + _DETAIL.size:
                raise FormatError("correction record truncated")
            early = record[offset + _EARLY_DETAIL_SIZE:offset + _EARLY_DETAIL_SIZE + len(ZSTD_MAGIC)]
            if kind == KIND_GRID_DETAIL and early == ZSTD_MAGIC:
                return cls._unpack_early_detail(record, offset, (cell, step, (dc[0], dc[1], dc[2])), (gh, gw), frames)
            pool, gain_step, count = _DETAIL.unpack_from(record, offset)
            if pool < MIN_POOL or gain_step < 1 or not 1 <= count <= MAX_GOP_FRAMES:
                raise FormatError(f"invalid detail fields (pool {pool}, gain step {gain_step}, frames {count})")
            if frames is not None and count != frames:
                raise FormatError(f"correction record describes {count} frames, its GOP holds {frames}")
            offset, size = offset + _DETAIL.size, 2 * n + 3 + 3 * count
        if kind == KIND_GRID_DETAIL_CODED:
            return cls._unpack_coded(record, offset, (cell, step, (dc[0], dc[1], dc[2]), pool, gain_step),
                                     (gh, gw, count), previous if flags & FLAG_PREDICTED else None,
                                     bool(flags & FLAG_PREDICTED))
        values = _grid_values(record[offset:], size)
        steps = values[:n].reshape(3, gh, gw)
        if kind == KIND_GRID:
            return cls(cell, step, (dc[0], dc[1], dc[2]), steps)
        t = values[2 * n:2 * n + 3]
        return cls(cell, step, (dc[0], dc[1], dc[2]), steps, pool, gain_step, values[n:2 * n].reshape(3, gh, gw),
                   (int(t[0]), int(t[1]), int(t[2])), values[2 * n + 3:].reshape(count, 3))

    @classmethod
    def _unpack_early_detail(cls, record: bytes, offset: int, fields: tuple, shape: tuple[int, int],
                             frames: int | None) -> "CorrectionRecord":
        """Kind 2 as the development builds of 5 December 2026 wrote it, before its frame count,
        temporal blend and frame dc (9407784 added them, the version still 2.1): pool and gain
        step, then the zstd frame of the offsets and the gains. Read as a record without those:
        the current reader called such files damaged."""
        cell, step, dc = fields
        gh, gw = shape
        pool, gain_step = record[offset], record[offset + 1]
        if pool < MIN_POOL or gain_step < 1:
            raise FormatError(f"invalid detail fields (pool {pool}, gain step {gain_step})")
        if frames is None or not 1 <= frames <= MAX_GOP_FRAMES:
            raise FormatError("a correction record of the early 2.1 layout needs its GOP's frame count")
        values = _grid_values(record[offset + _EARLY_DETAIL_SIZE:], 2 * 3 * gh * gw).reshape(2, 3, gh, gw)
        return cls(cell, step, dc, values[0], pool, gain_step, values[1], (0, 0, 0),
                   np.zeros((frames, 3), np.int8))

    @classmethod
    def _unpack_coded(cls, record: bytes, offset: int, fields: tuple, shape: tuple[int, int, int],
                      previous: CorrectionRecord | None, predicted: bool) -> "CorrectionRecord":
        """Kind 3 after its fixed fields: temporal (3 int8), frame dc (frames x 3 int8), then the
        range-coded grids (codec/record_coder.py)."""
        from tokcodec.codec.record_coder import decode_grids

        gh, gw, count = shape
        cell, step, dc, pool, gain_step = fields
        small = 3 + 3 * count
        if len(record) < offset + small:
            raise FormatError("correction record truncated")
        values = np.frombuffer(record, np.int8, count=small, offset=offset)
        reference = None
        if predicted:
            if not _can_reference(previous, (3, gh, gw)):
                raise FormatError("correction record is coded against the previous GOP's record, which "
                                  "did not decode (or does not match)")
            reference = previous.grids()
        try:
            grids = decode_grids(record[offset + small:], (2, 3, gh, gw), reference)
        except ValueError as exc:
            raise FormatError(f"correction grid does not decode ({exc})") from None
        return cls(cell, step, dc, grids[0], pool, gain_step, grids[1], (int(values[0]), int(values[1]),
                   int(values[2])), values[3:].reshape(count, 3).copy())


def _can_reference(previous: CorrectionRecord | None, shape: tuple[int, ...]) -> bool:
    """Whether ``previous``'s grids can be the contexts of a kind 3 record whose grids have
    ``shape`` (3, gh, gw): a record with gains, on the same grid."""
    return previous is not None and previous.gains is not None and previous.steps.shape == shape


def record_needs_previous(record: bytes) -> bool:
    """Whether a correction record is coded against the previous GOP's (kind 3, predicted)."""
    return len(record) >= RECORD_HEADER_SIZE and record[0] == KIND_GRID_DETAIL_CODED \
        and bool(record[3] & FLAG_PREDICTED)
