"""The correction layer: coarse grids of colour offsets and detail gains per GOP, sent beside the tokens.

The tokenizer's error has a large smooth part: on held-out real video at 640x360 about a quarter
of the squared error of the default model is a slowly varying offset (a tint, a brightness
shift) that a grid of one value per 16x16 pixels removes (8x8 by default since December 2026).
The encoder knows it (it can decode its own tokens), so it sends it: per GOP, per channel, the
least-squares grid ``G`` whose bilinear upsampling best matches the GOP's mean residual (source
minus decoded), quantised as an exact mean (``dc``) plus coarse steps around it. The decoder adds the upsampled grid to every frame of
the GOP before rounding. On the held-out real clips this is about +0.8 to +1.1 dB PSNR for 1-4% of
the rate, and it pins each GOP's mean colour to the source's.

The decoder's pictures are also too soft, by an amount that varies with content. So a record may
carry a second grid on the same cells (record kind 2, format 2.1): per channel, a detail gain
``a`` that scales the decoded frame's local detail, ``d - lowpass(d)``, where ``lowpass`` is the
mean over ``pool`` x ``pool`` blocks upsampled like the grid. The decoder shows
``d + offsets + a * (d - lowpass(d))``: an unsharp mask (or a softening, where ``a`` < 0) whose
strength the encoder fits by least squares, cell by cell. Kind 2 also carries what flickers: a
temporal blend per channel, ``b * ((prev + next) / 2 - d)`` over the decoded frames beside each
frame, and a dc per frame and channel. On the held-out real clips kind 2 gives +0.49 dB over the
offsets alone (25.22 -> 25.71 with the default model) for about 4% more rate.

Record layout (little-endian; docs/FORMAT.md): kind u8 (1), cell u8 (pixels per grid step),
step u8 (quantiser step of the grid values, code values), reserved u8, grid height u16, grid
width u16, dc i16 x3 (per channel, quarter code values), then a zstd frame of the int8 grid of steps
(3, grid height, grid width) around dc. Grid height/width are ceil(frame size / cell). Kind 2 adds
pool u8 (pixels per low-pass block), gain step u8 (1/64ths) and frames u16 after dc, and its zstd
frame holds, after the offsets, the int8 gain grid (3, grid height, grid width), 3 int8 temporal
blends (1/64ths) and the int8 per-frame dc (frames, 3) in quarter code values.

Upsampling is separable linear interpolation with half-pixel centres, clamped at the edges (what
``torch.nn.functional.interpolate(mode="bilinear", align_corners=False)`` does): output pixel i
samples grid position (i + 0.5) * n_grid / n_pixels - 0.5.
"""
from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from tokcodec.codec.correction_record import (  # noqa: F401  (CorrectionConfig: its home for callers)
    CorrectionConfig, CorrectionRecord, DC_UNIT, GAIN_UNIT, MAX_DC, TEMPORAL_UNIT, grid_shape)


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


@functools.lru_cache(maxsize=32)
def upsample_tensor(pixels: int, grid: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """:func:`upsample_matrix` as a tensor on ``device``, made once: a frame's correction made it
    anew each time, on a GPU a copy from pageable memory that waits (2.4 MB a 1080p frame). Made
    outside inference mode, so that code with gradients (refine) may use it as well."""
    with torch.inference_mode(False):
        return _tensor(upsample_matrix(pixels, grid), dtype, device)


@dataclass(frozen=True)
class Correction(CorrectionRecord):
    """A correction record that applies itself to decoded frames (with torch)."""

    def field(self, width: int, height: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """(height, width, 3) float32 offsets to add to every frame of the GOP, on ``device``.
        Computed with torch so that on CPU it shares the network's threads (numpy's BLAS
        threads beside them slowed a 2-core decode by ~10%)."""
        return _upsampled(_tensor(self.grid(), torch.float32, device), height, width)


    def frame_corrector(self, width: int, height: int,
                        device: torch.device | str = "cpu") -> Callable[..., torch.Tensor]:
        """``correct(frame, t, prev, following)``: corrects frame ``t`` of the GOP in place and
        returns it. ``frame`` is (H, W, 3) float32 code values before rounding; ``prev`` and
        ``following`` are the decoded frames beside it, uncorrected (the frame itself at the
        GOP's ends; read only when ``uses_neighbours``). Offsets are added; kind 2 adds
        ``gain * (d - lowpass(d))``, ``temporal * ((prev + following) / 2 - d)`` and the
        frame's dc. Clamped to [0, 255]. The GOP's fields are computed once, here; callers go
        frame by frame so that each frame's passes stay in cache (3x faster on a 2-core CPU
        than the same passes over a whole 640x360 GOP)."""
        field = self.field(width, height, device)
        if self.gains is None:
            return lambda frame, *_: frame.add_(field).clamp_(0, 255)
        gain = _upsampled(_tensor(GAIN_UNIT * self.gain_step * self.gains.astype(np.float64),
                                  torch.float32, device), height, width)
        scale = gain + 1
        blend = torch.tensor(self.temporal, dtype=torch.float32, device=device) * TEMPORAL_UNIT
        frame_dc = None if self.frame_dc is None else \
            torch.from_numpy(self.frame_dc.astype(np.float32) * DC_UNIT).to(device)
        blends = self.uses_neighbours

        def correct(frame: torch.Tensor, t: int = 0, prev: torch.Tensor | None = None,
                    following: torch.Tensor | None = None) -> torch.Tensor:
            # d + offsets + gain * (d - low) + ... as d * (1 + gain) + (offsets - gain * low + ...)
            shifted = torch.addcmul(field, lowpass(frame[None], self.pool)[0], gain, value=-1)
            if blends:  # from the uncorrected frame: before it is overwritten below
                shifted.addcmul_((prev + following).mul_(0.5).sub_(frame), blend)
            if frame_dc is not None:
                shifted.add_(frame_dc[t])
            return torch.addcmul(shifted, frame, scale, out=frame).clamp_(0, 255)
        return correct


    def apply_(self, frames: torch.Tensor) -> torch.Tensor:
        """Corrects ``frames`` (T, H, W, 3) float32 code values (a decoded GOP before rounding) in
        place and returns them (frame_corrector, frame by frame)."""
        correct = self.frame_corrector(frames.shape[2], frames.shape[1], frames.device)
        frame_at = frames.__getitem__
        for t, prev, frame, following in with_neighbours(frame_at, len(frames), keep=self.uses_neighbours):
            correct(frame, t, prev, following)
        return frames


    def apply_to_frames(self, frames: np.ndarray) -> np.ndarray:
        """uint8 frames (T, H, W, 3) corrected, rounded and clipped (for callers that hold
        rounded frames; the decoder corrects before its own rounding instead)."""
        return self.apply_(torch.from_numpy(frames).float()).round_().to(torch.uint8).numpy()


def with_neighbours(frame_at: Callable[[int], torch.Tensor], count: int, keep: bool = True
                    ) -> Iterator[tuple[int, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """``(t, prev, frame, following)`` for the frames ``frame_at(0)`` .. ``frame_at(count - 1)``,
    each fetched once: prev and following are the frames beside ``frame``, as fetched (``frame``
    itself at the ends). The caller may overwrite ``frame`` once it has read prev and following:
    with ``keep`` a copy taken before it does so serves as the next frame's prev."""
    frame = prev = frame_at(0)
    for t in range(count):
        following = frame_at(t + 1) if t + 1 < count else frame
        kept = frame.clone() if keep else frame
        yield t, prev, frame, following
        prev, frame = kept, following


def _upsampled(grid: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(C, gh, gw) -> (height, width, C): the grid's bilinear upsampling (upsample_matrix)."""
    uy = upsample_tensor(height, grid.shape[1], grid.dtype, grid.device)
    ux = upsample_tensor(width, grid.shape[2], grid.dtype, grid.device)
    return (uy @ grid @ ux.T).permute(1, 2, 0)


def lowpass(frames: torch.Tensor, pool: int) -> torch.Tensor:
    """(T, H, W, C) float -> the same shape: means over ``pool`` x ``pool`` blocks (blocks at the
    right and bottom edges average the pixels they hold), upsampled back with half-pixel
    centres, clamped at the edges (upsample_matrix; F.interpolate bilinear, align_corners=False)."""
    t, h, w, c = frames.shape
    means = _block_means(frames, pool)
    bh, bw = means.shape[1:3]
    uy = upsample_tensor(h, bh, frames.dtype, frames.device)
    ux = upsample_tensor(w, bw, frames.dtype, frames.device)
    rows = torch.einsum("xj,tijc->tixc", ux, means).reshape(t, bh, w * c)
    return torch.matmul(uy, rows).view(t, h, w, c)


def _block_means(frames: torch.Tensor, pool: int) -> torch.Tensor:
    """(T, H, W, C) -> (T, ceil(H / pool), ceil(W / pool), C) means over pool x pool blocks, the
    last row and column of blocks over the pixels they hold. Sums of reshaped views: in the
    frames' own layout this is 5x faster here than avg_pool2d over a channels-last view."""
    t, h, w, c = frames.shape
    hf, wf = h // pool * pool, w // pool * pool
    rows = frames[:, :hf].reshape(t, hf // pool, pool, w, c).sum(2)
    if hf < h:
        rows = torch.cat([rows, frames[:, hf:].sum(1, keepdim=True)], 1)
    sums = rows[:, :, :wf].reshape(t, rows.shape[1], wf // pool, pool, c).sum(3)
    if wf < w:
        sums = torch.cat([sums, rows[:, :, wf:].sum(2, keepdim=True)], 2)
    bh, bw = sums.shape[1:3]
    per_row = torch.full((bh,), float(pool), dtype=frames.dtype, device=frames.device)
    per_col = torch.full((bw,), float(pool), dtype=frames.dtype, device=frames.device)
    per_row[-1], per_col[-1] = h - (bh - 1) * pool, w - (bw - 1) * pool
    return sums / (per_row[:, None, None] * per_col[None, :, None])


def fit_correction(source: np.ndarray, decoded: np.ndarray, config: CorrectionConfig) -> Correction:
    """The correction for one GOP: ``source`` and ``decoded`` are (T, H, W, 3) uint8 frames.

    A grid constant over the GOP is fitted to the time-averaged residual (the least-squares fit
    over all frames is the fit to their mean), channel by channel, in closed form. With detail
    gains, those are fitted next, to what the offsets leave, the offsets are then fitted again
    to what the quantised gains leave, and last the temporal blend and per-frame dc to what
    both leave (``_fit_temporal``). The large steps run in torch, on the threads the network
    uses (numpy's own BLAS threads beside them slow a 2-core CPU down)."""
    if source.shape != decoded.shape or source.ndim != 4 or source.shape[-1] != 3:
        raise ValueError(f"source {source.shape} and decoded {decoded.shape} must both be (T, H, W, 3)")
    t, h, w, _ = source.shape
    cell = config.cell_for(t)
    gh, gw = grid_shape(w, h, cell)
    sums = _GopSums.of(source, decoded, config.pool if config.detail else 0)
    residual = sums.residual / t
    py, px = _tensor(_fit_matrix(h, gh)), _tensor(_fit_matrix(w, gw))
    gains = None
    if config.detail:
        uy, ux = _tensor(upsample_matrix(h, gh)), _tensor(upsample_matrix(w, gw))
        gains = _fit_gains(sums, uy @ (py @ residual @ px.T) @ ux.T, uy, ux, config, config.sharpen_for(t))
        gain = uy @ torch.from_numpy(GAIN_UNIT * config.gain_step * gains.astype(np.float64)) @ ux.T
        residual = residual - gain * sums.detail / t
    grid = (py @ residual @ px.T).numpy()
    steps = np.clip(np.rint((grid - grid.mean((1, 2), keepdims=True)) / config.step), -127, 127).astype(np.int8)
    # dc makes the corrected frame's mean colour the fitted one (within 1/8 code value): coarse
    # steps of a smooth grid need not average to zero. Each pixel's weights sum to 1, so the
    # field's mean is wy . grid . wx with wy, wx the mean weight of each grid row and column.
    wy, wx = upsample_matrix(h, gh).mean(0), upsample_matrix(w, gw).mean(0)
    mean_of = lambda g: np.einsum("y,cyx,x->c", wy, g, wx)  # noqa: E731
    dc = np.clip(np.rint((mean_of(grid) - mean_of(config.step * steps.astype(np.float64))) / DC_UNIT), -MAX_DC, MAX_DC)
    dc3 = (int(dc[0]), int(dc[1]), int(dc[2]))
    if gains is None:
        return Correction(cell, config.step, dc3, steps)
    spatial = Correction(cell, config.step, dc3, steps, config.pool, config.gain_step, gains)
    temporal, frame_dc = _fit_temporal(source, decoded, spatial)
    return Correction(cell, config.step, dc3, steps, config.pool, config.gain_step, gains, temporal, frame_dc)


def _fit_temporal(source: np.ndarray, decoded: np.ndarray,
                  spatial: Correction) -> tuple[tuple[int, int, int], np.ndarray]:
    """A kind 2 record's temporal blend (per channel, 64ths) and per-frame dc ((T, 3), quarter
    code values), fitted by least squares to what ``spatial`` (its offsets and gains) leaves,
    frame by frame: the blend on the decoded frames' temporal detail ``(prev + next) / 2 - d``
    (prev / next the frame itself at the GOP's ends), then each frame's mean of the rest."""
    t, h, w, _ = source.shape
    correct = spatial.frame_corrector(w, h)
    qr, qq = torch.zeros(3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64)
    res_mean, q_mean = torch.zeros(t, 3, dtype=torch.float64), torch.zeros(t, 3, dtype=torch.float64)
    as_float = lambda i: torch.tensor(decoded[i], dtype=torch.float32)  # noqa: E731
    for i, prev, d, following in with_neighbours(as_float, t):
        q = (prev + following).mul_(0.5).sub_(d)
        res = torch.tensor(source[i], dtype=torch.float32).sub_(correct(d, i))
        qr += (q * res).sum((0, 1)).double()
        qq += q.square().sum((0, 1)).double()
        res_mean[i], q_mean[i] = res.mean((0, 1)).double(), q.mean((0, 1)).double()
    blend = np.clip(np.rint((qr / qq.clamp_min(1e-9)).numpy() / TEMPORAL_UNIT), -127, 127)
    frame_dc = res_mean.numpy() - blend * TEMPORAL_UNIT * q_mean.numpy()
    return ((int(blend[0]), int(blend[1]), int(blend[2])),
            np.clip(np.rint(frame_dc / DC_UNIT), -127, 127).astype(np.int8))


@dataclass(frozen=True)
class _GopSums:
    """Per-pixel sums over a GOP's frames, (3, H, W) float64: of the residual r = source -
    decoded, and with detail (d = decoded - lowpass(decoded)) of d, d * d and d * r."""
    residual: torch.Tensor
    detail: torch.Tensor | None = None
    detail_sq: torch.Tensor | None = None
    detail_res: torch.Tensor | None = None

    @classmethod
    def of(cls, source: np.ndarray, decoded: np.ndarray, pool: int) -> "_GopSums":
        """One pass over the frames (``pool`` 0: the residual alone). float32 sums in the
        frames' own (H, W, 3) layout: a GOP's sums stay far inside float32's precision (the
        residual's are exact integers), and these passes are what the fit costs."""
        _, h, w, _ = source.shape
        sums = [torch.zeros(h, w, 3) for _ in range(4 if pool else 1)]
        for s, d in zip(source, decoded):
            res = torch.from_numpy(np.subtract(s, d, dtype=np.float32))
            sums[0] += res
            if pool:
                frame = torch.tensor(d, dtype=torch.float32)
                detail = frame.sub_(lowpass(frame[None], pool)[0])
                sums[1] += detail
                sums[2].addcmul_(detail, detail)
                sums[3].addcmul_(detail, res)
        return cls(*(a.permute(2, 0, 1).double() for a in sums))


def _fit_gains(sums: _GopSums, offsets: torch.Tensor, uy: torch.Tensor, ux: torch.Tensor,
               config: CorrectionConfig, sharpen: float) -> np.ndarray:
    """Quantised detail gains (int8 (3, gh, gw)) minimising, per channel, the squared error of
    ``residual - offsets - gain * detail`` over the GOP with a ridge, in steps of
    ``config.gain_step``, then times ``sharpen`` and rounded.
    ``offsets`` (3, H, W) is the first (unquantised) offset fit; uy, ux the grid's upsampling
    matrices."""
    from scipy.sparse import identity
    from scipy.sparse.linalg import spsolve

    gh, gw = uy.shape[1], ux.shape[1]
    detail_res = sums.detail_res - sums.detail * offsets  # sum of d * (r - offsets)
    gains = np.zeros((3, gh, gw))
    for c in range(3):
        normal = _normal_matrix(sums.detail_sq[c], uy, ux)
        ridge = config.ridge * float(normal.diagonal().mean()) + 1e-9  # 1e-9: flat GOPs solve to 0
        rhs = (uy.T @ detail_res[c] @ ux).numpy().ravel()
        gains[c] = spsolve((normal + ridge * identity(gh * gw, format="csc")).tocsc(), rhs).reshape(gh, gw)
    steps = np.rint(gains / (GAIN_UNIT * config.gain_step))
    return np.clip(np.rint(sharpen * steps), -127, 127).astype(np.int8)


def _normal_matrix(weights: torch.Tensor, uy: torch.Tensor, ux: torch.Tensor):
    """U^T diag(weights) U as a scipy sparse matrix, for U the bilinear upsampling of a
    (gh, gw) grid to ``weights``' (H, W) (uy (H, gh), ux (W, gw)). Each pixel weighs at most two
    neighbouring grid rows and columns, so only cells at most one apart interact: nine bands,
    each computed with two small products."""
    from scipy.sparse import coo_matrix

    gh, gw = uy.shape[1], ux.shape[1]
    rows, cols, vals = [], [], []
    for dy in (-1, 0, 1):
        i = np.arange(max(0, -dy), gh - max(0, dy))
        along_x = (uy[:, i] * uy[:, i + dy]).T @ weights  # (len(i), W)
        for dx in (-1, 0, 1):
            j = np.arange(max(0, -dx), gw - max(0, dx))
            band = (along_x @ (ux[:, j] * ux[:, j + dx])).numpy()  # (len(i), len(j))
            rows.append((i[:, None] * gw + j[None, :]).ravel())
            cols.append(((i + dy)[:, None] * gw + (j + dx)[None, :]).ravel())
            vals.append(band.ravel())
    n = gh * gw
    return coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n)).tocsc()


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


