"""The .tok container (specified in docs/FORMAT.md).

File = header, chunks (one per GOP), index, trailer. Little-endian throughout. Every byte is
covered by a CRC32: the header's, each chunk's (its fixed fields and payload), the index's and the
trailer's. The index is written last, so a writer can stream; the reader validates every size
field against the header and the file size before it allocates anything.
"""
from __future__ import annotations

import io
import os
import struct
import zlib
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO, Iterator

from tokcodec.errors import FormatError

MAGIC = b"TOKCODEC"
CHUNK_MAGIC = b"CHNK"
INDEX_MAGIC = b"INDX"
TRAILER_MAGIC = b"TOKEND\r\n"
VERSION_MAJOR = 1
VERSION_MINOR = 0

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
# trailer: index_offset, index_size, frame_count, chunk_count, crc, magic
_TRAILER = struct.Struct("<QIQII8s")
TRAILER_SIZE = _TRAILER.size

FLAG_UNTRAINED = 1
PRECISIONS = {0: "fp32", 1: "bf16", 2: "fp16"}
MAX_FRAMES = 1 << 40
MAX_DIM = 16384
MAX_GOP = 4097
MAX_CHUNKS = 1 << 28


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
    version: tuple[int, int] = (VERSION_MAJOR, VERSION_MINOR)

    def latent_shape(self, frames_in_gop: int) -> tuple[int, int, int]:
        """Token grid of a GOP holding ``frames_in_gop`` real frames (padded up to 1 + s*k)."""
        s = self.temporal_factor
        return (1 + (frames_in_gop - 1 + s - 1) // s, self.padded_height // self.spatial_factor,
                self.padded_width // self.spatial_factor)

    def pack(self) -> bytes:
        name = self.model_name.encode("utf-8")
        if len(name) > 32:
            raise ValueError("model name longer than 32 bytes")
        prec = {v: k for k, v in PRECISIONS.items()}[self.precision]
        fields_ = (MAGIC, VERSION_MAJOR, VERSION_MINOR, HEADER_SIZE, FLAG_UNTRAINED if self.untrained else 0,
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
            raise FormatError(f"{source}: not a .tok file (bad magic)")
        major, minor = struct.unpack_from("<HH", data, 8)
        if major != VERSION_MAJOR:
            raise FormatError(f"{source}: unsupported .tok format version {major}.{minor} "
                              f"(this tokcodec reads {VERSION_MAJOR}.x)")
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
        if tf not in (1, 2, 4, 8, 16) or sf not in (1, 2, 4, 8, 16, 32) or not 1 <= bits <= 24:
            raise FormatError(f"{source}: invalid compression factors {tf}x{sf}x{sf} / {bits} bits")
        if pw % sf or ph % sf or pw < cw or ph < ch or pw - cw >= sf or ph - ch >= sf:
            raise FormatError(f"{source}: inconsistent padding {cw}x{ch} -> {pw}x{ph}")
        if not 1 <= gop <= MAX_GOP or (gop - 1) % tf:
            raise FormatError(f"{source}: invalid GOP length {gop}")
        if rn <= 0 or rd <= 0 or nframes > MAX_FRAMES or name_len > 32 or prec not in PRECISIONS:
            raise FormatError(f"{source}: invalid header fields")
        try:
            model_name = name[:name_len].decode("utf-8")
        except UnicodeDecodeError:
            raise FormatError(f"{source}: invalid model name in header") from None
        return cls(w, h, cw, ch, pw, ph, Fraction(rn, rd), nframes, gop, tf, sf, bits, coder,
                   model_name, sha.hex(), PRECISIONS[prec], crange, cspace, prim, trc,
                   bool(flags & FLAG_UNTRAINED), (major, minor))


@dataclass
class ChunkEntry:
    offset: int
    first_frame: int
    frames: int
    payload_len: int


@dataclass
class Chunk:
    index: int
    first_frame: int
    frames: int
    latent_shape: tuple[int, int, int]
    payload: bytes


def max_payload_bytes(header: Header, latent: tuple[int, int, int]) -> int:
    """Generous bound on a chunk payload: raw packing plus 1/8 and a fixed allowance."""
    tokens = latent[0] * latent[1] * latent[2]
    raw = (tokens * header.bits + 7) // 8
    return raw + raw // 8 + 4096 + 16 * latent[0]


class ContainerWriter:
    """Streams a .tok file: header first, chunks as they come, index and trailer at close."""

    def __init__(self, fh: BinaryIO, header: Header) -> None:
        self.fh = fh
        self.header = header
        self.entries: list[ChunkEntry] = []
        self.frames = 0
        self.pos = 0
        self._write(header.pack())

    def _write(self, data: bytes) -> None:
        self.fh.write(data)
        self.pos += len(data)

    def add_chunk(self, frames: int, latent_shape: tuple[int, int, int], payload: bytes) -> None:
        if latent_shape != self.header.latent_shape(frames):
            raise ValueError(f"latent shape {latent_shape} does not match {frames} frames")
        fixed = _CHUNK.pack(CHUNK_MAGIC, len(self.entries), self.frames, frames, *latent_shape,
                            len(payload), 0)[:-4]
        crc = zlib.crc32(payload, zlib.crc32(fixed))
        self.entries.append(ChunkEntry(self.pos, self.frames, frames, len(payload)))
        self._write(fixed + struct.pack("<I", crc) + payload)
        self.frames += frames

    def close(self) -> None:
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
            if self.fh.seekable():
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
        if pos != idx_off or next_frame != frames:
            raise FormatError(f"{src}: chunks do not add up to the index (file corrupted)")
        if h.frame_count not in (0, frames):
            raise FormatError(f"{src}: header says {h.frame_count} frames, index {frames}")
        self.frame_count = frames
        return entries

    def read_chunk(self, i: int) -> Chunk:
        e = self.entries[i]
        self.fh.seek(e.offset)
        raw = self.fh.read(CHUNK_HEADER_SIZE + e.payload_len)
        if len(raw) != CHUNK_HEADER_SIZE + e.payload_len:
            raise FormatError(f"{self.source}: chunk {i} is truncated")
        magic, idx, first, frames, lt, lh, lw, plen, crc = _CHUNK.unpack_from(raw)
        if zlib.crc32(raw[CHUNK_HEADER_SIZE:], zlib.crc32(raw[:CHUNK_HEADER_SIZE - 4])) != crc:
            raise FormatError(f"{self.source}: chunk {i} (frames {e.first_frame}-{e.first_frame + e.frames - 1}) "
                              "checksum mismatch (file corrupted)")
        if magic != CHUNK_MAGIC or idx != i or first != e.first_frame or frames != e.frames \
                or plen != e.payload_len or (lt, lh, lw) != self.header.latent_shape(frames):
            raise FormatError(f"{self.source}: chunk {i} header disagrees with the index")
        return Chunk(i, first, frames, (lt, lh, lw), raw[CHUNK_HEADER_SIZE:])

    def chunks(self) -> Iterator[Chunk]:
        for i in range(len(self.entries)):
            yield self.read_chunk(i)

    def close(self) -> None:
        self.fh.close()

    def __enter__(self) -> "ContainerReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
