"""A .tok read once, as it comes: `tokcodec encode - -o - | tokcodec decode - -o - | mpv -`.

A .tok is written in one pass (header, chunks, then the tags and audio blocks the header
announces, the index, the trailer), so it decodes as it is read: each chunk is checked as it
comes (its sizes against the header before anything is allocated for it, its place after the
chunks before it, its CRC), and what follows the last chunk once it has come: the announced
blocks, an index that lists exactly the chunks read, a trailer that agrees, then the stream's
end. The audio and tags come after the video, so a decode that puts them into its output reads
a file instead (the command line copies such a pipe to one first).
"""
from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from tokcodec.codec.container import (_INDEX_ENTRY, _INDEX_HEAD, _TRAILER, AUDIO_HEADER_SIZE, AUDIO_KIND_MATROSKA,
                                      AUDIO_MAGIC, BLOCK_HEADER_SIZE, CHUNK_HEADER_SIZE, CHUNK_MAGIC, HEADER_SIZE,
                                      INDEX_MAGIC, MAX_CHUNKS, NEWEST_MINOR, TAGS_HEADER_SIZE, TAGS_KIND_JSON, TAGS_MAGIC,
                                      TRAILER_MAGIC, TRAILER_SIZE, Chunk, ChunkEntry, Header, block_head,
                                      checked_chunk, chunk_head, max_payload_bytes)
from tokcodec.errors import FormatError, InputError
from tokcodec.io import audio_dropped, tags_dropped
from tokcodec.media_tags import MAX_TAGS_BYTES, MediaTags
from tokcodec.pipes import CHUNK, read_exactly, read_some

INTERRUPTED = "was the encode interrupted?"


def after_video(header: Header, dst: Path, audio: bool, metadata: bool) -> list[str]:
    """What of a .tok's stored after its video a decode into ``dst`` would write ("audio",
    "tags"; with ``audio`` and ``metadata``, as decode_video takes them), which it needs before
    the frames: empty where the .tok can be decoded as it comes."""
    return [name for name, stored, wanted, dropped in (("audio", header.has_audio, audio, audio_dropped),
                                                       ("tags", header.has_tags, metadata, tags_dropped))
            if stored and wanted and not dropped(dst)]


class TokStream:
    """A .tok file's bytes from a stream (a pipe), read once, in order: ``header`` at once,
    ``chunks()`` as they come, and at their end the rest checked. ``frame_count`` is the
    header's (0 where the writer could not go back to fill it in, as `encode -o -`) until the
    stream has ended, then the trailer's; ``frames_read`` counts the frames of the chunks read.
    ``head``: bytes already read from ``stream`` (its first ones). The stream is not closed here."""

    def __init__(self, stream: BinaryIO, name: str = "stream", head: bytes = b"") -> None:
        self.stream, self.source, self.path = stream, name, Path(name)
        self.pos, self._head = 0, len(head)
        self.header = Header.unpack(head + self._take(HEADER_SIZE - len(head), "within its header"), name)
        self.pos = HEADER_SIZE
        self.entries: list[ChunkEntry] = []
        self.frames_read = 0
        self.ended = False          # read to the end of its trailer, all of it checked
        self._tags: bytes | None = None
        self._tags_damage: str | None = None  # (as a file's: said when they are read, not fatal)
        self._started = False

    @property
    def frame_count(self) -> int:
        return self.frames_read if self.ended else self.header.frame_count

    def chunks(self) -> Iterator[Chunk]:
        """The chunks, each checked, as they come; after the last, the rest of the file (a
        FormatError where it is not all there and consistent). Once only."""
        if self._started:
            raise RuntimeError(f"{self.source}: a stream's chunks are read once")
        self._started = True
        h = self.header
        while True:
            i = len(self.entries)
            magic = self._take(4, self._after())
            if magic != CHUNK_MAGIC:
                break
            fixed = magic + self._take(CHUNK_HEADER_SIZE - 4, f"within chunk {i}'s header")
            stated = chunk_head(fixed)
            if i >= MAX_CHUNKS or not 1 <= stated.frames <= h.gop \
                    or stated.payload_len > max_payload_bytes(h, h.latent_shape(stated.frames)):
                raise FormatError(f"{self.source}: chunk {i} header is inconsistent (file corrupted)")
            entry = ChunkEntry(self.pos, self.frames_read, stated.frames, stated.payload_len)
            last = self.frames_read + stated.frames - 1
            raw = fixed + self._take(stated.payload_len, f"within chunk {i} (frames {self.frames_read}-{last})")
            chunk = checked_chunk(raw, entry, i, h, self.source, "the chunks before it")
            self.entries.append(entry)
            self.pos += len(raw)
            self.frames_read += chunk.frames
            yield chunk
        self._finish(magic)

    def read_tags(self) -> MediaTags | None:
        """The stored tags and chapters (None when the file has none), once the stream has ended;
        a FormatError where their block was damaged (as ContainerReader.read_tags: the rest of
        the file is read and checked all the same)."""
        if not self.ended:
            raise RuntimeError(f"{self.source}: a stream's tags come after its chunks: read them first")
        if self._tags_damage:
            raise FormatError(self._tags_damage)
        return None if self._tags is None else MediaTags.from_json(self._tags, self.source)

    def close(self) -> None:
        """(The stream is its owner's to close.)"""

    def __enter__(self) -> TokStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _after(self) -> str:
        n, h = len(self.entries), self.header
        block = "tags block" if h.has_tags else "audio block" if h.has_audio else "index"
        return f"after chunk {n - 1} (frame {self.frames_read - 1}), before its {block}" if n \
            else "after its header, before any chunk"

    def _finish(self, magic: bytes) -> None:
        h, src = self.header, self.source
        if not self.entries:
            raise FormatError(f"{src}: holds no chunks, so no frames (file corrupted)")
        if h.has_tags:
            size, _, length, crc = self._block_head(magic, "tags", TAGS_MAGIC, TAGS_KIND_JSON)
            if size != TAGS_HEADER_SIZE or length > MAX_TAGS_BYTES:
                raise FormatError(f"{src}: tags block does not fit the file (file corrupted)")
            self._tags = self._take(length, "within the tags block")
            self.pos += length
            if zlib.crc32(self._tags) != crc:
                self._tags_damage = f"{src}: tags block checksum mismatch (file corrupted)"
            magic = self._take(4, f"after the tags block, before its {'audio block' if h.has_audio else 'index'}")
        if h.has_audio:
            size, _, length, crc = self._block_head(magic, "audio", AUDIO_MAGIC, AUDIO_KIND_MATROSKA)
            if size != AUDIO_HEADER_SIZE:
                raise FormatError(f"{src}: audio block does not fit the file (file corrupted)")
            if self._skip(length) != crc:
                raise FormatError(f"{src}: audio checksum mismatch (file corrupted)")
            magic = self._take(4, "after the audio block, before its index")
        self._read_index(magic)

    def _block_head(self, magic: bytes, name: str, block_magic: bytes, kind: int) -> tuple[int, int, int, int]:
        if magic != block_magic:
            raise FormatError(f"{self.source}: no {name} block after the last chunk, where its header "
                              "announces one (file corrupted)")
        raw = magic + self._take(BLOCK_HEADER_SIZE - 4, f"within the {name} block's header")
        found = block_head(raw, name, block_magic, kind, self.source)
        self.pos += BLOCK_HEADER_SIZE
        return found

    def _read_index(self, magic: bytes) -> None:
        src, count = self.source, len(self.entries)
        if magic != INDEX_MAGIC:
            h = self.header
            newer = " or made by a newer tokcodec" if h.version[1] > NEWEST_MINOR[h.version[0]] else ""
            raise FormatError(f"{src}: neither a chunk nor the index after chunk {count - 1} (file corrupted{newer})")
        index = magic + self._take(_INDEX_HEAD.size - 4, "within the index")
        listed = _INDEX_HEAD.unpack(index)[1]
        if listed != count:
            raise FormatError(f"{src}: the index lists {listed} chunks, the stream held {count} (file corrupted)")
        index += self._take(count * _INDEX_ENTRY.size + 4, "within the index")
        if zlib.crc32(index[:-4]) != struct.unpack_from("<I", index, len(index) - 4)[0]:
            raise FormatError(f"{src}: index checksum mismatch (file corrupted)")
        for i, e in enumerate(self.entries):
            if _INDEX_ENTRY.unpack_from(index, _INDEX_HEAD.size + i * _INDEX_ENTRY.size) != \
                    (e.offset, e.first_frame, e.frames, e.payload_len):
                raise FormatError(f"{src}: index entry {i} disagrees with chunk {i} (file corrupted)")
        index_at = self.pos
        self.pos += len(index)
        raw = self._take(TRAILER_SIZE, "within the trailer")
        at, size, frames, chunks, crc, trailer_magic = _TRAILER.unpack(raw)
        if trailer_magic != TRAILER_MAGIC or zlib.crc32(raw[:-12]) != crc:
            raise FormatError(f"{src}: corrupted trailer")
        if (at, size, frames, chunks) != (index_at, len(index), self.frames_read, count):
            raise FormatError(f"{src}: the trailer disagrees with the chunks and index before it (file corrupted)")
        if self.header.frame_count not in (0, frames):
            raise FormatError(f"{src}: header says {self.header.frame_count} frames, its chunks hold {frames}")
        if self._read(1):
            raise FormatError(f"{src}: more bytes after the trailer, the end of a .tok (files joined? "
                              "`tokcodec concat` joins .tok files)")
        self.ended = True

    def _read(self, size: int) -> bytes:
        try:
            return read_some(self.stream, size)
        except OSError as exc:
            raise InputError(f"{self.source}: cannot read it ({exc.strerror or exc})") from None

    def _take(self, size: int, where: str) -> bytes:
        """The next ``size`` bytes; where the stream ends first, a FormatError that says it
        ends ``where``. The caller checks ``size`` against the header's bounds first."""
        try:
            got = read_exactly(self.stream, size)
        except OSError as exc:
            raise InputError(f"{self.source}: cannot read it ({exc.strerror or exc})") from None
        if len(got) < size:
            if not (got or self.pos or self._head):
                raise FormatError(f"{self.source}: is empty (not a .tok file)")
            raise FormatError(f"{self.source}: ends {where} ({INTERRUPTED})")
        return got

    def _skip(self, size: int) -> int:
        """Read ``size`` bytes without keeping them (the audio, which a decode as it comes does
        not take); their CRC32."""
        crc, left = 0, size
        while left:
            block = self._read(min(left, CHUNK))
            if not block:
                raise FormatError(f"{self.source}: ends within the audio block ({INTERRUPTED})")
            crc = zlib.crc32(block, crc)
            left -= len(block)
        self.pos += size
        return crc
