"""Cut, join and split .tok files without re-encoding (``tokcodec cut``, ``concat``, ``split``).

A decode and a new encode of part of a file lose quality a second time (and cost the network's
time both ways). A .tok's GOPs are already separate chunks, so a part is its chunks copied, and
a join the files' chunks one after the other. Two kinds of chunk are coded anew, losslessly (the
entropy coder alone, no network): the first chunk of a cut where it was linked to the GOP before
(coder 4's tokens, or a correction record coded against the previous GOP's) becomes a key GOP
with the same tokens and record values; and the last GOP of a cut that ends within it keeps the
latent frames that its frames need. The decoder network is causal in time (a frame's pixels
depend on the latent frames up to its own), so those frames decode as they did in the whole
file; only the cut's very last frame may differ a little, where the correction's temporal blend
looked at the frame after it. A cut starts where the GOP that holds its start begins (as
``ffmpeg -c copy`` starts at the key frame before): a GOP's first latent frame codes its first
frame alone, and no other frame can start a GOP without a new encode, which ``exact`` asks for
(codec/splice_head.py: the frames before the next GOP start decoded and encoded again). A split is
cuts from GOP starts to GOP starts, which copy every frame.
"""
from __future__ import annotations

import bisect
import glob
import math
import os
import time
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator

import numpy as np

from tokcodec.codec.container import Chunk, ContainerReader, ContainerWriter, Header, open_tok
from tokcodec.codec.correction_record import (KIND_GRID_DETAIL, KIND_GRID_DETAIL_CODED, CorrectionRecord,
                                               record_needs_previous)
from tokcodec.codec.entropy import CoderContext, TokenCoder, get_coder
from tokcodec.codec.info import chunk_contents, links_to_previous
from tokcodec.codec.outputs import STDIO, check_tok_output, output_errors, tok_output
from tokcodec.codec.ranges import FrameRange, frame_range, seconds, time_of
from tokcodec.codec.stats import EditStats
from tokcodec.errors import ArgumentError, FormatError, InputError, OutputError
from tokcodec.media_tags import Chapter, MediaTags, fitted
from tokcodec.model.zoo import ModelName, use_priors_of
from tokcodec.text import plural

if TYPE_CHECKING:
    from tokcodec.audio_edit import StoredAudio

#: coders whose chunks another coder's file holds as they are: coder 4 reads every coder 3 payload
#: (its modes 0-2 are coder 3's), so files of the two join as coder 4
_READS_PAYLOADS_OF = {4: {3, 4}}


@dataclass
class _Decoded:
    """A chunk's tokens (t, h, w) and correction record (None: the chunk has none)."""
    tokens: np.ndarray
    record: CorrectionRecord | None


class _Source:
    """An open input: its reader, coder and the chunks decoded so far (only those a cut's ends need)."""

    def __init__(self, reader: ContainerReader, model: ModelName | None) -> None:
        self.reader = reader
        self.header = reader.header
        self.name = reader.source
        if model is not None:
            use_priors_of(model, self.header, self.name)
        self.coder: TokenCoder = get_coder(self.header.coder_id, CoderContext(model_sha256=self.header.weights_sha256))
        self._decoded: dict[int, _Decoded] = {}

    def links(self, chunk: Chunk) -> bool:
        return links_to_previous(self.coder, chunk.payload, chunk.correction)

    def decoded(self, i: int) -> _Decoded:
        """Chunk ``i``'s tokens and record, entropy-decoded from the key chunk at or before it."""
        if i in self._decoded:
            return self._decoded[i]
        chain = [self.reader.read_chunk(i)]
        while chain[-1].index > 0 and chain[-1].index - 1 not in self._decoded and self.links(chain[-1]):
            chain.append(self.reader.read_chunk(chain[-1].index - 1))
        for chunk in reversed(chain):
            before = self._decoded.get(chunk.index - 1)
            try:
                tokens, record = chunk_contents(self.coder, chunk, self.header,
                                                before.tokens[-1] if before is not None else None,
                                                before.record if before is not None else None)
            except FormatError as exc:
                raise type(exc)(f"{self.name}: chunk {chunk.index}: {exc}") from None
            self._decoded[chunk.index] = _Decoded(tokens, record)
        return self._decoded[i]


def _recoded(src: _Source, chunk: Chunk, frames: int, key: bool) -> tuple[bytes, bytes]:
    """(coder payload, record) of ``chunk`` holding its first ``frames`` frames, coded anew
    without reference to the GOP before where ``key``; the same tokens and record values (those
    of the frames kept). A link the chunk had is kept where it still can be (not ``key``)."""
    h = src.header
    decoded = src.decoded(chunk.index)
    t = h.latent_shape(frames)[0]
    before = None if key or chunk.index == 0 else src.decoded(chunk.index - 1)
    payload = chunk.payload
    if t < chunk.latent_shape[0] or (key and src.coder.links(chunk.payload)):
        previous = before.tokens[-1] if before is not None and src.coder.links(chunk.payload) else None
        payload = src.coder.encode(np.ascontiguousarray(decoded.tokens[:t]), h.bits, previous)
    record = chunk.correction
    rec = decoded.record
    shortened = rec is not None and rec.frame_dc is not None and frames < chunk.frames
    if rec is not None and (shortened or (key and record_needs_previous(chunk.correction))):
        if shortened:
            rec = replace(rec, frame_dc=rec.frame_dc[:frames])
        reference = before.record if before is not None and record_needs_previous(chunk.correction) else None
        # (of the kind it was, or an older one where that is smaller: never a kind the output's
        # version, chosen from the kinds of the records copied, would not allow)
        record = rec.pack(reference, coded=chunk.correction[0] == KIND_GRID_DETAIL_CODED)
    return payload, record


def _output_header(header: Header, has_audio: bool, has_tags: bool, record_kind: int) -> Header:
    """The header of a file of copied chunks whose newest correction record is of ``record_kind``
    (0: none): the oldest version that holds them, as an encode writes the oldest that holds its
    file (a 2.3 file with offsets alone, cut with --no-metadata, is 2.0 again)."""
    detail = header.correction and record_kind >= KIND_GRID_DETAIL
    return replace(header, frame_count=0, has_audio=has_audio, has_tags=has_tags, correction_detail=detail,
                   correction_coded=detail and record_kind >= KIND_GRID_DETAIL_CODED)


def _checked_output(dst: Path, overwrite: bool, sources: Iterable[Path], command: str) -> None:
    for source in sources:
        check_tok_output(dst, overwrite, source, command)


def _write(dst: Path, overwrite: bool, header: Header, chunks: Iterable[tuple[int, tuple[int, int, int], bytes, bytes]],
           audio: tuple[bytes, float] | None, tags: MediaTags | None) -> ContainerWriter:
    """Write a .tok of ``chunks`` (frames, latent shape, coder payload, record) through a temporary
    file that takes ``dst``'s name once complete (standard output for "-")."""
    with output_errors(dst), tok_output(dst, overwrite) as (fh, seekable):
        writer = ContainerWriter(fh, header, patch_header=seekable)
        for frames, shape, payload, record in chunks:
            writer.add_chunk(frames, shape, payload, record)
        if audio is not None:
            writer.set_audio(audio[0], round(audio[1] * 1_000_000))
        if tags is not None:
            writer.set_tags(tags.to_json())
        writer.close()
    return writer


def _stored_tags(reader: ContainerReader, keep: bool, warnings: list[str]) -> MediaTags | None:
    """The input's tags, or None (none kept, none stored, or a damaged block, said in ``warnings``)."""
    if not keep or not reader.header.has_tags:
        return None
    try:
        return reader.read_tags()
    except FormatError as exc:
        warnings.append(f"{exc}; the output has no tags")
        return None


def _tags_note(tags: MediaTags | None, keep: bool, had: bool) -> str:
    if tags:
        return "kept" + (f" ({plural(len(tags.chapters), 'chapter')})" if tags.chapters else "")
    return "dropped (--no-metadata)" if had and not keep else "none"


def _fitted_tags(tags: MediaTags | None, warnings: list[str]) -> MediaTags | None:
    if not tags:
        return None
    tags, left_out = fitted(tags)
    warnings.extend(left_out)
    return tags or None


def cut_file(src: str | Path, dst: str | Path, *, start: float | Fraction | str | None = None,
             duration: float | Fraction | str | None = None, frames: int | None = None,
             exact: bool = False, model: ModelName | None = None, audio: bool = True, metadata: bool = True,
             overwrite: bool = False) -> EditStats:
    """Write part of the .tok ``src`` to ``dst`` without re-encoding: from ``start`` (seconds, or
    a time as ``--ss`` takes it) for ``duration`` seconds or ``frames`` frames, as decode_video
    reads them. The part starts at the first frame of the GOP that holds ``start`` (EditStats
    says where), or with ``exact`` at ``start`` itself: the frames from there to the next GOP
    start are then decoded and encoded again (codec/splice_head.py: a second loss for those
    frames, and the model's time). It ends exactly where asked; its audio (whole packets) and
    chapters are cut to it. ``model``: the weights file of a .tok made with weights of your own
    (their coder-3 prior lies beside it), needed where a GOP must be coded anew."""
    began = time.perf_counter()
    src, dst = Path(src), Path(dst)
    _checked_output(dst, overwrite, [src], "cut")
    warnings: list[str] = []
    with open_tok(src) as reader:
        source = _Source(reader, model)
        h = reader.header
        whole = start is None and duration is None and frames is None
        part = FrameRange(0, reader.frame_count) if whole else frame_range(
            reader.frame_count, h.frame_rate, start=seconds(start), duration=seconds(duration), frames=frames,
            source=str(src))
        firsts = [e.first_frame for e in reader.entries]
        head = bisect.bisect_right(firsts, part.start) - 1
        tail = bisect.bisect_right(firsts, part.stop - 1) - 1
        first = firsts[head]
        encoded: list[Chunk] = []   # (--exact) the frames before the next GOP start, encoded again
        if exact and part.start > first:
            from tokcodec.codec.splice_head import encoded_head

            encoded = encoded_head(src, h, part.start, min(part.stop, first + reader.entries[head].frames), model)
            first, head = part.start, head + 1
        begin_s, length_s = time_of(first, h.frame_rate), Fraction(part.stop - first) / h.frame_rate
        recoded = 0

        def chunks() -> Iterable[tuple[int, tuple[int, int, int], bytes, bytes]]:
            nonlocal recoded
            for chunk in encoded:
                yield chunk.frames, chunk.latent_shape, chunk.payload, chunk.correction
            for i in range(head, tail + 1):
                chunk = reader.read_chunk(i)
                keep = min(chunk.frames, part.stop - chunk.first_frame)
                payload, record = chunk.payload, chunk.correction
                if keep < chunk.frames or (i == head and source.links(chunk)):
                    payload, record = _recoded(source, chunk, keep, key=i == head)
                    recoded += 1
                yield keep, h.latent_shape(keep), payload, record

        track = None
        if audio and h.has_audio:
            from tokcodec.audio_edit import cut_stored

            try:
                block = reader.read_audio()
            except FormatError as exc:
                raise FormatError(f"{exc}; --no-audio cuts the video alone") from None
            to_end = part.stop == reader.frame_count  # (then the audio after the last frame stays, as it was)
            try:
                track = cut_stored(block.data, block.start_offset_us / 1e6, float(begin_s),
                                   None if to_end else float(length_s))
            except FormatError as exc:
                raise FormatError(f"{src}: {exc}; --no-audio cuts the video alone") from None
        tags = _stored_tags(reader, metadata, warnings)
        if tags and not whole:
            tags = tags.part(begin_s, length_s)
        tags = _fitted_tags(tags, warnings)
        header = _output_header(h, track is not None, bool(tags),
                                max([reader.record_kind(i) for i in range(head, tail + 1)]
                                    + [c.correction[0] for c in encoded if c.correction], default=0))
        writer = _write(dst, overwrite, header, chunks(),
                        (track.data, track.start_offset) if track is not None else None, tags)
    audio_note = "none" if not h.has_audio else "dropped (--no-audio)" if not audio else \
        track.describe() if track is not None else "none in the part"
    return EditStats([str(src)], str(dst), writer.frames, h.width, h.height, float(h.frame_rate), writer.pos,
                     writer.audio_bytes, writer.tags_bytes, len(writer.entries), recoded,
                     time.perf_counter() - began, first, part.start, audio_note,
                     _tags_note(tags, metadata, h.has_tags), warnings, sum(c.frames for c in encoded))


def split_points(firsts: list[int], rate: Fraction, every: Fraction | None = None,
                 marks: Iterable[Fraction] = ()) -> list[int]:
    """The first frames of a split's parts, all GOP starts (``firsts``: each chunk's first
    frame): with ``every`` seconds, the first GOP start at or after each multiple of it (as
    ffmpeg's segment muxer cuts at the key frame after each segment time); with ``marks`` (chapter
    starts, seconds), the start of the GOP that holds each."""
    points = {0}
    if every is not None:
        k = 1
        for f in firsts:
            if Fraction(f) / rate >= k * every:
                points.add(f)
                k = math.floor(Fraction(f) / rate / every) + 1
    for mark in marks:
        frame = math.ceil(mark * rate)
        points.add(firsts[max(0, bisect.bisect_right(firsts, frame) - 1)])
    return sorted(points)


def split_file(src: str | Path, out_dir: str | Path, *, every: float | Fraction | str | None = None,
               chapters: bool = False, model: ModelName | None = None, audio: bool = True,
               metadata: bool = True, overwrite: bool = False, stem: str | None = None) -> list[EditStats]:
    """Split the .tok ``src`` into parts without re-encoding, in ``out_dir`` as
    ``<stem>_000.tok``, ``<stem>_001.tok``, ...: every ``every`` seconds (each part starts at the
    first GOP start at or after a multiple of it) or at its ``chapters`` (each from the start of
    the GOP that holds the chapter's). Every part starts and ends on a GOP boundary, so together
    they hold every frame once, as the whole file decodes them. Every name is checked before the
    first part is written. ``stem``: the parts' name before ``_000`` (default: ``src``'s)."""
    src, out_dir = Path(src), Path(out_dir)
    if (every is None) == (not chapters):
        raise ArgumentError("split needs one of: every (seconds) or chapters")
    step = seconds(every)
    if step is not None and step <= 0:
        raise ArgumentError("the parts' length must be more than 0 s")
    with open_tok(src) as reader:
        h = reader.header
        firsts = [e.first_frame for e in reader.entries]
        total = reader.frame_count
        marks: list[Fraction] = []
        if chapters:
            tags = reader.read_tags() if h.has_tags else None
            if not tags or not tags.chapters:
                raise InputError(f"{src}: has no chapters to split at (split by time instead: --every, every=)")
            marks = [c.start for c in tags.chapters]
    points = split_points(firsts, h.frame_rate, step, marks)
    if str(out_dir) == STDIO:
        raise ArgumentError("split writes its parts into a folder: give -o a folder's name, not -")
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"{out_dir}: is a file, not a directory")
    digits = max(3, len(str(len(points) - 1)))
    names = [out_dir / f"{stem or src.stem}_{i:0{digits}d}.tok" for i in range(len(points))]
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in names:
        _checked_output(name, overwrite, [src], "split")
    bounds = points + [total]
    parts = [cut_file(src, name, start=Fraction(a) / h.frame_rate, frames=b - a, model=model, audio=audio,
                      metadata=metadata, overwrite=overwrite) for name, a, b in zip(names, bounds, bounds[1:])]
    notes = parts[-1].warnings
    if chapters and len(points) < len(set(marks)):
        notes.append(f"{plural(len(set(marks)), 'chapter')} made {plural(len(points), 'part')}: chapters that start "
                     "inside one GOP share a part (a part starts on a GOP start)")
    later = sorted(p.name for p in out_dir.glob(f"{glob.escape(stem or src.stem)}_*.tok")
                   if p not in names and p.stem.rpartition("_")[2].isdigit())
    if later:
        notes.append(f"{out_dir} also holds {plural(len(later), 'other part')} of this name ({later[0]} ...), "
                     "left as they are: a join of the folder's parts would take them too")
    return parts


#: header fields every file of a join must share, and how a mismatch is said
_SAME = (("width", "size"), ("height", "size"), ("coded_width", "coded size (--scale)"),
         ("coded_height", "coded size (--scale)"), ("padded_width", "coded size (--scale)"),
         ("frame_rate", "frame rate"), ("temporal_factor", "model"), ("spatial_factor", "model"), ("bits", "model"),
         ("model_name", "model"), ("weights_sha256", "model's weights"), ("grey", "display"))
#: what a decode's RGB means, by the source's colour tags (FFmpeg's AVCOL_PRI_* and AVCOL_TRC_*):
#: its gamut and its transfer. Files join where both agree: SDR sources of BT.709 and BT.601 (PAL's
#: and NTSC's primaries differ by a little hue) and unstated tags (taken as BT.709, as a decode to
#: H.264 takes them) are one kind; wide gamuts and HDR transfers others. The matrix and range say
#: how the source stored its pixels, not what the decoded RGB is: a join takes the first stated ones
_GAMUTS = {9: "BT.2020", 11: "DCI-P3", 12: "Display P3"}
_TRANSFERS = {8: "linear", 16: "PQ (HDR)", 17: "SMPTE 428", 18: "HLG (HDR)"}
UNSTATED = 2


def _colours(header: Header) -> str:
    return f"{_GAMUTS.get(header.primaries, 'BT.709/BT.601')} with {_TRANSFERS.get(header.transfer, 'SDR gamma')}"


def _stated(headers: list[Header], name: str) -> int:
    """The first stated value of colour tag ``name`` among ``headers`` (the first's own if none is)."""
    values = [getattr(h, name) for h in headers]
    return next((v for v in values if v != UNSTATED), values[0])


def _shown(header: Header, what: str) -> str:
    if what == "size":
        return f"{header.width}x{header.height}"
    if what.startswith("coded size"):
        return f"{header.coded_width}x{header.coded_height}"
    if what == "frame rate":
        return f"{float(header.frame_rate):g} fps"
    if what.startswith("model"):
        return f"{header.model_name} {header.weights_sha256[:12]}"
    if what == "colours":
        return _colours(header)
    return "grey (its source was black and white)" if header.grey else "in colour"


def _joined_header(files: list[_Opened], warnings: list[str]) -> Header:
    """The header of the files joined: theirs, which must agree on everything a decoder applies to
    every chunk (InputError naming the first difference); the longest GOP; coder 4 where coder 3
    and 4 files meet; correction records (2.x) where any file has them, of the kinds they hold."""
    first, name = files[0].header, files[0].name
    for f in files[1:]:
        h = f.header
        differs = [what for field_, what in _SAME if getattr(h, field_) != getattr(first, field_)]
        differs += ["colours"] if _colours(h) != _colours(first) else []
        if differs:
            what = differs[0]
            raise InputError(f"{f.name} cannot follow {name}: its {what} {'are' if what.endswith('s') else 'is'} "
                             f"{_shown(h, what)}, not {_shown(first, what)}; a join copies the tokens, so every file "
                             "must be encoded alike (decode and encode again to change it)")
    headers = [f.header for f in files]
    coders = {h.coder_id for h in headers}
    coder = max(coders)
    if not coders <= _READS_PAYLOADS_OF.get(coder, {coder}):
        raise InputError(f"the files were coded with entropy coders {sorted(coders)}, which cannot share a file; "
                         "encode them with one --coder")
    precisions = sorted({h.precision for h in headers})
    if len(precisions) > 1:
        warnings.append(f"the files' tokens were made in {' and '.join(precisions)}; the header records "
                        f"{first.precision}, the first file's")
    return replace(first, gop=max(h.gop for h in headers), coder_id=coder,
                   correction=any(h.correction for h in headers), untrained=any(h.untrained for h in headers),
                   **{tag: _stated(headers, tag) for tag in ("colorspace", "primaries", "transfer")})


@dataclass
class _Opened:
    """What a join needs of an input before copying it (each is opened again in turn to copy: a
    join of thousands of files holds one open at a time)."""
    path: Path
    name: str
    header: Header
    frames: int
    record_kind: int     # of its newest correction record (0: none)
    tags: MediaTags | None


def _joined_chapters(files: list[tuple[Fraction, tuple[Chapter, ...]]]) -> tuple[Chapter, ...]:
    """The chapters of files joined, each file's moved to where it begins (``files``: that time
    and its chapters). A chapter that ends where its file ends and goes on, with the same tags,
    from the next file's start is one chapter again (a split cuts it in two)."""
    joined: list[Chapter] = []
    for begins, chapters in files:
        for n, c in enumerate(chapters):
            moved = Chapter(c.start + begins, c.end + begins, c.tags)
            if n == 0 and joined and joined[-1].end == moved.start == begins and joined[-1].tags == moved.tags:
                joined[-1] = Chapter(joined[-1].start, moved.end, moved.tags)
            else:
                joined.append(moved)
    return tuple(joined)


def _opened(path: Path, metadata: bool, warnings: list[str]) -> _Opened:
    with open_tok(path) as r:
        return _Opened(path, r.source, r.header, r.frame_count,
                       max(r.record_kind(i) for i in range(len(r.entries))), _stored_tags(r, metadata, warnings))


def _stored_audio(files: list[_Opened], starts: list[int], rate: Fraction) -> Iterator[StoredAudio | None]:
    """Each file's stored audio in turn, read as the join comes to it."""
    from tokcodec.audio_edit import StoredAudio

    for f, first in zip(files, starts):
        with open_tok(f.path) as r:
            try:
                block = r.read_audio()
            except FormatError as exc:
                raise FormatError(f"{exc}; --no-audio joins the video alone") from None
        yield None if block is None else StoredAudio(block.data, block.start_offset_us / 1e6,
                                                     float(time_of(first, rate)), float(time_of(f.frames, rate)))


def concat_files(srcs: Iterable[str | os.PathLike], dst: str | Path, *, audio: bool = True, metadata: bool = True,
                 overwrite: bool = False) -> EditStats:
    """Write the .tok files ``srcs`` one after another to ``dst`` without re-encoding: their chunks
    copied (each file starts with a key GOP), their audio joined into one stream (packets copied;
    the files' audio must be of one kind) and the chapters of each moved to where it begins; the
    other tags are the first file's. The files must share size, frame rate, model and what their
    colours mean (InputError otherwise)."""
    began = time.perf_counter()
    if isinstance(srcs, (str, os.PathLike)):
        raise ArgumentError(f"concat_files takes a list of .tok files, not one ({srcs!r})")
    paths, dst = [Path(p) for p in srcs], Path(dst)
    if len(paths) < 2:
        raise ArgumentError("concat joins two or more .tok files")
    _checked_output(dst, overwrite, paths, "concat")
    warnings: list[str] = []
    files = [_opened(p, metadata, warnings) for p in paths]
    joined = _joined_header(files, warnings)
    rate = joined.frame_rate
    starts = [sum(f.frames for f in files[:i]) for i in range(len(files))]
    had_audio, had_tags = any(f.header.has_audio for f in files), any(f.header.has_tags for f in files)
    track = None
    if audio and had_audio:
        from tokcodec.audio_edit import join_stored

        track, notes = join_stored(_stored_audio(files, starts, rate), [f.name for f in files])
        warnings.extend(notes)
    tags = None
    if metadata:
        chapters = _joined_chapters([(time_of(first, rate), f.tags.chapters if f.tags else ())
                                     for f, first in zip(files, starts)])
        tags = _fitted_tags(replace(files[0].tags or MediaTags(), chapters=chapters), warnings)

    def chunks() -> Iterator[tuple[int, tuple[int, int, int], bytes, bytes]]:
        for f in files:
            with open_tok(f.path) as r:
                if r.header.pack() != f.header.pack():
                    raise InputError(f"{f.name}: changed while it was being joined")
                for chunk in r.chunks():
                    yield chunk.frames, chunk.latent_shape, chunk.payload, chunk.correction

    header = _output_header(joined, track is not None, bool(tags), max(f.record_kind for f in files))
    writer = _write(dst, overwrite, header, chunks(), (track.data, track.start_offset) if track is not None else None,
                    tags)
    audio_note = "none" if not had_audio else "dropped (--no-audio)" if not audio else \
        track.describe() if track is not None else "none in the files' video"
    return EditStats([str(p) for p in paths], str(dst), writer.frames, joined.width, joined.height, float(rate),
                     writer.pos, writer.audio_bytes, writer.tags_bytes, len(writer.entries), 0,
                     time.perf_counter() - began, audio=audio_note, tags=_tags_note(tags, metadata, had_tags),
                     warnings=warnings)
