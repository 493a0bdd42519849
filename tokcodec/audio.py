"""The audio of a video, kept beside its tokens: extracted on encode, muxed back on decode.

tokcodec codes only pictures, so a source's first audio stream is carried through: its packets are
copied into a small in-memory Matroska file, which the .tok stores as one block with the audio's
start time relative to the first video frame. Uncompressed integer PCM (a camera's, a WAV's, a
DVD's) is packed as FLAC instead, the same samples in a quarter to a half of the bytes on the
recordings measured (stereo PCM at 48 kHz is 1.5 Mb/s, several times a 640x360 clip's tokens);
Opus re-encodes the audio where asked (``AudioChoice``) or where Matroska cannot hold the codec.
On decode the packets go into the output container next to the video, copied when that container
accepts the codec and re-encoded otherwise (Opus; ALAC in .mov), shifted by the same offset so
picture and sound stay in sync.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av
import numpy as np

from tokcodec.audio_choice import MAX_OPUS_BITRATE_PER_CHANNEL, AudioChoice
from tokcodec.errors import FormatError, InputError, OutputError
from tokcodec.ffmpeg_names import TAG_ERRORS, ffmpeg_name

# muxer flags that leave out what changes from run to run (Matroska's random segment UID, the date,
# the library's version): the same input then gives the same bytes, in a .tok and in a decode
BITEXACT = {"fflags": "+bitexact"}
# Audio codecs each output container takes as they are (others are re-encoded: REENCODE_AS). FFmpeg's
# QuickTime muxer refuses Opus, FLAC and Vorbis (a .mov decode of them failed: "Invalid argument").
COPYABLE = {
    ".mkv": None,  # Matroska holds any audio codec
    ".mp4": {"aac", "mp3", "mp2", "opus", "flac", "alac", "ac3", "eac3"},
    ".mov": {"aac", "mp3", "mp2", "alac", "ac3", "eac3", "pcm_s16le", "pcm_s16be", "pcm_s24le", "pcm_s24be",
             "pcm_s32le", "pcm_s32be", "pcm_f32le", "pcm_f64le", "pcm_u8"},
}
#: the encoder audio that an output cannot hold is re-encoded with: Opus (lossy, 64 kb/s a channel),
#: or for .mov, which takes no Opus, ALAC (lossless: no further loss, whatever the source)
REENCODE_AS = {".mov": "alac"}
#: a jump forward in the source's timestamps longer than this (seconds) is a gap: re-encoded
#: (or FLAC-packed) audio, whose samples are numbered by a running count, gets silence there, or
#: everything after the gap would play early by its length. Shorter jumps are closed up: the audio
#: after one plays less than 45 ms early, below what people notice of sound ahead of the picture
#: (ITU-R BT.1359), and timestamp jitter (10 ms in an MPEG program stream's DVD LPCM) cuts no
#: silence into samples that were continuous
GAP_SECONDS = 0.045
OPUS_RATE = 48000
OPUS_BITRATE = 128_000  # for stereo: 64 kb/s a channel
#: the channel layouts libopus codes (Vorbis order), by channel count: audio is re-encoded with
#: as many channels as it has (more than 8 are mixed down to 7.1)
OPUS_LAYOUTS = {1: "mono", 2: "stereo", 3: "3.0", 4: "quad", 5: "5.0", 6: "5.1", 7: "6.1", 8: "7.1"}
MUX_AHEAD_SECONDS = 0.5  # audio is interleaved this far ahead of the last video frame written
#: FLAC block length in samples where the rate is FLAC_BLOCK_MIN_RATE or more: 24 ms at 48 kHz,
#: close to what AAC's packets last. Players and decode's cuts (--ss, -t, audio before the first
#: frame) cut audio by whole packets, and the encoder's own choice, 4608 (96 ms), made those cuts
#: four times as coarse; 1152 cost 3% more bytes on a concert's 48 kHz audio (docs/results.md)
FLAC_BLOCK = 1152
FLAC_BLOCK_MIN_RATE = 32000


@dataclass
class AudioTrack:
    """One audio stream as a Matroska file, starting ``start_offset`` seconds after the video."""

    data: bytes
    start_offset: float
    codec: str
    sample_rate: int
    channels: int
    duration: float
    stored: str = "copied"     # "copied"; "flac" (packed from source_codec, lossless); "opus" (asked);
    #                            "opus, unstorable" (re-encoded because Matroska cannot hold the codec)
    source_codec: str | None = None  # the source's codec where it was re-encoded (flac, opus)
    bit_rate: int | None = None  # the Opus encoder's bits per second, where re-encoded to Opus
    notes: tuple[str, ...] = ()  # what storing it changed that the user should hear of (encode's warnings)
    end: float | None = None   # seconds on the output timeline from which packets are left out

    def cut(self, start: float, length: float | None) -> AudioTrack:
        """The track for ``length`` seconds of the video (None: to the end of the audio) from
        ``start`` (decode --ss/-t): shifted so that ``start`` is 0, and packets that start at or
        after ``length`` left out (whole packets: the audio ends within one packet, some 20 ms,
        of the video)."""
        offset = self.start_offset - start
        end = offset + self.duration if length is None else min(offset + self.duration, length)
        return replace(self, start_offset=offset, end=length, duration=max(0.0, end - max(offset, 0.0)))

    def describe(self) -> str:
        if self.stored == "flac":
            how = f"packed from {self.source_codec}, lossless"
        elif self.stored.startswith("opus"):
            how = f"re-encoded to Opus at {self.bit_rate / 1000:g} kb/s from {self.source_codec}"
        else:
            how = "copied"
        return (f"{self.codec} {self.sample_rate} Hz {self.channels} ch, {self.duration:.2f} s "
                f"from {self.start_offset:+.3f} s ({how}, {len(self.data)} bytes)")


def _seconds(value: int | None, time_base: Fraction | None) -> float | None:
    return None if value is None or time_base is None else float(value * time_base)


def first_video_time(container: av.container.InputContainer) -> float:
    """Presentation time of the first video frame (the zero point of the .tok's timeline); cover
    art is not the video."""
    cover = av.stream.Disposition.attached_pic
    streams = [s for s in container.streams.video if not s.disposition & cover]
    if not streams:
        return 0.0
    return _seconds(streams[0].start_time, streams[0].time_base) or 0.0


def has_audio(src: Path) -> bool:
    try:
        with av.open(ffmpeg_name(src), metadata_errors=TAG_ERRORS) as container:
            return bool(container.streams.audio)
    except (av.FFmpegError, OSError):
        return False


def extract_audio(src: str | Path, max_seconds: float | None = None, start: float = 0.0,
                  choice: AudioChoice = AudioChoice()) -> AudioTrack | None:
    """The first audio stream of ``src`` (None when it has none), stored as ``choice`` says, cut
    at ``max_seconds`` of video time when given (an encode of the first N frames keeps the
    matching audio). ``start`` > 0 (encode --ss) moves the video's zero point that far in and
    leaves out the audio that ends before it."""
    src = Path(src)
    try:
        with av.open(ffmpeg_name(src), metadata_errors=TAG_ERRORS) as container:
            if not container.streams.audio:
                return None
            video_start = first_video_time(container) + start
            ctx = container.streams.audio[0].codec_context
            attempts = choice.attempts(codec_name(ctx), ctx.channels) if ctx is not None else ("copy",)
        for how in attempts:
            with av.open(ffmpeg_name(src), metadata_errors=TAG_ERRORS) as container:
                try:
                    if how == "copy":
                        return _copy_packets(container, video_start, max_seconds, trim=start > 0)
                    forced = how == "opus" and choice.codec != "opus"
                    return _reencode(container, video_start, max_seconds, trim=start > 0,
                                     stored="opus, unstorable" if forced else how, bit_rate=choice.bitrate)
                except (av.FFmpegError, ValueError):
                    if how == attempts[-1]:
                        raise
                    # FLAC or Matroska refused the codec (or its packets): the next way
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise InputError(f"{src}: cannot read the audio stream ({str(exc).splitlines()[0][:160]}); "
                         "use --no-audio to encode the video alone") from None
    return None  # (not reached: the last attempt returns or raises)


def _in_range(t: float, video_start: float, max_seconds: float | None) -> bool:
    return max_seconds is None or t - video_start < max_seconds


def _copy_packets(container: av.container.InputContainer, video_start: float,
                  max_seconds: float | None, trim: bool = False) -> AudioTrack | None:
    """The packets from the start (with ``trim``, from the last one that starts at or before
    ``video_start``: those before it end before it, whether or not packets state a duration) to
    ``max_seconds`` of video time, copied into a Matroska block."""
    stream = container.streams.audio[0]
    buf = io.BytesIO()
    first: int | None = None
    last_end = 0
    with av.open(buf, "w", format="matroska", options=BITEXACT) as out:
        out_stream = out.add_stream_from_template(stream)
        packets = container.demux(stream)
        if trim:
            packets = _from_zero_point(packets, stream.time_base, video_start)
        for packet in packets:
            if packet.pts is None or packet.size == 0:
                continue
            t = float(packet.pts * stream.time_base)
            if not _in_range(t, video_start, max_seconds):
                break
            if first is None:
                first = packet.pts
            packet.pts -= first
            packet.dts = packet.pts if packet.dts is None else packet.dts - first
            last_end = max(last_end, packet.pts + (packet.duration or 0))
            packet.stream = out_stream
            out.mux(packet)
    if first is None:
        return None
    ctx = stream.codec_context
    return AudioTrack(buf.getvalue(), float(first * stream.time_base) - video_start, codec_name(ctx),
                      ctx.sample_rate, ctx.channels, float(last_end * stream.time_base))


def _from_zero_point(packets: Iterator[av.Packet], time_base: Fraction, video_start: float) -> Iterator[av.Packet]:
    """``packets`` from the last one that starts at or before ``video_start`` on."""
    held = None
    for packet in packets:
        if packet.pts is None or packet.size == 0:
            continue
        if float(packet.pts * time_base) <= video_start:
            held = packet  # the one before ends at or before this one starts: left out
            continue
        if held is not None:
            yield held
            held = None
        yield packet
    if held is not None and (not held.duration or float((held.pts + held.duration) * time_base) > video_start):
        yield held  # (the last packet, held at or before the zero point: kept only where it plays on past it)


def _reencode(container: av.container.InputContainer, video_start: float,
              max_seconds: float | None, trim: bool = False, stored: str = "opus",
              bit_rate: float | None = None) -> AudioTrack | None:
    """The audio decoded and stored as FLAC (``stored`` "flac", the same samples) or Opus, cut to
    the sample at ``max_seconds`` of video time and, with ``trim``, at the video's start (a
    camera's PCM packets can last a second: cut whole, they ran on past the last frame)."""
    stream = container.streams.audio[0]
    buf = io.BytesIO()
    start: float | None = None
    samples = 0
    encoder = "flac" if stored == "flac" else "libopus"
    begin = video_start if trim else None
    end = None if max_seconds is None else video_start + max_seconds
    with av.open(buf, "w", format="matroska", options=BITEXACT) as out:
        out_stream, resampler = reencode_output(out, stream.codec_context, encoder, bit_rate)
        rate = out_stream.codec_context.sample_rate
        for frame in container.decode(stream):
            t = _seconds(frame.pts, frame.time_base)
            if t is not None and end is not None and t >= end:
                break
            if t is not None:
                frame, t = _cut(frame, t, begin, end)
                if frame is None:
                    continue
            if start is None:
                start = t if t is not None else video_start
            at = None if t is None else round((t - start) * rate)
            samples = _encode(resampler, out_stream, out, frame, samples, at)
        samples = _encode(resampler, out_stream, out, None, samples)
        for packet in out_stream.encode(None):
            out.mux(packet)
        out_ctx = out_stream.codec_context
    if start is None:
        return None
    source = stream.codec_context
    notes = []
    if stored == "opus, unstorable":  # (lossy for good, and not asked for)
        notes.append(f"the audio is stored re-encoded to Opus at {OPUS_BITRATE // 2000} kb/s a channel: "
                     f"a .tok (Matroska) cannot hold {codec_name(source)} as it is")
    if encoder == "libopus" and bit_rate is not None and out_ctx.bit_rate < round(bit_rate):
        notes.append(f"the audio is stored as Opus at {out_ctx.bit_rate // 1000}k, not the {bit_rate / 1000:g}k "
                     f"asked: Opus takes at most {MAX_OPUS_BITRATE_PER_CHANNEL // 1000}k a channel")
    if out_ctx.channels < source.channels:
        keep = "; --audio-codec copy keeps them" if stored == "opus" else ""  # (not where copying failed)
        notes.append(f"the audio's {source.channels} channels are stored mixed down to {out_ctx.layout.name} "
                     f"(Opus codes at most 8){keep}")
    return AudioTrack(buf.getvalue(), start - video_start, codec_name(out_ctx), rate, out_ctx.channels,
                      samples / rate, stored=stored, source_codec=codec_name(source),
                      bit_rate=out_ctx.bit_rate if encoder == "libopus" else None, notes=tuple(notes))


def _cut(frame: av.AudioFrame, t: float, begin: float | None,
         end: float | None) -> tuple[av.AudioFrame | None, float]:
    """``frame`` (its first sample at ``t`` s) without its samples before ``begin`` and from
    ``end`` on (None: no cut there), and the time of its first sample left; None when none is."""
    rate, count = frame.sample_rate, frame.samples
    first = 0 if begin is None else min(count, max(0, round((begin - t) * rate)))
    last = count if end is None else max(0, min(count, round((end - t) * rate)))
    if first == 0 and last == count:
        return frame, t
    if last <= first:
        return None, t
    try:
        data = frame.to_ndarray()
    except (ValueError, TypeError):  # a format numpy cannot hold (PyAV has no dtype for s64): kept whole
        return frame, t
    per_sample = 1 if frame.format.is_planar else len(frame.layout.channels)
    part = np.ascontiguousarray(data[:, first * per_sample:last * per_sample])
    cut = av.AudioFrame.from_ndarray(part, format=frame.format.name, layout=frame.layout)
    cut.sample_rate = rate
    return cut, t + first / rate


def reencode_output(output: av.container.OutputContainer, source: av.codec.context.CodecContext,
                    encoder: str = "libopus", bit_rate: float | None = None,
                    ) -> tuple[av.audio.stream.AudioStream, av.AudioResampler]:
    """A stream in ``output`` that re-encodes audio like ``source``'s, and the resampler that
    brings the audio to it. "libopus": Opus at 48 kHz and ``bit_rate`` (default 64 kb/s a
    channel, at most 256k a channel), with as many channels in the standard layout of that count
    (libopus's: 5.1(side) becomes 5.1; more than 8 channels are mixed down to 7.1). "flac": the
    source's rate, layout and samples (16 bits, or 24 in 32), in blocks of FLAC_BLOCK samples.
    "alac": lossless at the source's rate and layout, in 16 or 24 bits as the source has them, or
    PCM where ALAC does not take the layout (quad, 5.1(side), 7.1: FFmpeg's ALAC takes the
    layouts of Apple's list only)."""
    narrow = source.format is not None and source.format.name in ("s16", "s16p", "u8", "u8p")
    layout = source.layout.name
    options: dict[str, str] = {}
    if encoder == "flac":
        rate, fmt = source.sample_rate, "s16" if narrow else "s32"
        if rate >= FLAC_BLOCK_MIN_RATE:
            options["frame_size"] = str(FLAC_BLOCK)
    elif encoder == "alac":
        rate = source.sample_rate or OPUS_RATE
        fmt = "s16p" if narrow else "s32p"
        if not _opens("alac", rate, layout, fmt):
            encoder, fmt = _pcm_for(source)
    else:
        rate, fmt = OPUS_RATE, "flt"
        layout = OPUS_LAYOUTS[min(max(source.channels, 1), 8)]
    stream = output.add_stream(encoder, rate=rate)
    stream.layout = layout
    if encoder == "libopus":
        channels = len(av.AudioLayout(layout).channels)
        asked = round(bit_rate) if bit_rate is not None else OPUS_BITRATE // 2 * channels
        stream.bit_rate = min(asked, MAX_OPUS_BITRATE_PER_CHANNEL * channels)
    else:
        stream.format = fmt
    stream.options = options
    return stream, av.AudioResampler(format=fmt, layout=layout, rate=rate)


def _opens(encoder: str, rate: int, layout: str, fmt: str) -> bool:
    """Whether FFmpeg's ``encoder`` takes audio of this rate, layout and sample format (asked of
    a context apart: a stream added to an output cannot be taken back)."""
    try:
        ctx = av.CodecContext.create(encoder, "w")
        ctx.sample_rate, ctx.layout, ctx.format = rate, layout, fmt
        ctx.open()
    except (av.FFmpegError, ValueError):
        return False
    return True


def _pcm_for(source: av.codec.context.CodecContext) -> tuple[str, str]:
    """The PCM encoder and sample format that hold ``source``'s samples as they are."""
    name = source.format.name.rstrip("p") if source.format is not None else "flt"
    return {"u8": ("pcm_s16le", "s16"), "s16": ("pcm_s16le", "s16"),
            "s32": ("pcm_s32le", "s32")}.get(name, ("pcm_f32le", "flt"))


def _encode(resampler: av.AudioResampler, stream: av.audio.stream.AudioStream,
            output: av.container.OutputContainer, frame: av.AudioFrame | None, pts: int,
            at: int | None = None) -> int:
    """Resample ``frame`` (None flushes) to the stream's rate, number its samples from ``pts`` on,
    encode and mux them; returns the next sample number. ``at``: the sample number the frame's
    source timestamp gives it; where that lies more than GAP_SECONDS beyond ``pts`` (a gap in the
    source), silence fills the gap first, so that what follows plays when it should."""
    rate = stream.codec_context.sample_rate
    if frame is not None and at is not None and at - pts > GAP_SECONDS * rate:
        gap = round((at - pts) * frame.sample_rate / rate)  # (in the source's samples)
        for done in range(0, gap, frame.sample_rate):  # a second at a time: a jump of hours is no huge frame
            pts = _encode(resampler, stream, output, _silence(frame, min(frame.sample_rate, gap - done)), pts)
    for out_frame in resampler.resample(frame):
        out_frame.pts = pts
        out_frame.time_base = Fraction(1, rate)
        pts += out_frame.samples
        for packet in stream.encode(out_frame):
            output.mux(packet)
    return pts


def _silence(like: av.AudioFrame, samples: int) -> av.AudioFrame:
    """``samples`` of silence in ``like``'s format, layout and rate."""
    silent = av.AudioFrame(format=like.format.name, layout=like.layout.name, samples=samples)
    for plane in silent.planes:
        view = np.frombuffer(plane, np.uint8)
        view[:] = 128 if like.format.name.startswith("u8") else 0
    silent.sample_rate = like.sample_rate
    return silent


def codec_name(ctx: av.codec.context.CodecContext) -> str:
    """The format's name of a stream's codec ("mp3"), not its decoder's ("mp3float"): what the
    muxers' lists of codecs they hold name."""
    return ctx.codec.canonical_name or ctx.name


def read_track(data: bytes, start_offset: float) -> AudioTrack:
    """Describe a stored Matroska audio block (codec, rate, channels, duration)."""
    try:
        with av.open(io.BytesIO(data), "r", format="matroska", metadata_errors=TAG_ERRORS) as container:
            if not container.streams.audio:
                raise ValueError("no audio stream")
            stream = container.streams.audio[0]
            ctx = stream.codec_context
            if ctx is None or not ctx.name or not ctx.sample_rate:
                raise ValueError("no decodable audio stream")
            end = 0
            for packet in container.demux(stream):
                if packet.pts is not None:
                    end = max(end, packet.pts + (packet.duration or 0))
            return AudioTrack(data, start_offset, codec_name(ctx), ctx.sample_rate, ctx.channels,
                              float(end * stream.time_base))
    except (av.FFmpegError, ValueError, TypeError, AttributeError, OverflowError, IndexError) as exc:
        # a damaged block is parsed by FFmpeg's Matroska demuxer: any of its failures is "unreadable"
        reason = (str(exc).splitlines() or [type(exc).__name__])[0][:160]
        raise FormatError(f"stored audio is unreadable ({reason})") from None


class AudioMuxer:
    """Interleaves a stored audio track into an output container as the video is written."""

    def __init__(self, output: av.container.OutputContainer, suffix: str, track: AudioTrack) -> None:
        self.output = output
        self.track = track
        self.source = av.open(io.BytesIO(track.data), "r", format="matroska", metadata_errors=TAG_ERRORS)
        self.in_stream = self.source.streams.audio[0]
        copyable = COPYABLE.get(suffix.lower(), set())
        self.copy = copyable is None or codec_name(self.in_stream.codec_context) in copyable
        if self.copy:
            self.out_stream = output.add_stream_from_template(self.in_stream)
        else:
            self.out_stream, self.resampler = reencode_output(output, self.in_stream.codec_context,
                                                              REENCODE_AS.get(suffix.lower(), "libopus"))
            self.samples: int | None = None
        self.reencoded = not self.copy
        self.packets = self._shifted_packets()
        self.pending = None
        self.done = False

    def _shifted_packets(self) -> Iterator[av.Packet]:
        """Packets on the output timeline: shifted by the start offset, those before 0 dropped."""
        tb = self.in_stream.time_base
        shift = round(Fraction(self.track.start_offset).limit_denominator(1_000_000) / tb)
        for packet in self.source.demux(self.in_stream):
            if packet.pts is None or packet.size == 0:
                continue
            packet.pts += shift
            packet.dts = packet.pts if packet.dts is None else packet.dts + shift
            if packet.pts < 0:
                continue
            if self.track.end is not None and packet.pts * tb >= self.track.end:
                return
            yield packet

    def mux_until(self, seconds: float | None) -> None:
        """Write the audio that plays before ``seconds`` (all of it when None)."""
        while not self.done:
            if self.pending is None:
                self.pending = next(self.packets, None)
                if self.pending is None:
                    self.done = True
                    break
            packet = self.pending
            if seconds is not None and float(packet.pts * self.in_stream.time_base) > seconds:
                break
            self.pending = None
            self._write(packet)

    def _write(self, packet: av.Packet) -> None:
        if self.copy:
            packet.stream = self.out_stream
            self.output.mux(packet)
            return
        rate = self.out_stream.codec_context.sample_rate
        at: int | None = round(float(packet.pts * self.in_stream.time_base) * rate)
        for frame in packet.decode():
            if frame.pts is not None and frame.time_base is not None:  # (after what the decoder
                at = round(float(frame.pts * frame.time_base) * rate)   # skipped: Opus's pre-skip)
            self.samples = _encode(self.resampler, self.out_stream, self.output, frame,
                                   at if self.samples is None else self.samples, at)
            at = None  # (a packet's time is its first frame's)

    def finish(self) -> None:
        try:
            self.mux_until(None)
            if not self.copy and self.samples is not None:
                self.samples = _encode(self.resampler, self.out_stream, self.output, None, self.samples)
                for packet in self.out_stream.encode(None):
                    self.output.mux(packet)
        except av.FFmpegError as exc:
            raise OutputError(f"cannot write the audio ({str(exc).splitlines()[0][:160]})") from None
        finally:
            self.close()

    def close(self) -> None:
        if self.source is not None:
            self.source.close()
            self.source = None
