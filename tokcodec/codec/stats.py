"""What encode, decode and the edits (cut, concat, split) report: sizes, rates and timings of one run."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field


class VideoRate:
    """The rate a video codec is compared by: the bytes of a file but its audio's and tags'."""

    bytes: int
    audio_bytes: int
    tags_bytes: int
    frames: int
    width: int
    height: int

    @property
    def video_bytes(self) -> int:
        """What a target rate counts: every byte but the audio's and the tags'."""
        return self.bytes - self.audio_bytes - self.tags_bytes

    @property
    def video_bpp(self) -> float:
        return 8 * self.video_bytes / max(1, self.frames * self.width * self.height)


@dataclass
class EncodeStats(VideoRate):
    """One encode: its sizes (bytes), rates (bits per pixel, per token) and timings (seconds)."""

    input: str
    output: str
    frames: int
    width: int                   # of the source, as displayed
    height: int
    bytes: int                   # of the whole .tok, audio and correction records included
    tokens: int                  # token indices coded (latent frames x grid, all GOPs)
    seconds: float               # the encode itself: no model loading, no rate plan (``plan_seconds``)
    model: str
    device: str
    precision: str               # bf16, fp16 or fp32: the arithmetic the tokens were made in
    scale: float = 1.0
    audio: str = "none"          # what was kept of the source's audio
    refine: int = 0              # decoder-in-the-loop search steps per GOP (0: the encoder's tokens)
    passes: int = 0              # closed-loop encoder passes per GOP (0: the encoder's one-shot tokens)
    rdo: float = 0.0             # rate-distortion trade of the token bits (0: their signs; codec/rdo.py)
    correction_bytes: int = 0    # of the correction records (format 2.x), included in ``bytes``
    sharpen: float = 0.0         # detail gains' multiplier of GOPs of the asked length (0: none sent;
                                 # a last GOP under 9 frames keeps 1; codec/correction.py)
    gops: int = 0                # chunks written
    linked_gops: int = 0         # of them, decoding after the GOP before: tokens (coder 4) or record (kind 3) coded against it
    gop: int = 17                # frames per GOP
    rdo_range: tuple[float, float] | None = None  # with a target rate: the least and most rdo of a GOP (``rdo``: their mean)
    target_bpp: float | None = None  # the target rate asked for (codec/ratecontrol.py), else None
    audio_bytes: int = 0         # of the stored audio, included in ``bytes``
    tags_bytes: int = 0          # of the stored tags and chapters (media_tags.py), included in ``bytes``
    plan_seconds: float = 0.0    # the target rate's probe, before ``seconds``
    warnings: list[str] = field(default_factory=list)  # what the file is not as asked, one line each
    grey: bool = False           # every source frame was grey: the file says so, and decodes grey
    deinterlaced: bool = False   # the frames were deinterlaced as they were read (io.iter_frames)
    scene_cuts: int = 0          # GOPs ended short before a scene cut (codec/scenecut.py; one on a boundary needs none)

    @property
    def bpp(self) -> float:
        """Of the whole file, audio included (``video_bpp`` leaves it out)."""
        return 8 * self.bytes / max(1, self.frames * self.width * self.height)

    @property
    def bits_per_token(self) -> float:
        return 8 * self.bytes / max(1, self.tokens)

    @property
    def video_bits_per_token(self) -> float:
        return 8 * self.video_bytes / max(1, self.tokens)

    @property
    def fps(self) -> float:
        return self.frames / max(self.seconds, 1e-9)

    def to_dict(self) -> dict:
        return {**asdict(self), "video_bytes": self.video_bytes, "bpp": self.bpp, "video_bpp": self.video_bpp, "bits_per_token": self.bits_per_token,
                "video_bits_per_token": self.video_bits_per_token, "fps": self.fps}


@dataclass
class DecodeStats:
    """One decode: frames written, their size and the time it took (``fps``)."""

    input: str
    output: str
    frames: int                  # written to the output (lost ones filled with --salvage included)
    width: int
    height: int
    seconds: float               # the decode itself, model loading not included
    device: str
    precision: str
    audio: str = "none"          # what was restored of the stored audio
    lost_frames: list[tuple[int, int]] = field(default_factory=list)  # inclusive ranges (--salvage)
    problems: list[str] = field(default_factory=list)  # damage found (--salvage), one line each
    gop_batch: int = 1           # GOPs per network call (--gop-batch; auto's choice once measured)
    first_frame: int = 0         # the file's frame the output starts with (--ss)
    warnings: list[str] = field(default_factory=list)  # what the output is not as usual, one line each
    tags: str = "none"           # what became of the stored tags and chapters: none, written, dropped (why), lost

    @property
    def fps(self) -> float:
        return self.frames / max(self.seconds, 1e-9)

    def to_dict(self) -> dict:
        return {**asdict(self), "fps": self.fps}


@dataclass
class EditStats(VideoRate):
    """One cut, join or split part: what was written, and how much of it was copied as it was."""

    inputs: list[str]
    output: str
    frames: int
    width: int
    height: int
    frame_rate: float
    bytes: int                   # of the whole .tok, audio and tags included
    audio_bytes: int
    tags_bytes: int
    gops: int                    # chunks written
    recoded_gops: int            # of them, entropy coded anew (a cut's first linked GOP, its last cut short)
    seconds: float
    first_frame: int = 0         # (cut) the input's frame the output starts with
    asked_first_frame: int = 0   # (cut) the frame the start asked for (at or after first_frame)
    audio: str = "none"          # what was kept of the stored audio
    tags: str = "none"           # what was kept of the stored tags and chapters
    warnings: list[str] = field(default_factory=list)
    encoded_frames: int = 0      # (cut --exact) frames decoded and encoded again, from the part's start

    @property
    def duration(self) -> float:
        return self.frames / self.frame_rate

    def to_dict(self) -> dict:
        return {**asdict(self), "video_bytes": self.video_bytes, "video_bpp": self.video_bpp,
                "duration": self.duration}
