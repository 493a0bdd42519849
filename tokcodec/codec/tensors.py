"""Frames to the tokenizer's input tensors and back: GOP grouping, resizing to the coded size
(--scale), padding to the model's factors, and the inverse on decode."""
from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from tokcodec.codec.container import MAX_DIM, Header
from tokcodec.codec.correction import Correction, with_neighbours
from tokcodec.defaults import MIN_CODED, check_scale  # noqa: F401  (MIN_CODED re-exported)
from tokcodec.device import Runtime
from tokcodec.errors import ArgumentError
from tokcodec.io import MAX_PIXELS



def coded_size(width: int, height: int, scale: float) -> tuple[int, int]:
    """The size frames are tokenized at: the source's times ``scale``, at least 8 pixels a side,
    within what a .tok header and the frame-size guard allow."""
    check_scale(scale)
    cw, ch = max(MIN_CODED, round(width * scale)), max(MIN_CODED, round(height * scale))
    if max(cw, ch) > MAX_DIM or cw * ch > MAX_PIXELS:
        raise ArgumentError(f"--scale {scale:g} makes {cw}x{ch} frames, over the {MAX_DIM} pixels a side "
                         f"and {MAX_PIXELS / 1e6:.1f} megapixels tokcodec codes; use a smaller --scale")
    return cw, ch


def frames_to_tensor(frames: list[np.ndarray], header: Header, runtime: Runtime,
                     to_device: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """uint8 frames -> (1, 3, 1+s*k, Hp, Wp) in [-1, 1]: resized to the coded size, edge-padded.
    The frames travel to the device as uint8 (through ``to_device``, e.g. a pinned stager)."""
    host = torch.from_numpy(np.stack(frames))
    x = (to_device(host) if to_device else host.to(runtime.device)).permute(0, 3, 1, 2).float()
    x = x.div_(127.5).sub_(1)
    if (header.coded_height, header.coded_width) != tuple(x.shape[-2:]):
        x = F.interpolate(x, size=(header.coded_height, header.coded_width), mode="bicubic",
                          antialias=True, align_corners=False).clamp_(-1, 1)
    pad_h = header.padded_height - header.coded_height
    pad_w = header.padded_width - header.coded_width
    if pad_h or pad_w:
        x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
    s = header.temporal_factor
    t = x.shape[0]
    target = 1 + s * math.ceil((t - 1) / s)
    if target > t:
        x = torch.cat([x, x[-1:].expand(target - t, -1, -1, -1)], 0)
    x = x.permute(1, 0, 2, 3).unsqueeze(0)
    if runtime.device.type == "cpu":
        x = x.contiguous(memory_format=torch.channels_last_3d)
    return x


def _grey_(frame: torch.Tensor) -> torch.Tensor:
    """``frame`` (H, W, 3) with each pixel's channels set to their mean, in place."""
    return frame.copy_(frame.mean(-1, keepdim=True).expand_as(frame))


def tensor_to_frames(video: torch.Tensor, frames: int, header: Header,
                     correction: Correction | None = None) -> np.ndarray:
    """(1, 3, T, Hp, Wp) in [-1, 1] -> uint8 (frames, H, W, 3) at the source size; a GOP's
    ``correction`` (codec/correction.py) is applied to its frames before rounding.

    Frame by frame, so that each frame's passes (convert, scale, correct, round) stay in cache:
    on a 2-core CPU a 640x360 GOP with detail gains took 34 ms instead of 61 (without any
    correction 7.5 instead of 22)."""
    x = video[0, :, :frames, :header.coded_height, :header.coded_width]
    resize = (header.height, header.width) != (header.coded_height, header.coded_width)
    # a --scale above 1 shrinks at decode: filter as a shrink must. This path's plain bicubic,
    # for scales below 1 and for sources under 8 pixels (coded at 8), predates it and stays as it
    # was, so old files decode the same
    shrink = (header.coded_width > max(header.width, MIN_CODED)
              or header.coded_height > max(header.height, MIN_CODED))

    def converted(t: int) -> torch.Tensor:
        """Frame t as (H, W, 3) float32 code values at the output size, before rounding."""
        if resize:
            frame = F.interpolate(x[None, :, t].float(), size=(header.height, header.width),
                                  mode="bicubic", align_corners=False, antialias=shrink)[0].permute(1, 2, 0)
        else:
            # (H, W, 3): for channels_last_3d output this order is the memory order
            frame = x[:, t].permute(1, 2, 0).to(torch.float32, copy=True)
        frame = frame.clamp_(-1, 1).add_(1).mul_(127.5)
        # a grey source (header.grey): the channels' mean, so that the correction, fitted to it
        # at encode, sees what it was fitted to
        return _grey_(frame) if header.grey else frame

    correct = correction.frame_corrector(header.width, header.height, x.device) if correction else None
    out = torch.empty((frames, header.height, header.width, 3), dtype=torch.uint8, device=x.device)
    neighbours = correction is not None and correction.uses_neighbours
    for t, prev, frame, following in with_neighbours(converted, frames, keep=neighbours):
        if correct is not None:
            correct(frame, t, prev, following)  # reads prev and following before it writes
            if header.grey:  # (the same fit for each channel; this keeps R = G = B to the bit)
                _grey_(frame)
        out[t] = frame.round_()
    return out.cpu().numpy()
