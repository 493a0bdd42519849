"""Salvage: find the intact GOPs of a damaged .tok file without trusting its index.

Every chunk carries its own magic, frame numbers, sizes and CRC, so a damaged file (a truncated
download, flipped bits on a disk) can be scanned for chunks that still check out. Only the header
must be intact: it holds the frame size and the model. The total frame count comes from the index
or trailer when they survived, else from the header, else it ends at the last intact chunk; a
count or a gap in frame numbers that the file's bytes could not have held is not believed.
"""
from __future__ import annotations

import mmap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from tokcodec.codec.container import (AUDIO_HEADER_SIZE, AUDIO_MAGIC, CHUNK_HEADER_SIZE, CHUNK_MAGIC, HEADER_SIZE,
                                      TAGS_HEADER_SIZE, TAGS_MAGIC, AudioBlock, Chunk, ContainerReader, Header,
                                      audio_at, chunk_at, stated_payload_bytes, tags_at, trailer_frames)
from tokcodec.errors import FormatError, InputError, why_not_a_file
from tokcodec.media_tags import MediaTags


@dataclass
class ChunkSpot:
    offset: int
    first_frame: int
    frames: int
    end: int  # the byte after the chunk


@dataclass
class SalvageReader:
    """A damaged (or intact) .tok file seen through its intact chunks; use as a context manager."""

    path: Path
    header: Header
    frame_count: int
    spots: list[ChunkSpot]                    # intact chunks, in frame order, not overlapping
    audio: AudioBlock | None
    problems: list[str] = field(default_factory=list)  # what was found damaged, one line each
    _buf: mmap.mmap | None = None
    tags: MediaTags | None = None             # the intact tags block's
    tags_bytes: int = 0                       # of that block

    @property
    def video_bytes(self) -> int:
        """Bytes of the file that are not its (intact) audio and tags blocks, as ContainerReader.video_bytes."""
        audio = AUDIO_HEADER_SIZE + len(self.audio.data) if self.audio is not None else 0
        return self.path.stat().st_size - audio - self.tags_bytes

    def read_tags(self) -> MediaTags | None:
        """The tags found intact (as ContainerReader.read_tags)."""
        return self.tags

    def lost_ranges(self) -> list[tuple[int, int]]:
        """Inclusive frame ranges that no intact chunk covers."""
        lost, nxt = [], 0
        for s in self.spots:
            if s.first_frame > nxt:
                lost.append((nxt, s.first_frame - 1))
            nxt = s.first_frame + s.frames
        if self.frame_count > nxt:
            lost.append((nxt, self.frame_count - 1))
        return lost

    def chunks(self) -> Iterator[Chunk]:
        for spot in self.spots:
            chunk = chunk_at(self._buf, spot.offset, self.header)
            if chunk is not None:  # checked during the scan; the file could change under us
                yield chunk

    def close(self) -> None:
        if self._buf is not None:
            self._buf.close()
            self._buf = None

    def __enter__(self) -> SalvageReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


#: lost frames (filled on decode) are believed up to this many times the frames of the intact
#: chunks, or as far as the lost bytes could have held them: a file made to make decode
#: --salvage write without end (a header of 2**40 frames, a chunk numbered 2**39) is not, while a
#: truncated download keeps its length as long as a sixteenth of it survives
TAIL_FILL_FACTOR = 16


def could_hold(nbytes: int, frames: int, header: Header) -> bool:
    """Whether ``nbytes`` of lost file could have held ``frames`` frames: each lost chunk took at
    least its header's bytes and held at most a GOP."""
    return frames <= nbytes // CHUNK_HEADER_SIZE * header.gop


#: the most bytes a scan checks (checksums of candidates: a file full of chunk and audio headers
#: that each claim the rest of it took time quadratic in its size), as times the file's size
SCAN_BYTES_FACTOR = 8
SCAN_BYTES_EXTRA = 64 << 20


@dataclass
class _ScanBudget:
    """The bytes a scan may still check; ``spent`` once it ran out."""

    left: int
    spent: bool = False

    def take(self, buf: mmap.mmap, pos: int, magic: bytes) -> bool:
        self.left -= CHUNK_HEADER_SIZE + stated_payload_bytes(buf, pos, magic)
        self.spent = self.spent or self.left < 0
        return not self.spent


def _scan_chunks(buf: mmap.mmap, header: Header, candidates: list[int] | None,
                 budget: _ScanBudget) -> list[ChunkSpot]:
    """Intact chunks at the given offsets, or anywhere in the file when None."""
    spots: list[ChunkSpot] = []
    next_frame = intact = lost = 0
    pos = end = HEADER_SIZE  # end: where the last intact chunk ended
    offsets = iter(candidates) if candidates is not None else None
    while True:
        pos = next(offsets, -1) if offsets is not None else buf.find(CHUNK_MAGIC, pos)
        if pos < 0 or not budget.take(buf, pos, CHUNK_MAGIC):
            return spots
        chunk = chunk_at(buf, pos, header)
        gap = chunk.first_frame - next_frame if chunk is not None else -1
        # (a gap the bytes before the chunk could not have held is believed within the factor:
        # bytes cut out of a file, not zeroed, leave good chunks with nothing between them)
        if gap < 0 or not (could_hold(pos - end, gap, header)
                           or lost + gap <= TAIL_FILL_FACTOR * (intact + chunk.frames)):
            pos += 1
            continue
        end = pos + CHUNK_HEADER_SIZE + chunk.stored_len
        spots.append(ChunkSpot(pos, chunk.first_frame, chunk.frames, end))
        next_frame = chunk.first_frame + chunk.frames
        intact, lost = intact + chunk.frames, lost + gap
        pos = end


def _find_audio(buf: mmap.mmap, budget: _ScanBudget) -> AudioBlock | None:
    pos = buf.rfind(AUDIO_MAGIC)
    while pos >= HEADER_SIZE and budget.take(buf, pos, AUDIO_MAGIC):
        audio = audio_at(buf, pos)
        if audio is not None:
            return audio
        pos = buf.rfind(AUDIO_MAGIC, HEADER_SIZE, pos)
    return None


def _find_tags(buf: mmap.mmap, budget: _ScanBudget, source: str) -> tuple[MediaTags, int] | None:
    """The last intact tags block of the file, and its size in bytes."""
    pos = buf.rfind(TAGS_MAGIC)
    while pos >= HEADER_SIZE and budget.take(buf, pos, TAGS_MAGIC):
        data = tags_at(buf, pos)
        if data is not None:
            try:
                return MediaTags.from_json(data, source), TAGS_HEADER_SIZE + len(data)
            except FormatError:
                pass
        pos = buf.rfind(TAGS_MAGIC, HEADER_SIZE, pos)
    return None


def nothing_survived(path: Path, which: str, problems: list[str], what: str = "survived intact") -> FormatError:
    """The error of a salvage that would write nothing but filler (no intact chunk, or none that
    decodes: linked to a lost one), naming the first problem met; ``which``: " of its N frames"."""
    return FormatError(f"{path}: no GOP{which} {what}; nothing to salvage"
                       + "".join(f" ({p.removeprefix(f'{path}: ')})" for p in problems[:1]))


def open_salvage(path: str | Path) -> SalvageReader:
    """Intact chunks (and audio) of a possibly damaged .tok file; only its header must be readable."""
    path = Path(path)
    reason = why_not_a_file(path)
    if reason:
        raise InputError(f"{path}: {reason}")
    size = path.stat().st_size
    if size < HEADER_SIZE:
        raise FormatError(f"{path}: only {size} bytes, too short for a .tok header; nothing to salvage")
    with path.open("rb") as fh:
        buf = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    try:
        try:
            header = Header.unpack(buf[:HEADER_SIZE], str(path))
        except FormatError as exc:
            raise FormatError(f"{exc}; the header is needed to salvage anything") from None
        problems: list[str] = []
        try:
            with ContainerReader(path) as reader:
                offsets: list[int] | None = [e.offset for e in reader.entries]
                total = reader.frame_count
        except FormatError as exc:
            problems.append(f"{exc}; scanned the file for intact chunks")
            offsets, total = None, trailer_frames(buf) or header.frame_count
        budget = _ScanBudget(SCAN_BYTES_FACTOR * size + SCAN_BYTES_EXTRA)
        spots = _scan_chunks(buf, header, offsets, budget)
        if offsets is not None and len(spots) < len(offsets):
            problems.append(f"{path}: {len(offsets) - len(spots)} of {len(offsets)} chunks are damaged")
        if not spots:  # (a video of nothing but filler, exit status 0, helped no one)
            raise nothing_survived(path, f" of its {total} frames" if total else "", problems)
        audio = _find_audio(buf, budget) if header.has_audio else None
        found_tags = _find_tags(buf, budget, str(path)) if header.has_tags else None
        if budget.spent:
            problems.append(f"{path}: the scan stopped after checking {SCAN_BYTES_FACTOR} times the file's size "
                            "(it holds very many damaged chunk, tags or audio headers); what lies past that is lost")
        if header.has_audio and audio is None:
            problems.append(f"{path}: the audio block is damaged (audio dropped)")
        if header.has_tags and found_tags is None:
            problems.append(f"{path}: the tags block is damaged (tags and chapters dropped)")
        end = spots[-1].first_frame + spots[-1].frames
        if total > end:
            after = size - spots[-1].end
            believed = max(end * TAIL_FILL_FACTOR, end + after // CHUNK_HEADER_SIZE * header.gop)
            if total > believed:
                problems.append(f"{path}: its stated frame count, {total}, is more than the file could hold; "
                                f"the salvaged video ends at frame {believed}")
                total = believed
        tags, tags_bytes = found_tags or (None, 0)
        return SalvageReader(path, header, max(total, end), spots, audio, problems, buf, tags, tags_bytes)
    except BaseException:
        buf.close()
        raise
