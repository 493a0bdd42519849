"""The .tok container (specified in docs/FORMAT.md).

File = header, chunks (one per GOP), an optional tags block, an optional audio block, index,
trailer. Little-endian throughout. Every byte is covered by a CRC32: the header's, each chunk's
(its fixed fields and payload), the tags and audio blocks', the index's and the trailer's. The index is written last, so a writer can stream; the reader validates every size
field against the header and the file size before it allocates anything.
"""
from __future__ import annotations

import io
import math
import os
import struct
import zlib
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Iterator

from tokcodec.codec.correction_record import KIND_GRID, KIND_GRID_DETAIL, KIND_GRID_DETAIL_CODED, max_record_bytes
from tokcodec.defaults import MAX_GOP, MAX_SCALE, MIN_CODED, MIN_SCALE
from tokcodec.errors import FormatError, InputError, why_not_a_file
from tokcodec.media_tags import MAX_TAGS_BYTES, MediaTags

if TYPE_CHECKING:
    from tokcodec.model.presets import TokenizerConfig

MAGIC = b"TOKCODEC"
CHUNK_MAGIC = b"CHNK"
INDEX_MAGIC = b"INDX"
TRAILER_MAGIC = b"TOKEND\r\n"
AUDIO_MAGIC = b"AUDI"
TAGS_MAGIC = b"TAGS"
VERSION_MAJOR = 2           # 2.0: each chunk carries a correction record (codec/correction.py)
VERSION_MINOR = 2           # (of a file with detail gains and no tags: 2.3 with tags, NEWEST_MINOR)
NEWEST_MINOR = {1: 2, 2: 3}  # majors this tokcodec reads and their newest minor it knows: 1.0;
                            # 1.1 adds the optional audio block; 2.0 the corrections; 2.1 their
                            # detail gains (record kind 2); 2.2 range-coded records (kind 3);
                            # 1.2 and 2.3 the optional tags block. A file is written in the oldest
                            # version that can hold it (1.x without corrections)
TAGS_MINOR = {1: 2, 2: 3}   # the first minor of each major with the tags block
READ_MAJORS = tuple(NEWEST_MINOR)

# header: magic, major, minor, header_size, flags, width, height, coded_w, coded_h, padded_w,
# padded_h, rate_num, rate_den, frame_count, color_range, colorspace, primaries, transfer,
# gop, t_factor, s_factor, bits, coder_id, precision, name_len, name(32), sha256(32), crc
_HEADER = struct.Struct("<8sHHHH6I2IQ4BH5BB32s32sI")
HEADER_SIZE = _HEADER.size
# chunk: magic, index, first_frame, frames, latent_t, latent_h, latent_w, payload_len, crc
_CHUNK = struct.Struct("<4sIQHHHHII")
CHUNK_HEADER_SIZE = _CHUNK.size
_INDEX_HEAD = struct.Struct("<4sI")
_INDEX_ENTRY = struct.Struct("<QQII")  # offset, first_frame, frames, payload_len


def chunk_file_bytes(payload: int, record: int, correction: bool) -> int:
    """Bytes one chunk adds to a file: its header, its payload (in a file with corrections, the
    payload's length and the record after it) and its index entry (what ``add_chunk`` and
    ``close`` write for it)."""
    return CHUNK_HEADER_SIZE + (4 if correction else 0) + payload + record + _INDEX_ENTRY.size


def fixed_file_bytes(header: Header) -> int:
    """Bytes of a file that no chunk or audio accounts for: header, index head and CRC, trailer."""
    return len(header.pack()) + _INDEX_HEAD.size + 4 + TRAILER_SIZE


# trailer: index_offset, index_size, frame_count, chunk_count, crc, magic
_TRAILER = struct.Struct("<QIQII8s")
TRAILER_SIZE = _TRAILER.size
# audio block: magic, block header size, kind, start offset (microseconds, signed), payload length,
# payload crc, crc of the preceding fields
_BLOCK = struct.Struct("<4sHHqQII")
BLOCK_HEADER_SIZE = _BLOCK.size
_AUDIO = _BLOCK
AUDIO_HEADER_SIZE = _AUDIO.size
AUDIO_KIND_MATROSKA = 1
# tags block (1.2, 2.3), the same layout with its signed field reserved (0); between the last chunk
# and the audio block (or the index)
_TAGS = _BLOCK
TAGS_HEADER_SIZE = _TAGS.size
TAGS_KIND_JSON = 1

FLAG_UNTRAINED = 1
FLAG_AUDIO = 2
# every source frame was grey (its channels within io.GREY_TOLERANCE of each other): a decoder
# shows grey; readers from before it ignore the bit and show the network's faint tint
FLAG_GREY = 4
FLAG_TAGS = 8  # a tags block follows the last chunk (1.2, 2.3)
PRECISIONS = {0: "fp32", 1: "bf16", 2: "fp16"}
MAX_FRAMES = 1 << 40
MAX_DIM = 16384
MAX_RATE_TERM = (1 << 31) - 1  # frame-rate numerator and denominator: FFmpeg's AVRational is int32
MAX_CHUNKS = 1 << 28
MAX_BITS = 20               # the widest token the entropy coders take


@dataclass
class Header:
    width: int
    height: int
    coded_width: int             # size fed to the tokenizer (after --scale, before padding)
    coded_height: int
    padded_width: int
    padded_height: int
    frame_rate: Fraction
    frame_count: int             # 0 when the writer could not seek back (then the trailer is authoritative)
    gop: int
    temporal_factor: int
    spatial_factor: int
    bits: int
    coder_id: int
    model_name: str
    weights_sha256: str
    precision: str = "bf16"
    color_range: int = 0
    colorspace: int = 2
    primaries: int = 2
    transfer: int = 2
    untrained: bool = False
    has_audio: bool = False
    correction: bool = False     # chunks carry a correction record (format 2.x)
    version: tuple[int, int] = (VERSION_MAJOR, VERSION_MINOR)
    correction_detail: bool = False  # records may hold detail gains (format 2.1)
    correction_coded: bool = False   # records may be range coded (kind 3, format 2.2)
    grey: bool = False               # every source frame was grey: decode shows grey (FLAG_GREY)
    has_tags: bool = False           # a tags block follows the last chunk (FLAG_TAGS; 1.2, 2.3)

    @property
    def newest_record_kind(self) -> int:
        """The newest correction record kind this file's version allows (2.0: 1, 2.1: 2, 2.2 and
        later minors: 3): a record of a later kind is damage or a mislabelled file."""
        return KIND_GRID_DETAIL_CODED if self.correction_coded else KIND_GRID_DETAIL if self.correction_detail \
            else KIND_GRID

    def latent_shape(self, frames_in_gop: int) -> tuple[int, int, int]:
        """Token grid of a GOP holding ``frames_in_gop`` real frames (padded up to 1 + s*k)."""
        s = self.temporal_factor
        return (1 + (frames_in_gop - 1 + s - 1) // s, self.padded_height // self.spatial_factor,
                self.padded_width // self.spatial_factor)

    def check_model(self, config: TokenizerConfig, source: str) -> None:
        """FormatError where this header's token grid is not the one of the weights that made the
        file (``config``: their TokenizerConfig, which fixes the temporal and spatial factors and
        the bits): a damaged or crafted header whose checksum holds would crash the network or
        decode noise."""
        mine = (self.temporal_factor, self.spatial_factor, self.bits)
        theirs = (config.temporal_factor, config.spatial_factor, config.bits)
        if mine != theirs:
            raise FormatError(f"{source}: the header's temporal factor, spatial factor and bits {mine} are not "
                              f"those of its weights {self.model_name} {theirs}")

    def pack(self) -> bytes:
        name = self.model_name.encode("utf-8")
        if len(name) > 32:
            raise ValueError("model name longer than 32 bytes")
        if not 0 < self.frame_rate.numerator <= MAX_RATE_TERM or self.frame_rate.denominator > MAX_RATE_TERM:
            raise ValueError(f"frame rate {self.frame_rate} out of range")
        prec = {v: k for k, v in PRECISIONS.items()}[self.precision]
        flags = (FLAG_UNTRAINED if self.untrained else 0) | (FLAG_AUDIO if self.has_audio else 0) \
            | (FLAG_GREY if self.grey else 0) | (FLAG_TAGS if self.has_tags else 0)
        # the oldest format that can hold this file
        if self.correction:
            major, minor = 2, 2 if self.correction_coded else 1 if self.correction_detail else 0
        else:
            major, minor = 1, 1 if self.has_audio else 0
        if self.has_tags:
            minor = TAGS_MINOR[major]
        fields_ = (MAGIC, major, minor, HEADER_SIZE, flags,
                   self.width, self.height, self.coded_width, self.coded_height, self.padded_width,
                   self.padded_height, self.frame_rate.numerator, self.frame_rate.denominator,
                   self.frame_count, self.color_range, self.colorspace, self.primaries, self.transfer,
                   self.gop, self.temporal_factor, self.spatial_factor, self.bits, self.coder_id, prec,
                   len(name), name.ljust(32, b"\0"), bytes.fromhex(self.weights_sha256))
        body = _HEADER.pack(*fields_, 0)[:-4]
        return body + struct.pack("<I", zlib.crc32(body))

    @classmethod
    def unpack(cls, data: bytes, source: str) -> "Header":
        if len(data) < 12 or data[:8] != MAGIC:
            raise FormatError(f"{source}: not a .tok file (bad magic; `tokcodec encode` makes one of a video)")
        major, minor = struct.unpack_from("<HH", data, 8)
        if major not in READ_MAJORS:
            raise FormatError(f"{source}: unsupported .tok format version {major}.{minor} "
                              f"(this tokcodec reads {' and '.join(f'{m}.x' for m in READ_MAJORS)}; "
                              "a newer tokcodec made it?)")
        if len(data) < HEADER_SIZE:
            raise FormatError(f"{source}: truncated header")
        f = _HEADER.unpack_from(data)
        if zlib.crc32(data[:HEADER_SIZE - 4]) != f[-1]:
            raise FormatError(f"{source}: header checksum mismatch (file corrupted)")
        (_, _, _, hsize, flags, w, h, cw, ch, pw, ph, rn, rd, nframes, crange, cspace, prim, trc,
         gop, tf, sf, bits, coder, prec, name_len, name, sha, _) = f
        if hsize != HEADER_SIZE:
            raise FormatError(f"{source}: header size {hsize} does not match version {major}.{minor}")
        for label, v in (("width", w), ("height", h), ("coded width", cw), ("coded height", ch),
                         ("padded width", pw), ("padded height", ph)):
            if not 0 < v <= MAX_DIM:
                raise FormatError(f"{source}: {label} {v} out of range")
        if tf not in (1, 2, 4, 8, 16) or sf not in (1, 2, 4, 8, 16, 32) or not 1 <= bits <= MAX_BITS:
            raise FormatError(f"{source}: invalid compression factors {tf}x{sf}x{sf} / {bits} bits")
        if pw % sf or ph % sf or pw < cw or ph < ch or pw - cw >= sf or ph - ch >= sf:
            raise FormatError(f"{source}: inconsistent padding {cw}x{ch} -> {pw}x{ph}")
        check_display_size(w, h, cw, ch, source)
        if not 1 <= gop <= MAX_GOP or (gop - 1) % tf:
            raise FormatError(f"{source}: invalid GOP length {gop}")
        # (the rate's terms within FFmpeg's int32 rationals: a decode hands it to the muxer)
        if not 0 < rn <= MAX_RATE_TERM or not 0 < rd <= MAX_RATE_TERM or nframes > MAX_FRAMES \
                or name_len > 32 or prec not in PRECISIONS:
            raise FormatError(f"{source}: invalid header fields")
        try:
            model_name = name[:name_len].decode("utf-8")
        except UnicodeDecodeError:
            raise FormatError(f"{source}: invalid model name in header") from None
        if any(name[name_len:]):
            raise FormatError(f"{source}: invalid model name in header (bytes after its {name_len} are not zero)")
        return cls(w, h, cw, ch, pw, ph, Fraction(rn, rd), nframes, gop, tf, sf, bits, coder,
                   model_name, sha.hex(), PRECISIONS[prec], crange, cspace, prim, trc,
                   bool(flags & FLAG_UNTRAINED), bool(flags & FLAG_AUDIO), major >= 2, (major, minor),
                   correction_detail=(major, minor) >= (2, 1), correction_coded=(major, minor) >= (2, 2),
                   grey=bool(flags & FLAG_GREY),
                   # (the bit meant nothing before the tags block: an older minor's is ignored)
                   has_tags=bool(flags & FLAG_TAGS) and minor >= TAGS_MINOR[major])


@dataclass
class ChunkEntry:
    offset: int
    first_frame: int
    frames: int
    payload_len: int


@dataclass
class AudioEntry:
    offset: int                  # of the payload
    payload_len: int
    crc: int
    start_offset_us: int         # audio start relative to the first video frame
    kind: int


@dataclass
class AudioBlock:
    kind: int
    start_offset_us: int
    data: bytes


@dataclass
class TagsEntry:
    offset: int                  # of the payload
    payload_len: int
    crc: int


@dataclass
class Chunk:
    index: int
    first_frame: int
    frames: int
    latent_shape: tuple[int, int, int]
    payload: bytes               # the entropy coder's bytes
    correction: bytes = b""      # the GOP's correction record (format 2.x; empty in 1.x)
    stored_len: int = 0          # bytes after the chunk header in the file


def max_payload_bytes(header: Header, latent: tuple[int, int, int]) -> int:
    """Generous bound on a chunk payload: raw packing plus 1/8 and a fixed allowance, plus the
    largest correction record when the file has them."""
    tokens = latent[0] * latent[1] * latent[2]
    raw = (tokens * header.bits + 7) // 8
    extra = 4 + max_record_bytes(header.width, header.height) if header.correction else 0
    return raw + raw // 8 + 4096 + 16 * latent[0] + extra


def _split_payload(stored: bytes, header: Header) -> tuple[bytes, bytes] | None:
    """(coder payload, correction record) of a chunk's stored bytes; None if they do not split.
    Format 2.x stores u32 coder payload length, the coder payload, then the record."""
    if not header.correction:
        return stored, b""
    if len(stored) < 4:
        return None
    n = struct.unpack_from("<I", stored)[0]
    if n > len(stored) - 4:
        return None
    return stored[4:4 + n], stored[4 + n:]


def chunk_at(buf: bytes | memoryview, offset: int, header: Header) -> Chunk | None:
    """The chunk starting at ``offset`` of ``buf`` if one is there intact (magic, sizes that fit the
    header and the buffer, CRC), else None. Used to salvage chunks without trusting the index."""
    if offset < 0 or offset + CHUNK_HEADER_SIZE > len(buf) or bytes(buf[offset:offset + 4]) != CHUNK_MAGIC:
        return None
    magic, idx, first, frames, lt, lh, lw, plen, crc = _CHUNK.unpack_from(buf, offset)
    if not 1 <= frames <= header.gop or (lt, lh, lw) != header.latent_shape(frames) \
            or plen > max_payload_bytes(header, (lt, lh, lw)) \
            or offset + CHUNK_HEADER_SIZE + plen > len(buf) or first > MAX_FRAMES:
        return None
    stored = bytes(buf[offset + CHUNK_HEADER_SIZE:offset + CHUNK_HEADER_SIZE + plen])
    if zlib.crc32(stored, zlib.crc32(bytes(buf[offset:offset + CHUNK_HEADER_SIZE - 4]))) != crc:
        return None
    parts = _split_payload(stored, header)
    return None if parts is None else Chunk(idx, first, frames, (lt, lh, lw), *parts, stored_len=plen)


def stated_payload_bytes(buf: bytes | memoryview, offset: int, magic: bytes) -> int:
    """The payload length the chunk (``CHUNK_MAGIC``), audio or tags block (``AUDIO_MAGIC``,
    ``TAGS_MAGIC``: the same layout) header at ``offset`` states, within ``buf`` (0 where no such
    header fits): the bytes checking it reads."""
    layout, field = (_CHUNK, 7) if magic == CHUNK_MAGIC else (_AUDIO, 4)
    if offset < 0 or offset + layout.size > len(buf):
        return 0
    return min(layout.unpack_from(buf, offset)[field], len(buf) - offset - layout.size)


def audio_at(buf: bytes | memoryview, offset: int) -> AudioBlock | None:
    """The audio block starting at ``offset`` if one is there intact, else None."""
    if offset < 0 or offset + AUDIO_HEADER_SIZE > len(buf):
        return None
    raw = bytes(buf[offset:offset + AUDIO_HEADER_SIZE])
    magic, size, kind, start_us, plen, pcrc, crc = _AUDIO.unpack(raw)
    if magic != AUDIO_MAGIC or zlib.crc32(raw[:-4]) != crc or size != AUDIO_HEADER_SIZE \
            or kind != AUDIO_KIND_MATROSKA or offset + size + plen > len(buf):
        return None
    data = bytes(buf[offset + size:offset + size + plen])
    return AudioBlock(kind, start_us, data) if zlib.crc32(data) == pcrc else None


def tags_at(buf: bytes | memoryview, offset: int) -> bytes | None:
    """The payload of the tags block starting at ``offset`` if one is there intact, else None."""
    if offset < 0 or offset + TAGS_HEADER_SIZE > len(buf):
        return None
    raw = bytes(buf[offset:offset + TAGS_HEADER_SIZE])
    magic, size, kind, _, plen, pcrc, crc = _TAGS.unpack(raw)
    if magic != TAGS_MAGIC or zlib.crc32(raw[:-4]) != crc or size != TAGS_HEADER_SIZE or kind != TAGS_KIND_JSON \
            or plen > MAX_TAGS_BYTES or offset + size + plen > len(buf):
        return None
    data = bytes(buf[offset + size:offset + size + plen])
    return data if zlib.crc32(data) == pcrc else None


def tags_block(data: bytes) -> bytes:
    """A tags block holding ``data`` (MediaTags.to_json()), header and payload."""
    if len(data) > MAX_TAGS_BYTES:
        raise ValueError(f"tags of {len(data)} bytes, more than {MAX_TAGS_BYTES}")
    fixed = _TAGS.pack(TAGS_MAGIC, TAGS_HEADER_SIZE, TAGS_KIND_JSON, 0, len(data), zlib.crc32(data), 0)[:-4]
    return fixed + struct.pack("<I", zlib.crc32(fixed)) + data


def trailer_frames(buf: bytes | memoryview) -> int | None:
    """Total frame count from an intact trailer at the end of ``buf``, else None."""
    if len(buf) < TRAILER_SIZE:
        return None
    raw = bytes(buf[len(buf) - TRAILER_SIZE:])
    _, _, frames, _, crc, magic = _TRAILER.unpack(raw)
    ok = magic == TRAILER_MAGIC and zlib.crc32(raw[:-12]) == crc and frames <= MAX_FRAMES
    return frames if ok else None


def checked_chunk(raw: bytes, stated: ChunkEntry, i: int, header: Header, source: str, against: str) -> Chunk:
    """Chunk ``i`` from its bytes ``raw`` (header and payload), checked: its CRC, then that its
    header agrees with ``stated`` (the index's entry, or what the chunks before it imply: say
    which in ``against``) and its token grid with the file's header."""
    magic, idx, first, frames, lt, lh, lw, plen, crc = _CHUNK.unpack_from(raw)
    if zlib.crc32(raw[CHUNK_HEADER_SIZE:], zlib.crc32(raw[:CHUNK_HEADER_SIZE - 4])) != crc:
        raise FormatError(f"{source}: chunk {i} (frames {stated.first_frame}-{stated.first_frame + stated.frames - 1}) "
                          "checksum mismatch (file corrupted)")
    if magic != CHUNK_MAGIC or idx != i or first != stated.first_frame or frames != stated.frames \
            or plen != stated.payload_len:
        raise FormatError(f"{source}: chunk {i} header disagrees with {against}")
    if (lt, lh, lw) != header.latent_shape(frames):
        t, h, w = header.latent_shape(frames)
        raise FormatError(f"{source}: chunk {i}: its token grid {lt}x{lh}x{lw} is not the {t}x{h}x{w} "
                          f"of {frames} frames at the header's size")
    parts = _split_payload(raw[CHUNK_HEADER_SIZE:], header)
    if parts is None:
        raise FormatError(f"{source}: chunk {i}: coder payload length exceeds the chunk (file corrupted)")
    return Chunk(i, first, frames, (lt, lh, lw), *parts, stored_len=plen)


def chunk_head(fixed: bytes) -> ChunkEntry:
    """What the fixed fields of a chunk (its first CHUNK_HEADER_SIZE bytes) state, unchecked:
    offset 0, its first frame, frames and payload length."""
    _, _, first, frames, _, _, _, plen, _ = _CHUNK.unpack_from(fixed)
    return ChunkEntry(0, first, frames, plen)


def block_head(raw: bytes, name: str, magic: bytes, kind: int, source: str) -> tuple[int, int, int, int]:
    """The audio or tags block header ``raw`` (BLOCK_HEADER_SIZE bytes), checked: (its header
    size, its signed field, payload length, payload CRC)."""
    found, size, found_kind, field, plen, pcrc, crc = _BLOCK.unpack(raw)
    if found != magic or zlib.crc32(raw[:-4]) != crc:
        raise FormatError(f"{source}: {name} block header corrupted")
    if found_kind != kind:
        raise FormatError(f"{source}: {name} block of unknown kind {found_kind} (made by a newer tokcodec?)")
    return size, field, plen, pcrc


class ContainerWriter:
    """Streams a .tok file: header first, chunks as they come, index and trailer at close."""

    def __init__(self, fh: BinaryIO, header: Header, patch_header: bool = True) -> None:
        """``patch_header``: at close, seek back to write the frame count into the header where
        ``fh`` can seek (not for standard output, which may be a file opened for appending).
        Without it, each chunk is flushed as it is added: such an output may be read as it is
        written (`tokcodec encode - -o - | tokcodec decode - -o -`)."""
        self.fh = fh
        self.patch_header = patch_header
        self.header = header
        self.entries: list[ChunkEntry] = []
        self.frames = 0
        self.pos = 0
        self.audio: AudioBlock | None = None
        self.audio_bytes = 0  # of the audio block, once written (close)
        self.tags: bytes | None = None
        self.tags_bytes = 0   # of the tags block, once written (close)
        self._write(header.pack())

    def set_audio(self, data: bytes, start_offset_us: int, kind: int = AUDIO_KIND_MATROSKA) -> None:
        """Audio to store after the last chunk (the header must have been made with has_audio)."""
        if not self.header.has_audio:
            raise ValueError("the header was written without the audio flag")
        self.audio = AudioBlock(kind, start_offset_us, data)

    def set_tags(self, data: bytes) -> None:
        """Tags to store after the last chunk: MediaTags.to_json() (the header must have been
        made with has_tags)."""
        if not self.header.has_tags:
            raise ValueError("the header was written without the tags flag")
        self.tags = data

    def _write(self, data: bytes) -> None:
        self.fh.write(data)
        self.pos += len(data)

    def add_chunk(self, frames: int, latent_shape: tuple[int, int, int], payload: bytes,
                  correction: bytes = b"") -> None:
        """One GOP: the coder's payload and, in a file with corrections, its correction record."""
        if latent_shape != self.header.latent_shape(frames):
            raise ValueError(f"latent shape {latent_shape} does not match {frames} frames")
        if self.header.correction:
            payload = struct.pack("<I", len(payload)) + payload + correction
        elif correction:
            raise ValueError("a correction record needs a header made with correction=True")
        fixed = _CHUNK.pack(CHUNK_MAGIC, len(self.entries), self.frames, frames, *latent_shape,
                            len(payload), 0)[:-4]
        crc = zlib.crc32(payload, zlib.crc32(fixed))
        self.entries.append(ChunkEntry(self.pos, self.frames, frames, len(payload)))
        self._write(fixed + struct.pack("<I", crc) + payload)
        self.frames += frames
        if not self.patch_header:  # (each GOP out whole, not its last bytes held until the next)
            self.fh.flush()

    def _write_audio(self) -> None:
        if self.audio is None:
            raise ValueError("the header announces audio but none was given")
        a = self.audio
        fixed = _AUDIO.pack(AUDIO_MAGIC, AUDIO_HEADER_SIZE, a.kind, a.start_offset_us, len(a.data),
                            zlib.crc32(a.data), 0)[:-4]
        head = fixed + struct.pack("<I", zlib.crc32(fixed))
        self._write(head)
        self._write(a.data)  # (not joined to the head first: a second copy of an hour of PCM, 0.7 GB)
        self.audio_bytes = len(head) + len(a.data)

    def close(self) -> None:
        if self.header.has_tags:
            if self.tags is None:
                raise ValueError("the header announces tags but none were given")
            block = tags_block(self.tags)
            self._write(block)
            self.tags_bytes = len(block)
        if self.header.has_audio:
            self._write_audio()
        index = bytearray(_INDEX_HEAD.pack(INDEX_MAGIC, len(self.entries)))
        for e in self.entries:
            index += _INDEX_ENTRY.pack(e.offset, e.first_frame, e.frames, e.payload_len)
        index += struct.pack("<I", zlib.crc32(bytes(index)))
        index_offset = self.pos
        self._write(bytes(index))
        fixed = _TRAILER.pack(index_offset, len(index), self.frames, len(self.entries), 0, TRAILER_MAGIC)
        crc = zlib.crc32(fixed[:-12])
        self._write(_TRAILER.pack(index_offset, len(index), self.frames, len(self.entries), crc, TRAILER_MAGIC))
        # the header's frame count is patched in when the output can seek back
        try:
            if self.patch_header and self.fh.seekable():
                self.header.frame_count = self.frames
                self.fh.seek(0)
                self.fh.write(self.header.pack())
                self.fh.seek(0, os.SEEK_END)
        except (OSError, io.UnsupportedOperation):
            pass
        self.fh.flush()


class ContainerReader:
    """Random access to a .tok file; every structure is checked before it is trusted."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.source = str(self.path)
        self.audio_entry: AudioEntry | None = None
        self.tags_entry: TagsEntry | None = None
        try:
            self.fh = self.path.open("rb")
        except OSError as exc:
            raise FormatError(f"{self.source}: cannot open ({exc.strerror})") from None
        try:
            self.size = os.fstat(self.fh.fileno()).st_size
            self.header = Header.unpack(self.fh.read(HEADER_SIZE), self.source)
            self.entries = self._read_index()
        except BaseException:
            self.fh.close()
            raise

    def _read_index(self) -> list[ChunkEntry]:
        src = self.source
        if self.size < HEADER_SIZE + TRAILER_SIZE:
            raise FormatError(f"{src}: truncated (no trailer; was the encode interrupted?)")
        self.fh.seek(self.size - TRAILER_SIZE)
        raw = self.fh.read(TRAILER_SIZE)
        idx_off, idx_size, frames, count, crc, magic = _TRAILER.unpack(raw)
        if magic != TRAILER_MAGIC or zlib.crc32(raw[:-12]) != crc:
            raise FormatError(f"{src}: truncated or corrupted trailer (was the encode interrupted?)")
        expected = _INDEX_HEAD.size + count * _INDEX_ENTRY.size + 4
        if count > MAX_CHUNKS or idx_size != expected or idx_off + idx_size != self.size - TRAILER_SIZE \
                or idx_off < HEADER_SIZE or frames > MAX_FRAMES:
            raise FormatError(f"{src}: corrupted trailer (index position/size do not fit the file)")
        self.fh.seek(idx_off)
        index = self.fh.read(idx_size)
        if zlib.crc32(index[:-4]) != struct.unpack_from("<I", index, idx_size - 4)[0]:
            raise FormatError(f"{src}: index checksum mismatch (file corrupted)")
        magic, n = _INDEX_HEAD.unpack_from(index)
        if magic != INDEX_MAGIC or n != count:
            raise FormatError(f"{src}: corrupted index")
        if count == 0:  # (an encode that read no frame writes no file)
            raise FormatError(f"{src}: holds no chunks, so no frames (file corrupted)")
        entries, pos, next_frame = [], HEADER_SIZE, 0
        h = self.header
        for i in range(count):
            e = ChunkEntry(*_INDEX_ENTRY.unpack_from(index, _INDEX_HEAD.size + i * _INDEX_ENTRY.size))
            if e.offset != pos or e.first_frame != next_frame or not 1 <= e.frames <= h.gop \
                    or e.payload_len > max_payload_bytes(h, h.latent_shape(e.frames)):
                raise FormatError(f"{src}: index entry {i} is inconsistent (file corrupted)")
            pos = e.offset + CHUNK_HEADER_SIZE + e.payload_len
            next_frame += e.frames
            entries.append(e)
        if h.has_tags:
            self.tags_entry = self._read_tags_entry(pos, idx_off)
            pos = self.tags_entry.offset + self.tags_entry.payload_len
        if h.has_audio:
            self.audio_entry = self._read_audio_entry(pos, idx_off)
            pos = idx_off
        if pos != idx_off or next_frame != frames:
            newer = " or made by a newer tokcodec" if h.version[1] > NEWEST_MINOR[h.version[0]] else ""
            raise FormatError(f"{src}: chunks do not add up to the index (file corrupted{newer})")
        if h.frame_count not in (0, frames):
            raise FormatError(f"{src}: header says {h.frame_count} frames, index {frames}")
        self.frame_count = frames
        return entries

    def _read_block_head(self, pos: int, end: int, name: str, magic: bytes, kind: int
                         ) -> tuple[int, int, int, int]:
        """The audio or tags block header at ``pos`` (before ``end``), checked (``block_head``)."""
        if end - pos < BLOCK_HEADER_SIZE:  # (the chunks end where the block should be)
            raise FormatError(f"{self.source}: chunks do not add up to the index: no room for the {name} block "
                              "(file corrupted)")
        self.fh.seek(pos)
        return block_head(self.fh.read(BLOCK_HEADER_SIZE), name, magic, kind, self.source)

    def _read_audio_entry(self, pos: int, end: int) -> AudioEntry:
        size, start_us, plen, pcrc = self._read_block_head(pos, end, "audio", AUDIO_MAGIC, AUDIO_KIND_MATROSKA)
        if size != AUDIO_HEADER_SIZE or pos + size + plen != end:
            raise FormatError(f"{self.source}: audio block does not fit the file (file corrupted)")
        return AudioEntry(pos + size, plen, pcrc, start_us, AUDIO_KIND_MATROSKA)

    def _read_tags_entry(self, pos: int, end: int) -> TagsEntry:
        size, _, plen, pcrc = self._read_block_head(pos, end, "tags", TAGS_MAGIC, TAGS_KIND_JSON)
        if size != TAGS_HEADER_SIZE or plen > MAX_TAGS_BYTES or pos + size + plen > end:
            raise FormatError(f"{self.source}: tags block does not fit the file (file corrupted)")
        return TagsEntry(pos + size, plen, pcrc)

    @property
    def video_bytes(self) -> int:
        """Bytes of the file that are not audio or tags (the rate a video codec is compared by)."""
        e, t = self.audio_entry, self.tags_entry
        return self.size - (AUDIO_HEADER_SIZE + e.payload_len if e is not None else 0) \
            - (TAGS_HEADER_SIZE + t.payload_len if t is not None else 0)

    def read_tags(self) -> MediaTags | None:
        """The stored tags and chapters (None when the file has none), checked against their CRC
        and parsed field by field."""
        e = self.tags_entry
        if e is None:
            return None
        self.fh.seek(e.offset)
        data = self.fh.read(e.payload_len)
        if len(data) != e.payload_len or zlib.crc32(data) != e.crc:
            raise FormatError(f"{self.source}: tags block checksum mismatch (file corrupted)")
        return MediaTags.from_json(data, self.source)

    def read_audio(self) -> AudioBlock | None:
        """The stored audio (None when the file has none), checked against its CRC."""
        e = self.audio_entry
        if e is None:
            return None
        self.fh.seek(e.offset)
        data = self.fh.read(e.payload_len)
        if len(data) != e.payload_len or zlib.crc32(data) != e.crc:
            raise FormatError(f"{self.source}: audio checksum mismatch (file corrupted)")
        return AudioBlock(e.kind, e.start_offset_us, data)

    def read_chunk(self, i: int) -> Chunk:
        e = self.entries[i]
        self.fh.seek(e.offset)
        raw = self.fh.read(CHUNK_HEADER_SIZE + e.payload_len)
        if len(raw) != CHUNK_HEADER_SIZE + e.payload_len:
            raise FormatError(f"{self.source}: chunk {i} is truncated")
        return checked_chunk(raw, ChunkEntry(e.offset, e.first_frame, e.frames, e.payload_len), i, self.header,
                             self.source, "the index")

    def chunks(self) -> Iterator[Chunk]:
        for i in range(len(self.entries)):
            yield self.read_chunk(i)

    def record_kind(self, i: int) -> int:
        """The kind of chunk ``i``'s correction record (0: none, or a file without records), read
        without its payload: what a writer of copied chunks needs to choose its version before
        they come. Not checked here (read_chunk checks the chunk)."""
        if not self.header.correction:
            return 0
        e = self.entries[i]
        self.fh.seek(e.offset + CHUNK_HEADER_SIZE)
        head = self.fh.read(4)
        n = struct.unpack("<I", head)[0] if len(head) == 4 else e.payload_len
        if 4 + n >= e.payload_len:
            return 0
        self.fh.seek(e.offset + CHUNK_HEADER_SIZE + 4 + n)
        kind = self.fh.read(1)
        return kind[0] if kind else 0

    def close(self) -> None:
        self.fh.close()

    def __enter__(self) -> "ContainerReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_display_size(width: int, height: int, coded_width: int, coded_height: int, source: str) -> None:
    """FormatError unless frames of ``width`` x ``height`` could have been coded at the coded size
    (--scale in [MIN_SCALE, MAX_SCALE], at least MIN_CODED pixels a side) and lie within the
    frame-size guard: decode allocates its output frames at this size."""
    from tokcodec.io import MAX_PIXELS

    for size, coded in ((width, coded_width), (height, coded_height)):
        low = 1 if coded <= MIN_CODED else math.floor((coded - 0.5) / MAX_SCALE)
        if not low <= size <= math.ceil((coded + 0.5) / MIN_SCALE):
            raise FormatError(f"{source}: a {width}x{height} video cannot be coded at {coded_width}x{coded_height}")
    for w, h in ((width, height), (coded_width, coded_height)):
        if w * h > MAX_PIXELS:
            raise FormatError(f"{source}: {w}x{h} frames are over the {MAX_PIXELS / 1e6:.1f} megapixels "
                              "tokcodec codes")


def is_tok_file(path: str | Path) -> bool:
    """Whether ``path`` is meant as a .tok file: named .tok, or starting with its magic."""
    path = Path(path)
    if path.suffix.lower() == ".tok":
        return True
    try:
        with open(path, "rb") as f:
            return f.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


def open_tok(src: str | Path) -> ContainerReader:
    """A .tok file's reader; a missing file is the user's InputError, not an OSError."""
    src = Path(src)
    reason = why_not_a_file(src)
    if reason:
        raise InputError(f"{src}: {reason}")
    return ContainerReader(src)
