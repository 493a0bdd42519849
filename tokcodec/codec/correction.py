"""The correction layer: a coarse grid of colour offsets per GOP, sent beside the tokens.

The tokenizer's error has a large smooth part: on held-out real video at 640x360 about a quarter
of the squared error of the default model is a slowly varying offset (a tint, a brightness
shift) that a grid of one value per 16x16 pixels removes. The encoder knows it (it can decode its
own tokens), so it sends it: per GOP, per channel, the least-squares grid ``G`` whose bilinear
upsampling best matches the GOP's mean residual (source minus decoded), quantised as an exact
mean (``dc``) plus coarse steps around it. The decoder adds the upsampled grid to every frame of
the GOP before rounding. On the held-out real clips this is about +0.8 to +1.1 dB PSNR for 1-4% of
the rate, and it pins each GOP's mean colour to the source's.

Record layout (little-endian; docs/FORMAT.md): kind u8 (1), cell u8 (pixels per grid step),
step u8 (quantiser step of the grid values, code values), reserved u8, grid height u16, grid
width u16, dc i16 x3 (per channel, quarter code values), then a zstd frame of the int8 grid of steps
(3, grid height, grid width) around dc. Grid height/width are ceil(frame size / cell).

Upsampling is separable linear interpolation with half-pixel centres, clamped at the edges (what
``torch.nn.functional.interpolate(mode="bilinear", align_corners=False)`` does): output pixel i
samples grid position (i + 0.5) * n_grid / n_pixels - 0.5.
"""
from __future__ import annotations

import functools
import math
import struct
from dataclasses import dataclass

import numpy as np
import torch

from tokcodec.errors import FormatError

KIND_GRID = 1
MIN_CELL = 8
MAX_CELL = 255
DC_UNIT = 0.25               # code values per unit of a record's dc
MAX_DC = 1020                # |dc| limit: 255 code values
_RECORD = struct.Struct("<BBBBHH3h")
RECORD_HEADER_SIZE = _RECORD.size


@dataclass(frozen=True)
class CorrectionConfig:
    """``enabled``: send the correction (files then use .tok format 2.0). ``cell``: pixels per
    grid step, 0 = by GOP length (16 for GOPs of 9 frames or more, 32 for shorter ones, where the
    grid's bits are shared by fewer frames). ``step``: quantiser step of the grid values around
    their exact mean, in code values."""
    enabled: bool = True
    cell: int = 0
    step: int = 8

    def __post_init__(self) -> None:
        if self.cell and not MIN_CELL <= self.cell <= MAX_CELL:
            raise ValueError(f"correction cell must be 0 (auto) or {MIN_CELL}..{MAX_CELL} pixels, got {self.cell}")
        if not 1 <= self.step <= 64:
            raise ValueError(f"correction step must be 1..64 code values, got {self.step}")

    def cell_for(self, frames: int) -> int:
        return self.cell or (16 if frames >= 9 else 32)

    def grid_for(self, width: int, height: int, frames: int) -> tuple[int, int]:
        """(rows, columns) of the grid of a GOP of ``frames`` frames of ``width`` x ``height``."""
        return grid_shape(width, height, self.cell_for(frames))


def max_record_bytes(width: int, height: int) -> int:
    """Largest record a frame of this size can need (finest cell, incompressible grid)."""
    n = 3 * math.ceil(height / MIN_CELL) * math.ceil(width / MIN_CELL)
    return RECORD_HEADER_SIZE + n + n // 128 + 512


@functools.lru_cache(maxsize=64)
def upsample_matrix(pixels: int, grid: int) -> np.ndarray:
    """(pixels, grid) linear interpolation weights, half-pixel centres, clamped at the edges."""
    pos = np.clip((np.arange(pixels) + 0.5) * grid / pixels - 0.5, 0, grid - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, grid - 1)
    frac = pos - lo
    m = np.zeros((pixels, grid))
    np.add.at(m, (np.arange(pixels), lo), 1 - frac)
    np.add.at(m, (np.arange(pixels), hi), frac)
    m.setflags(write=False)
    return m


@functools.lru_cache(maxsize=64)
def _fit_matrix(pixels: int, grid: int) -> np.ndarray:
    """Least-squares inverse of :func:`upsample_matrix` (grid, pixels)."""
    m = np.linalg.pinv(upsample_matrix(pixels, grid))
    m.setflags(write=False)
    return m


def _tensor(m: np.ndarray, dtype: torch.dtype = torch.float64,
            device: torch.device | str = "cpu") -> torch.Tensor:
    """A cached (read-only) matrix as a torch tensor of its own."""
    return torch.tensor(m, dtype=dtype, device=device)


@dataclass(frozen=True)
class Correction:
    cell: int
    step: int
    dc: tuple[int, int, int]     # per channel, in quarter code values (DC_UNIT)
    steps: np.ndarray            # int8 (3, grid height, grid width), in units of ``step`` around dc

    def grid(self) -> np.ndarray:
        """(3, gh, gw) offsets in code values."""
        return DC_UNIT * np.asarray(self.dc, np.float64)[:, None, None] + self.step * self.steps.astype(np.float64)

    def field(self, width: int, height: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """(height, width, 3) float32 offsets to add to every frame of the GOP, on ``device``.
        Computed with torch so that on CPU it shares the network's threads (numpy's BLAS
        threads beside them slowed a 2-core decode by ~10%)."""
        g = _tensor(self.grid(), torch.float32, device)
        uy = _tensor(upsample_matrix(height, g.shape[1]), torch.float32, device)
        ux = _tensor(upsample_matrix(width, g.shape[2]), torch.float32, device)
        return (uy @ g @ ux.T).permute(1, 2, 0)

    def pack(self) -> bytes:
        import zstandard  # here, not at the top: the trainer (and its GPU kit) fits without it

        gh, gw = self.steps.shape[1:]
        data = zstandard.ZstdCompressor(level=19).compress(np.ascontiguousarray(self.steps, np.int8).tobytes())
        return _RECORD.pack(KIND_GRID, self.cell, self.step, 0, gh, gw, *self.dc) + data

    @classmethod
    def unpack(cls, record: bytes, width: int, height: int) -> "Correction":
        """The record of a GOP of ``width`` x ``height`` frames; FormatError unless every field
        fits that size (the grid is allocated only after its size has been checked)."""
        if len(record) < RECORD_HEADER_SIZE:
            raise FormatError("correction record truncated")
        kind, cell, step, _, gh, gw, *dc = _RECORD.unpack_from(record)
        if kind != KIND_GRID:
            raise FormatError(f"unknown correction kind {kind}")
        if not MIN_CELL <= cell <= MAX_CELL or step < 1 or any(abs(v) > MAX_DC for v in dc):
            raise FormatError(f"invalid correction fields (cell {cell}, step {step}, dc {dc})")
        if (gh, gw) != grid_shape(width, height, cell):
            raise FormatError(f"correction grid {gw}x{gh} does not fit {width}x{height} frames at cell {cell}")
        n = 3 * gh * gw
        import zstandard

        try:
            raw = zstandard.ZstdDecompressor().decompress(record[RECORD_HEADER_SIZE:], max_output_size=n)
        except zstandard.ZstdError as exc:
            raise FormatError(f"correction grid does not decompress ({exc})") from None
        if len(raw) != n:
            raise FormatError(f"correction grid holds {len(raw)} values, expected {n}")
        return cls(cell, step, (dc[0], dc[1], dc[2]), np.frombuffer(raw, np.int8).reshape(3, gh, gw))


def fit_correction(source: np.ndarray, decoded: np.ndarray, config: CorrectionConfig) -> Correction:
    """The correction for one GOP: ``source`` and ``decoded`` are (T, H, W, 3) uint8 frames.

    A grid constant over the GOP is fitted to the time-averaged residual (the least-squares fit
    over all frames is the fit to their mean), channel by channel, in closed form. The large
    steps run in torch, on the threads the network uses (numpy's own BLAS threads beside them
    slow a 2-core CPU down)."""
    if source.shape != decoded.shape or source.ndim != 4 or source.shape[-1] != 3:
        raise ValueError(f"source {source.shape} and decoded {decoded.shape} must both be (T, H, W, 3)")
    t, h, w, _ = source.shape
    cell = config.cell_for(t)
    gh, gw = grid_shape(w, h, cell)
    residual = torch.zeros(3, h, w)  # frame by frame: sums of int16 differences, exact in float32
    for s, d in zip(source, decoded):
        residual += torch.from_numpy(np.subtract(s, d, dtype=np.int16)).permute(2, 0, 1)
    residual = residual.double() / t
    grid = (_tensor(_fit_matrix(h, gh)) @ residual @ _tensor(_fit_matrix(w, gw)).T).numpy()
    steps = np.clip(np.rint((grid - grid.mean((1, 2), keepdims=True)) / config.step), -127, 127).astype(np.int8)
    # dc makes the corrected frame's mean colour the fitted one (within 1/8 code value): coarse
    # steps of a smooth grid need not average to zero. Each pixel's weights sum to 1, so the
    # field's mean is wy . grid . wx with wy, wx the mean weight of each grid row and column.
    wy, wx = upsample_matrix(h, gh).mean(0), upsample_matrix(w, gw).mean(0)
    mean_of = lambda g: np.einsum("y,cyx,x->c", wy, g, wx)  # noqa: E731
    dc = np.clip(np.rint((mean_of(grid) - mean_of(config.step * steps.astype(np.float64))) / DC_UNIT), -MAX_DC, MAX_DC)
    return Correction(cell, config.step, (int(dc[0]), int(dc[1]), int(dc[2])), steps)


def uncorrectable(residual: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """What a correction grid of ``grid`` (rows, columns) cells, constant over the GOP, cannot
    remove from ``residual`` (B, 3, T, H, W): the residual minus its least-squares fit (before
    quantisation). A token search followed by the correction minimises this, not the whole
    residual (the grid's cells follow the frame's proportions at any size, so this also holds
    at a --scale'd coded size)."""
    _, _, _, h, w = residual.shape
    py, px, uy, ux = (_tensor(m, residual.dtype, residual.device) for m in (
        _fit_matrix(h, grid[0]), _fit_matrix(w, grid[1]), upsample_matrix(h, grid[0]), upsample_matrix(w, grid[1])))
    fitted = uy @ (py @ residual.mean(2) @ px.T) @ ux.T
    return residual - fitted.unsqueeze(2)


def grid_shape(width: int, height: int, cell: int) -> tuple[int, int]:
    """(rows, columns) of a correction grid over ``width`` x ``height`` frames."""
    return math.ceil(height / cell), math.ceil(width / cell)


def apply_field(frames: np.ndarray, field: torch.Tensor) -> np.ndarray:
    """uint8 frames (T, H, W, 3) plus a correction field, rounded and clipped (for callers that
    hold decoded frames; the decoder adds the field before its own rounding instead)."""
    return np.clip(np.rint(frames.astype(np.float32) + field.cpu().numpy()), 0, 255).astype(np.uint8)
