"""Kept weights versions stored as a difference from other shipped weights.

Old versions of a preset stay in the package so that files made with them still decode, and each
is an 11 MB safetensors file. Versions of one preset, or presets grown from one another, share most
tensors exactly (a decoder-only fine-tune keeps the whole encoder) and the rest closely (fp16
values whose sign, exponent and top mantissa bits rarely move). So a kept version ships as
``NAME.safetensors.xdelta``: the XOR of each of its tensors with the tensor of the same name,
dtype and size in a base file of the same folder (other bytes, the header included, as they
are), the result split into its even and odd bytes (for fp16: low and high halves, which compress
very differently) and zstd-compressed. Loading rebuilds the exact original bytes, so the SHA-256
in ``weights/SHA256SUMS`` and in every ``.tok`` header is checked as for any other file.

Layout (little-endian)::

    8 bytes  magic b"TCWDELTA"
    u8       version (1)
    u8       n, then n bytes: the base file's name (UTF-8, a name in the same folder)
    32 bytes SHA-256 of the base file
    u64      size of the rebuilt file
    32 bytes SHA-256 of the rebuilt file
    rest     one zstd frame: the even bytes of the XOR-ed file, then its odd bytes

``python -m tokcodec.model.weights_delta TARGET.safetensors BASE.safetensors`` writes
``TARGET.safetensors.xdelta`` beside TARGET and checks that it rebuilds TARGET.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import struct
from pathlib import Path
from typing import Callable

import numpy as np

from tokcodec.zstd_frames import decompress_bounded

MAGIC = b"TCWDELTA"
VERSION = 1
SUFFIX = ".xdelta"
_FIXED = struct.Struct("<8sBB")
_TAIL = struct.Struct("<32sQ32s")


class DeltaError(ValueError):
    """A delta file that is damaged, or whose base is not the file it was made against."""


def _is_file_name(name: str) -> bool:
    """A plain name of a file in the same folder: no path separators, drive colons or NULs."""
    return bool(name) and not any(ch in name for ch in "/\\\0:") and name not in (".", "..")


def delta_path(weights: Path) -> Path:
    """Where the delta form of a weights file lies."""
    return weights.with_name(weights.name + SUFFIX)


def safetensors_header(data: bytes | bytearray) -> tuple[dict, int]:
    """(the JSON header, offset of the tensor data) of a safetensors file's bytes; DeltaError
    (a ValueError) if they are not one."""
    if len(data) < 8:
        raise DeltaError("not a safetensors file (shorter than its header length)")
    header_len = int.from_bytes(data[:8], "little")
    if header_len > len(data) - 8:
        raise DeltaError("not a safetensors file (header length past the end)")
    try:
        header = json.loads(bytes(data[8:8 + header_len]))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise DeltaError(f"not a safetensors file ({exc})") from None
    if not isinstance(header, dict):
        raise DeltaError("not a safetensors file (header is not an object)")
    return header, 8 + header_len


def canonical_safetensors(data: bytes) -> bytes:
    """The same safetensors file with its metadata keys in sorted order. The safetensors library
    writes metadata in a random order (a hash map), so the same weights exported twice hashed
    differently, and a .tok records the weights' hash: this makes a file a function of its
    contents. Tensor entries and their data are kept as written (their order is fixed)."""
    header, base = safetensors_header(data)
    if isinstance(header.get("__metadata__"), dict):
        header = {"__metadata__": dict(sorted(header["__metadata__"].items())),
                  **{k: v for k, v in header.items() if k != "__metadata__"}}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # (the data stays 8-byte aligned, as the library writes it)
    return len(text).to_bytes(8, "little") + text + bytes(data[base:])


def _tensor_spans(data: bytes | bytearray) -> dict[str, tuple[str, int, int]]:
    """name -> (dtype, start, end) in absolute offsets of a safetensors file's bytes, checked to
    lie inside the data."""
    header, base = safetensors_header(data)
    spans = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            start, end = (int(v) for v in info["data_offsets"])
            dtype = str(info["dtype"])
        except (KeyError, TypeError, ValueError):
            raise DeltaError(f"not a safetensors file (tensor {name!r} has no data offsets)") from None
        if not 0 <= start <= end <= len(data) - base:
            raise DeltaError(f"not a safetensors file (tensor {name!r} lies outside the data)")
        spans[name] = (dtype, base + start, base + end)
    return spans


def _xor_shared_tensors(target: bytearray, base: bytes) -> None:
    """XOR, in place, each tensor of ``target`` with the tensor of ``base`` of the same name,
    dtype and size (its own inverse: applied twice it gives the bytes back)."""
    base_spans = _tensor_spans(base)
    view = np.frombuffer(target, dtype=np.uint8)
    other = np.frombuffer(base, dtype=np.uint8)
    for name, (dtype, start, end) in _tensor_spans(target).items():
        match = base_spans.get(name)
        if match is not None and match[0] == dtype and match[2] - match[1] == end - start:
            np.bitwise_xor(view[start:end], other[match[1]:match[2]], out=view[start:end])


def make_delta(target: bytes, base: bytes, base_name: str) -> bytes:
    """The delta that rebuilds ``target`` from ``base`` (named ``base_name`` in the same folder)."""
    import zstandard

    name = base_name.encode()
    if len(name) > 255 or not _is_file_name(base_name):
        raise ValueError(f"base name {base_name!r} must be a file name of 1-255 bytes")
    residual = bytearray(target)
    _xor_shared_tensors(residual, base)
    planes = bytes(residual[0::2]) + bytes(residual[1::2])
    body = zstandard.ZstdCompressor(level=19).compress(planes)
    return (_FIXED.pack(MAGIC, VERSION, len(name)) + name
            + _TAIL.pack(hashlib.sha256(base).digest(), len(target), hashlib.sha256(target).digest()) + body)


def read_delta_header(delta: bytes) -> tuple[str, str, int, str, int]:
    """(base file name, base SHA-256, rebuilt size, rebuilt SHA-256, offset of the zstd frame)."""
    if len(delta) < _FIXED.size:
        raise DeltaError("weights delta: truncated header")
    magic, version, n = _FIXED.unpack_from(delta)
    if magic != MAGIC:
        raise DeltaError("not a tokcodec weights delta (bad magic)")
    if version != VERSION:
        raise DeltaError(f"weights delta version {version} (this tokcodec reads {VERSION})")
    tail = _FIXED.size + n
    if n == 0 or len(delta) < tail + _TAIL.size:
        raise DeltaError("weights delta: truncated header")
    try:
        base_name = delta[_FIXED.size:tail].decode()
    except UnicodeDecodeError:
        raise DeltaError("weights delta: base name is not UTF-8") from None
    if not _is_file_name(base_name):
        raise DeltaError(f"weights delta: base {base_name!r} is not a file name")
    base_sha, size, target_sha = _TAIL.unpack_from(delta, tail)
    return base_name, base_sha.hex(), size, target_sha.hex(), tail + _TAIL.size


def apply_delta(delta: bytes, read_base: Callable[[str], bytes], max_bytes: int) -> bytes:
    """The bytes a delta rebuilds. ``read_base(name)`` returns the base file's bytes; the rebuilt
    size is checked against ``max_bytes`` before anything is allocated for it, and the result
    against the SHA-256 the delta records."""
    base_name, base_sha, size, target_sha, body = read_delta_header(delta)
    if size > max_bytes:
        raise DeltaError(f"weights delta: rebuilt size {size} is larger than the {max_bytes} limit")
    base = read_base(base_name)
    if hashlib.sha256(base).hexdigest() != base_sha:
        raise DeltaError(f"weights delta: base {base_name} is not the file it was made against")
    try:
        planes = decompress_bounded(delta[body:], size)
    except ValueError as exc:
        raise DeltaError(f"weights delta: damaged payload ({exc})") from None
    if len(planes) != size:
        raise DeltaError(f"weights delta: payload holds {len(planes)} bytes, expected {size}")
    residual = bytearray(size)
    half = (size + 1) // 2
    residual[0::2] = planes[:half]
    residual[1::2] = planes[half:]
    _xor_shared_tensors(residual, base)
    if hashlib.sha256(residual).hexdigest() != target_sha:
        raise DeltaError("weights delta: the rebuilt file does not match its SHA-256")
    return bytes(residual)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m tokcodec.model.weights_delta", description=__doc__.split("\n\n")[0])
    ap.add_argument("target", type=Path, help="weights file to store as a delta")
    ap.add_argument("base", type=Path, help="weights file in the same folder to store it against")
    args = ap.parse_args(argv)
    if args.base.resolve().parent != args.target.resolve().parent:
        ap.error("the base must lie in the target's folder (the delta names it by file name)")
    target, base = args.target.read_bytes(), args.base.read_bytes()
    delta = make_delta(target, base, args.base.name)
    if apply_delta(delta, lambda name: (args.target.parent / name).read_bytes(), len(target)) != target:
        raise SystemExit("the delta does not rebuild the target (not written)")
    out = delta_path(args.target)
    out.write_bytes(delta)
    print(f"wrote {out}: {len(delta)} bytes for {len(target)} ({100 * len(delta) / len(target):.0f}%), "
          f"against {args.base.name}")


if __name__ == "__main__":
    main()
