"""Scene cuts: a GOP ends where the picture cuts to another shot, and the next one starts there.

The tokenizer compresses 4 frames into each latent frame and its convolutions look across
frames, so a GOP that runs across a cut blends the two shots around it (the next shot shows
through before the cut, the last one after it). A GOP that starts at the cut codes it as the
causal model codes a clip's first frame, on its own. Each cut costs about one latent frame more
(the GOP before it ends short), a few % of the bits of a video with a cut every few seconds.

A cut is an isolated jump of the picture: the mean luma difference of two consecutive frames'
thumbnails is at least ``threshold`` code values and at least ``CUT_RATIO`` times the differences
just before and after it. Steady fast motion (a pan) changes every frame about as much, so it
makes no cut. A single frame that jumps in and out again (a one-frame shot between two others,
or a flash) is a shot of its own: both of its jumps, large against the changes around the pair,
are cuts, so that it is coded alone instead of being blended into its neighbours.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator

import numpy as np

#: how much larger than its neighbours a frame's change must be to count as a cut
CUT_RATIO = 2.5
THUMB_WIDTH = 64  # pixels: thumbnails are block means at about this width


def thumbnail(frame: np.ndarray) -> np.ndarray:
    """Luma (BT.601 weights) of an RGB uint8 frame as block means, about THUMB_WIDTH wide: camera
    noise and fine texture average out, the picture's layout stays."""
    h, w = frame.shape[:2]
    k = max(1, w // THUMB_WIDTH)
    blocks = frame[:h // k * k, :w // k * k].reshape(h // k, k, w // k, k, 3).mean((1, 3), dtype=np.float32)
    if not blocks.size:  # (a frame less than one block high)
        blocks = frame.reshape(1, 1, -1, 3).mean((1, 2), keepdims=True, dtype=np.float32)
    return blocks @ np.array([0.299, 0.587, 0.114], np.float32)


def marked_cuts(frames: Iterable[np.ndarray], threshold: float) -> Iterator[tuple[np.ndarray, bool]]:
    """Each frame with whether a cut comes just before it (never before the first), two frames
    late: whether a jump is isolated, or one of the pair around a one-frame shot, takes the
    changes after it."""
    held: deque[np.ndarray] = deque()  # frames not yet yielded (at most 2)
    changes = RecentChanges()          # changes[i]: frame i against frame i - 1 (0 for the first)
    last_thumb: np.ndarray | None = None
    yielded = 0
    for frame in frames:
        thumb = thumbnail(frame)
        changes.append(0.0 if last_thumb is None else float(np.abs(thumb - last_thumb).mean()))
        last_thumb = thumb
        held.append(frame)
        if len(held) > 2:
            yield held.popleft(), _is_cut(changes, yielded, threshold)
            yielded += 1
    while held:
        yield held.popleft(), _is_cut(changes, yielded, threshold)
        yielded += 1


class RecentChanges:
    """changes[i] of a stream of frames, the last ``keep`` of them: a frame's cut is decided from
    the changes two frames before it to two after (they grew by a float a frame, all through an
    encode: some 2 MB for an hour at 25 fps, 32 bytes a frame in Python)."""

    def __init__(self, keep: int = 6) -> None:
        self.values: deque[float] = deque(maxlen=keep)
        self.count = 0

    def append(self, value: float) -> None:
        self.values.append(value)
        self.count += 1

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> float:
        first = self.count - len(self.values)
        if not first <= i < self.count:
            raise IndexError(f"change {i} is no longer held (changes {first}..{self.count - 1} are)")
        return self.values[i - first]


def _is_cut(changes: RecentChanges, i: int, threshold: float) -> bool:
    """Whether frame ``i`` starts a shot: an isolated jump, or either jump of a one-frame shot."""
    def change(k: int) -> float:
        return changes[k] if 0 < k < len(changes) else 0.0

    def one_frame_shot(k: int) -> bool:  # frame k jumps in and frame k + 1 out, against calm around
        pair = min(change(k), change(k + 1))
        return pair >= threshold and pair >= CUT_RATIO * max(change(k - 1), change(k + 2))

    jump = change(i)
    isolated = jump >= threshold and jump >= CUT_RATIO * max(change(i - 1), change(i + 1))
    return i > 0 and (isolated or one_frame_shot(i) or one_frame_shot(i - 1))


def split_gops(frames: Iterable[np.ndarray], gop: int, scenecut: float = 0.0) -> Iterator[list[np.ndarray]]:
    """Frames in GOPs of ``gop`` (the last one shorter), a GOP also ending before a scene cut
    when ``scenecut`` (the threshold, code values) is above 0."""
    marked = marked_cuts(frames, scenecut) if scenecut > 0 else ((frame, False) for frame in frames)
    buf: list[np.ndarray] = []
    for frame, cut in marked:
        if cut and buf:
            yield buf
            buf = []
        buf.append(frame)
        if len(buf) == gop:
            yield buf
            buf = []
    if buf:
        yield buf
