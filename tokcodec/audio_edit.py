"""The stored audio of .tok files cut and joined without decoding it (``tokcodec cut``,
``concat``, ``split``): packets copied whole, moved to their place on the new timeline, and in a
join silence coded in the stream's own codec where the joined stream would have a gap, so that
audio read sample after sample stays with the pictures.
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Iterable, Iterator

import av

from tokcodec.audio import (BITEXACT, FLAC_BLOCK, GAP_SECONDS, AudioTrack, _copy_packets, _silence,
                            codec_name)
from tokcodec.errors import FormatError, InputError
from tokcodec.ffmpeg_names import TAG_ERRORS

#: seconds by which a join's packet times may miss a file's ends (Matroska stores milliseconds)
JOIN_SLACK = 0.001
#: codecs whose packets decode whatever set-up bytes their stream has at one rate and channel
#: count (FFmpeg's encoder for each), so that a join can code its silence to stand among them
SILENCE_ENCODERS = {"aac": "aac", "opus": "libopus", "flac": "flac", "mp3": "libmp3lame", "mp2": "mp2",
                    "ac3": "ac3", "eac3": "eac3"}


def cut_stored(data: bytes, start_offset: float, start: float, length: float | None) -> AudioTrack | None:
    """The stored audio of part of a .tok (``tokcodec cut``): the packets that play from ``start``
    seconds of its video for ``length`` seconds (None: to the end of the audio), copied whole into
    a new Matroska block, with their offset against the part's first frame; None where no packet
    plays there. From a ``start`` past 0 the packet under way at ``start`` is kept, as encode --ss
    keeps it; from 0, audio before the first frame stays, as it was."""
    try:
        with av.open(io.BytesIO(data), "r", format="matroska", metadata_errors=TAG_ERRORS) as container:
            return _copy_packets(container, start - start_offset, length, trim=start > 0)
    except (av.FFmpegError, ValueError, IndexError) as exc:
        raise FormatError(f"stored audio is unreadable ({(str(exc).splitlines() or [type(exc).__name__])[0][:160]})") from None


@dataclass(frozen=True)
class StoredAudio:
    """One .tok's stored audio as ``join_stored`` takes it: the Matroska block, its start offset
    against that file's first frame, where that file's video begins on the joined timeline and
    how long it lasts (seconds)."""
    data: bytes
    start_offset: float
    at: float
    length: float


def _signature(stream: av.audio.stream.AudioStream) -> tuple:
    """What packets of two streams must share to follow one another in one stream: codec, rate,
    channels, sample format and (but for FLAC, whose header also counts a file's samples) the
    codec's set-up bytes."""
    ctx = stream.codec_context
    name = codec_name(ctx)
    return (name, ctx.sample_rate, ctx.channels, ctx.format.name if ctx.format else None,
            None if name == "flac" else bytes(ctx.extradata or b""))


def _said(signature: tuple) -> str:
    return f"{signature[0]} {signature[1]} Hz {signature[2]} ch"


def _silent_packets(ctx: av.codec.context.CodecContext, seconds: float) -> list[av.Packet] | None:
    """``seconds`` of silence coded as the packets of a stream of ``ctx`` are (its codec, rate
    and channels); None where no encoder here codes them so (an AAC profile other than LC,
    Vorbis, whose packets need their stream's own codebooks)."""
    name = codec_name(ctx)
    if name not in SILENCE_ENCODERS or (name == "aac" and (ctx.profile or "LC") != "LC"):
        return None
    rate = ctx.sample_rate
    try:
        encoder = av.CodecContext.create(SILENCE_ENCODERS[name], "w")
        encoder.sample_rate, encoder.layout = rate, ctx.layout.name
        formats = [f.name for f in encoder.codec.audio_formats or ()]
        encoder.format = ctx.format.name if ctx.format is not None and ctx.format.name in formats else formats[0]
        encoder.time_base = Fraction(1, rate)
        if name == "flac":  # (blocks no longer than the stream's header allows: decoders refuse longer ones)
            encoder.options = {"frame_size": str(_flac_block(ctx))}
        encoder.open()
        size, packets = encoder.frame_size or 1024, []
        # whole frames only, as many as come nearest: a short last frame is still a whole frame to
        # most decoders (AAC's 1024 samples), which would play past the gap
        total = size * max(1, round(seconds * rate / size))
        like = av.AudioFrame(format=encoder.format.name, layout=ctx.layout.name, samples=1)
        like.sample_rate = rate
        for done in range(0, total, size):
            frame = _silence(like, size)
            frame.pts, frame.time_base = done, Fraction(1, rate)
            packets += encoder.encode(frame)
        return packets + list(encoder.encode(None))
    except (av.FFmpegError, ValueError, IndexError, TypeError, AttributeError):
        return None


def _flac_block(ctx: av.codec.context.CodecContext) -> int:
    """The longest block a FLAC stream's header (STREAMINFO, in its set-up bytes) allows, or the
    block length FLAC is stored in here."""
    info = bytes(ctx.extradata or b"")
    if info[:4] == b"fLaC":
        info = info[8:]   # (the marker and the metadata block's header)
    return int.from_bytes(info[2:4], "big") if len(info) >= 4 and int.from_bytes(info[2:4], "big") else FLAC_BLOCK


def _with_durations(packets: Iterator[av.Packet]) -> Iterator[tuple[av.Packet, int]]:
    """Each packet with a timestamp and its duration in its time base: its own, or where it states
    none (Matroska's first block reads 0) the time to the next packet, or the last one's."""
    held, last = None, 0
    for packet in packets:
        if packet.pts is None or packet.size == 0:
            continue
        if held is not None:
            last = held.duration or max(0, packet.pts - held.pts)
            yield held, last
        held = packet
    if held is not None:
        yield held, held.duration or last


class _JoinedStream:
    """The audio of a join as it is written: packets in time order, each at its place on the
    joined timeline, and silence coded where a gap opens."""

    def __init__(self, out: av.container.OutputContainer) -> None:
        self.out = out
        self.stream: av.audio.stream.AudioStream | None = None
        self.template: av.codec.context.CodecContext | None = None
        self.first: float | None = None   # the stream's start, seconds on the joined timeline
        self.last = -math.inf             # the last packet's start
        self.end = 0.0                    # and where the audio written so far ends
        self.gaps: list[tuple[float, float]] = []  # (where, seconds) left silent without packets

    def add(self, packet: av.Packet, at: float, tb: Fraction) -> None:
        """Write ``packet`` (of time base ``tb``) at ``at`` seconds, after silence for the gap before it."""
        if at <= self.last:
            return
        if self.first is None:
            self.first = at
        elif at - self.end > GAP_SECONDS:
            self._silence(self.end, at, tb)
        self._mux(packet, at, tb)

    def start_at(self, at: float) -> None:
        """Start the stream at ``at`` (silence until its first packet)."""
        self.first = self.end = at

    def _mux(self, packet: av.Packet, at: float, tb: Fraction) -> None:
        packet.pts = packet.dts = round((at - self.first) / tb)
        packet.time_base = tb
        packet.stream = self.stream
        self.out.mux(packet)
        self.last = at
        self.end = max(self.end, at + float((packet.duration or 0) * tb))

    def _silence(self, begin: float, end: float, tb: Fraction) -> None:
        packets = _silent_packets(self.template, end - begin)
        if packets is None:
            self.gaps.append((begin, end - begin))
            return
        rate = self.template.sample_rate
        for packet in packets:   # (those that play mostly within the gap: not the encoder's priming before it)
            if not packet.size:
                continue
            at, span = begin + float(packet.pts) / rate, float(packet.duration or 0) / rate
            if at > self.last and begin <= at + span / 2 < end:
                packet.duration = round(Fraction(packet.duration or 0, rate) / tb)
                self._mux(packet, at, tb)


def join_stored(parts: Iterable[StoredAudio | None], names: list[str]) -> tuple[AudioTrack | None, list[str]]:
    """One audio stream of the stored audio of .tok files joined one after another (``tokcodec
    concat``; ``parts`` in the files' order, None for a file without audio), and warnings. Each
    file's packets are copied whole and moved to where its video begins: those that play mostly
    within its video (the first file's also before it, the last file's also after it), so that a
    join gains or loses less than half a packet, 11 ms of AAC, not more in one direction than the
    other. A packet that starts before a later file's first frame holds its encoder's priming
    (AAC's first 1024 samples), or sound from before its first picture: left out. Silence is
    coded into the gaps (a file without audio, audio that ends before its video or starts after
    it), so that audio read sample after sample stays with the pictures; where the codec cannot
    be coded here the gap stays, and a warning says so. Packets must be of one kind (codec, rate,
    channels, set-up): InputError otherwise. (None, []) where no file has audio."""
    buf = io.BytesIO()
    reference: tuple | None = None
    first_name = ""
    with av.open(buf, "w", format="matroska", options=BITEXACT) as out:
        joined = _JoinedStream(out)
        for index, (part, name) in enumerate(zip(parts, names)):
            if part is None:
                continue
            final = index == len(names) - 1
            try:
                source = av.open(io.BytesIO(part.data), "r", format="matroska", metadata_errors=TAG_ERRORS)
            except (av.FFmpegError, ValueError) as exc:
                raise FormatError(f"{name}: stored audio is unreadable ({str(exc).splitlines()[0][:160]}); "
                                  "--no-audio joins the video alone") from None
            with source:
                if not source.streams.audio:
                    raise FormatError(f"{name}: stored audio is unreadable (no audio stream); --no-audio joins "
                                      "the video alone")
                stream = source.streams.audio[0]
                signature = _signature(stream)
                if joined.stream is None:
                    joined.stream, joined.template = out.add_stream_from_template(stream), stream.codec_context
                    reference, first_name = signature, name
                    if index > 0:  # (the files before have no audio: silence from the start)
                        joined.start_at(0.0)
                elif signature != reference:
                    raise InputError(f"{name}: its audio ({_said(signature)}) cannot follow {first_name}'s "
                                     f"({_said(reference)}) in one stream; --no-audio joins the video alone")
                tb = stream.time_base
                for packet, ticks in _with_durations(source.demux(stream)):
                    t = float(packet.pts * tb) + part.start_offset  # on this file's video timeline
                    span = float(ticks * tb)
                    # where it plays mostly; without a duration, where it starts (Matroska keeps
                    # milliseconds: a packet at the first frame may read a little before it)
                    at = t + span / 2 if span else t + JOIN_SLACK
                    if (index > 0 and at < 0) or (not final and at >= part.length):
                        continue
                    joined.add(packet, part.at + t, tb)
    if joined.stream is None or joined.last == -math.inf:
        return None, []
    warnings = [f"the joined audio is silent for {seconds:.2f} s at {where:.2f} s without packets there ("
                f"{reference[0]} cannot be coded here): players keep the rest in time, but tools that read the "
                "samples one after another move it that much earlier" for where, seconds in joined.gaps]
    return AudioTrack(buf.getvalue(), joined.first, reference[0], reference[1], reference[2],
                      joined.end - joined.first), warnings
