"""zstd frames read from files, decompressed within the memory their expected size needs."""
from __future__ import annotations

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"  # a zstd frame's first 4 bytes (skippable frames have others: refused)
_BLOCK_HEADER_BYTES = 3
_BLOCK_RAW, _BLOCK_RLE, _BLOCK_COMPRESSED = 0, 1, 2
_CHECKSUM_FLAG = 0x04  # frame header descriptor: a 4-byte content checksum follows the last block


def frame_length(data: bytes) -> int:
    """Bytes of the zstd frame at the start of ``data``: frame header, blocks and checksum (what
    libzstd's ZSTD_findFrameCompressedSize counts for such a frame), found by walking the 3-byte
    block headers (RFC 8878, section 3.1.1.2) without decompressing anything. ValueError if
    ``data`` does not start with a zstd frame (skippable frames included: nothing here writes
    them) or the frame runs past its end."""
    import zstandard

    if bytes(data[:4]) != ZSTD_MAGIC:
        raise ValueError("not a zstd frame (its magic number is missing)")
    try:
        pos = zstandard.frame_header_size(data)
    except zstandard.ZstdError as exc:
        raise ValueError(f"not a zstd frame ({exc})") from None
    while True:
        if pos + _BLOCK_HEADER_BYTES > len(data):
            raise ValueError("the frame is truncated")
        header = int.from_bytes(data[pos:pos + _BLOCK_HEADER_BYTES], "little")
        last, kind, size = header & 1, (header >> 1) & 3, header >> 3
        if kind not in (_BLOCK_RAW, _BLOCK_RLE, _BLOCK_COMPRESSED):
            raise ValueError("the frame holds a reserved block type")
        pos += _BLOCK_HEADER_BYTES + (1 if kind == _BLOCK_RLE else size)
        if last:
            break
    pos += 4 if data[4] & _CHECKSUM_FLAG else 0
    if pos > len(data):
        raise ValueError("the frame is truncated")
    return pos


def decompress_bounded(data: bytes, size: int) -> bytes:
    """The content of the zstd frame ``data``, which must not exceed ``size`` bytes and must end
    where ``data`` ends (bytes after the frame would be stored but never read, which a checker
    should not pass). A damaged (or crafted) frame header can state a content size or a window
    far beyond that, which zstd would allocate before reading a byte of the frame: both are
    checked first, so memory stays within about twice ``size``. Raises ValueError on a damaged,
    oversized or trailed frame."""
    import zstandard  # here: importing tokcodec stays light

    try:
        stated = zstandard.frame_content_size(data)
    except zstandard.ZstdError as exc:
        raise ValueError(f"not a zstd frame ({exc})") from None
    if stated > size:  # -1: not stated (our writers always state it)
        raise ValueError(f"the frame states {stated} bytes, at most {size} expected")
    length = frame_length(data)
    if length != len(data):
        raise ValueError(f"{len(data) - length} bytes follow the frame")
    window = 1 << max(10, (max(size, 1) - 1).bit_length())  # frames we write use a window <= their size
    try:
        return zstandard.ZstdDecompressor(max_window_size=window).decompress(data, max_output_size=size)
    except zstandard.ZstdError as exc:
        raise ValueError(f"decompression error: {exc}") from None
