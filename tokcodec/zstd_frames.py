"""zstd frames read from files, decompressed within the memory their expected size needs."""
from __future__ import annotations


def decompress_bounded(data: bytes, size: int) -> bytes:
    """The content of the zstd frame ``data``, which must not exceed ``size`` bytes. A damaged (or
    crafted) frame header can state a content size or a window far beyond that, which zstd would
    allocate before reading a byte of the frame: both are checked first, so memory stays within
    about twice ``size``. Raises ValueError on a damaged or oversized frame."""
    import zstandard  # here: importing tokcodec stays light

    try:
        stated = zstandard.frame_content_size(data)
    except zstandard.ZstdError as exc:
        raise ValueError(f"not a zstd frame ({exc})") from None
    if stated > size:  # -1: not stated (our writers always state it)
        raise ValueError(f"the frame states {stated} bytes, at most {size} expected")
    window = 1 << max(10, (max(size, 1) - 1).bit_length())  # frames we write use a window <= their size
    try:
        return zstandard.ZstdDecompressor(max_window_size=window).decompress(data, max_output_size=size)
    except zstandard.ZstdError as exc:
        raise ValueError(f"decompression error: {exc}") from None
