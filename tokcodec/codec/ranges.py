"""Part of a .tok file: a time (or frame) range, and the chunks that decode it.

`decode --ss 90 -t 5` (ffmpeg's spelling) decodes five seconds from 1:30 without running the
network on anything else: the index gives each chunk's first frame, so only the chunks that
overlap the range go through the decoder. A linked chunk (coded against the GOP before it, every
GOP between key GOPs) needs the chunks back to its key GOP entropy-decoded first; those cost
milliseconds (the coder, not the network), so a seek costs at most one key interval of entropy
decoding. Times follow ffmpeg's duration syntax and are kept exact (Fraction): a range holds the
frames whose presentation time t satisfies start <= t < start + duration.
"""
from __future__ import annotations

import math
import numbers
import operator
import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable, Iterator

from tokcodec.errors import ArgumentError, InputError

#: [HH:]MM:SS[.frac] or S[.frac][s|ms|us], as ffmpeg reads durations (no sign: a range starts in the file)
_CLOCK = re.compile(r"^(?:(\d+):)?(\d+):(\d+(?:\.\d*)?)$")
_PLAIN = re.compile(r"^(\d+(?:\.\d*)?|\.\d+)(s|ms|us)?$")
_UNITS = {None: Fraction(1), "s": Fraction(1), "ms": Fraction(1, 1000), "us": Fraction(1, 1_000_000)}


def parse_time(text: str) -> Fraction:
    """Seconds, exactly, from ffmpeg's duration syntax: ``90``, ``1.5``, ``250ms``, ``1:30``,
    ``01:02:03.5``. Negative times are refused (a range cannot start before the file)."""
    value = text.strip()
    clock = _CLOCK.match(value)
    if clock:
        hours, minutes, seconds = clock.groups()
        if (hours is not None and int(minutes) >= 60) or Fraction(seconds) >= 60:
            raise ArgumentError(f"{text!r}: minutes and seconds of a HH:MM:SS time run below 60")
        return int(hours or 0) * 3600 + int(minutes) * 60 + Fraction(seconds)
    plain = _PLAIN.match(value)
    if plain:
        return Fraction(plain.group(1)) * _UNITS[plain.group(2)]
    raise ArgumentError(f"{text!r} is not a time: give seconds (90, 1.5, 250ms) or [HH:]MM:SS[.frac]")


def seconds(value: float | Fraction | str | None) -> Fraction | None:
    """A time from Python as an exact Fraction: a float (or a numpy float) as the decimal it
    prints as (0.88 is 22/25, not 0.88000000000000000444, which would start a range one frame
    late at 25 fps), a string through parse_time."""
    if value is None or isinstance(value, Fraction):
        return value
    if isinstance(value, str):
        return parse_time(value)
    try:
        if isinstance(value, numbers.Rational):
            return Fraction(value)
        # numpy's floats print as their shortest decimal (np.float32(0.2) prints 0.2) but become
        # another float on the way to Python's (0.2000000029...): read them as they print (numpy is
        # not imported here for the test: this module serves the CLI before numpy loads)
        if type(value).__module__ == "numpy":
            return Fraction(str(value))
        return Fraction(str(float(value)))  # floats: the shortest decimal that prints
    except (ValueError, TypeError, OverflowError) as exc:
        raise ArgumentError(f"{value!r} is not a time ({exc})") from None


@dataclass(frozen=True)
class FrameRange:
    """Frames ``start`` to ``stop`` - 1 of a file."""
    start: int
    stop: int

    @property
    def frames(self) -> int:
        return self.stop - self.start

    def overlaps(self, first: int, count: int) -> bool:
        return first < self.stop and first + count > self.start


def frame_range(frame_count: int, frame_rate: Fraction, *, start: Fraction | None = None,
                duration: Fraction | None = None, frames: int | None = None,
                source: str = "") -> FrameRange:
    """The frames of a file of ``frame_count`` frames at ``frame_rate`` from ``start`` seconds for
    ``duration`` seconds or ``frames`` frames (whichever ends first; to the end when neither is
    given). A range that runs past the end stops there, as ffmpeg's does; one that starts at or
    after the end, or holds no frame, is an InputError; a setting out of its range (a negative
    start, no duration, fewer than one frame) an ArgumentError."""
    where = f"{source}: " if source else ""
    rate = Fraction(frame_rate)
    if rate <= 0:
        raise InputError(f"{where}no frame rate to find times by")
    if start is not None and start < 0:
        raise ArgumentError(f"{where}the start time cannot be negative")
    first = 0 if start is None else math.ceil(start * rate)
    if first >= frame_count:
        frames = f"{frame_count} frame{'s' if frame_count != 1 else ''}"
        raise InputError(f"{where}the range starts at {float(start or 0):g} s (frame {first}), after the "
                         f"end: the file has {frames} ({float(frame_count / rate):.3f} s), the last at "
                         f"{float((frame_count - 1) / rate):.3f} s")
    stop = frame_count
    if duration is not None:
        if duration <= 0:
            raise ArgumentError(f"{where}the duration must be more than 0 s")
        stop = min(stop, math.ceil(((start or 0) + duration) * rate))
    if frames is not None:
        try:
            frames = operator.index(frames)
        except TypeError:
            raise ArgumentError(f"{where}the frame count must be a whole number, not {frames!r}") from None
        if frames < 1:
            raise ArgumentError(f"{where}the frame count must be at least 1")
        stop = min(stop, first + frames)
    if stop <= first:
        raise InputError(f"{where}{float(duration or 0):g} s from {float(start or 0):g} s holds no frame "
                         f"at {float(rate):g} fps")
    return FrameRange(first, stop)


def time_of(frame: int, frame_rate: Fraction) -> Fraction:
    """Presentation time of ``frame`` in seconds."""
    return Fraction(frame) / Fraction(frame_rate)


def chunk_span(first_frames: list[int], counts: list[int], wanted: FrameRange,
               links: Callable[[int], bool]) -> tuple[int, int]:
    """Indices [first, last] of the chunks to read for ``wanted``: from the key chunk at or before
    the first chunk that overlaps the range (``links(i)`` says whether chunk i is coded against
    chunk i - 1) to the last chunk that overlaps it."""
    overlapping = [i for i, (f, n) in enumerate(zip(first_frames, counts)) if wanted.overlaps(f, n)]
    if not overlapping:
        raise InputError(f"no chunk holds frames {wanted.start}-{wanted.stop - 1}")
    first = overlapping[0]
    while first > 0 and links(first):
        first -= 1
    return first, overlapping[-1]


def in_range(items: Iterator[tuple], wanted: FrameRange, lead_in: bool = False) -> Iterator[tuple]:
    """The (first frame, frames, ...) items, in frame order, that overlap ``wanted``: the chunks
    decoded only so that a linked chunk after them could be are dropped before the network, and
    ``items`` is closed once past the range. With ``lead_in`` (a salvage, where chunks may be
    missing) the last item before the range is kept too when no item holds the range's first
    frame: lost frames repeat the last good frame before them, as in a whole decode."""
    before = None
    try:
        for item in items:
            if item[0] >= wanted.stop:
                break
            if wanted.overlaps(item[0], item[1]):
                if before is not None and item[0] > wanted.start:
                    yield before
                before = None
                yield item
            elif lead_in:
                before = item
        if before is not None:
            yield before
    finally:
        close = getattr(items, "close", None)
        if close is not None:
            close()
