"""What encode and decode report: sizes, rates and timings of one run."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class EncodeStats:
    input: str
    output: str
    frames: int
    width: int
    height: int
    bytes: int
    tokens: int
    seconds: float
    model: str
    device: str
    precision: str
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
    plan_seconds: float = 0.0    # the target rate's probe, before ``seconds``
    warnings: list[str] = field(default_factory=list)  # what the file is not as asked, one line each
    grey: bool = False           # every source frame was grey: the file says so, and decodes grey

    @property
    def bpp(self) -> float:
        """Of the whole file, audio included (``video_bpp`` leaves it out)."""
        return 8 * self.bytes / max(1, self.frames * self.width * self.height)

    @property
    def video_bpp(self) -> float:
        """What a target rate counts: every byte but the audio's."""
        return 8 * (self.bytes - self.audio_bytes) / max(1, self.frames * self.width * self.height)

    @property
    def bits_per_token(self) -> float:
        return 8 * self.bytes / max(1, self.tokens)

    @property
    def video_bits_per_token(self) -> float:
        return 8 * (self.bytes - self.audio_bytes) / max(1, self.tokens)

    @property
    def fps(self) -> float:
        return self.frames / max(self.seconds, 1e-9)

    def to_dict(self) -> dict:
        return {**asdict(self), "bpp": self.bpp, "video_bpp": self.video_bpp, "bits_per_token": self.bits_per_token,
                "video_bits_per_token": self.video_bits_per_token, "fps": self.fps}


@dataclass
class DecodeStats:
    input: str
    output: str
    frames: int
    width: int
    height: int
    seconds: float
    device: str
    precision: str
    audio: str = "none"
    lost_frames: list[tuple[int, int]] = field(default_factory=list)  # inclusive ranges (--salvage)
    problems: list[str] = field(default_factory=list)  # damage found (--salvage), one line each
    gop_batch: int = 1           # GOPs per network call (--gop-batch; auto's choice once measured)
    first_frame: int = 0         # the file's frame the output starts with (--ss)
    warnings: list[str] = field(default_factory=list)  # what the output is not as usual, one line each

    @property
    def fps(self) -> float:
        return self.frames / max(self.seconds, 1e-9)

    def to_dict(self) -> dict:
        return {**asdict(self), "fps": self.fps}
