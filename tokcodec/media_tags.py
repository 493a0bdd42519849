"""A video's tags and chapters, kept beside its tokens: read on encode, written back on decode.

What a container says about the recording, not about its coding: the title, creation time and
place, comments, a phone's make and model (``com.apple.quicktime.*``), the first video and audio
stream's language and title, and the chapters. A photo library sorts by the creation time and
maps by the place, so an archive that lost them lost something. Tags that describe the source
file's own coding (its muxer's brands, encoder, handler and vendor names, Matroska's statistics)
are left out: a decode is coded anew, and its muxer writes its own.

The .tok stores them as one JSON block (codec/container.py, docs/FORMAT.md); every field is
checked on reading before it is used. Times are seconds from the first video frame, exact
fractions, as the audio block's offset is.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Mapping

from tokcodec.errors import FormatError

#: the most bytes of JSON the block may hold (a reader refuses more before reading it)
MAX_TAGS_BYTES = 1 << 20
MAX_KEY_CHARS = 256
MAX_VALUE_CHARS = 1 << 16
MAX_ENTRIES = 1024       # tags per dictionary
MAX_CHAPTERS = 4096
MAX_TIME_TERM = (1 << 62)  # numerator and denominator of a chapter time
#: chapters are written up to this many seconds (68 years; Matroska's nanoseconds past it pass
#: int64): those that start later are left out, and longer ones end there
MAX_WRITTEN_SECONDS = 1 << 31
#: tags of the source file's coding, not of the recording (compared in lower case): a decode's
#: muxer writes its own, and Matroska's statistics (DURATION, BPS, NUMBER_OF_FRAMES...) would be
#: wrong for it; ``rotate`` is applied to the pictures on reading
CODING_TAGS = frozenset({"encoder", "major_brand", "minor_version", "compatible_brands", "handler_name",
                         "vendor_id", "duration", "bps", "number_of_frames", "number_of_bytes", "rotate"})
CODING_TAG_PREFIXES = ("_statistics_",)
#: tags FFmpeg's MP4 and QuickTime muxers write in their own boxes (lower case; FFmpeg matches
#: keys without regard to case). A tag outside these is written only with ``movflags
#: use_metadata_tags`` (QuickTime's ``mdta`` keys, as a phone writes ``com.apple.quicktime.*``),
#: which then stores all of them that way: so the flag is set only where a tag needs it
#: (measured on this FFmpeg with each tag set alone; QuickTime's: ``author`` is written as ``artist``)
_BOTH_TAGS = frozenset({"title", "artist", "album", "comment", "date", "copyright", "genre", "location",
                        "creation_time"})
MOV_TAGS = _BOTH_TAGS | {"make", "model"}
MP4_TAGS = _BOTH_TAGS | {"album_artist", "composer", "description", "synopsis", "keywords", "grouping", "lyrics",
                         "show", "episode_id", "network", "track", "disc"}
NATIVE_TAGS = {".mp4": MP4_TAGS, ".mov": MOV_TAGS}
#: the stream languages FFmpeg's QuickTime muxer writes (the Macintosh language codes; it leaves
#: out any other): every three-letter code tried on this FFmpeg, these came back
MOV_LANGUAGE_CODES = frozenset({
    "alb", "amh", "ara", "arm", "asm", "aym", "aze", "baq", "bel", "ben", "bul", "bur", "cat", "ces",
    "chi", "dan", "dut", "dzo", "eng", "epo", "est", "fin", "fra", "geo", "ger", "gre", "grn", "guj",
    "heb", "hin", "hun", "ice", "ind", "iri", "ita", "jav", "jpn", "kan", "kas", "kaz", "khm", "kin",
    "kir", "kor", "kur", "lao", "lat", "lav", "lit", "mac", "mal", "mar", "may", "mlg", "mlt", "mol",
    "mon", "nep", "nor", "nya", "ori", "orm", "per", "pol", "por", "pus", "que", "ron", "run", "rus",
    "san", "sin", "slk", "slv", "smi", "snd", "som", "spa", "sve", "swa", "tam", "tat", "tel", "tgk",
    "tgl", "tha", "tib", "tir", "tuk", "tur", "uig", "ukr", "urd", "uzb", "vie", "wel", "yid"})
#: languages a .mov holds under another code: ISO 639-2's two codes for one language (the 19 of
#: its 20 pairs with one in MOV_LANGUAGE_CODES; ``deu``, ``zho`` and ``nld`` were left out of .mov
#: decodes) and QuickTime's older ones (Swedish ``sve``, Norwegian ``nor``, Irish ``iri``, Sami ``smi``)
MOV_LANGUAGES = {"sqi": "alb", "hye": "arm", "eus": "baq", "mya": "bur", "zho": "chi", "cze": "ces",
                 "nld": "dut", "fre": "fra", "kat": "geo", "deu": "ger", "ell": "gre", "isl": "ice",
                 "mkd": "mac", "msa": "may", "fas": "per", "rum": "ron", "slo": "slk", "bod": "tib",
                 "cym": "wel", "swe": "sve", "nob": "nor", "nno": "nor", "gle": "iri", "sme": "smi"}
#: a date as FFmpeg's muxers parse ``creation_time`` (ISO 8601, or with a space, as an AVI's)
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?", re.IGNORECASE)
#: the tags ``tokcodec info`` shows first
SHOWN_FIRST = ("title", "creation_time", "location", "date", "artist", "comment", "language")
#: outputs that hold tags and chapters (.y4m, images and PNG directories hold none)
TAGGED_OUTPUTS = (".mkv", ".mp4", ".mov")


@dataclass(frozen=True)
class Chapter:
    start: Fraction            # seconds from the first video frame
    end: Fraction
    tags: dict[str, str] = field(default_factory=dict)   # its title, mostly


@dataclass(frozen=True)
class MediaTags:
    """The tags of a container (``tags``), of its first video and first audio stream, and its chapters."""

    tags: dict[str, str] = field(default_factory=dict)
    video: dict[str, str] = field(default_factory=dict)
    audio: dict[str, str] = field(default_factory=dict)
    chapters: tuple[Chapter, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.tags or self.video or self.audio or self.chapters)

    def to_json(self) -> bytes:
        """The block's payload: compact UTF-8 JSON, keys sorted (the same tags give the same bytes)."""
        doc: dict[str, Any] = {name: value for name, value in
                               (("tags", self.tags), ("video", self.video), ("audio", self.audio)) if value}
        if self.chapters:
            doc["chapters"] = [{"start": _pair(c.start), "end": _pair(c.end), **({"tags": c.tags} if c.tags else {})}
                               for c in self.chapters]
        return json.dumps(doc, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes, source: str) -> "MediaTags":
        """The tags of a block's payload, every field checked (FormatError otherwise)."""
        bad = f"{source}: the tags block is damaged"
        if len(data) > MAX_TAGS_BYTES:
            raise FormatError(f"{bad} (longer than {MAX_TAGS_BYTES} bytes)")
        try:
            doc = json.loads(data.decode("utf-8"), object_pairs_hook=_no_duplicates)
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise FormatError(f"{bad} (not JSON, or a name twice in an object)") from None
        if not isinstance(doc, dict) or not set(doc) <= {"tags", "video", "audio", "chapters"}:
            raise FormatError(f"{bad} (unknown fields)")
        chapters = doc.get("chapters", [])
        if not isinstance(chapters, list) or len(chapters) > MAX_CHAPTERS:
            raise FormatError(f"{bad} (chapters)")
        kept = []
        for c in chapters:
            if not isinstance(c, dict) or not set(c) <= {"start", "end", "tags"}:
                raise FormatError(f"{bad} (a chapter)")
            start, end = _time(c.get("start"), bad), _time(c.get("end"), bad)
            if not 0 <= start <= end:
                raise FormatError(f"{bad} (a chapter ends before it starts)")
            kept.append(Chapter(start, end, _tag_dict(c.get("tags", {}), bad)))
        return cls(*(_tag_dict(doc.get(name, {}), bad) for name in ("tags", "video", "audio")), tuple(kept))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, times in seconds (``tokcodec info --json``)."""
        return {"tags": self.tags, "video": self.video, "audio": self.audio,
                "chapters": [{"start": float(c.start), "end": float(c.end), "tags": c.tags} for c in self.chapters]}

    def summary(self, most: int = 6, width: int = 48) -> list[str]:
        """A few lines for ``tokcodec info``: the tags (``most`` of them, values cut at ``width``
        characters), the streams' and the chapters."""
        def cut(text: str) -> str:  # (one line: a tag's line breaks and control characters escaped)
            text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
            return text if len(text) <= width else text[:width - 3] + "..."

        def shown(tags: dict[str, str]) -> str:
            first = sorted(tags, key=lambda k: SHOWN_FIRST.index(k.lower()) if k.lower() in SHOWN_FIRST
                           else len(SHOWN_FIRST))[:most]
            items = [f"{cut(k)}={cut(tags[k])}" for k in first]
            return ", ".join(items) + (f" (+{len(tags) - most} more)" if len(tags) > most else "")
        lines = [shown(self.tags)] if self.tags else []
        lines += [f"{name} stream: {shown(tags)}" for name, tags in (("video", self.video), ("audio", self.audio))
                  if tags]
        if self.chapters:
            marks = [f"{float(c.start):.3f} s {cut(c.tags.get('title', ''))}".rstrip() for c in self.chapters[:most]]
            more = f" (+{len(self.chapters) - most} more)" if len(self.chapters) > most else ""
            lines.append(f"{len(self.chapters)} chapter{'s' if len(self.chapters) != 1 else ''}: {', '.join(marks)}{more}")
        return lines

    def part(self, start: Fraction, length: Fraction | None) -> "MediaTags":
        """The tags of the part from ``start`` seconds, ``length`` long (None: to the end): the
        chapters shifted to it and cut at its ends (those outside it left out); a timecode,
        which names the first frame, left out where the part starts later."""
        chapters = []
        for c in self.chapters:
            s, e = max(c.start - start, Fraction(0)), c.end - start
            if length is not None:
                e = min(e, length)
            point = c.start == c.end and s == c.start - start and (length is None or s < length)
            if e > s or point:  # (a chapter of no length inside the part marks a point: kept)
                chapters.append(Chapter(s, e, c.tags))
        if start > 0:
            def drop_timecode(tags: dict[str, str]) -> dict[str, str]:
                return {k: v for k, v in tags.items() if k.lower() != "timecode"}
            return MediaTags(drop_timecode(self.tags), drop_timecode(self.video), self.audio, tuple(chapters))
        return MediaTags(self.tags, self.video, self.audio, tuple(chapters))


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object, refused (ValueError) where a name comes twice: JSON readers differ on which
    one counts, so a file that holds two would read differently elsewhere."""
    out = dict(pairs)
    if len(out) != len(pairs):
        raise ValueError("a name twice in an object")
    return out


def _text(value: str) -> bool:
    """Whether ``value`` is text a muxer can write: UTF-8 (JSON's escapes can spell a lone
    surrogate, which is not) without NUL."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\0" not in value


def _pair(t: Fraction) -> list[int]:
    return [t.numerator, t.denominator]


def _time(value: object, bad: str) -> Fraction:
    if not (isinstance(value, list) and len(value) == 2 and all(type(v) is int for v in value)
            and 0 <= value[0] <= MAX_TIME_TERM and 0 < value[1] <= MAX_TIME_TERM):
        raise FormatError(f"{bad} (a chapter time)")
    return Fraction(value[0], value[1])


def _tag_dict(value: object, bad: str) -> dict[str, str]:
    if not isinstance(value, dict) or len(value) > MAX_ENTRIES:
        raise FormatError(f"{bad} (tags)")
    if not all(_storable(k, v) for k, v in value.items()):
        raise FormatError(f"{bad} (a tag)")
    return dict(value)


def _storable(key: str, value: object) -> bool:
    """Whether a tag fits the block (what a writer keeps and a reader accepts): a key of 1 to
    MAX_KEY_CHARS characters without ``=``, a string value of at most MAX_VALUE_CHARS, both text."""
    return isinstance(value, str) and 0 < len(key) <= MAX_KEY_CHARS and "=" not in key \
        and len(value) <= MAX_VALUE_CHARS and _text(key) and _text(value)


def recording_tags(tags: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    """The tags of ``tags`` that describe the recording (CODING_TAGS left out), and what was left
    out for not fitting the block's limits (one line each)."""
    kept: dict[str, str] = {}
    dropped: list[str] = []
    for k, v in tags.items():
        low = k.lower()
        if low in CODING_TAGS or low.startswith(CODING_TAG_PREFIXES) or _language_copy(k, v, tags) \
                or (low == "language" and v == "und") \
                or (low == "software" and v.startswith("Lavf")):  # ("und": ISO 639's "undetermined", what
            continue  # muxers write for none; Lavf: FFmpeg's muxer naming itself in an AVI)
        if not _storable(k, v) or len(kept) >= MAX_ENTRIES:
            dropped.append(f"tag {k[:40]!r} ({len(v)} characters)")
            continue
        kept[k] = v
    return kept, dropped


def _language_copy(key: str, value: str, tags: Mapping[str, str]) -> bool:
    """Whether ``key`` is ``name-lng`` beside ``name`` of the same value: FFmpeg's QuickTime
    reader gives a tag stored with a language both ways (``location`` and ``location-eng``),
    and its writers take the first."""
    base, dash, language = key.rpartition("-")
    return bool(dash) and len(language) == 3 and language.isalpha() and tags.get(base) == value


def chapters_of(chapters: list[dict], video_start: float, renamed: Callable[[Mapping[str, str]], dict[str, str]] = dict
                ) -> tuple[tuple[Chapter, ...], list[str]]:
    """PyAV's chapters of an input (``InputContainer.chapters()``) as seconds from its first video
    frame, which starts at ``video_start`` seconds, their tags as ``renamed`` names them, and what
    was left out (one line each). A chapter that ends before the video starts, or where it starts,
    is left out."""
    kept: list[Chapter] = []
    dropped: list[str] = []
    origin = Fraction(video_start).limit_denominator(1 << 30) if math.isfinite(video_start) else Fraction(0)
    for c in chapters:
        tb = c.get("time_base")
        if not tb or tb <= 0 or c["end"] < c["start"]:
            continue
        start, end = c["start"] * Fraction(tb) - origin, c["end"] * Fraction(tb) - origin
        if end < 0 or (end == 0 and c["end"] > c["start"]):
            continue
        start = max(start, Fraction(0))
        tags, bad = recording_tags(renamed(c.get("metadata") or {}))
        if len(kept) >= MAX_CHAPTERS or max(start.numerator, start.denominator, end.numerator,
                                            end.denominator) > MAX_TIME_TERM:
            dropped.append(f"chapter {len(kept) + len(dropped) + 1}")
            continue
        dropped.extend(bad)
        kept.append(Chapter(start, end, tags))
    return tuple(kept), dropped


def needs_mdta(tags: MediaTags, suffix: str) -> bool:
    """Whether an output of ``suffix`` needs ``movflags use_metadata_tags`` to keep every
    container tag (the flag changes how those are stored, not the streams')."""
    native = NATIVE_TAGS.get(suffix)
    return native is not None and any(k.lower() not in native for k in tags.tags)


def for_output(tags: MediaTags, suffix: str) -> tuple[MediaTags, list[str]]:
    """``tags`` as an output of ``suffix`` can hold them, and what it cannot (one line each): a
    ``creation_time`` that is not a date is left out (FFmpeg's muxers read "now" as the time of
    writing, and drop what they cannot parse); a .mov's stream languages in the QuickTime codes
    its muxer writes (``deu`` as ``ger``), a language it has no code for left out."""
    notes: list[str] = []

    def dated(d: dict[str, str], where: str) -> dict[str, str]:
        out = {}
        for k, v in d.items():
            if k.lower() == "creation_time" and not _DATE.fullmatch(v.strip()):
                notes.append(f"the {where}creation_time {v[:40]!r} is not a date: left out of the output")
                continue
            out[k] = v
        return out

    def languages(d: dict[str, str], where: str) -> dict[str, str]:
        language = d.get("language")
        if suffix != ".mov" or language is None:
            return d
        language = MOV_LANGUAGES.get(language, language)
        if language in MOV_LANGUAGE_CODES:
            return {**d, "language": language}
        notes.append(f"the {where}language {d['language'][:40]!r} is left out: a .mov holds QuickTime's language "
                     "codes only (.mkv and .mp4 keep it)")
        return {k: v for k, v in d.items() if k != "language"}
    video = languages(dated(tags.video, "video stream's "), "video stream's ")
    audio = languages(dated(tags.audio, "audio stream's "), "audio stream's ")
    return MediaTags(dated(tags.tags, ""), video, audio, tags.chapters), notes


def fitted(tags: MediaTags) -> tuple[MediaTags, list[str]]:
    """``tags`` within MAX_TAGS_BYTES of JSON: the longest tags (of the container, the streams
    and the chapters) left out until they fit, then chapters from the end; and what was left out."""
    if len(tags.to_json()) <= MAX_TAGS_BYTES:
        return tags, []
    dicts = [dict(tags.tags), dict(tags.video), dict(tags.audio), *(dict(c.tags) for c in tags.chapters)]
    sizes = sorted(((len(json.dumps({k: v}, ensure_ascii=False).encode()), i, k)
                    for i, d in enumerate(dicts) for k, v in d.items()), reverse=True)
    excess, dropped = len(tags.to_json()) - MAX_TAGS_BYTES, []
    for size, i, key in sizes:
        if excess <= 0:
            break
        del dicts[i][key]
        excess -= size
        dropped.append(f"tag {key[:40]!r}" + (f" of chapter {i - 2}" if i > 2 else ""))
    chapters = [Chapter(c.start, c.end, d) for c, d in zip(tags.chapters, dicts[3:])]
    out = MediaTags(dicts[0], dicts[1], dicts[2], tuple(chapters))
    while len(out.to_json()) > MAX_TAGS_BYTES and out.chapters:  # (estimates of the sizes fell short)
        dropped.append(f"chapter {len(out.chapters)}")
        out = MediaTags(out.tags, out.video, out.audio, out.chapters[:-1])
    return out, dropped


def chapter_list(chapters: tuple[Chapter, ...]) -> list[dict]:
    """``chapters`` as PyAV's ``OutputContainer.set_chapters`` takes them, each in a time base
    that holds its two ends exactly, or in nanoseconds where none up to that does (up to
    MAX_WRITTEN_SECONDS)."""
    out = []
    for c in chapters:
        if c.start > MAX_WRITTEN_SECONDS:
            continue
        den = min(math.lcm(c.start.denominator, c.end.denominator), 1_000_000_000)
        out.append({"id": len(out) + 1, "start": round(c.start * den),
                    "end": round(min(c.end, Fraction(MAX_WRITTEN_SECONDS)) * den),
                    "time_base": Fraction(1, den), "metadata": dict(c.tags)})
    return out


def read_tags(src: str | Path) -> tuple[MediaTags, list[str]]:
    """The tags and chapters of a video file, and what was left out for not fitting the block's
    limits (one line each). Tags that are not UTF-8 are read with U+FFFD for what is not."""
    import av

    from tokcodec.audio import first_video_time
    from tokcodec.ffmpeg_names import TAG_ERRORS, ffmpeg_name

    with av.open(ffmpeg_name(Path(src)), metadata_errors=TAG_ERRORS) as container:
        cover = av.stream.Disposition.attached_pic
        videos = [s for s in container.streams.video if not s.disposition & cover]
        demuxers = set(container.format.name.split(","))

        def read(d: Mapping[str, str], stream: bool = False) -> tuple[dict[str, str], list[str]]:
            return recording_tags(_as_read_elsewhere(d, demuxers, stream))
        tags, dropped = read(container.metadata)
        video, bad_video = read(videos[0].metadata, stream=True) if videos else ({}, [])
        audio, bad_audio = read(container.streams.audio[0].metadata, stream=True) if container.streams.audio \
            else ({}, [])
        chapters, bad_chapters = chapters_of(container.chapters(), first_video_time(container),
                                             lambda d: _as_read_elsewhere(d, demuxers))
    media, too_many = fitted(MediaTags(tags, video, audio, chapters))
    return media, dropped + bad_video + bad_audio + bad_chapters + too_many


def _as_read_elsewhere(tags: Mapping[str, str], demuxers: set[str], stream: bool = False) -> dict[str, str]:
    """Tags in the names FFmpeg gives them from other containers, so that they come back the same
    after a decode to one container and an encode of it: Matroska's keys (which its muxer writes
    in capitals: ``ARTIST``, ``COM.APPLE.QUICKTIME.LOCATION.ISO6709``) in lower case, as the
    other containers' (QuickTime's keys are case-sensitive: Apple's players look for
    ``com.apple.quicktime.location.ISO6709``); and a QuickTime track's ``name`` as ``title``,
    the name its muxer was given it by."""
    out = dict(tags)
    if "matroska" in demuxers:
        out = {k.lower().replace("iso6709", "ISO6709"): v for k, v in out.items()}
    if stream and "mov" in demuxers and "name" in out and "title" not in out:
        out = {("title" if k == "name" else k): v for k, v in out.items()}
    return out
