"""How encode stores a source's audio (``--audio-codec``, ``--audio-bitrate``): the choice and its
checks, apart from tokcodec.audio so that the CLI checks its options without loading PyAV."""
from __future__ import annotations

from dataclasses import dataclass

from tokcodec.errors import ArgumentError

#: how encode stores a source's audio (--audio-codec): "auto" copies its packets, but packs
#: integer PCM as FLAC (lossless); "copy" copies any codec Matroska holds, PCM too; "opus"
#: re-encodes it (lossy) at AudioChoice.bitrate
AUDIO_CODECS = ("auto", "copy", "opus")
#: integer PCM whose samples FLAC holds exactly. This FFmpeg's FLAC encoder codes at most 24
#: bits, so 32-bit and float PCM are copied as they are (tests/test_audio_storage.py)
FLAC_EXACT = frozenset({"pcm_u8", "pcm_s8", "pcm_s16le", "pcm_s16be", "pcm_s24le", "pcm_s24be", "pcm_dvd",
                        "pcm_bluray"})
FLAC_MAX_CHANNELS = 8
#: the Opus bit rates libopus takes, in bits per second: at least this, at most 256 kb/s a channel
#: (a higher rate asked for is lowered to that, with a warning: the channel count is the input's)
MIN_OPUS_BITRATE = 6_000
MAX_OPUS_BITRATE_PER_CHANNEL = 256_000


@dataclass(frozen=True)
class AudioChoice:
    """How encode stores the source's first audio stream (``encode --audio-codec/--audio-bitrate``).

    ``codec``: one of AUDIO_CODECS. ``bitrate``: Opus's, in bits per second for all channels
    (None: 64 kb/s a channel); giving it with "auto" asks for Opus."""

    codec: str = "auto"
    bitrate: float | None = None

    def __post_init__(self) -> None:
        if self.bitrate is not None and (isinstance(self.bitrate, bool) or not isinstance(self.bitrate, (int, float))):
            raise ArgumentError(f"audio bitrate {self.bitrate!r}: expected a number of bits per second (96e3; "
                                "the CLI's --audio-bitrate reads 96k)")
        if self.codec not in AUDIO_CODECS:
            raise ArgumentError(f"audio codec {self.codec!r}: expected one of {', '.join(AUDIO_CODECS)}")
        if self.bitrate is not None:
            if self.codec == "copy":
                raise ArgumentError("an audio bitrate re-encodes the audio to Opus; it cannot go with copying it")
            if not self.bitrate >= MIN_OPUS_BITRATE:  # (NaN too)
                raise ArgumentError(f"audio bitrate {self.bitrate:g}: Opus needs at least "
                                    f"{MIN_OPUS_BITRATE // 1000}k bits per second")
            object.__setattr__(self, "codec", "opus")

    def attempts(self, source_codec: str, channels: int) -> tuple[str, ...]:
        """How to store audio of ``source_codec``, in order of preference: "flac", "copy" or
        "opus" (Opus last, where Matroska refuses the copy)."""
        if self.codec == "opus":
            return ("opus",)
        if self.codec == "auto" and source_codec in FLAC_EXACT and 0 < channels <= FLAC_MAX_CHANNELS:
            return ("flac", "copy", "opus")
        return ("copy", "opus")
