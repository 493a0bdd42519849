"""The network side of encoding one GOP, and the rate a few GOPs take (the rate plan's probe).

``GopEncoder`` turns a GOP's frames into tokens (closed loop, search) and fits its correction to
what the decoder will show; ``encode_video`` runs it GOP by GOP. ``measure_bpp`` codes GOPs the
same way, entropy coder included, and counts the bytes they would add to a file: what a rate plan
(codec/ratecontrol.py) measures on ``probe_windows`` of the source or on a short input whole.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch

from tokcodec.codec.accel import HostStager
from tokcodec.codec.container import Header, chunk_file_bytes
from tokcodec.codec.correction import Correction, CorrectionConfig, fit_correction, uncorrectable
from tokcodec.codec.entropy import TokenCoder
from tokcodec.codec.tensors import frames_to_tensor, tensor_to_frames
from tokcodec.device import Runtime
from tokcodec.io import iter_frames
from tokcodec.model.refine import Quantize, RefineConfig, find_tokens
from tokcodec.model.zoo import LoadedModel

PROBE_WINDOWS = 3


@dataclass
class GopEncoder:
    """Tokens (t, h, w) int32 and, with the correction on, the correction fitted to their decode,
    for one GOP of source frames (``width`` x ``height``) coded as ``header`` says."""
    loaded: LoadedModel
    header: Header
    runtime: Runtime
    stager: HostStager
    search: RefineConfig
    fix: CorrectionConfig
    width: int
    height: int

    def __call__(self, group: list[np.ndarray], quantize: Quantize | None) -> tuple[np.ndarray, Correction | None]:
        header, runtime = self.header, self.runtime
        x = frames_to_tensor(group, header, runtime, self.stager.to_device)
        # with a correction to follow, the passes and the search need not fix what its grid removes
        grid = self.fix.grid_for(self.width, self.height, len(group))
        correctable = partial(uncorrectable, grid=grid) if self.fix.enabled else None
        found = find_tokens(self.loaded.tokenizer, x, self.search, frames=len(group),
                            height=header.coded_height, width=header.coded_width, autocast=runtime.autocast,
                            residual_filter=_then_grey(correctable) if header.grey else correctable,
                            quantize=quantize)
        fitted = None
        if self.fix.enabled:  # what the decoder will show, corrected towards the source
            with torch.inference_mode(), runtime.autocast():
                video = found.decoded if found.decoded is not None else \
                    self.loaded.tokenizer.decode_indices(found.indices)
                decoded = tensor_to_frames(video, len(group), header)
            fitted = fit_correction(np.stack(group), decoded, self.fix)
        return found.indices[0].cpu().numpy().astype(np.int32), fitted


def _then_grey(first: Callable[[torch.Tensor], torch.Tensor] | None) -> Callable[[torch.Tensor], torch.Tensor]:
    """A residual filter for a grey source: what counts of the residual (B, 3, T, H, W) is its
    channels' mean, as decode shows that mean (after ``first``, the correction's filter)."""
    def grey(residual: torch.Tensor) -> torch.Tensor:
        residual = first(residual) if first is not None else residual
        return residual.mean(1, keepdim=True).expand_as(residual).contiguous()
    return grey


#: a GOP as a file's chunk: (frames, tokens (t, h, w), entropy-coded payload, correction record)
CodedGop = tuple[int, np.ndarray, bytes, bytes]


def network_stage(encode: GopEncoder, groups: Iterable[list[np.ndarray]],
                  quantize_for: Callable[[int], Quantize | None], key_interval: int = 1
                  ) -> Iterator[tuple[int, np.ndarray, bytes, np.ndarray | None]]:
    """(frames, tokens, correction record, the previous GOP's last latent frame or None at a key
    GOP) of each GOP of ``groups``, the consecutive GOPs of one input: what encode hands its
    entropy coder. ``quantize_for(frames)`` gives each GOP's token choice as it comes. Between key
    GOPs (every ``key_interval``) the tokens (coder 4) and the record (kind 3) may be coded
    against the previous GOP's; 1 codes every GOP on its own."""
    previous_fix: Correction | None = None
    previous_frame: np.ndarray | None = None
    for k, group in enumerate(groups):
        key = k % key_interval == 0
        idx, fitted = encode(group, quantize_for(len(group)))
        record = b""
        if fitted is not None:
            record = fitted.pack(None if key else previous_fix)
            previous_fix = fitted
        yield len(group), idx, record, None if key else previous_frame
        previous_frame = idx[-1]


def measure_bpp(encode: GopEncoder, coder: TokenCoder, groups: Iterable[list[np.ndarray]],
                quantize: Quantize | None, *, key_interval: int = 1,
                progress: Callable[[int], None] | None = None, keep: list[CodedGop] | None = None) -> float:
    """Bits per source pixel that ``groups`` take as chunks of a file: each GOP through
    ``network_stage`` and the entropy coder. With ``key_interval`` above 1 the groups are the
    consecutive GOPs of one input, coded as encode codes them: the very chunks encode would
    write, which ``keep`` collects; with 1 each is coded on its own (windows from far apart).
    ``progress`` is told each GOP's frames."""
    bits = pixels = 0
    for n, idx, record, previous in network_stage(encode, groups, lambda _: quantize, key_interval):
        payload = coder.encode(idx, encode.header.bits, previous)
        bits += 8 * chunk_file_bytes(len(payload), len(record), encode.header.correction)
        pixels += n * encode.width * encode.height
        if keep is not None:
            keep.append((n, idx, payload, record))
        if progress:
            progress(n)
    if not pixels:
        raise ValueError("no frames to measure")
    return bits / pixels


def probe_windows(src, max_frames: int | None, total: int, length: int,
                  count: int = PROBE_WINDOWS, skip: int = 0, deinterlace: str = "auto") -> Iterator[list[np.ndarray]]:
    """``count`` windows of ``length`` frames spread over the first ``total`` frames of ``src``
    after its first ``skip`` (centred on 1/6, 1/2 and 5/6 of the way for three), read in one pass
    that stops after the last; they may overlap when ``total`` is under ``count + 1`` windows'
    length. Frames are read as ``deinterlace`` says (io.iter_frames)."""
    span = max(0, total - length)
    starts = sorted({round(span * (2 * i + 1) / (2 * count)) for i in range(count)})
    windows: dict[int, list[np.ndarray]] = {}
    end = starts[-1] + length
    for i, frame in enumerate(iter_frames(src, min(end, max_frames) if max_frames else end, skip, deinterlace)):
        for s in starts:
            if s <= i < s + length:
                windows.setdefault(s, []).append(frame)
        if i - length + 1 in windows:
            yield windows.pop(i - length + 1)
    yield from (windows.pop(s) for s in sorted(windows))  # (an input shorter than it said)
