"""Video input and output with PyAV: RGB uint8 frames (H, W, 3) in, frames out by file extension.

Input: anything ffmpeg reads (mp4, mkv, webm, avi, y4m, 8- or 10-bit, odd sizes), still images
(a 1-frame video) and image sequences (a directory of numbered images, at DEFAULT_IMAGE_RATE
unless told otherwise); interlaced video is deinterlaced as it is read (``iter_frames``).
Output: .mp4 and .mov (H.264, high quality), .mkv (lossless FFV1 RGB), .y4m (4:4:4), .png/.jpg
(a single frame), or a directory (numbered PNGs).
"""
from __future__ import annotations

import functools
import io
import itertools
import os
import re
import stat
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.sidedata.sidedata import Type as SideDataType

from tokcodec.audio import BITEXACT, COPYABLE, MUX_AHEAD_SECONDS, AudioMuxer, AudioTrack
from tokcodec.codec.outputs import FRAME_NAME, STDIO, is_pipe, new_file, remove_frames
from tokcodec.defaults import check_deinterlace
from tokcodec.errors import ArgumentError, InputError, OutputError, why_not_a_file
from tokcodec.ffmpeg_names import TAG_ERRORS, ffmpeg_name
from tokcodec.media_tags import TAGGED_OUTPUTS, MediaTags, chapter_list, for_output, needs_mdta
from tokcodec.text import plural

#: the image formats a decode writes (and reads)
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
#: the names of still images read as inputs (image sequences, batch inputs; names an encode's .tok
#: must not take): the film and VFX frame formats too (DPX, EXR, TGA; all read by FFmpeg)
IMAGE_INPUT_SUFFIXES = IMAGE_SUFFIXES | {".tga", ".dpx", ".exr", ".ppm", ".pgm", ".pbm", ".pnm", ".pam",
                                         ".pcx", ".qoi", ".sgi", ".rgb", ".jp2", ".j2k", ".hdr"}
VIDEO_OUTPUT_SUFFIXES = {".mp4", ".mkv", ".y4m", ".mov"}
#: the names of videos (batch inputs; names an encode's .tok must not take)
VIDEO_INPUT_SUFFIXES = {".mp4", ".m4v", ".mkv", ".mov", ".avi", ".webm", ".y4m", ".mpg", ".mpeg",
                        ".ts", ".mts", ".m2ts", ".flv", ".wmv", ".3gp", ".ogv", ".mxf", ".gif",
                        ".vob", ".dv", ".asf", ".nut", ".m1v", ".m2v", ".mpe", ".f4v", ".divx", ".apng",
                        ".3g2", ".mj2", ".qt", ".rm", ".rmvb", ".h264", ".264", ".h265", ".265", ".hevc",
                        ".ivf", ".obu", ".mjpeg", ".mjpg"}
#: the names of every input tokcodec reads as video (a still, a sequence's frame, a video)
MEDIA_INPUT_SUFFIXES = VIDEO_INPUT_SUFFIXES | IMAGE_INPUT_SUFFIXES
DEFAULT_IMAGE_RATE = Fraction(25, 1)
MAX_DIMENSION = 16384
# 8K (7680x4320 and DCI 8192x4320 fit): one RGB frame of this is 113 MB and the model needs many
# times that, so probe() refuses larger inputs before anything is decoded
MAX_PIXELS = 8192 * 4608
#: FFmpeg's demuxers of one still image: image2 (by the file's name) and the image pipes of the
#: common formats, whose files hold one picture
_IMAGE_FORMATS = {"image2", "png_pipe", "jpeg_pipe", "webp_pipe", "bmp_pipe", "tiff_pipe"}
# demuxers whose frames carry no timestamps of their own: constant rate by construction
_CONSTANT_RATE_FORMATS = _IMAGE_FORMATS | {"yuv4mpegpipe", "rawvideo"}


@dataclass
class ColorInfo:
    """FFmpeg colour enums (AVCOL_*) as read from the input; 2 means unspecified."""

    color_range: int = 0
    colorspace: int = 2
    primaries: int = 2
    transfer: int = 2


@dataclass(frozen=True)
class VideoInfo:
    width: int                  # as displayed: after the rotation below
    height: int
    frame_rate: Fraction        # average rate (frames / duration) when the input is variable-rate
    frame_count: int            # as reported by the container (or packets counted); 0 when unknown
    pixel_format: str
    is_image: bool
    color: ColorInfo = field(default_factory=ColorInfo)
    rotation: int = 0           # display-matrix rotation applied when reading, degrees counter-clockwise
    pixel_aspect: Fraction | None = None  # the sample aspect ratio where the container states one
    other_streams: tuple[int, int, int] = (0, 0, 0)  # more audio, more video and subtitle streams (not kept)
    interlaced: bool = False    # its stream's field order, or its first frame, says interlaced
    is_sequence: bool = False   # a directory of images read as one video (image_sequence)
    #: a GIF whose first frame is opaque throughout (FFmpeg decodes every GIF as bgra: each was
    #: warned of an alpha channel not kept; other formats with alpha state it, and are warned)
    opaque_alpha: bool = False


def image_sequence(path: Path) -> list[Path]:
    """The images of a directory read as one video (an image sequence, as `decode -o DIR` writes
    it and animation and VFX tools export), in the natural order of their names (img_2 before
    img_10); hidden files and other files are left out, and where the directory holds a decode's
    own frames (frame_NNNNNN.png) only those are read (a decode with -y leaves other files be).
    InputError where there are none. Listed once per state of the directory."""
    try:
        mtime = path.stat().st_mtime_ns
    except OSError:
        raise InputError(f"{path}: no such directory") from None
    return list(_listed_sequence(path, mtime))


@functools.lru_cache(maxsize=8)
def _listed_sequence(path: Path, mtime_ns: int) -> tuple[Path, ...]:
    images = [p for p in path.iterdir()
              if p.suffix.lower() in IMAGE_INPUT_SUFFIXES and not p.name.startswith(".") and p.is_file()]
    decoded = [p for p in images if FRAME_NAME.fullmatch(p.name)]
    if not images:
        raise InputError(f"{path}: is a directory without images (an image sequence is a directory of "
                         f"numbered {', '.join(sorted(IMAGE_INPUT_SUFFIXES))} files)")
    return tuple(sorted(decoded or images, key=_natural_order))


def _natural_order(path: Path) -> tuple[list[int | str], str]:
    """img_2 before img_10: the runs of digits of a name compare as numbers (the name itself
    breaks ties: 01 and 1, A and a)."""
    parts = re.split(r"(\d+)", path.name)  # (odd places: the digit runs; \d is a decimal digit, as int() reads)
    return [int(t) if i % 2 else t.lower() for i, t in enumerate(parts)], path.name


_NUMBERED = re.compile(r"^(.*?)(\d+)(\D*)$")  # a numbered name: prefix, its last run of digits, suffix


def sequence_warnings(path: Path) -> list[str]:
    """What reading a directory as one image sequence may get wrong, one line each: numbered
    series of more than one name pattern (a render's beauty and matte passes, shot_0003.png
    beside shot_0003.jpg), read one after the other in name order; and frame numbers missing
    from a series (the frames after a gap play early)."""
    series: dict[tuple[str, str], list[int]] = {}
    for image in image_sequence(path):
        if (m := _NUMBERED.match(image.name)) is not None:
            series.setdefault((m[1], m[3]), []).append(int(m[2]))
    out = []
    if len(series) > 1:
        names = ", ".join(f"{prefix}#{suffix}" for prefix, suffix in list(series)[:4])
        out.append(f"{path}: holds {len(series)} numbered series ({names}{', ...' if len(series) > 4 else ''}), "
                   "read as one sequence in name order; give each series a directory of its own")
    for (prefix, suffix), numbers in series.items():
        found = sorted(set(numbers))
        gaps = [(a + 1, b - 1) for a, b in zip(found, found[1:]) if b - a > 1]
        if gaps:
            missing = sum(b - a + 1 for a, b in gaps)
            shown = ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in gaps[:5])
            shown += ", ..." if len(gaps) > 5 else ""
            out.append(f"{path}: {plural(missing, 'frame number')} missing from {prefix}#{suffix} ({shown}): the "
                       "frames after a gap play early (fill the gaps, e.g. with copies of the frame before)")
    return out


def _probe_sequence(path: Path) -> VideoInfo:
    images = image_sequence(path)
    first = _probe(images[0])
    return replace(first, frame_rate=DEFAULT_IMAGE_RATE, frame_count=len(images), is_image=False,
                   is_sequence=True)


def _sequence_frames(path: Path, max_frames: int | None, skip: int) -> Iterator[np.ndarray]:
    """The frames of an image sequence from its ``skip``-th image on, ``max_frames`` of them;
    InputError at an image of another size than the first's."""
    images = image_sequence(path)
    size: tuple[int, ...] | None = None
    for image in images[skip:] if max_frames is None else images[skip:skip + max_frames]:
        frame = next(iter_frames(image), None)
        if frame is None:
            raise InputError(f"{image}: no picture could be decoded")
        if size is not None and frame.shape != size:
            raise InputError(f"{image}: {frame.shape[1]}x{frame.shape[0]}, where the sequence's first image is "
                             f"{size[1]}x{size[0]} (the images of a sequence share one size)")
        size = frame.shape
        yield frame


def _is_image(path: Path, container: av.container.InputContainer) -> bool:
    """Whether an opened input is a still image, by the demuxer FFmpeg chose: not by its name (an
    animated PNG is named .png: taken for a still, it was stored at 25 fps, whatever its own). The
    other image pipes (dpx_pipe, exr_pipe, ppm_pipe, ...) also carry streams of pictures (`ffmpeg
    -f image2pipe -c:v ppm -`): a still where the file holds one picture (GIF's may animate)."""
    name = container.format.name
    if name in _IMAGE_FORMATS:
        return True
    return name.endswith("_pipe") and name != "gif_pipe" and _pictures(path, 2) == 1


def _pictures(path: Path, most: int) -> int:
    """The video packets of ``path``'s first video stream, counted up to ``most`` (no decoding)."""
    count = 0
    try:
        with av.open(ffmpeg_name(path), "r", metadata_errors=TAG_ERRORS) as container:
            for packet in container.demux(container.streams.video[0]):
                count += packet.size > 0
                if count >= most:
                    break
    except (av.FFmpegError, OSError):  # (a damaged second picture: what was read counts)
        pass
    return count


def _open_input(path: Path) -> av.container.InputContainer:
    if not os.path.exists(path):  # (not Path.exists: it raises where the name is too long)
        hint = " (an image sequence: give its directory)" if "%" in path.name or "*" in path.name else ""
        raise InputError(f"{path}: {why_not_a_file(path)}{hint}")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, expected a video or image file")
    if path.is_file() and path.stat().st_size == 0:
        raise InputError(f"{path}: empty file")
    _check_y4m_header(path)
    try:
        container = av.open(ffmpeg_name(path), "r", metadata_errors=TAG_ERRORS)
    except (av.FFmpegError, OSError, UnicodeDecodeError) as exc:
        from tokcodec.codec.container import is_tok_file

        if is_tok_file(path):
            raise InputError(f"{path}: is a .tok file, already encoded (tokcodec decode makes it a video)") from None
        if path.suffix.lower() in (".npy", ".safetensors"):
            raise InputError(f"{path}: a token file, not a video (tokcodec detokenize makes it a video)") from None
        raise InputError(f"{path}: not a readable video or image ({reason(exc)})") from None
    return container


def _opaque(frame: av.VideoFrame) -> bool:
    """Whether a frame of a format with alpha is opaque throughout (False without alpha)."""
    if not any(c.is_alpha for c in frame.format.components):
        return False
    return bool(frame.reformat(format="rgba").to_ndarray()[..., 3].min() == 255)


def _video_stream(container: av.container.InputContainer, path: Path) -> av.video.stream.VideoStream:
    """The first real video stream; cover art (an attached picture) does not count."""
    cover = av.stream.Disposition.attached_pic
    streams = [s for s in container.streams.video if not s.disposition & cover]
    if not streams:
        extra = " (only cover art)" if container.streams.video else ""
        raise InputError(f"{path}: contains no video stream{extra}")
    if streams[0].codec_context is None:  # (a JPEG XL still: "unexpected AttributeError")
        raise InputError(f"{path}: this FFmpeg build has no decoder for its pictures (read as "
                         f"{container.format.name}): convert it first, e.g. to .png or .mp4")
    return streams[0]


def _check_size(path: Path, width: int, height: int, demuxer: str = "") -> None:
    """Refuse sizes the codec cannot hold, before a frame of that size is decoded or allocated.
    ``demuxer``: FFmpeg's, where known (a WebP read from a pipe has no name to tell it by)."""
    problem = frame_size_problem(width, height)
    if problem and (width <= 0 or height <= 0) and (path.suffix.lower() == ".webp" or demuxer == "webp_pipe"):
        problem += (" (an animated WebP, which this FFmpeg build cannot decode: convert it first, e.g. "
                    "to .mp4 or .gif)")
    if problem:
        raise InputError(f"{path}: {problem}")


def frame_size_problem(width: int, height: int) -> str | None:
    """Why frames of this size cannot be coded, or None."""
    if width <= 0 or height <= 0:
        return f"invalid frame size {width}x{height}"
    if max(width, height) > MAX_DIMENSION or width * height > MAX_PIXELS:
        return (f"frame size {width}x{height} ({width * height / 1e6:.1f} megapixels) "
                f"is too large: at most {MAX_DIMENSION} pixels a side and "
                f"{MAX_PIXELS / 1e6:.1f} megapixels (8K); downscale it first")
    return None


def _check_y4m_header(path: Path) -> None:
    """A y4m header states the size; check it ourselves, since ffmpeg rejects absurd ones with a
    misleading reason (e.g. 'Device or resource busy')."""
    if not path.is_file():  # a pipe or device: reading would consume it
        return
    try:
        with path.open("rb") as fh:
            head = fh.read(256)
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({reason(exc)})") from None
    if head.startswith(b"YUV4MPEG2 "):
        check_y4m_header(head, str(path))


def check_y4m_header(head: bytes, source: str) -> None:
    """Refuse a Y4M stream header (its first line, ``head``) without a frame size, or with one
    the codec cannot hold, before FFmpeg reads it (its reason, "Device or resource busy", misled)."""
    fields = {t[:1]: t[1:] for t in head.split(b"\n", 1)[0].split()[1:]}
    try:
        width, height = int(fields[b"W"]), int(fields[b"H"])
    except (KeyError, ValueError):
        raise InputError(f"{source}: malformed y4m header") from None
    problem = frame_size_problem(width, height)
    if problem:
        raise InputError(f"{source}: {problem}")


def reason(exc: BaseException) -> str:
    """An exception's reason in one line, for a message."""
    text = getattr(exc, "strerror", None) or str(exc)
    return text.split("\n")[0][:200]


def _enum(value: object, default: int) -> int:
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return default


# display-matrix sign pattern (a, b, c, d) -> (transpose, quarter turns counter-clockwise), checked
# against ffmpeg's own autorotation for every rotation by 90 degrees with and without mirroring
_ORIENTATIONS = {
    (1, 0, 0, 1): (False, 0), (0, -1, 1, 0): (False, 1), (-1, 0, 0, -1): (False, 2),
    (0, 1, -1, 0): (False, 3), (0, 1, 1, 0): (True, 0), (1, 0, 0, -1): (True, 1),
    (0, -1, -1, 0): (True, 2), (-1, 0, 0, 1): (True, 3),
}


def _orientation(frame: av.VideoFrame) -> tuple[bool, int]:
    """How to turn this frame upright, as (transpose first, np.rot90 turns): phone videos store
    sensor-oriented frames plus a display matrix. Angles that are not a multiple of 90 degrees
    are rounded to the nearest one."""
    try:
        side = frame.side_data.get(SideDataType.DISPLAYMATRIX)
    except ValueError:  # a side-data type newer than PyAV's enum (EXIF, in JPEGs): no flips then
        side = None
    if side is None:
        return False, round(frame.rotation / 90) % 4
    m = struct.unpack("<9i", bytes(side)[:36])
    signs = tuple(int(np.sign(v)) for v in (m[0], m[1], m[3], m[4]))
    if signs in _ORIENTATIONS:
        return _ORIENTATIONS[signs]
    return False, round(frame.rotation / 90) % 4


def _upright(rgb: np.ndarray, orientation: tuple[bool, int]) -> np.ndarray:
    transpose, turns = orientation
    if not transpose and not turns:
        return rgb
    if transpose:
        rgb = rgb.transpose(1, 0, 2)
    return np.ascontiguousarray(np.rot90(rgb, turns))


def _display_size(frame: av.VideoFrame) -> tuple[int, int]:
    transpose, turns = _orientation(frame)
    swapped = transpose != (turns % 2 == 1)
    return (frame.height, frame.width) if swapped else (frame.width, frame.height)


#: swscale flags of every conversion between RGB and YUV here: bilinear | accurate rounding | full
#: chroma interpolation | bit-exact (the same pixels on every CPU), as the bench's FFmpeg filters
#: use. With the default flags, swscale's fast YUV 4:2:0 -> RGB path read every frame about 1 code
#: value dark (mean -1.07 / -1.33 / -1.34 on a held-out 640x360 clip against the exact conversion;
#: -0.05 / +0.04 / -0.06 with these): every 4:2:0 input was coded darker than players show it, and
#: `decode --compare` of an .mp4 output read colour drift 1.2 instead of 0.1. Cost: none measured
#: (1.2 ms a 640x360 frame either way here).
ACCURATE_SWSCALE = 0x2 | 0x40000 | 0x2000 | 0x80000  # BILINEAR | ACCURATE_RND | FULL_CHR_H_INT | BITEXACT


def reformatted(frame: av.VideoFrame, **kwargs) -> av.VideoFrame:
    """``frame.reformat(**kwargs)`` with ACCURATE_SWSCALE, or with swscale's defaults where this
    PyAV takes no flags in ``interpolation`` (an enum of its own before 18, which may refuse them)."""
    try:
        return frame.reformat(interpolation=ACCURATE_SWSCALE, **kwargs)
    except (TypeError, ValueError):
        return frame.reformat(**kwargs)


def _to_rgb(frame: av.VideoFrame, width: int, height: int,
            orientation: tuple[bool, int]) -> np.ndarray:
    """RGB uint8 with the source's own colour matrix, at (width, height), then turned upright."""
    src_cs = frame.colorspace if frame.colorspace not in (None, 2) else None
    kwargs = {"src_colorspace": src_cs} if src_cs is not None else {}
    if (frame.width, frame.height) != (width, height):  # a mid-stream size change
        kwargs.update(width=width, height=height)
    try:
        rgb = reformatted(frame, format="rgb24", **kwargs)
    except (ValueError, av.FFmpegError):
        kwargs.pop("src_colorspace", None)
        rgb = reformatted(frame, format="rgb24", **kwargs)
    return _upright(rgb.to_ndarray(), orientation)


_INTERLACED_FIELD_ORDERS = {2, 3, 4, 5}  # AVFieldOrder: TT, BB, TB, BT (0 unknown, 1 progressive)


def deinterlaces(mode: str, interlaced: bool, is_image: bool, lines: int) -> bool:
    """Whether frames are deinterlaced as they are read (``mode``: defaults.DEINTERLACE_MODES): "on"
    any video's, "auto" an interlaced one's; never an image's or an image sequence's, nor frames
    of under 4 lines (the deinterlacer reads the lines around each)."""
    return not is_image and lines >= 4 and (mode == "on" or (mode == "auto" and interlaced))


def stored_lines(info: VideoInfo) -> int:
    """The lines of an input's frames as stored, before the display matrix turns them."""
    return info.height if info.rotation % 180 == 0 else info.width


def _interlaced(stream: av.video.stream.VideoStream, first: av.VideoFrame) -> bool:
    """Whether an input is interlaced: its stream's field order says so, or its first frame is flagged."""
    order = _enum(getattr(stream.codec_context, "field_order", 0), 0)
    return order in _INTERLACED_FIELD_ORDERS or bool(first.interlaced_frame)


def _deinterlaced(frames: Iterator[av.VideoFrame], first: av.VideoFrame, time_base: Fraction | None,
                  every: bool) -> Iterator[av.VideoFrame]:
    """``frames`` (the first of them ``first``) through FFmpeg's bwdif deinterlacer, one frame
    out per frame in, so that the count, rate and timing stay: motion-adaptive, so still parts
    keep both fields' lines and moving parts are interpolated from the field in time. Each
    frame out depends on the frames just before and after it only. ``every``: all frames, else
    only those flagged interlaced (the others pass unchanged)."""
    graph = av.filter.Graph()
    source = graph.add_buffer(width=first.width, height=first.height, format=first.format,
                              time_base=first.time_base or time_base or Fraction(1, 1000))
    bwdif = graph.add("bwdif", f"mode=send_frame:parity=auto:deint={'all' if every else 'interlaced'}")
    sink = graph.add("buffersink")
    source.link_to(bwdif)
    bwdif.link_to(sink)
    graph.configure()
    shape = (first.width, first.height, first.format.name)
    for frame in frames:
        if (frame.width, frame.height, frame.format.name) != shape:  # a mid-stream change: as the first
            frame = frame.reformat(width=first.width, height=first.height, format=first.format.name)
        graph.vpush(frame)
        yield from _pulled(graph)
    graph.vpush(None)  # the last frame comes out when the filter learns there is no next one
    yield from _pulled(graph)


def _pulled(graph: av.filter.Graph) -> Iterator[av.VideoFrame]:
    """The frames a filter graph has ready."""
    while True:
        try:
            yield graph.vpull()
        except (BlockingIOError, EOFError):  # (PyAV's EAGAIN and EOF errors are also these)
            return


@dataclass
class _Scan:
    """What one pass over the packets tells: the first frame and, when asked, packet timing."""

    first: av.VideoFrame | None = None
    packets: int = 0
    span: Fraction | None = None    # seconds from the first packet's start to the last one's end
    discards: bool = False          # packets before the first frame that the demuxer discards
    first_size: int = 0             # bytes of the first packet (a Y4M frame's: _y4m_frames)


def _scan(container: av.container.InputContainer, stream: av.video.stream.VideoStream,
          path: Path, count: bool) -> _Scan:
    """Decode the first frame; with count, also read (without decoding) every packet, for
    containers that do not state a frame count (Matroska, WebM)."""
    scan = _Scan()
    lo = hi = last = None
    tb = stream.time_base or Fraction(1, 1000)
    try:
        for packet in container.demux(stream):
            if scan.first is None:
                scan.discards = scan.discards or packet.is_discard
                scan.first_size = scan.first_size or packet.size
                frames = stream.decode(packet)
                scan.first = frames[0] if frames else None
            if not count:
                if scan.first is not None:
                    break
                continue
            if not packet.size or packet.is_discard:  # (discarded: before an edit list's start)
                continue
            scan.packets += 1
            if packet.pts is not None:
                end = packet.pts + (packet.duration or 0)
                lo = packet.pts if lo is None else min(lo, packet.pts)
                if hi is None or end >= hi:
                    hi, last = end, packet.duration
    except av.FFmpegError as exc:
        if scan.first is None:
            raise InputError(f"{path}: cannot decode video ({reason(exc)})") from None
        return _Scan(scan.first)  # a damaged tail: the count is unreliable, leave it unknown
    if scan.first is None:
        raise InputError(f"{path}: no video frames could be decoded")
    if scan.packets > 1 and hi is not None and hi > lo:
        span = Fraction(hi - lo) * tb
        if not last:  # the last frame's duration is unknown: assume the average interval
            span = span * scan.packets / (scan.packets - 1)
        scan.span = span
    return scan


def nominal_rate(stream: av.video.stream.VideoStream) -> Fraction | None:
    """The rate a stream states (its average, FFmpeg's guess, or its base rate), or None."""
    nominal = stream.average_rate or stream.guessed_rate or stream.base_rate
    return Fraction(nominal) if nominal and nominal > 0 else None


#: the rates cameras, broadcast and film use: a rate within STANDARD_RATE_TOLERANCE of one is
#: taken as it (Matroska's millisecond timestamps make 59.94 fps read as 19001/317)
STANDARD_RATES = tuple([Fraction(n, 1001) for n in (24000, 30000, 48000, 60000, 120000)]
                       + [Fraction(n) for n in (24, 25, 30, 48, 50, 60, 100, 120)])
# 10 ppm: 19001/317 is 0.07 ppm from 60000/1001, while a 29.99 fps video (333 ppm from 30) keeps its
# own rate, so that its duration and sync with its audio survive
STANDARD_RATE_TOLERANCE = Fraction(1, 100_000)


def standard_rate(rate: Fraction) -> Fraction:
    """``rate``, or the standard rate it is within STANDARD_RATE_TOLERANCE of."""
    return next((r for r in STANDARD_RATES if abs(rate / r - 1) <= STANDARD_RATE_TOLERANCE), rate)


def _frame_rate(stream: av.video.stream.VideoStream, is_image: bool, frames: int,
                span: Fraction | None) -> Fraction:
    """The one rate a .tok stores. For a variable-rate input that is the average, frames over
    duration, so that every frame is kept and the total duration survives; a rate within 10 ppm
    of a standard one (STANDARD_RATES) is that one. The duration is ``span``, the packets' own,
    where every packet was read (containers without a frame count), else the stream's: a
    Matroska stream written to a pipe states none, and FFmpeg's estimate from the bit rates
    (with PCM audio, from the audio's alone: 4.16 s for 1.4 s) made 25 fps 8.4 fps."""
    if is_image:
        return DEFAULT_IMAGE_RATE
    nominal = nominal_rate(stream)
    duration = span or (Fraction(stream.duration) * stream.time_base if stream.duration and stream.time_base else None)
    if frames > 1 and duration and duration > 0:
        measured = Fraction(frames) / duration
        if nominal is None or abs(nominal - measured) > measured / 100:
            return standard_rate(measured.limit_denominator(1001))
    return standard_rate(nominal) if nominal else DEFAULT_IMAGE_RATE


def probe(path: Path | str) -> VideoInfo:
    """Size (upright), rate, frame count and colour of a video or image, checked to be codable:
    the size limits are applied before any frame is decoded, then the first frame is decoded.
    Remembered per (path, size, mtime): the CLI and the pipeline both ask, and counting the
    frames of a Matroska file reads it through."""
    path = Path(path)
    try:
        st = path.stat()
    except OSError:
        return _probe(path)  # _open_input gives the user-facing error
    return _probe_cached(path, st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _probe_cached(path: Path, size: int, mtime_ns: int) -> VideoInfo:
    return _probe(path)


def _probe(path: Path) -> VideoInfo:
    if os.path.isdir(path):  # (Path.is_dir raises where the name is too long: _open_input says so)
        return _probe_sequence(path)
    if is_pipe(path):  # (the probe would take its first bytes, and the frames' open wait for ever)
        raise InputError(f"{path}: a pipe, not a file: a video is read more than once (a probe, its audio, "
                         "its frames); copy it to a file first (the command line does: tokcodec encode PIPE), or "
                         "give encode_video a Y4M stream open, as a file object, to encode it as it comes")
    container = _open_input(path)
    try:
        stream = _video_stream(container, path)
        ctx = stream.codec_context
        fmt = container.format.name
        _check_size(path, ctx.width, ctx.height, fmt)
        is_image = _is_image(path, container)
        count = not stream.frames and not is_image and fmt not in _CONSTANT_RATE_FORMATS
        scan = _scan(container, stream, path, count)
        first = scan.first
        _check_size(path, first.width, first.height)
        frames = int(stream.frames or scan.packets)
        if fmt == "yuv4mpegpipe" and not frames:
            frames = _y4m_frames(path, scan.first_size)
        rate = _frame_rate(stream, is_image, frames, scan.span)
        if stream.frames and scan.discards:
            # the container's count holds packets the demuxer discards (an .mp4 cut without
            # re-encoding: its edit list starts after them), and its rate follows from that count:
            # count the packets it keeps
            with _open_input(path) as again:
                kept = _scan(again, _video_stream(again, path), path, count=True).packets
            if kept and kept != frames:
                frames, rate = kept, _frame_rate(stream, is_image, kept, None)
        return info_of(container, stream, first, rate, frames, is_image)
    finally:
        container.close()


def info_of(container: av.container.InputContainer, stream: av.video.stream.VideoStream,
            first: av.VideoFrame, rate: Fraction, frames: int, is_image: bool = False) -> VideoInfo:
    """The VideoInfo of an opened input from its video stream and first frame (``rate`` and
    ``frames``, 0 where unknown, as found)."""
    ctx = stream.codec_context
    width, height = _display_size(first)
    color = ColorInfo(_enum(getattr(ctx, "color_range", 0), 0), _enum(getattr(ctx, "colorspace", 2), 2),
                      _enum(getattr(ctx, "color_primaries", 2), 2), _enum(getattr(ctx, "color_trc", 2), 2))
    pix = ctx.format.name if ctx.format is not None else "unknown"
    rotation = round(first.rotation / 90) * 90 % 360
    return VideoInfo(width, height, rate, frames, pix, is_image, color, rotation,
                     stream.sample_aspect_ratio or None, _other_streams(container, stream),
                     interlaced=not is_image and _interlaced(stream, first),
                     opaque_alpha=ctx.name == "gif" and _opaque(first))


def _y4m_frames(path: Path, payload: int) -> int:
    """A Y4M file's frame count from its size: the format states none, so an encode from a pipe
    (`ffmpeg ... -f yuv4mpegpipe - | tokcodec encode -`, spooled to a file) ran without a total,
    percentage or time left. Its frames, each a header line like the first one's and ``payload``
    bytes, fill the file after the stream header; 0 (unknown) where they do not exactly."""
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):  # (a FIFO: a second open would wait for a second writer)
            return 0
        with path.open("rb") as fh:
            head = fh.read(4096)
    except OSError:
        return 0
    size = info.st_size
    start = head.find(b"\n") + 1
    end = head.find(b"\n", start) + 1
    if not start or not end or not head.startswith(b"FRAME", start) or payload <= 0:
        return 0
    frames, rest = divmod(size - start, end - start + payload)
    return frames if rest == 0 else 0


def _other_streams(container: av.container.InputContainer, stream: av.video.stream.VideoStream
                   ) -> tuple[int, int, int]:
    """More audio, more video (cover art aside) and subtitle streams than the .tok keeps. Data
    streams (a phone's or camera's timecode and metadata tracks) are not counted: they go as
    ffmpeg drops them, without a word, as the container's metadata does."""
    extra_video = [s for s in container.streams.video if s is not stream
                   and not s.disposition & av.stream.Disposition.attached_pic]
    return max(0, len(container.streams.audio) - 1), len(extra_video), len(container.streams.subtitles)


@dataclass(frozen=True)
class _SeekPoint:
    """Where decoding may start to reach frame ``skip`` without decoding the frames before it."""

    key_pts: int     # a key packet's timestamp at or before the target (stream time base)
    target_pts: int  # the timestamp of frame ``skip``: the frame ``skip`` frames after the first


# packets read past frame ``skip`` to see that no later packet shows before it (B-frame reordering
# is at most 16 frames deep in H.264/HEVC)
_REORDER_LOOKAHEAD = 32


def _seek_point(path: Path, skip: int, first_pts: int | None) -> _SeekPoint | None:
    """From the packets alone (no decoding; about 100 000 packets/s): the timestamp of frame
    ``skip`` (the ``skip``-th smallest packet timestamp from the first decoded frame's,
    ``first_pts``, on, which is frame ``skip`` of a decode that counts frames, as each packet
    holds one frame; packets that show before the first decoded frame, such as an open GOP's
    leading B-frames at the start of a cut, never decode) and the last key packet at or before it. None
    where that cannot be trusted (packets without timestamps, repeated ones, packets the demuxer
    discards or marks corrupt, a reorder deeper than the look-ahead) or does not pay (no key
    packet after the first frame's): the frames are then decoded and counted from the start."""
    container = _open_input(path)
    try:
        stream = _video_stream(container, path)
        stamps: list[int] = []
        keys: list[int] = []
        for packet in container.demux(stream):
            if not packet.size:
                continue
            if packet.pts is None or packet.is_discard or packet.is_corrupt:
                return None
            stamps.append(packet.pts)
            if packet.is_keyframe:
                keys.append(packet.pts)
            if len(stamps) > skip + _REORDER_LOOKAHEAD:
                break
    except av.FFmpegError:
        return None
    finally:
        container.close()
    shown = _shown(stamps, first_pts)
    if shown is None or len(shown) <= skip:
        return None
    target = shown[skip]
    if len(stamps) > skip + _REORDER_LOOKAHEAD and min(stamps[-_REORDER_LOOKAHEAD // 2:]) <= target:
        return None  # packets far past frame skip still show before it: reordered too deep to trust
    before = [k for k in keys if k <= target]
    if not before or max(before) <= first_pts:
        return None
    return _SeekPoint(max(before), target)


def _shown(stamps: list[int], first_pts: int | None) -> list[int] | None:
    """Packet timestamps in the order the frames show, from the first decoded frame's on (packets
    that show before it never decode); None when they cannot rank frames (no first frame's
    timestamp, repeated timestamps)."""
    if first_pts is None or len(set(stamps)) != len(stamps):
        return None
    return sorted(t for t in stamps if t >= first_pts)


def _frames_from(container: av.container.InputContainer, stream: av.video.stream.VideoStream,
                 point: _SeekPoint) -> Iterator[av.VideoFrame] | None:
    """Decoded frames from the seek point's target on, after a seek to its key packet; None when
    the first frame at or after the target is not the target itself (a demuxer whose seek lands
    elsewhere, frames without timestamps): the caller then decodes from the start."""
    try:
        container.seek(point.key_pts, stream=stream, backward=True, any_frame=False)
        frames = container.decode(stream)
        for frame in frames:
            if frame.pts is None:
                return None
            if frame.pts < point.target_pts:
                continue
            if frame.pts != point.target_pts:
                return None
            return itertools.chain((frame,), frames)
    except av.FFmpegError:
        pass
    return None


#: the most a grey source's channels may differ (code values): a camera's monochrome mode or a
#: grey frame through 4:2:0 chroma rounding gives 1-2
GREY_TOLERANCE = 2


def is_grey(path: Path | str, skip: int = 0, max_frames: int | None = None) -> bool:
    """Whether every frame (from ``skip`` on, ``max_frames`` of them) is grey: its red, green and
    blue within GREY_TOLERANCE of each other everywhere. Stops at the first frame that is not, so
    a colour video costs one frame."""
    grey = False
    for frame in iter_frames(path, max_frames, skip):
        if not is_grey_frame(frame):
            return False
        grey = True
    return grey


def not_kept(info: VideoInfo, streams: bool = True) -> list[str]:
    """What of an input (as ``probe`` found it) a .tok does not hold, one line each: pixels that
    are not square, an alpha channel, more than 8 bits a channel, and (``streams``) the video,
    audio and subtitle streams beyond the first video and audio stream."""
    out = []
    sar = info.pixel_aspect
    if sar is not None and sar != 1:
        out.append(f"the input's pixels are not square (sample aspect ratio {sar.numerator}:{sar.denominator}): "
                   "they are coded as square pixels, so the decode looks stretched; to keep the shape, "
                   "scale to square pixels first (ffmpeg -i IN -vf scale=iw*sar:ih,setsar=1 OUT)")
    try:
        components = av.VideoFormat(info.pixel_format).components
    except ValueError:  # (a format name this FFmpeg does not know: "unknown")
        components = ()
    bits = max((c.bits for c in components), default=8)
    if any(c.is_alpha for c in components) and not info.opaque_alpha:
        out.append(f"the input's alpha channel (transparency, {info.pixel_format}) is not kept: tokcodec codes "
                   "the colour under it as it is")
    if bits > 8:
        out.append(f"the input has {bits} bits a channel ({info.pixel_format}): tokcodec codes and decodes 8 bits "
                   "a channel, so the decode is 8-bit")
    dropped = [plural(n, kind) for n, kind in zip(info.other_streams,
                                                  ("more audio stream", "more video stream", "subtitle stream")) if n]
    if streams and dropped:
        out.append(f"the input's other streams are not kept: {', '.join(dropped)} (a .tok holds one "
                   "video stream and the first audio stream)")
    return out


def is_grey_frame(frame: np.ndarray) -> bool:
    """Whether an RGB uint8 frame (H, W, 3) is grey: its channels within GREY_TOLERANCE everywhere.
    By pairs of whole channels, stopping at the first pair out of bounds: 2.6 ms a 640x360 frame
    here, 12.4 by a max and min over each pixel's three. The check reads every frame of a grey
    video before its encode (347 s of a 5-minute grey 640x360 clip on a loaded 2-core host)."""
    r, g, b = (frame[..., c].astype(np.int16) for c in range(3))
    return all(int(np.abs(x - y).max()) <= GREY_TOLERANCE for x, y in ((r, g), (g, b), (r, b)))


def timing_drift(path: Path | str, rate: Fraction, skip: int = 0, max_frames: int | None = None) -> float | None:
    """How far (seconds, the most over the frames from ``skip`` on, ``max_frames`` of them) the
    input's own frame times stray from a constant ``rate``: what storing a variable-rate video at
    one rate moves its frames against its timing and audio. From the packets' timestamps alone
    (no decoding); None where they are missing or repeated."""
    path = Path(path)
    if path.is_dir():  # (an image sequence: one rate by construction)
        return None
    first_pts = None
    try:
        with _open_input(path) as container:  # packets that show before the first frame never decode
            first = next(container.decode(_video_stream(container, path)), None)
            first_pts = first.pts if first is not None else None
        with _open_input(path) as container:
            stream = _video_stream(container, path)
            base = stream.time_base
            stamps = [p.pts for p in container.demux(stream) if p.size and not p.is_discard]
    except av.FFmpegError:
        return None
    shown = _shown(stamps, first_pts) if base and None not in stamps else None
    if shown is None:
        return None
    stamps = shown[skip:]
    if max_frames is not None:
        stamps = stamps[:max_frames]
    if len(stamps) < 2:
        return 0.0
    start, step = stamps[0], 1 / float(rate)
    return max(abs(float((t - start) * base) - k * step) for k, t in enumerate(stamps))


def media_files(paths: tuple[Path, ...] | list[Path]) -> list[Path]:
    """The videos and images among ``paths`` (folders searched recursively), sorted; an
    InputError when a path is missing or none is found."""
    found: set[Path] = set()
    for path in map(Path, paths):
        if path.is_dir():
            found.update(f for f in path.rglob("*") if f.is_file() and f.suffix.lower() in MEDIA_INPUT_SUFFIXES)
        elif path.is_file():
            found.add(path)
        else:
            raise InputError(f"{path}: no such file or directory")
    if not found:
        raise InputError(f"no videos or images in {', '.join(map(str, paths))}")
    return sorted(found)


def iter_frames(path: Path | str, max_frames: int | None = None, skip: int = 0,
                deinterlace: str = "auto") -> Iterator[np.ndarray]:
    """Decoded frames as RGB uint8 (H, W, 3), converted with the source's own colour matrix,
    turned upright by the display matrix; all at the first frame's size and orientation, so a
    mid-stream change cannot give frames of another shape. The first ``skip`` frames are passed
    over (encode --ss, exact to the frame): where the packets' timestamps allow, by a seek to the
    key frame before frame ``skip`` and decoding from there, as ffmpeg's -ss does; else they are
    decoded and counted. Either way the frames are those of a decode from the start.
    ``deinterlace`` (defaults.DEINTERLACE_MODES): an interlaced video's frames are deinterlaced
    one frame per frame ("auto": those flagged interlaced; "on": all frames of any video; "off":
    none; see ``deinterlaces``); a part then starts one frame earlier, the frame the
    deinterlacer looks back at. A directory is read as an image sequence (``image_sequence``)."""
    check_deinterlace(deinterlace)
    path = Path(path)
    if path.is_dir():
        yield from _sequence_frames(path, max_frames, skip)
        return
    container = _open_input(path)
    try:
        stream = _video_stream(container, path)
        _check_size(path, stream.codec_context.width, stream.codec_context.height)
        stream.thread_type = "AUTO"
        first: av.VideoFrame | None = None
        time_base = stream.time_base
        try:
            frames: Iterator[av.VideoFrame] = container.decode(stream)
            first_pts = None
            for first in frames:  # the first frame sets the size and orientation of all
                _check_size(path, first.width, first.height)
                first_pts = first.pts
                frames = itertools.chain((first,), frames)
                break
            is_image = _is_image(path, container)
            interlaced = first is not None and deinterlaces(deinterlace, _interlaced(stream, first), is_image,
                                                            first.height)
            lead = 1 if interlaced and skip else 0  # (the frame before a part: the deinterlacer's look back)
            start = skip - lead
            point = _seek_point(path, start, first_pts) if start and first is not None else None
            seeked = _frames_from(container, stream, point) if point is not None else None
            if seeked is not None:
                frames = seeked
            elif point is not None:  # the seek did not land where the packets said: from the start
                container.close()
                container = _open_input(path)
                stream = _video_stream(container, path)
                stream.thread_type = "AUTO"
                frames = container.decode(stream)
            if seeked is None:
                frames = itertools.islice(frames, start, None)
        except av.FFmpegError as exc:
            raise InputError(f"{path}: cannot decode video ({reason(exc)})") from None
        if first is not None:
            yield from rgb_frames(frames, path, first, time_base, max_frames,
                                  (deinterlace == "on") if interlaced else None, lead)
    finally:
        container.close()


def rgb_frames(frames: Iterator[av.VideoFrame], path: Path | str, first: av.VideoFrame, time_base: Fraction | None,
               max_frames: int | None = None, deinterlace_every: bool | None = None, lead: int = 0
               ) -> Iterator[np.ndarray]:
    """Decoded ``frames`` (the part wanted, and the ``lead`` frames before it that the deinterlacer
    looks back at) as RGB uint8 at ``first``'s size and orientation, at most ``max_frames``;
    through the deinterlacer where ``deinterlace_every`` is not None (True: every frame, False:
    those flagged interlaced). FFmpeg's errors as InputErrors that name ``path``."""
    size, orientation = (first.width, first.height), _orientation(first)
    if deinterlace_every is not None:
        frames = itertools.islice(_deinterlaced(frames, first, time_base, every=deinterlace_every), lead, None)
    count = 0
    try:
        for frame in frames:
            yield _to_rgb(frame, *size, orientation)
            count += 1
            if max_frames is not None and count >= max_frames:
                return
    except av.FFmpegError as exc:
        if count == 0:
            raise InputError(f"{path}: cannot decode video ({reason(exc)})") from None
        raise InputError(f"{path}: decoding failed after {plural(count, 'frame')} ({reason(exc)})") from None


def read_frames(path: Path | str, max_frames: int | None = None) -> np.ndarray:
    frames = list(iter_frames(path, max_frames))
    if not frames:
        raise InputError(f"{path}: no frames decoded")
    return np.stack(frames)


def output_kind(path: Path) -> str:
    """'video', 'image' or 'dir', from the extension (a path without one is a directory), or
    'stream' for "-": a Y4M stream on standard output."""
    if str(path) == STDIO:
        return "stream"
    suffix = path.suffix.lower()
    if suffix in VIDEO_OUTPUT_SUFFIXES:
        return "video"
    if suffix in IMAGE_SUFFIXES:
        return "image"
    if suffix == "" or path.is_dir():
        return "dir"
    raise OutputError(f"{path}: unknown output format {suffix!r} "
                      "(use .mp4, .mov, .mkv, .y4m, .png or a directory)")


def audio_dropped(path: Path) -> str:
    """What becomes of stored audio in the output ``path`` where it holds none ("dropped (why)",
    as decode says it), or "" where it holds audio (.mkv, .mp4, .mov)."""
    kind = output_kind(path)
    if kind == "dir":
        return "dropped (a directory of PNGs holds no audio; decode to .mkv or .mp4 to keep it)"
    if kind == "stream":
        return "dropped (standard output carries a Y4M stream, video only)"
    suffix = path.suffix.lower()
    if suffix in COPYABLE:
        return ""
    return f"dropped ({suffix or 'this output'} holds no audio; decode to .mkv or .mp4 to keep it)"


def tags_dropped(path: Path) -> str:
    """What becomes of stored tags and chapters in the output ``path`` where it holds none
    ("dropped (why)"), or "" where it holds them (.mkv, .mp4, .mov)."""
    kind = output_kind(path)
    if kind == "video" and path.suffix.lower() in TAGGED_OUTPUTS:
        return ""
    what = {"dir": "a directory of PNGs", "stream": "a Y4M stream", "image": "an image"}.get(
        kind, path.suffix.lower() or "this output")
    return f"dropped ({what} holds none; decode to .mkv, .mp4 or .mov to keep them)"


#: RGB -> YUV matrices that swscale has (AVCOL_SPC: BT.709, FCC, BT.470BG, SMPTE 170M, SMPTE 240M, BT.2020 NCL)
_SWSCALE_MATRICES = {1, 4, 5, 6, 7, 9}


def _stated(value: int, default: int) -> int:
    """A colour tag as the source stated it, or ``default`` where it stated none (0, 2)."""
    return value if value not in (0, 2) else default


class _StdoutBytes:
    """What FFmpeg's Y4M muxer writes, gathered in memory (each frame whole: flush_packets) and
    sent to standard output from Python. Written through FFmpeg's own pipe protocol, a write
    blocked on a reader that had stopped reading (a paused player, a stuck consumer) held off
    Ctrl-C and SIGTERM until the reader went: here the blocked write is a system call Python
    interrupts, so both stop the command at once (exit 130 / 143). The bytes are the same."""

    def __init__(self) -> None:
        self.buffer = io.BytesIO()
        if os.name == "nt":  # (FFmpeg's pipe protocol did the same: no newline translation)
            import msvcrt
            msvcrt.setmode(1, os.O_BINARY)

    def send(self) -> None:
        data = memoryview(self.buffer.getvalue())
        self.buffer.seek(0)
        self.buffer.truncate()
        while data:
            data = data[os.write(1, data):]


class FrameWriter:
    """Writes RGB uint8 frames to a video, one image, or a directory of numbered PNGs. Video
    outputs are tagged with ``color`` (the source's tags, which the decoded RGB keeps: its
    primaries and transfer, e.g. BT.2020 and PQ of HDR video): H.264 in the source's own matrix
    where swscale has it (else BT.709), limited range; FFV1 as RGB, full range. ``tags`` (the
    source's title, creation time, place, stream languages, chapters) go into .mkv, .mp4 and .mov
    outputs; the others hold none. ``grey`` (every frame grey: a grey .tok's decode) makes a Y4M
    output grey ("Cmono", a third of the bytes), so that an encode of it as a stream, which
    cannot look at its frames first, codes it as grey too."""

    def __init__(self, path: Path, width: int, height: int, rate: Fraction,
                 color: ColorInfo | None = None, crf: int = 12, audio: AudioTrack | None = None,
                 tags: MediaTags | None = None, grey: bool = False) -> None:
        self.path, self.width, self.height = path, width, height
        self.rate = rate
        self.kind = output_kind(path)
        self.count = 0
        self.container: av.container.OutputContainer | None = None
        self.stream = None
        self.audio: AudioMuxer | None = None
        self.audio_note = "none"   # what happened to the audio: none / copied / re-encoded / dropped (why)
        self.tags_note = "none"    # and to the tags: none / written / dropped (why)
        self.warnings: list[str] = []  # what the output is not as usual (an odd size's H.264 4:4:4)
        self.color = color or ColorInfo()
        self.matrix: int | None = None  # an H.264 output's RGB -> YUV matrix (AVCOL_SPC)
        self._stdout: _StdoutBytes | None = None
        if audio is not None and (dropped := audio_dropped(path)):  # (said, and not given to the muxer)
            self.audio_note, audio = dropped, None
        if tags and (dropped := tags_dropped(path)):
            self.tags_note, tags = dropped, None
        if self.kind == "dir":
            path.mkdir(parents=True, exist_ok=True)
            return
        suffix = ".y4m" if self.kind == "stream" else path.suffix.lower()
        try:
            if self.kind == "stream":  # Y4M to fd 1 (nothing else writes there): see _StdoutBytes
                self._stdout = _StdoutBytes()
                self.container = av.open(self._stdout.buffer, "w", format="yuv4mpegpipe",
                                         options={"flush_packets": "1"})
                self.stream = self.container.add_stream("rawvideo", rate=rate)
                self.stream.pix_fmt = "gray" if grey else "yuv444p"
            elif self.kind == "image":
                self.container = av.open(ffmpeg_name(path), "w", format="image2", options={"update": "1"})
                codec = "png" if suffix == ".png" else ("mjpeg" if suffix in (".jpg", ".jpeg") else "png")
                self.stream = self.container.add_stream(codec, rate=1)
                self.stream.pix_fmt = "rgb24" if codec == "png" else "yuvj444p"
            else:
                if tags:
                    tags, notes = for_output(tags, suffix)
                    self.warnings.extend(notes)
                mdta = {"movflags": "use_metadata_tags"} if tags and needs_mdta(tags, suffix) else {}
                self.container = av.open(ffmpeg_name(path), "w", options=BITEXACT | mdta)
                if suffix == ".mkv":
                    self.stream = self.container.add_stream("ffv1", rate=rate)
                    self.stream.pix_fmt = "bgr0"
                    self.stream.options = {"level": "3", "g": "1"}
                    ctx = self.stream.codec_context
                    ctx.colorspace, ctx.color_range = 0, 2  # RGB, full range
                    ctx.color_primaries = _stated(self.color.primaries, 2)
                    ctx.color_trc = _stated(self.color.transfer, 2)
                elif suffix == ".y4m":
                    self.stream = self.container.add_stream("rawvideo", rate=rate)
                    self.stream.pix_fmt = "gray" if grey else "yuv444p"
                else:
                    self.stream = self.container.add_stream("libx264", rate=rate)
                    even = width % 2 == 0 and height % 2 == 0
                    self.stream.pix_fmt = "yuv420p" if even else "yuv444p"
                    if not even:
                        self.warnings.append(f"H.264 4:4:4, as {width}x{height} is odd (4:2:0 needs "
                                             "even sizes); many players and browsers play only 4:2:0: "
                                             "decode to .mkv, or encode an even size")
                    self.stream.options = {"crf": str(crf), "preset": "medium"}
                    self.matrix = self.color.colorspace if self.color.colorspace in _SWSCALE_MATRICES else 1
                    ctx = self.stream.codec_context
                    ctx.color_range = 1  # limited range, the usual for H.264
                    ctx.colorspace = self.matrix
                    ctx.color_primaries = _stated(self.color.primaries, 1)  # (unstated: BT.709, as before)
                    ctx.color_trc = _stated(self.color.transfer, 1)
            self.stream.width, self.stream.height = width, height
            if audio is not None:
                self._add_audio(audio, suffix)
            if tags:
                self._add_tags(tags)
        except (av.FFmpegError, OSError, ValueError) as exc:
            self.close()
            raise OutputError(f"{path}: cannot open for writing ({reason(exc)})") from None

    def _add_audio(self, audio: AudioTrack, suffix: str) -> None:
        self.audio = AudioMuxer(self.container, suffix, audio)
        self.audio_note = f"{audio.codec} copied"
        if self.audio.reencoded:
            out = self.audio.out_stream.codec_context
            layout, name = out.layout.name, out.name
            mixed = f", mixed down from {audio.channels} channels" if out.channels < audio.channels else ""
            codec = {"alac": "ALAC, lossless", "libopus": "Opus", "opus": "Opus"}.get(name, f"{name}, lossless")
            self.audio_note = f"re-encoded to {codec} ({layout}{mixed})"

    def _add_tags(self, tags: MediaTags) -> None:
        """The tags and chapters, set before the first packet makes the muxer write its header."""
        self.tags_note = "written"
        self.container.metadata.update(tags.tags)
        self.stream.metadata.update(tags.video)
        if self.audio is not None:
            self.audio.out_stream.metadata.update(tags.audio)
        if tags.chapters:
            self.container.set_chapters(chapter_list(tags.chapters))

    def write(self, frame: np.ndarray) -> None:
        if frame.shape != (self.height, self.width, 3) or frame.dtype != np.uint8:
            raise ArgumentError(f"frame must be uint8 {(self.height, self.width, 3)}, got {frame.dtype} {frame.shape}")
        if self.kind == "dir":
            self._write_png(self.path / f"frame_{self.count:06d}.png", frame)
        else:
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            if self.matrix is not None:  # (.mp4, .mov: the matrix its tags state)
                vf = reformatted(vf, format=self.stream.pix_fmt, dst_colorspace=self.matrix)
            for packet in self.stream.encode(vf):
                self.container.mux(packet)
            if self._stdout is not None:
                self._stdout.send()
        self.count += 1
        if self.audio is not None:
            self.audio.mux_until(float(self.count / self.rate) + MUX_AHEAD_SECONDS)

    @staticmethod
    def _write_png(path: Path, frame: np.ndarray) -> None:
        tmp = new_file(path.with_name(path.name + ".part"))
        with av.open(ffmpeg_name(tmp), "w", format="image2", options={"update": "1"}) as c:
            s = c.add_stream("png", rate=1)
            s.width, s.height, s.pix_fmt = frame.shape[1], frame.shape[0], "rgb24"
            for p in s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                c.mux(p)
            for p in s.encode():
                c.mux(p)
        os.replace(tmp, path)

    def close(self) -> None:
        if self.container is not None:
            try:
                if self.stream is not None and self.count:
                    for packet in self.stream.encode():
                        self.container.mux(packet)
                if self.audio is not None and self.count:
                    self.audio.finish()
            finally:
                if self.audio is not None:
                    self.audio.close()
                self.container.close()
                self.container = None
            if self._stdout is not None:
                self._stdout.send()

    def __enter__(self) -> "FrameWriter":
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.close()
        if exc_type is None and self.kind == "dir":  # (a decode's directory: see outputs.commit_directory)
            remove_frames(self.path, self.count)  # an earlier, longer video's frames after this one's
