"""Fuzzing the .tok reader: damaged files built from valid ones, and the read paths to run on them.

Used by tests/test_fuzz.py (a fast subset, driven by hypothesis) and bench/fuzz_reader.py (tens of
thousands of cases). A case passes when every read path (info, token decode, verify, salvage)
either succeeds or raises tokcodec's own error with a one-line message; any other exception is a
bug. Mutations: bit flips, truncations, splices of two files, inserted/deleted bytes, random
headers, and "resealed" edits whose checksums are recomputed so that the structure checks and the
entropy decoders behind the CRCs get exercised too.
"""
from __future__ import annotations

import random
import struct
import tempfile
import zlib
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from tokcodec.codec.container import (AUDIO_HEADER_SIZE, AUDIO_MAGIC, CHUNK_HEADER_SIZE, CHUNK_MAGIC,
                                      HEADER_SIZE, MAGIC, TAGS_HEADER_SIZE, TAGS_MAGIC, TRAILER_SIZE)
from tokcodec.errors import TokcodecError

MUTATIONS = ("flip", "flip-sealed", "field-sealed", "truncate", "splice", "insert", "delete", "header")


@dataclass
class Outcome:
    ok: bool                 # the case ended in success or tokcodec's own one-line error
    detail: str              # "ok", the error class and message, or the unexpected exception


def reseal(data: bytes) -> bytes:
    """Recompute every CRC a .tok structure holds, where the structure can still be found."""
    buf = bytearray(data)
    if len(buf) >= HEADER_SIZE and buf[:8] == MAGIC:
        struct.pack_into("<I", buf, HEADER_SIZE - 4, zlib.crc32(bytes(buf[:HEADER_SIZE - 4])))
    pos = HEADER_SIZE
    while pos + CHUNK_HEADER_SIZE <= len(buf) and buf[pos:pos + 4] == CHUNK_MAGIC:
        plen = struct.unpack_from("<I", buf, pos + 24)[0]
        end = pos + CHUNK_HEADER_SIZE + plen
        if end > len(buf):
            break
        crc = zlib.crc32(bytes(buf[pos + CHUNK_HEADER_SIZE:end]), zlib.crc32(bytes(buf[pos:pos + 28])))
        struct.pack_into("<I", buf, pos + 28, crc)
        pos = end
    for magic, size in ((TAGS_MAGIC, TAGS_HEADER_SIZE), (AUDIO_MAGIC, AUDIO_HEADER_SIZE)):  # (the same layout)
        if pos + size <= len(buf) and buf[pos:pos + 4] == magic:
            plen = struct.unpack_from("<Q", buf, pos + 16)[0]
            end = pos + size + plen
            if end <= len(buf):
                struct.pack_into("<I", buf, pos + 24, zlib.crc32(bytes(buf[pos + size:end])))
                struct.pack_into("<I", buf, pos + 28, zlib.crc32(bytes(buf[pos:pos + 28])))
                pos = end
    if len(buf) >= HEADER_SIZE + TRAILER_SIZE:
        t = len(buf) - TRAILER_SIZE
        idx_off, idx_size = struct.unpack_from("<QI", buf, t)
        if HEADER_SIZE <= idx_off and idx_off + idx_size <= t and idx_size >= 4:
            body = bytes(buf[idx_off:idx_off + idx_size - 4])
            struct.pack_into("<I", buf, idx_off + idx_size - 4, zlib.crc32(body))
        struct.pack_into("<I", buf, t + 24, zlib.crc32(bytes(buf[t:t + 24])))
    return bytes(buf)


# (offset, struct format) of every integer field a reader trusts, relative to its structure
_HEADER_FIELDS = [(12, "<H"), (14, "<H"), (16, "<I"), (20, "<I"), (24, "<I"), (28, "<I"), (32, "<I"),
                  (36, "<I"), (40, "<I"), (44, "<I"), (48, "<Q"), (60, "<H"), (62, "<B"), (63, "<B"),
                  (64, "<B"), (65, "<B"), (66, "<B"), (67, "<B")]
_CHUNK_FIELDS = [(4, "<I"), (8, "<Q"), (16, "<H"), (18, "<H"), (20, "<H"), (22, "<H"), (24, "<I")]
_TRAILER_FIELDS = [(0, "<Q"), (8, "<I"), (12, "<Q"), (20, "<I")]
_BLOCK_FIELDS = [(4, "<H"), (6, "<H"), (16, "<Q")]  # of the tags and audio blocks


def _extreme(rng: random.Random, fmt: str, old: int) -> int:
    top = (1 << (8 * struct.calcsize(fmt))) - 1
    return rng.choice([0, 1, 2, top, top >> 1, (old + 1) & top, max(0, old - 1), old * 2 & top,
                       rng.randrange(top + 1)])


def _set_field(rng: random.Random, buf: bytearray) -> None:
    targets = [(0, f) for f in _HEADER_FIELDS]
    pos = HEADER_SIZE
    while pos + CHUNK_HEADER_SIZE <= len(buf) and buf[pos:pos + 4] == CHUNK_MAGIC:
        targets += [(pos, f) for f in _CHUNK_FIELDS]
        pos += CHUNK_HEADER_SIZE + struct.unpack_from("<I", buf, pos + 24)[0]
    while pos + TAGS_HEADER_SIZE <= len(buf) and buf[pos:pos + 4] in (TAGS_MAGIC, AUDIO_MAGIC):  # (same layout)
        targets += [(pos, f) for f in _BLOCK_FIELDS]
        pos += TAGS_HEADER_SIZE + struct.unpack_from("<Q", buf, pos + 16)[0]
    if len(buf) >= TRAILER_SIZE:
        targets += [(len(buf) - TRAILER_SIZE, f) for f in _TRAILER_FIELDS]
    base, (off, fmt) = rng.choice(targets)
    if base + off + struct.calcsize(fmt) <= len(buf):
        old = struct.unpack_from(fmt, buf, base + off)[0]
        struct.pack_into(fmt, buf, base + off, _extreme(rng, fmt, old))


def mutate(seeds: list[bytes], rng: random.Random, kind: str | None = None) -> tuple[str, bytes]:
    """One damaged file made from the valid ``seeds``; returns (mutation kind, bytes)."""
    kind = kind or rng.choice(MUTATIONS)
    data = bytearray(rng.choice(seeds))
    n = len(data)
    if kind in ("flip", "flip-sealed"):
        lo, hi = (0, n) if kind == "flip" else sorted(rng.sample(range(n), 2))
        for _ in range(rng.randint(1, 16)):
            data[rng.randrange(lo, max(lo + 1, hi))] ^= 1 << rng.randrange(8)
        return kind, reseal(bytes(data)) if kind == "flip-sealed" else bytes(data)
    if kind == "field-sealed":
        for _ in range(rng.randint(1, 3)):
            _set_field(rng, data)
        return kind, reseal(bytes(data))
    if kind == "truncate":
        return kind, bytes(data[:rng.randrange(n)])
    if kind == "splice":
        other = rng.choice(seeds)
        return kind, bytes(data[:rng.randrange(n)] + other[rng.randrange(len(other)):])
    if kind == "insert":
        at = rng.randrange(n + 1)
        blob = rng.randbytes(rng.choice([1, 4, 32, 1000]))
        return kind, bytes(data[:at] + blob + data[at:])
    if kind == "delete":
        at = rng.randrange(n)
        return kind, bytes(data[:at] + data[at + rng.choice([1, 4, 32, 1000]):])
    if kind == "header":
        head = bytearray(MAGIC + struct.pack("<HH", rng.choice([1, 2]), rng.choice([0, 1, 2, 3, 7])) + rng.randbytes(HEADER_SIZE - 12))
        if rng.random() < 0.5:  # a plausible size field, so the later checks are reached
            struct.pack_into("<H", head, 12, HEADER_SIZE)
        return kind, reseal(bytes(head) + bytes(data[HEADER_SIZE:]))
    raise ValueError(f"unknown mutation {kind!r}")


def _one_line(exc: BaseException) -> bool:
    text = str(exc)
    return bool(text) and "\n" not in text and len(text) < 1000


def exercise(path: Path) -> Outcome:
    """Run every read path on a (possibly damaged) .tok file, without the decoder network."""
    from tokcodec.codec.pipeline import _salvaged_tokens, file_info, read_tokens
    from tokcodec.codec.salvage import open_salvage
    from tokcodec.codec.verify import verify_file

    details = []

    def salvage() -> None:
        """decode --salvage's token path: every chunk that decodes (its tokens and record, in the
        coder threads, following links), the others noted as lost; it never raises for a chunk."""
        with open_salvage(path) as reader:
            lost: list[str] = []
            for _ in _salvaged_tokens(reader, lost):
                pass
            if lost and not all(_one_line(Exception(note)) for note in lost):
                raise RuntimeError(f"salvage noted a multi-line loss: {lost!r}")

    for stage in (lambda: file_info(path), lambda: read_tokens(path), salvage):
        try:
            stage()
            details.append("ok")
        except TokcodecError as exc:
            if not _one_line(exc):
                return Outcome(False, f"{type(exc).__name__} with a multi-line or empty message: {exc!r}")
            details.append(type(exc).__name__)
        except Exception as exc:  # noqa: BLE001 - this is what the fuzzer looks for
            return Outcome(False, f"unexpected {type(exc).__name__}: {exc}")
    try:
        report = verify_file(path, weights=False)
    except Exception as exc:  # noqa: BLE001
        return Outcome(False, f"verify raised {type(exc).__name__}: {exc}")
    if not all(_one_line(Exception(p)) for p in report.problems):
        return Outcome(False, f"verify gave a multi-line problem: {report.problems!r}")
    return Outcome(True, "/".join(details))


def seed_files(workdir: Path, frames: int = 21, with_prior: bool = True) -> list[bytes]:
    """Valid .tok files: from the tiny untrained model with the default coder (with audio and tags,
    and one frame), the raw coder and coder 2, all with correction records holding detail gains (format
    2.1), one with offsets only (2.0) and one without (1.0); and one from the shipped model, whose
    coder 4 payloads use its learned prior, with GOPs linked to the one before, and one of a still
    scene whose range-coded records (kind 3) are coded against the one before."""
    from tokcodec.codec.correction import CorrectionConfig
    from tokcodec.codec.pipeline import encode_video
    from tokcodec.io import FrameWriter

    import av

    workdir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (4, 6, 3)).astype(np.float32)
    clip = [np.kron(np.roll(base, t, axis=1), np.ones((8, 8, 1))).astype(np.uint8)[:, :40] for t in range(frames)]
    video = workdir / "seed.mkv"
    with FrameWriter(video, 40, 32, Fraction(25)) as w:
        for f in clip:
            w.write(f)
    with_audio = workdir / "seed_audio.mkv"
    _add_tone(video, with_audio, av)
    out = []
    for name, src, kwargs in (("ctx_audio", with_audio, {"gop": 5}), ("raw", video, {"gop": 9, "coder_id": 1}),
                              ("ctx", video, {"gop": 17, "max_frames": 1}),
                              ("coder2", video, {"gop": 9, "coder_id": 2}),
                              ("offsets_only", video, {"gop": 9, "correction": CorrectionConfig(detail=False)}),
                              ("tokens_only", video, {"gop": 9, "correction": False})):
        dst = workdir / f"{name}.tok"
        encode_video(src, dst, model="tiny", overwrite=True, **kwargs)
        out.append(dst.read_bytes())
    if with_prior:  # the shipped model has a learned prior: coder 3's own bitstream (not its
        moving = workdir / "moving.mkv"  # fallback), in coder 4's linked GOPs
        yy, xx = np.mgrid[0:64, 0:96] / 9.0
        with FrameWriter(moving, 96, 64, Fraction(25)) as w:
            for t in range(13):
                w.write(np.stack([127 + 100 * np.sin(xx + 0.1 * t + c) * np.cos(yy - 0.05 * t) for c in range(3)],
                                 -1).astype(np.uint8))
        encode_video(moving, workdir / "prior.tok", model="default", gop=5, overwrite=True)
        out.append((workdir / "prior.tok").read_bytes())
        still = workdir / "still.mkv"  # a still scene: range-coded records coded against the one before
        with FrameWriter(still, 128, 96, Fraction(25)) as w:
            yy, xx = np.mgrid[0:96, 0:128] / 11.0
            frame = np.stack([127 + 90 * np.sin(xx + c) * np.cos(yy) for c in range(3)], -1).astype(np.uint8)
            for _ in range(19):
                w.write(frame)
        encode_video(still, workdir / "still.tok", model="default", gop=9, overwrite=True)
        out.append((workdir / "still.tok").read_bytes())
    return out


def _add_tone(video: Path, dst: Path, av) -> None:
    """Copy ``video`` and add a short PCM tone starting 0.1 s in, a title and a chapter (a stored
    audio block and a tags block to fuzz)."""
    with av.open(str(video)) as src, av.open(str(dst), "w") as out:
        out.metadata["title"] = "seed"
        out.set_chapters([{"id": 1, "start": 0, "end": 400, "time_base": Fraction(1, 1000),
                           "metadata": {"title": "one"}}])
        vin = src.streams.video[0]
        vout = out.add_stream_from_template(vin)
        aout = out.add_stream("pcm_s16le", rate=8000, layout="mono")
        for packet in src.demux(vin):
            if packet.size:
                packet.stream = vout
                out.mux(packet)
        samples = (np.sin(np.arange(4000) / 5) * 3000).astype(np.int16)[None]
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate, frame.pts = 8000, 800
        for packet in aout.encode(frame):
            out.mux(packet)
        for packet in aout.encode(None):
            out.mux(packet)


def run_case(seeds: list[bytes], seed: int, workdir: Path) -> tuple[str, Outcome]:
    """Build case ``seed`` (deterministic), write it and exercise it."""
    kind, data = mutate(seeds, random.Random(seed))
    path = workdir / "case.tok"
    path.write_bytes(data)
    return kind, exercise(path)


def temp_workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="tokcodec-fuzz-"))
