"""A video's tags and chapters (title, creation time, place, stream languages) are kept: stored in
the .tok's tags block on encode, written back into .mkv, .mp4 and .mov decodes."""
from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import zlib
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from tokcodec.codec.container import HEADER_SIZE, TAGS_HEADER_SIZE, Header, open_tok
from tokcodec.codec.pipeline import decode_video, encode_video
from tokcodec.codec.salvage import open_salvage
from tokcodec.codec.tok_stream import TokStream
from tokcodec.codec.verify import verify_file
from tokcodec.errors import FormatError
from tokcodec.media_tags import MAX_TAGS_BYTES, Chapter, MediaTags, needs_mdta

RATE = 25
TAGS = {"title": "Holiday 2026", "artist": "Ana", "comment": "first day",
        "creation_time": "2026-07-01T10:00:00.000000Z", "location": "+48.8584+002.2945/",
        "com.apple.quicktime.location.ISO6709": "+48.8584+002.2945+035.000/",
        "com.apple.quicktime.make": "Apple"}
CHAPTERS = [(0, 500, "Arrival"), (500, 1000, "Beach")]  # milliseconds


def make_tagged_clip(path: Path, frames: int = 25, comment: str | None = None) -> Path:
    """A small .mov with container tags, stream languages, chapters and a silent track."""
    chapters = [{"id": i, "start": s, "end": e, "time_base": Fraction(1, 1000), "metadata": {"title": t}}
                for i, (s, e, t) in enumerate(CHAPTERS)]
    return _clip(path, TAGS if comment is None else {**TAGS, "comment": comment}, {"language": "eng"},
                 {"language": "fra"}, frames=frames, size=(48, 64), chapters=chapters,
                 options={"movflags": "use_metadata_tags"})


@pytest.fixture(scope="module")
def tagged(tmp_path_factory) -> Path:
    return make_tagged_clip(tmp_path_factory.mktemp("tags") / "holiday.mov")


@pytest.fixture(scope="module")
def tagged_tok(tagged: Path, tiny_model) -> Path:
    dst = tagged.with_suffix(".tok")
    encode_video(tagged, dst, model=tiny_model, passes=0)
    return dst


def _lower(tags: dict[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in tags.items()}


def test_stored_tags_leave_out_the_source_files_coding(tagged_tok: Path) -> None:
    with open_tok(tagged_tok) as reader:
        assert reader.header.version == (2, 3) and reader.header.has_tags
        stored = reader.read_tags()
    assert stored.tags == TAGS  # (no major_brand, encoder...: the source file's coding)
    assert stored.video.get("language") == "eng" and "handler_name" not in stored.video
    assert stored.audio.get("language") == "fra"
    assert [(c.start, c.end, c.tags["title"]) for c in stored.chapters] == \
        [(Fraction(s, 1000), Fraction(e, 1000), t) for s, e, t in CHAPTERS]


@pytest.mark.parametrize("suffix", [".mkv", ".mp4", ".mov"])
def test_tags_and_chapters_come_back_in_the_decode(tagged_tok: Path, tmp_path: Path, suffix: str) -> None:
    out = tmp_path / f"out{suffix}"
    decode_video(tagged_tok, out)
    with av.open(str(out)) as c:
        tags = _lower(c.metadata)
        languages = {s.type: s.metadata.get("language") for s in c.streams if s.type in ("video", "audio")}
        chapters = [(round(float(ch["start"] * ch["time_base"]), 3), ch["metadata"].get("title"))
                    for ch in c.chapters()]
    for key, value in TAGS.items():  # (Matroska's keys read back in capitals)
        assert tags.get(key.lower()) == value, (key, tags)
    assert languages == {"video": "eng", "audio": "fra"}
    assert chapters == [(s / 1000, t) for s, _, t in CHAPTERS]


def test_plain_mp4_tags_keep_the_usual_boxes(tmp_path: Path) -> None:
    """movflags use_metadata_tags (which stores every tag as a QuickTime key) only where a tag needs it."""
    plain = MediaTags({"title": "t", "creation_time": "2026-07-01T10:00:00Z"}, {"language": "eng"})
    assert not needs_mdta(plain, ".mp4") and not needs_mdta(plain, ".mkv")
    assert needs_mdta(MediaTags({"com.apple.quicktime.make": "Apple"}), ".mp4")
    # (a stream's timecode or name: the flag changes how the container's tags are stored, not the streams')
    assert not needs_mdta(MediaTags({"title": "t"}, {"timecode": "01:00:00:00", "name": "cam"}), ".mp4")
    assert needs_mdta(MediaTags({"description": "d"}), ".mov") and not needs_mdta(MediaTags({"description": "d"}), ".mp4")
    camera = MediaTags({"make": "Canon", "model": "EOS", "title": "t"})  # (QuickTime's own boxes; not MP4's)
    assert not needs_mdta(camera, ".mov") and needs_mdta(camera, ".mp4")


def test_outputs_without_tags_and_no_metadata(tagged_tok: Path, tmp_path: Path) -> None:
    st = decode_video(tagged_tok, tmp_path / "out.y4m")  # (Y4M holds no tags: decoded all the same, and said)
    assert st.tags.startswith("dropped (.y4m holds none")
    st = decode_video(tagged_tok, tmp_path / "bare.mkv", metadata=False)
    assert st.tags == "dropped (--no-metadata)"
    with av.open(str(tmp_path / "bare.mkv")) as c:
        assert "title" not in c.metadata and not c.chapters()


def test_no_metadata_writes_the_format_before_tags(tagged: Path, tagged_tok: Path, tmp_path: Path, tiny_model) -> None:
    bare = tmp_path / "bare.tok"
    st = encode_video(tagged, bare, model=tiny_model, passes=0, metadata=False)
    assert st.tags_bytes == 0
    with open_tok(bare) as reader:
        assert reader.header.version == (2, 2) and reader.read_tags() is None
    with open_tok(tagged_tok) as a, open_tok(bare) as b:
        assert [c.payload for c in a.chunks()] == [c.payload for c in b.chunks()]
        assert a.read_audio() == b.read_audio()
        assert a.video_bytes == b.video_bytes  # (the tags are not the video's bytes)
        assert a.size - b.size == TAGS_HEADER_SIZE + a.tags_entry.payload_len


def test_a_part_keeps_the_chapters_in_it(tagged: Path, tmp_path: Path, tiny_model) -> None:
    dst = tmp_path / "part.tok"
    encode_video(tagged, dst, model=tiny_model, passes=0, start=0.6)  # from frame 15: inside "Beach"
    with open_tok(dst) as reader:
        assert [(c.start, c.end, c.tags["title"]) for c in reader.read_tags().chapters] == \
            [(Fraction(0), Fraction(2, 5), "Beach")]
    dst = tmp_path / "head.tok"
    encode_video(tagged, dst, model=tiny_model, passes=0, max_frames=5)  # 0.2 s: inside "Arrival"
    with open_tok(dst) as reader:
        assert [(c.end, c.tags["title"]) for c in reader.read_tags().chapters] == [(Fraction(1, 5), "Arrival")]


def test_a_decoded_part_keeps_the_chapters_in_it(tagged_tok: Path, tmp_path: Path) -> None:
    out = tmp_path / "part.mkv"
    decode_video(tagged_tok, out, start=0.4, duration=0.4)  # frames 10-19: 0.1 s of each chapter
    with av.open(str(out)) as c:
        chapters = [(round(float(ch["start"] * ch["time_base"]), 3), round(float(ch["end"] * ch["time_base"]), 3),
                     ch["metadata"]["title"]) for ch in c.chapters()]
    assert chapters == [(0.0, 0.1, "Arrival"), (0.1, 0.4, "Beach")]


def test_timecode_is_left_out_of_a_later_start() -> None:
    tags = MediaTags({"timecode": "01:00:00:00", "title": "t"}, {"timecode": "01:00:00:00"})
    assert tags.part(Fraction(0), None).tags["timecode"] == "01:00:00:00"
    later = tags.part(Fraction(1), None)
    assert later.tags == {"title": "t"} and later.video == {}


def test_a_tag_too_long_is_left_out_with_a_warning(tmp_path: Path, tiny_model) -> None:
    src = make_tagged_clip(tmp_path / "long.mov", frames=5, comment="x" * 70_000)
    st = encode_video(src, tmp_path / "long.tok", model=tiny_model, passes=0)
    assert any("left out of the stored tags" in w and "comment" in w for w in st.warnings), st.warnings
    with open_tok(tmp_path / "long.tok") as reader:
        stored = reader.read_tags().tags
    assert "comment" not in stored and stored["title"] == TAGS["title"]


def test_info_and_verify_show_the_tags(tagged_tok: Path) -> None:
    run = subprocess.run([sys.executable, "-m", "tokcodec", "info", str(tagged_tok), "--json"],
                         capture_output=True, text=True, check=True)
    tags = json.loads(run.stdout)["tags"]
    assert tags["tags"]["title"] == TAGS["title"]
    assert [c["start"] for c in tags["chapters"]] == [0.0, 0.5]
    text = subprocess.run([sys.executable, "-m", "tokcodec", "info", str(tagged_tok)],
                          capture_output=True, text=True, check=True).stdout
    assert "title=Holiday 2026" in text and "2 chapters: 0.000 s Arrival, 0.500 s Beach" in text
    assert not verify_file(tagged_tok, tokens=False).problems


def test_a_damaged_tags_block(tagged_tok: Path, tmp_path: Path) -> None:
    with open_tok(tagged_tok) as reader:
        offset = reader.tags_entry.offset
    data = bytearray(tagged_tok.read_bytes())
    data[offset + 3] ^= 0x20
    bad = tmp_path / "bad.tok"
    bad.write_bytes(bytes(data))
    assert any(p.startswith("tags:") and "checksum" in p for p in verify_file(bad, tokens=False).problems)
    st = decode_video(bad, tmp_path / "bad.mkv")  # (a damaged title is no reason to lose the video)
    assert st.frames == 25 and st.tags == "lost (tags block damaged)"
    assert any("tags block checksum" in w and "without the tags" in w for w in st.warnings)
    st = decode_video(io.BytesIO(bytes(data)), tmp_path / "piped.y4m")  # (as it comes: said as from a file)
    assert st.frames == 25 and st.tags == "lost (tags block damaged)"
    assert any("tags block checksum" in w and "without the tags" in w for w in st.warnings)
    stream = TokStream(io.BytesIO(tagged_tok.read_bytes()))
    assert sum(c.frames for c in stream.chunks()) == 25 and stream.read_tags().tags == TAGS
    st = decode_video(bad, tmp_path / "salvaged.mkv", salvage=True)
    assert st.frames == 25 and any("tags block is damaged" in p for p in st.problems)
    assert st.tags == "lost (tags block damaged)"
    text = subprocess.run([sys.executable, "-m", "tokcodec", "info", str(bad)], capture_output=True, text=True,
                          check=True).stdout
    assert "tags        DAMAGED:" in text and "chunks      2" in text
    with open_salvage(tagged_tok) as reader:  # (an intact one is found by the scan)
        assert reader.read_tags().tags == TAGS


def _with_tags_length(tok: Path, dst: Path, length: int) -> Path:
    """``tok`` with its tags block's payload length field set to ``length`` (the block's header
    checksum made good again)."""
    data = bytearray(tok.read_bytes())
    with open_tok(tok) as reader:
        head = reader.tags_entry.offset - TAGS_HEADER_SIZE
    struct.pack_into("<Q", data, head + 16, length)
    struct.pack_into("<I", data, head + 28, zlib.crc32(bytes(data[head:head + 28])))
    dst.write_bytes(bytes(data))
    return dst


def test_the_tags_block_length_is_checked_before_reading(tagged_tok: Path, tmp_path: Path) -> None:
    for length in (MAX_TAGS_BYTES + 1, 1 << 62):
        with pytest.raises(FormatError, match="tags block does not fit"):
            open_tok(_with_tags_length(tagged_tok, tmp_path / "long.tok", length))


def test_a_tags_flag_in_an_older_minor_is_ignored(tmp_path: Path) -> None:
    header = Header(48, 32, 48, 32, 48, 32, Fraction(25), 0, 5, 4, 8, 18, 3, "tiny", "ab" * 32,
                    correction=True, correction_coded=True, correction_detail=True)
    raw = bytearray(header.pack())
    assert struct.unpack_from("<HH", raw, 8) == (2, 2)
    raw[14] |= 8  # (bit 3 meant nothing in 2.2)
    struct.pack_into("<I", raw, HEADER_SIZE - 4, zlib.crc32(bytes(raw[:HEADER_SIZE - 4])))
    assert not Header.unpack(bytes(raw), "x").has_tags
    header.has_tags = True
    assert struct.unpack_from("<HH", header.pack(), 8) == (2, 3)
    header.correction = False
    assert struct.unpack_from("<HH", header.pack(), 8) == (1, 2)


@pytest.mark.parametrize("payload, why", [
    (b"\xff", "not JSON"), (b"[]", "unknown fields"), (b'{"extra": {}}', "unknown fields"),
    (b'{"tags": {"a": 1}}', "a tag"), (b'{"tags": {"a=b": "c"}}', "a tag"), (b'{"tags": {"": "c"}}', "a tag"),
    (b'{"tags": {"a": "\\u0000"}}', "a tag"), (b'{"tags": []}', "tags"),
    (b'{"chapters": [{"start": [2, 1], "end": [1, 1]}]}', "ends before"),
    (b'{"chapters": [{"start": [-1, 1], "end": [1, 1]}]}', "chapter time"),
    (b'{"chapters": [{"start": [0, 0], "end": [1, 1]}]}', "chapter time"),
    (b'{"chapters": [{"start": [0, 1], "end": [1.5, 1]}]}', "chapter time"),
    (b'{"chapters": [{"start": [0, 1], "end": [1, 1], "x": 1}]}', "a chapter"),
    (b'{"chapters": {}}', "chapters"),
    (b'{"tags": {"title": "\\ud800x"}}', "a tag"),  # (a lone surrogate: JSON spells it, UTF-8 cannot)
    (b'{"tags": {"title": "a", "title": "b"}}', "twice"), (b'{"tags": {}, "tags": {"a": "b"}}', "twice"),
])
def test_every_field_of_the_tags_is_checked(payload: bytes, why: str) -> None:
    with pytest.raises(FormatError, match=why):
        MediaTags.from_json(payload, "x")


def test_tags_round_trip_as_json() -> None:
    tags = MediaTags({"title": "été ☀"}, {"language": "fra"}, {},
                     (Chapter(Fraction(0), Fraction(1, 3), {"title": "a"}), Chapter(Fraction(1, 3), Fraction(1, 3))))
    assert MediaTags.from_json(tags.to_json(), "x") == tags
    assert tags.to_json() == MediaTags.from_json(tags.to_json(), "x").to_json()  # (the same bytes again)
    assert not MediaTags() and MediaTags({}, {}, {}, (Chapter(Fraction(0), Fraction(0)),))


def test_cli_and_batch_keep_the_tags(tagged: Path, tmp_path: Path) -> None:
    def tokcodec(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "tokcodec", *args], capture_output=True, text=True, check=True)

    line = tokcodec("encode", str(tagged), "-o", str(tmp_path / "a.tok"), "-m", "tiny", "--passes", "0").stderr
    assert ", tags " in line  # (the stats line counts the tags' bytes apart from the video's)
    tokcodec("encode", str(tagged), "-o", str(tmp_path / "b.tok"), "-m", "tiny", "--passes", "0", "--no-metadata")
    with open_tok(tmp_path / "a.tok") as a, open_tok(tmp_path / "b.tok") as b:
        assert a.read_tags().tags == TAGS and b.read_tags() is None
    tokcodec("decode", str(tmp_path / "a.tok"), "-o", str(tmp_path / "a.mp4"), "--no-metadata")
    with av.open(str(tmp_path / "a.mp4")) as c:
        assert "title" not in c.metadata and not c.chapters()
    src = tmp_path / "src"
    src.mkdir()
    (src / "holiday.mov").write_bytes(tagged.read_bytes())
    tokcodec("batch", "encode", str(src), str(tmp_path / "tok"), "-m", "tiny", "--passes", "0", "-q")
    tokcodec("batch", "decode", str(tmp_path / "tok"), str(tmp_path / "out"), "-q")
    with av.open(str(tmp_path / "out" / "holiday.mov")) as c:
        assert c.metadata.get("creation_time") == TAGS["creation_time"] and len(c.chapters()) == 2
    tokcodec("batch", "encode", str(src), str(tmp_path / "bare"), "-m", "tiny", "--passes", "0", "-q",
             "--no-metadata")
    with open_tok(tmp_path / "bare" / "holiday.mov.tok") as reader:
        assert reader.read_tags() is None


def test_chapters_far_out_still_write(tmp_path: Path, tiny_model) -> None:
    """A block may hold chapter times up to 2**62 s: a decode writes them up to 2**31 s (in
    Matroska's nanoseconds they would pass int64) and leaves out those that start later."""
    from tokcodec.io import FrameWriter

    far = MediaTags({"title": "far"}, chapters=(Chapter(Fraction(1, 3), Fraction(1 << 62)),
                                                Chapter(Fraction(1 << 40), Fraction(1 << 41))))
    with FrameWriter(tmp_path / "far.mkv", 16, 16, Fraction(25), tags=far) as writer:
        writer.write(np.zeros((16, 16, 3), np.uint8))
    with av.open(str(tmp_path / "far.mkv")) as c:
        assert c.metadata["title"] == "far"
        assert [round(float(ch["end"] * ch["time_base"])) for ch in c.chapters()] == [1 << 31]


def _clip(path: Path, tags: dict[str, str] | None = None, video: dict[str, str] | None = None,
          audio: dict[str, str] | None = None, frames: int = 3, size: tuple[int, int] = (32, 32),
          chapters: list[dict] | None = None, options: dict[str, str] | None = None) -> Path:
    """A few frames of ``size`` (height, width), and a silent mono track where ``audio`` tags are
    given, with these tags and ``chapters`` (as PyAV's set_chapters takes them)."""
    out = av.open(str(path), "w", options=options or {})
    out.metadata.update(tags or {})
    v = out.add_stream("ffv1" if path.suffix == ".mkv" else "libx264", rate=RATE)
    (v.height, v.width), v.pix_fmt = size, "bgr0" if path.suffix == ".mkv" else "yuv420p"
    v.metadata.update(video or {})
    a = None
    if audio is not None:
        a = out.add_stream("aac", rate=48000, layout="mono")
        a.metadata.update(audio)
    if chapters:
        out.set_chapters(chapters)
    for i in range(frames):
        f = av.VideoFrame.from_ndarray(np.full((*size, 3), (i * 9) % 255, np.uint8), format="rgb24")
        f.pts = i
        for p in v.encode(f):
            out.mux(p)
    if a is not None:
        for pos in range(0, 48000 * frames // RATE, 1024):
            af = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            af.sample_rate, af.pts = 48000, pos
            for p in a.encode(af):
                out.mux(p)
    for stream in (v, a) if a is not None else (v,):
        for p in stream.encode():
            out.mux(p)
    out.close()
    return path


def test_tags_that_are_not_utf8_read(tmp_path: Path, tiny_model) -> None:
    """An old camcorder's Latin-1 tags: the video was unreadable ("'utf-8' codec can't decode
    byte 0xe9"), even with --no-metadata; now its tags read with U+FFFD for the bad bytes."""
    src = _clip(tmp_path / "latin1.mp4", {"comment": "CafXYZ creme"})
    data = src.read_bytes()
    assert data.count(b"CafXYZ") == 1
    src.write_bytes(data.replace(b"CafXYZ", b"Caf\xe9YZ"))
    encode_video(src, tmp_path / "bare.tok", model=tiny_model, passes=0, metadata=False)
    encode_video(src, tmp_path / "latin1.tok", model=tiny_model, passes=0)
    with open_tok(tmp_path / "latin1.tok") as reader:
        assert reader.read_tags().tags["comment"] == "Caf\ufffdYZ creme"


def test_tags_over_the_block_limit_are_left_out_up_front(tmp_path: Path, tiny_model) -> None:
    """20 tags of 120 000 bytes each: the longest are left out (with a warning) until the block
    fits, where the encode failed at its very end ("tags of 2400255 bytes")."""
    src = _clip(tmp_path / "huge.mkv", {f"note{i:02d}": "ü" * 60_000 for i in range(20)} | {"title": "kept"})
    st = encode_video(src, tmp_path / "huge.tok", model=tiny_model, passes=0)
    with open_tok(tmp_path / "huge.tok") as reader:
        stored = reader.read_tags().tags
        assert reader.tags_entry.payload_len <= MAX_TAGS_BYTES
    assert stored["title"] == "kept" and 0 < len(stored) < 21
    assert any("left out of the stored tags" in w and "'note" in w for w in st.warnings), st.warnings


def test_tags_come_back_the_same_after_two_generations(tmp_path: Path, tiny_model) -> None:
    """Matroska's capitals and a QuickTime track's ``name`` read back as the other containers name
    them, so a decode's tags encode to the same tags again; a .mov keeps German as ``ger``."""
    src = _clip(tmp_path / "a.mkv", {"com.apple.quicktime.location.ISO6709": "+48.8584+002.2945/", "artist": "Ana"},
                {"title": "main camera", "language": "jpn"}, {"language": "deu"})
    encode_video(src, tmp_path / "a.tok", model=tiny_model, passes=0)
    with open_tok(tmp_path / "a.tok") as reader:
        first = reader.read_tags()
    for suffix in (".mkv", ".mp4", ".mov"):
        decode_video(tmp_path / "a.tok", tmp_path / f"b{suffix}")
        encode_video(tmp_path / f"b{suffix}", tmp_path / "c.tok", model=tiny_model, passes=0, overwrite=True)
        with open_tok(tmp_path / "c.tok") as reader:
            again = reader.read_tags()
        assert again.tags == first.tags == {"com.apple.quicktime.location.ISO6709": "+48.8584+002.2945/",
                                            "artist": "Ana"}, suffix
        assert again.video == first.video == {"title": "main camera", "language": "jpn"}, suffix
        assert again.audio == ({"language": "ger"} if suffix == ".mov" else {"language": "deu"}), suffix


def test_info_shows_a_tag_on_one_line() -> None:
    tags = MediaTags({"comment": "line one\nline two", "title": "x" * 100},
                     chapters=(Chapter(Fraction(0), Fraction(1), {"title": "y" * 100}),))
    lines = tags.summary()
    assert "comment=line one\\nline two" in lines[0] and all("\n" not in line for line in lines)
    assert all(len(line) < 160 for line in lines)


def test_a_key_that_grows_in_lower_case_is_left_out_not_the_block(tmp_path: Path, tiny_model) -> None:
    """'İ'.lower() is two characters: a Matroska key of 200 of them grew past the 256 a key may
    have after it was checked, and the block the encode wrote failed to read, title and all."""
    src = _clip(tmp_path / "dot.mkv", {"title": "Holiday", "İ" * 200: "x"})
    st = encode_video(src, tmp_path / "dot.tok", model=tiny_model, passes=0)
    with open_tok(tmp_path / "dot.tok") as reader:
        assert reader.read_tags().tags == {"title": "Holiday"}
    assert any("left out of the stored tags" in w for w in st.warnings), st.warnings


def test_a_mov_keeps_languages_in_quicktimes_codes(tmp_path: Path, tiny_model) -> None:
    src = _clip(tmp_path / "l.mkv", video={"language": "swe"}, audio={"language": "mri"})
    encode_video(src, tmp_path / "l.tok", model=tiny_model, passes=0)
    st = decode_video(tmp_path / "l.tok", tmp_path / "l.mov")
    with av.open(str(tmp_path / "l.mov")) as c:
        languages = {s.type: s.metadata.get("language") for s in c.streams if s.type in ("video", "audio")}
    assert languages == {"video": "sve", "audio": None}  # (Swedish in QuickTime's code; Maori has none)
    assert any("'mri' is left out" in w for w in st.warnings), st.warnings
    st = decode_video(tmp_path / "l.tok", tmp_path / "l.mp4")
    with av.open(str(tmp_path / "l.mp4")) as c:
        assert {s.metadata.get("language") for s in c.streams if s.type in ("video", "audio")} == {"swe", "mri"}


def test_a_creation_time_that_is_not_a_date_is_not_written(tmp_path: Path) -> None:
    """FFmpeg's muxers read creation_time "now" as the time of writing: a decode would be dated
    then, and its bytes would differ from run to run."""
    from tokcodec.io import FrameWriter

    outputs = []
    for name in ("a.mkv", "b.mkv"):
        with FrameWriter(tmp_path / name, 16, 16, Fraction(25), tags=MediaTags({"creation_time": "now",
                                                                              "title": "t"})) as writer:
            writer.write(np.zeros((16, 16, 3), np.uint8))
        outputs.append((tmp_path / name).read_bytes())
        assert any("creation_time 'now' is not a date" in w for w in writer.warnings)
    assert outputs[0] == outputs[1]
    with av.open(str(tmp_path / "a.mkv")) as c:
        assert "creation_time" not in c.metadata and c.metadata["title"] == "t"


def test_a_chapter_that_ends_where_the_video_starts_is_left_out() -> None:
    from tokcodec.media_tags import chapters_of

    chapters, _ = chapters_of([{"start": 0, "end": 1000, "time_base": Fraction(1, 1000), "metadata": {"title": "pre"}},
                               {"start": 1000, "end": 3000, "time_base": Fraction(1, 1000),
                                "metadata": {"title": "main"}},
                               {"start": 1000, "end": 1000, "time_base": Fraction(1, 1000),
                                "metadata": {"title": "mark"}}], 1.0)
    assert [(c.start, c.end, c.tags["title"]) for c in chapters] == [(0, 2, "main"), (0, 0, "mark")]
