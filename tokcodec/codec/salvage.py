"""Salvage: find the intact GOPs of a damaged .tok file without trusting its index.

Every chunk carries its own magic, frame numbers, sizes and CRC, so a damaged file (a truncated
download, flipped bits on a disk) can be scanned for chunks that still check out. Only the header
must be intact: it holds the frame size and the model. The total frame count comes from the index
or trailer when they survived, else from the header, else it ends at the last intact chunk.
"""
from __future__ import annotations

import mmap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from tokcodec.codec.container import (AUDIO_HEADER_SIZE, AUDIO_MAGIC, CHUNK_HEADER_SIZE, CHUNK_MAGIC, HEADER_SIZE,
                                      AudioBlock, Chunk, ContainerReader, Header, audio_at, chunk_at,
                                      trailer_frames)
from tokcodec.errors import FormatError, InputError, why_not_a_file


@dataclass
class ChunkSpot:
    offset: int
    first_frame: int
    frames: int


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

    @property
    def video_bytes(self) -> int:
        """Bytes of the file that are not its (intact) audio block, as ContainerReader.video_bytes."""
        audio = AUDIO_HEADER_SIZE + len(self.audio.data) if self.audio is not None else 0
        return self.path.stat().st_size - audio

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


def _scan_chunks(buf: mmap.mmap, header: Header, candidates: list[int] | None) -> list[ChunkSpot]:
    """Intact chunks at the given offsets, or anywhere in the file when None."""
    spots: list[ChunkSpot] = []
    next_frame = 0
    pos = HEADER_SIZE
    offsets = iter(candidates) if candidates is not None else None
    while True:
        pos = next(offsets, -1) if offsets is not None else buf.find(CHUNK_MAGIC, pos)
        if pos < 0:
            return spots
        chunk = chunk_at(buf, pos, header)
        if chunk is None or chunk.first_frame < next_frame:
            pos += 1
            continue
        spots.append(ChunkSpot(pos, chunk.first_frame, chunk.frames))
        next_frame = chunk.first_frame + chunk.frames
        pos += CHUNK_HEADER_SIZE + chunk.stored_len


def _find_audio(buf: mmap.mmap) -> AudioBlock | None:
    pos = buf.rfind(AUDIO_MAGIC)
    while pos >= HEADER_SIZE:
        audio = audio_at(buf, pos)
        if audio is not None:
            return audio
        pos = buf.rfind(AUDIO_MAGIC, HEADER_SIZE, pos)
    return None


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
        spots = _scan_chunks(buf, header, offsets)
        if offsets is not None and len(spots) < len(offsets):
            problems.append(f"{path}: {len(offsets) - len(spots)} of {len(offsets)} chunks are damaged")
        audio = _find_audio(buf) if header.has_audio else None
        if header.has_audio and audio is None:
            problems.append(f"{path}: the audio block is damaged (audio dropped)")
        end = spots[-1].first_frame + spots[-1].frames if spots else 0
        return SalvageReader(path, header, max(total, end), spots, audio, problems, buf)
    except BaseException:
        buf.close()
        raise
