"""What ``tokcodec info`` reports of a .tok file: header, per-chunk sizes and bits/token (per
latent frame too), audio, and totals, read without running the decoder network."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tokcodec.audio import read_track
from tokcodec.codec.container import Chunk, Header, open_tok
from tokcodec.codec.correction_record import CorrectionRecord, record_needs_previous
from tokcodec.codec.entropy import TokenCoder, get_coder
from tokcodec.errors import FormatError
from tokcodec.media_tags import MediaTags

if TYPE_CHECKING:
    import numpy as np

PRIOR_CODERS = (3, 4)   # whose payloads name a learned prior (or carry coder 2's bytes: MODE_CODER2)
MODE_CODER2 = 2         # (context_coder3.MODE_CODER2; that module is not imported by info)


def links_to_previous(coder: TokenCoder, payload: bytes, record: bytes) -> bool:
    """Whether a chunk decodes only after the chunk before: its tokens (coder 4) or its correction
    record (kind 3) coded against that chunk's. What ``info`` marks and encode's stats count as
    linked, and what decode waits for."""
    return coder.links(payload) or record_needs_previous(record)


def chunk_contents(coder: TokenCoder, chunk: Chunk, header: Header, previous_tokens: np.ndarray | None,
                   previous_record: CorrectionRecord | None,
                   record_type: type[CorrectionRecord] | None = CorrectionRecord
                   ) -> tuple[np.ndarray, CorrectionRecord | None]:
    """A chunk's tokens (t, h, w) and its correction record as ``record_type`` (None: not read;
    also None where the chunk has none), by the entropy coder alone. A linked chunk needs the
    chunk before's last latent frame (``previous_tokens``) or record (``previous_record``): where
    it is missing, the coder or the record refuses the chunk (FormatError). What decode, tokens
    and cut share."""
    tokens = coder.decode(chunk.payload, chunk.latent_shape, header.bits,
                          previous_tokens if coder.links(chunk.payload) else None)
    record = None
    if record_type is not None and chunk.correction:
        record = record_type.unpack(chunk.correction, header.width, header.height, chunk.frames,
                                    previous_record if record_needs_previous(chunk.correction) else None,
                                    header.newest_record_kind)
    return tokens, record


@dataclass(frozen=True)
class ChunkInfo:
    index: int
    first_frame: int
    frames: int
    latent: tuple[int, int, int]               # (t, h, w) token grid
    bytes: int                                 # the entropy coder's payload
    bits_per_token: float
    bits_per_token_by_latent_frame: tuple[float, ...]
    correction_bytes: int = 0                  # the GOP's correction record (format 2.x)
    linked: bool = False                       # decodes after the GOP before: its tokens (coder 4) or its
    # correction record (kind 3) coded against that GOP's
    without_prior: bool = False                # coders 3 and 4: coded by coder 2 inside (near-static content,
    # or weights without a coder-3 prior)


@dataclass(frozen=True)
class AudioInfo:
    codec: str
    sample_rate: int
    channels: int
    duration_seconds: float
    start_offset_seconds: float
    bytes: int


@dataclass(frozen=True)
class FileInfo:
    file: str
    bytes: int
    frames: int
    width: int
    height: int
    tokens: int
    duration_seconds: float
    bpp: float                                 # whole file, audio included
    kbps: float
    bits_per_token: float                      # whole file, container and audio included
    video_bytes: int                           # all but the audio and tags blocks: what the video costs
    video_bpp: float
    video_kbps: float
    video_bits_per_token: float
    payload_bits_per_token: float              # the entropy coder's payloads only
    correction_bytes: int                      # all correction records (format 2.x)
    bits_per_token_first_latent_frame: float
    bits_per_token_later_latent_frames: float | None  # None: GOPs of one latent frame
    untrained_model: bool
    coder: str                                 # the entropy coder's name
    header: Header
    audio: AudioInfo | None
    chunks: tuple[ChunkInfo, ...]
    tags: MediaTags | None = None              # the stored tags and chapters (media_tags.py)
    tags_damaged: str | None = None            # why the stored tags do not read (the rest of the file may)

    @property
    def chunks_count(self) -> int:
        return len(self.chunks)

    def to_dict(self) -> dict:
        """JSON-ready (``tokcodec info --json``): the header with its frame rate as "num/den",
        its version as "major.minor" and the coder's name."""
        out = asdict(self)
        h = self.header
        out["header"].update(frame_rate=f"{h.frame_rate.numerator}/{h.frame_rate.denominator}",
                             version=f"{h.version[0]}.{h.version[1]}", coder=self.coder)
        out["chunks_count"] = self.chunks_count
        for chunk in out["chunks"]:
            chunk["latent"] = list(chunk["latent"])
            chunk["bits_per_token_by_latent_frame"] = list(chunk["bits_per_token_by_latent_frame"])
        del out["coder"]
        out["tags"] = self.tags.to_dict() if self.tags is not None else None
        return out


def file_info(src: str | Path) -> FileInfo:
    """Header, per-chunk sizes and bits/token (per latent frame too), audio and totals of a .tok file."""
    src = Path(src)
    with open_tok(src) as reader:
        h = reader.header
        coder = get_coder(h.coder_id)
        chunks = []
        first_bits = first_tokens = later_bits = later_tokens = 0
        for chunk in reader.chunks():
            t, lh, lw = chunk.latent_shape
            per_frame = coder.frame_bits(chunk.payload, chunk.latent_shape, h.bits)
            first_bits += per_frame[0]
            first_tokens += lh * lw
            later_bits += sum(per_frame[1:])
            later_tokens += (t - 1) * lh * lw
            chunks.append(ChunkInfo(chunk.index, chunk.first_frame, chunk.frames, (t, lh, lw), len(chunk.payload),
                                    8 * len(chunk.payload) / (t * lh * lw),
                                    tuple(b / (lh * lw) for b in per_frame), len(chunk.correction),
                                    links_to_previous(coder, chunk.payload, chunk.correction),
                                    h.coder_id in PRIOR_CODERS and chunk.payload[:1] == bytes([MODE_CODER2])))
        audio = None
        if h.has_audio:
            block = reader.read_audio()
            track = read_track(block.data, block.start_offset_us / 1_000_000)
            audio = AudioInfo(track.codec, track.sample_rate, track.channels, track.duration,
                              track.start_offset, len(track.data))
        tags, tags_damaged = None, None
        try:
            tags = reader.read_tags()
        except FormatError as exc:  # (the rest of the file is still worth showing)
            tags_damaged = str(exc)
        size, video_bytes, frames = reader.size, reader.video_bytes, reader.frame_count
    tokens = sum(c.latent[0] * c.latent[1] * c.latent[2] for c in chunks)
    seconds = float(frames / h.frame_rate) if frames else 0.0
    return FileInfo(
        file=str(src), bytes=size, frames=frames, width=h.width, height=h.height, tokens=tokens,
        duration_seconds=seconds, bpp=8 * size / max(1, frames * h.width * h.height),
        kbps=8 * size / 1000 / max(1e-9, seconds) if frames else 0.0,
        bits_per_token=8 * size / max(1, tokens),
        video_bytes=video_bytes, video_bpp=8 * video_bytes / max(1, frames * h.width * h.height),
        video_kbps=8 * video_bytes / 1000 / max(1e-9, seconds) if frames else 0.0,
        video_bits_per_token=8 * video_bytes / max(1, tokens),
        payload_bits_per_token=8 * sum(c.bytes for c in chunks) / max(1, tokens),
        correction_bytes=sum(c.correction_bytes for c in chunks),
        bits_per_token_first_latent_frame=first_bits / max(1, first_tokens),
        bits_per_token_later_latent_frames=later_bits / later_tokens if later_tokens else None,
        untrained_model=h.untrained, coder=coder.name, header=h, audio=audio, chunks=tuple(chunks), tags=tags,
        tags_damaged=tags_damaged)
