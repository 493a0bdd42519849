"""tokcodec cut / concat / split: parts, joins and splits of .tok files without re-encoding. The
tokens and correction values are those of the input (a linked first GOP coded anew as a key GOP, a
last GOP cut short keeping the latent frames its frames need), the pictures those of a whole
decode; the audio copied by whole packets, with silence coded into a join's gaps."""
from __future__ import annotations

import dataclasses
import io
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import smooth_clip, write_clip
from test_audio import make_av_clip, streams_of
from test_media_tags import make_tagged_clip
from tokcodec.cli import app
from tokcodec.codec.container import HEADER_SIZE, Header, open_tok
from tokcodec.codec.correction import CorrectionConfig
from tokcodec.codec.correction_record import CorrectionRecord, record_needs_previous
from tokcodec.codec.pipeline import decode_video, encode_video, read_tokens
from tokcodec.codec.splice import concat_files, cut_file, split_file, split_points
from tokcodec.codec.verify import verify_file
from tokcodec.errors import ArgumentError, InputError, ModelError, OutputError
from tokcodec.io import read_frames
from tokcodec.metrics import psnr

runner = CliRunner()
RATE = 25


def _records(path: Path) -> list[CorrectionRecord]:
    """Each chunk's correction record, decoded (a linked one against the one before)."""
    out: list[CorrectionRecord] = []
    with open_tok(path) as reader:
        h = reader.header
        for chunk in reader.chunks():
            out.append(CorrectionRecord.unpack(chunk.correction, h.width, h.height, chunk.frames,
                                               out[-1] if out else None, h.newest_record_kind))
    return out


def _links(path: Path) -> list[bool]:
    from tokcodec.codec.info import file_info

    return [c.linked for c in file_info(path).chunks]


def _same_record(a: CorrectionRecord, b: CorrectionRecord, frames: int) -> None:
    assert (a.cell, a.step, a.dc, a.pool, a.gain_step, a.temporal) == (b.cell, b.step, b.dc, b.pool, b.gain_step, b.temporal)
    np.testing.assert_array_equal(a.steps, b.steps)
    np.testing.assert_array_equal(a.gains, b.gains)
    np.testing.assert_array_equal(a.frame_dc, b.frame_dc[:frames])


def test_a_cut_keeps_the_tokens_and_records_and_decodes_as_the_whole(linked_file, tmp_path):
    clip, tok, whole = linked_file
    part = tmp_path / "part.tok"
    st = cut_file(tok, part, start=0.88, frames=4)   # asks frames 22-25: chunk 4 (20-24, linked_file), 1 frame of chunk 5
    assert (st.first_frame, st.asked_first_frame, st.frames, st.gops, st.recoded_gops) == (20, 22, 6, 2, 2)
    assert verify_file(part).ok
    assert _links(part) == [False, True]            # the first GOP is a key GOP now; the second keeps its link
    _, grids, frames = read_tokens(part)
    _, original, _ = read_tokens(tok)
    assert frames == [5, 1]
    np.testing.assert_array_equal(grids[0], original[4])
    np.testing.assert_array_equal(grids[1], original[5][:1])   # (1 frame: 1 latent frame of 2)
    records, whole_records = _records(part), _records(tok)
    _same_record(records[0], whole_records[4], 5)
    _same_record(records[1], whole_records[5], 1)
    decode_video(part, tmp_path / "part.mkv")
    got = read_frames(tmp_path / "part.mkv")
    np.testing.assert_array_equal(got[:5], whole[20:25])      # the GOP kept whole: the same pictures
    # the last frame of a GOP cut short: the correction's temporal blend no longer sees the frame
    # after it (here a pattern moving 2 pixels a frame, where the blend is strong): a little off
    # the whole decode's frame, as close to the source
    source = read_frames(clip)[25]
    assert 25 < psnr(got[5], whole[25]) < 99 and psnr(got[5], source) > psnr(whole[25], source) - 1


def test_a_cut_that_ends_inside_the_latent_frame_keeps_the_payload(linked_file, tmp_path):
    clip, tok, whole = linked_file
    part = tmp_path / "part.tok"
    st = cut_file(tok, part, start=Fraction(25, RATE), frames=4)  # chunk 5's first 4 frames: its 2 latent frames
    assert (st.first_frame, st.frames, st.recoded_gops) == (25, 4, 1)
    _, grids, _ = read_tokens(part)
    _, original, _ = read_tokens(tok)
    np.testing.assert_array_equal(grids[0], original[5])
    decode_video(part, tmp_path / "part.mkv")
    got = read_frames(tmp_path / "part.mkv")
    np.testing.assert_array_equal(got[:3], whole[25:28])
    source = read_frames(clip)[28]
    assert psnr(got[3], source) > psnr(whole[28], source) - 1


def test_records_coded_against_the_one_before_are_coded_anew_at_a_cut(tmp_path):
    """A still picture: the correction records of the GOPs between key GOPs are coded against
    the previous GOP's (kind 3, flag bit 0). A cut starting on one codes it on its own; a last
    GOP cut short keeps coding it against the one before."""
    rng = np.random.default_rng(0)
    blocks = rng.integers(0, 256, (18, 32, 3)).astype(np.uint8).repeat(8, 0).repeat(8, 1)
    clip = write_clip(tmp_path / "still.mkv", np.repeat(blocks[None], 20, 0))
    tok = tmp_path / "still.tok"
    encode_video(clip, tok, gop=5, key_interval=3, passes=0)
    with open_tok(tok) as r:
        assert [record_needs_previous(c.correction) for c in r.chunks()] == [False, True, True, False]
    part = tmp_path / "part.tok"
    st = cut_file(tok, part, start=Fraction(5, RATE), frames=7)      # chunk 1 whole, 2 frames of chunk 2
    assert (st.first_frame, st.frames, st.recoded_gops) == (5, 7, 2)
    assert verify_file(part).ok
    with open_tok(part) as r:
        assert [record_needs_previous(c.correction) for c in r.chunks()] == [False, True]
    records, original = _records(part), _records(tok)
    _same_record(records[0], original[1], 5)
    _same_record(records[1], original[2], 2)
    decode_video(tok, tmp_path / "whole.mkv")
    decode_video(part, tmp_path / "part.mkv")
    np.testing.assert_array_equal(read_frames(tmp_path / "part.mkv")[:5], read_frames(tmp_path / "whole.mkv")[5:10])


def test_a_cut_is_written_in_the_oldest_version_that_holds_it(tmp_path, tiny_model):
    clip = make_tagged_clip(tmp_path / "holiday.mov", frames=10)
    tok = tmp_path / "offsets.tok"   # records of offsets alone (kind 1): 2.0, or 2.3 with the tags block
    encode_video(clip, tok, model=tiny_model, passes=0, correction=CorrectionConfig(detail=False))
    with open_tok(tok) as r:
        assert r.header.version == (2, 3)
    cut_file(tok, tmp_path / "bare.tok", metadata=False, start=0.2)
    concat_files([tmp_path / "bare.tok", tmp_path / "bare.tok"], tmp_path / "two.tok")
    for name in ("bare.tok", "two.tok"):
        with open_tok(tmp_path / name) as r:
            assert r.header.version == (2, 0), name


def test_an_exact_cut_encodes_the_frames_before_the_next_gop_again(linked_file, tmp_path):
    clip, tok, whole = linked_file
    part = tmp_path / "part.tok"
    st = cut_file(tok, part, start=0.88, frames=10, exact=True)   # frames 22-31: 22-24 encoded again
    assert (st.first_frame, st.frames, st.encoded_frames, st.recoded_gops) == (22, 10, 3, 2)
    assert verify_file(part).ok
    _, grids, frames = read_tokens(part)
    _, original, _ = read_tokens(tok)
    assert frames == [3, 5, 2]
    np.testing.assert_array_equal(grids[1], original[5])         # chunk 5, linked to 4: a key GOP now
    decode_video(part, tmp_path / "part.mkv")
    got = read_frames(tmp_path / "part.mkv")
    np.testing.assert_array_equal(got[3:8], whole[25:30])
    source = read_frames(clip)
    for a, b, s in zip(got[:3], whole[22:25], source[22:25]):   # a second generation: near the first
        assert psnr(a, b) > 25 and psnr(a, s) > psnr(b, s) - 3
    st = cut_file(tok, tmp_path / "inside.tok", start=0.88, frames=2, exact=True)   # inside one GOP
    assert (st.first_frame, st.frames, st.encoded_frames, st.gops) == (22, 2, 2, 1)
    st = cut_file(tok, tmp_path / "boundary.tok", start=0.8, frames=5, exact=True)   # on a GOP start: copied
    assert (st.first_frame, st.encoded_frames) == (20, 0)
    plain = tmp_path / "plain.tok"   # (no correction records: the part inside one GOP has none at all)
    encode_video(clip, plain, gop=5, passes=0, max_frames=10, correction=CorrectionConfig(enabled=False))
    st = cut_file(plain, tmp_path / "plain_part.tok", start=0.12, frames=2, exact=True)
    assert (st.first_frame, st.frames, st.encoded_frames) == (3, 2, 2) and verify_file(st.output).ok


def test_the_whole_file_cut_is_its_chunks(linked_file, tmp_path):
    _, tok, _ = linked_file
    st = cut_file(tok, tmp_path / "all.tok")
    assert (st.first_frame, st.frames, st.recoded_gops) == (0, 45, 0)
    with open_tok(tok) as a, open_tok(tmp_path / "all.tok") as b:
        assert [(c.payload, c.correction) for c in a.chunks()] == [(c.payload, c.correction) for c in b.chunks()]
        assert a.header.pack() == b.header.pack()


def test_the_audio_of_a_cut_is_that_of_the_part(linked_file, tmp_path):
    _, tok, _ = linked_file
    part = tmp_path / "part.tok"
    st = cut_file(tok, part, start=0.88, duration=0.6)   # to 1.48 s: from frame 20 (0.8 s) to frame 36
    assert st.first_frame == 20 and st.frames == 17 and "copied" in st.audio
    decode_video(part, tmp_path / "cut.mkv")
    decode_video(tok, tmp_path / "ranged.mkv", start=0.8, frames=17)
    streams, ranged = streams_of(tmp_path / "cut.mkv"), streams_of(tmp_path / "ranged.mkv")
    assert streams["audio"][0] == ranged["audio"][0]
    assert streams["audio"][1:] == pytest.approx(ranged["audio"][1:], abs=0.002)
    assert abs(streams["audio"][2] - 17 / RATE) < 0.05


def test_joined_parts_decode_as_the_whole(linked_file, tmp_path):
    _, tok, whole = linked_file
    head, tail = tmp_path / "head.tok", tmp_path / "tail.tok"
    cut_file(tok, head, frames=20)                        # chunks 0-3
    cut_file(tok, tail, start=Fraction(20, RATE))         # chunks 4-8: chunk 4 coded as a key GOP
    st = concat_files([head, tail], tmp_path / "joined.tok")
    assert (st.frames, st.gops) == (45, 9)
    assert verify_file(tmp_path / "joined.tok").ok
    _, grids, _ = read_tokens(tmp_path / "joined.tok")
    _, original, _ = read_tokens(tok)
    for a, b in zip(grids, original):
        np.testing.assert_array_equal(a, b)
    decode_video(tmp_path / "joined.tok", tmp_path / "joined.mkv")
    np.testing.assert_array_equal(read_frames(tmp_path / "joined.mkv"), whole)
    audio = streams_of(tmp_path / "joined.mkv")["audio"]
    assert abs(audio[1] - 0.2) < 0.03 and abs(audio[2] - 45 / RATE) < 0.05, audio


def test_a_join_is_each_file_after_the_other(linked_file, tmp_path):
    _, tok, whole = linked_file
    st = concat_files([tok, tok], tmp_path / "twice.tok")
    assert (st.frames, st.gops, st.recoded_gops) == (90, 18, 0)
    decode_video(tmp_path / "twice.tok", tmp_path / "twice.mkv")
    np.testing.assert_array_equal(read_frames(tmp_path / "twice.mkv"), np.concatenate([whole, whole]))
    audio = streams_of(tmp_path / "twice.mkv")["audio"]
    assert abs(audio[2] - (45 + 45) / RATE) < 0.05, audio   # (the second file's tone begins at 1.8 + 0.2 s)


#: the most from one AAC packet's start to the next's across a join: a packet is 1024/48000 s,
#: and a join keeps the packets that play mostly within each file (half a packet more at most)
PACKET_GAP = 1.6 * 1024 / 48000


def _stored_packets(tok: Path) -> list[tuple[float, float, bytes]]:
    """(start on the video's timeline, seconds, bytes) of each packet of a .tok's stored audio."""
    with open_tok(tok) as r:
        block = r.read_audio()
    with av.open(io.BytesIO(block.data), "r", format="matroska") as c:
        stream = c.streams.audio[0]
        return [(float(p.pts * stream.time_base) + block.start_offset_us / 1e6, float((p.duration or 0) * stream.time_base),
                 bytes(p)) for p in c.demux(stream) if p.size]


def _packet_starts(path: Path) -> list[float]:
    with av.open(str(path)) as c:
        stream = c.streams.audio[0]
        return [float(p.pts * p.time_base) for p in c.demux(stream) if p.size]


def test_packets_without_a_duration_last_until_the_next():
    from types import SimpleNamespace

    from tokcodec.audio_edit import _with_durations

    packets = [SimpleNamespace(pts=p, duration=d, size=9) for p, d in ((0, 0), (21, 21), (43, 0), (64, 0))]
    packets.insert(1, SimpleNamespace(pts=None, duration=0, size=9))   # (no timestamp: passed over)
    assert [(p.pts, d) for p, d in _with_durations(iter(packets))] == [(0, 21), (21, 21), (43, 21), (64, 21)]


def test_a_join_leaves_no_hole_in_the_audio(tmp_path):
    """The packet at each later file's first frame is kept (Matroska's millisecond times read
    it a little before), the encoder's priming packet before it left out: packets follow each other
    across the joins within half a packet of their own spacing (21.3 ms of AAC at 48 kHz)."""
    # (from an .mp4, whose audio times are in samples: the stored audio starts 1024/48000 s early)
    clip = make_av_clip(tmp_path / "tone.mp4", frames=20, audio_start=0, pictures=smooth_clip(20, 48, 64))
    tok = tmp_path / "t.tok"
    encode_video(clip, tok, passes=0)
    concat_files([tok, tok, tok], tmp_path / "three.tok")
    decode_video(tmp_path / "three.tok", tmp_path / "three.mkv")
    starts = _packet_starts(tmp_path / "three.mkv")
    assert starts[0] == 0 and max(b - a for a, b in zip(starts, starts[1:])) < PACKET_GAP
    # the packets: each file's that play mostly within its 0.8 s, the first's priming before, the last's after
    one, length = _stored_packets(tok), 20 / RATE
    middle = [data for t, span, data in one if 0 <= t + span / 2 < length]
    assert middle[0] == one[1][2] and one[1][0] < 0   # (the packet at the first frame, which reads 0.3 ms early)
    head = [data for t, span, data in one if t + span / 2 < length]
    tail = [data for t, span, data in one if t + span / 2 >= 0]
    assert [data for _, _, data in _stored_packets(tmp_path / "three.tok")] == head + middle + tail
    assert 3 * 20 / RATE <= starts[-1] + 1024 / 48000 < 3 * 20 / RATE + 0.05   # (whole packets: up to one more)


def test_a_part_after_the_audio_ends_has_none(linked_file):
    """Audio that ends before a part starts is not kept (its last packet was: encode --ss and cut)."""
    from tokcodec.audio import read_track
    from tokcodec.audio_edit import cut_stored

    _, tok, _ = linked_file
    with open_tok(tok) as r:
        block = r.read_audio()
    offset = block.start_offset_us / 1e6
    end = offset + read_track(block.data, offset).duration   # (the tone ends with the video, at 1.8 s)
    assert cut_stored(block.data, offset, end + 0.1, None) is None
    assert cut_stored(block.data, offset, end - 0.1, None).duration == pytest.approx(0.1, abs=0.03)


def test_files_that_cannot_share_a_header_are_refused(linked_file, tmp_path, tiny_model):
    clip, tok, _ = linked_file
    small = write_clip(tmp_path / "small.mkv", smooth_clip(10, 40, 64))
    encode_video(small, tmp_path / "small.tok", passes=0)
    with pytest.raises(InputError, match=r"its size is 64x40, not 64x48"):
        concat_files([tok, tmp_path / "small.tok"], tmp_path / "x.tok")
    encode_video(clip, tmp_path / "tiny.tok", model=tiny_model, passes=0, max_frames=5)
    with pytest.raises(InputError, match="its model"):
        concat_files([tok, tmp_path / "tiny.tok"], tmp_path / "x.tok")
    assert not (tmp_path / "x.tok").exists()
    with pytest.raises(ArgumentError, match="two or more"):
        concat_files([tok], tmp_path / "x.tok")
    with pytest.raises(ArgumentError, match="takes a list"):
        concat_files(str(tok), tmp_path / "x.tok")
    with pytest.raises(OutputError, match="is the input"):
        concat_files([tok, tmp_path / "tiny.tok"], tok, overwrite=True)
    with pytest.raises(OutputError, match="cut writes a .tok file, not .mp4"):
        cut_file(tok, tmp_path / "x.mp4")
    with pytest.raises(ModelError, match="not tiny's"):
        cut_file(tok, tmp_path / "x.tok", model="tiny")
    with pytest.raises(InputError, match="after the end"):
        cut_file(tok, tmp_path / "x.tok", start=5)


def test_the_audio_of_a_join_must_be_of_one_kind(linked_file, tmp_path):
    _, tok, _ = linked_file
    other = make_av_clip(tmp_path / "44k.mkv", frames=10, audio_start=0, sample_rate=44100,
                         pictures=smooth_clip(10, 48, 64))
    encode_video(other, tmp_path / "44k.tok", passes=0)
    with pytest.raises(InputError, match=r"its audio \(aac 44100 Hz 1 ch\) cannot follow .*aac 48000 Hz 1 ch.*--no-audio"):
        concat_files([tok, tmp_path / "44k.tok"], tmp_path / "x.tok")
    st = concat_files([tok, tmp_path / "44k.tok"], tmp_path / "x.tok", audio=False)
    assert st.audio == "dropped (--no-audio)" and st.frames == 55


def test_a_join_codes_silence_where_a_file_has_no_audio(linked_file, tmp_path):
    """So that audio read sample after sample (ffmpeg to WAV) stays with the pictures: the file
    without audio, and the tone's start 0.2 s into the other, are silence packets, not a jump."""
    _, tok, _ = linked_file
    silent = write_clip(tmp_path / "silent.mkv", smooth_clip(10, 48, 64))
    encode_video(silent, tmp_path / "silent.tok", passes=0)
    for order, begins in (((silent, tok), 0), ((tok, silent, tok), 0.2)):   # (the first file's own start stays)
        names = [tmp_path / "silent.tok" if p == silent else p for p in order]
        st = concat_files(names, tmp_path / "y.tok", overwrite=True)
        assert not st.warnings
        decode_video(tmp_path / "y.tok", tmp_path / "y.mkv", overwrite=True)
        starts = _packet_starts(tmp_path / "y.mkv")
        assert abs(starts[0] - begins) < 0.03 and max(b - a for a, b in zip(starts, starts[1:])) < PACKET_GAP
        assert abs(starts[-1] - st.frames / RATE) < 0.05


def test_a_join_s_silence_fills_the_gap_and_no_more(tmp_path):
    """Silence from the start, for a first file without audio: the encoder's priming packet,
    which starts before the gap, is not kept (it put the next file's sound a packet late)."""
    clip = make_av_clip(tmp_path / "tone.mp4", frames=20, audio_start=0, pictures=smooth_clip(20, 48, 64))
    silent = write_clip(tmp_path / "silent.mkv", smooth_clip(15, 48, 64))
    for source in (clip, silent):
        encode_video(source, source.with_suffix(".tok"), passes=0)
    concat_files([silent.with_suffix(".tok"), clip.with_suffix(".tok")], tmp_path / "j.tok")
    decode_video(tmp_path / "j.tok", tmp_path / "j.mkv")
    decode_video(clip.with_suffix(".tok"), tmp_path / "alone.mkv")
    starts, alone = _packet_starts(tmp_path / "j.mkv"), _packet_starts(tmp_path / "alone.mkv")
    assert abs(starts[0]) < 0.002, starts[:2]
    assert abs(starts[-1] - (15 / RATE + alone[-1])) < 0.5 * 1024 / 48000   # (the tone where it plays alone, moved)
    assert len(starts) == round(15 / RATE * 48000 / 1024) + len(alone)


def test_a_join_s_silence_decodes_in_flac(tmp_path):
    """Audio stored as FLAC (from PCM) in blocks of 1152 samples: the silence coded for a file
    without audio keeps to the block length the stream's header allows, or decoders refuse it."""
    clip = make_av_clip(tmp_path / "pcm.mov", frames=20, audio_start=0, acodec="pcm_s16le",
                        pictures=smooth_clip(20, 48, 64))
    silent = write_clip(tmp_path / "silent.mkv", smooth_clip(10, 48, 64))
    for source in (clip, silent):
        encode_video(source, source.with_suffix(".tok"), passes=0)
    st = concat_files([clip.with_suffix(".tok"), silent.with_suffix(".tok"), clip.with_suffix(".tok")],
                      tmp_path / "j.tok")
    assert "flac" in st.audio and not st.warnings
    decode_video(tmp_path / "j.tok", tmp_path / "j.mov")   # (ALAC: every packet decoded and coded again)
    with av.open(str(tmp_path / "j.mov")) as c:
        played = sum(f.samples for f in c.decode(c.streams.audio[0])) / 48000
    assert abs(played - 50 / RATE) < 0.05


def _recoloured(src: Path, dst: Path, **colours: int) -> Path:
    """``src`` with other colour tags in its header (its checksum made anew)."""
    data = src.read_bytes()
    header = dataclasses.replace(Header.unpack(data, str(src)), **colours)
    dst.write_bytes(header.pack() + data[HEADER_SIZE:])
    return dst


def test_files_join_where_their_colours_mean_the_same(linked_file, tmp_path):
    _, tok, _ = linked_file
    sdr = _recoloured(tok, tmp_path / "sdr.tok", colorspace=1, primaries=1, transfer=1)   # BT.709 stated
    hdr = _recoloured(tok, tmp_path / "hdr.tok", colorspace=9, primaries=9, transfer=16)  # BT.2020, PQ
    with pytest.raises(InputError, match=r"its colours are BT.2020 with PQ \(HDR\), not BT.709/BT.601 with SDR gamma"):
        concat_files([sdr, hdr], tmp_path / "x.tok")
    pal = _recoloured(tok, tmp_path / "pal.tok", colorspace=5, primaries=5, transfer=6)  # BT.601 (PAL): SDR too
    concat_files([sdr, pal], tmp_path / "sdr_pal.tok")
    with open_tok(tok) as r:   # (a smooth clip from PyAV: no colour stated)
        assert (r.header.primaries, r.header.transfer, r.header.colorspace) == (2, 2, 2)
    concat_files([tok, sdr], tmp_path / "joined.tok")   # unstated is taken as BT.709, as a decode to H.264 takes it
    with open_tok(tmp_path / "joined.tok") as r:
        assert (r.header.primaries, r.header.transfer, r.header.colorspace) == (1, 1, 1)


def test_files_with_and_without_corrections_or_links_join(linked_file, tmp_path):
    clip, tok, whole = linked_file
    plain = tmp_path / "plain.tok"   # format 1.x, coder 3 (every GOP a key GOP)
    encode_video(clip, plain, gop=5, key_interval=1, passes=0, max_frames=10,
                 correction=CorrectionConfig(enabled=False))
    with open_tok(plain) as r:
        assert not r.header.correction and r.header.coder_id == 3
    joined = tmp_path / "joined.tok"
    concat_files([plain, tok], joined)
    with open_tok(joined) as r:
        assert r.header.correction and r.header.coder_id == 4 and r.header.version == (2, 2)
    decode_video(plain, tmp_path / "plain.mkv")
    decode_video(joined, tmp_path / "joined.mkv")
    got = read_frames(tmp_path / "joined.mkv")
    np.testing.assert_array_equal(got[:10], read_frames(tmp_path / "plain.mkv"))
    np.testing.assert_array_equal(got[10:], whole)


def test_chapters_follow_the_cut_and_the_join(tmp_path, tiny_model):
    clip = make_tagged_clip(tmp_path / "holiday.mov")   # chapters Arrival 0-0.5 s, Beach 0.5-1 s; 25 frames
    tok = tmp_path / "holiday.tok"
    encode_video(clip, tok, model=tiny_model, passes=0, gop=5)
    part = tmp_path / "part.tok"
    st = cut_file(tok, part, start=0.6)                  # frame 15: inside Beach
    assert st.first_frame == 15 and st.tags == "kept (1 chapter)"
    with open_tok(part) as r:
        tags = r.read_tags()
    assert [(c.start, c.end, c.tags["title"]) for c in tags.chapters] == [(0, Fraction(2, 5), "Beach")]
    assert tags.tags["title"] == "Holiday 2026"
    concat_files([tok, part], tmp_path / "joined.tok")
    with open_tok(tmp_path / "joined.tok") as r:
        chapters = [(c.start, c.end, c.tags["title"]) for c in r.read_tags().chapters]
    # (the file's Beach runs to its end, the part's from its start: one chapter, as after a split)
    assert chapters == [(0, Fraction(1, 2), "Arrival"), (Fraction(1, 2), Fraction(7, 5), "Beach")]
    st = cut_file(tok, tmp_path / "bare.tok", metadata=False, audio=False)
    assert (st.tags, st.audio, st.tags_bytes, st.audio_bytes) == ("dropped (--no-metadata)", "dropped (--no-audio)", 0, 0)
    with open_tok(tmp_path / "bare.tok") as r:
        assert not r.header.has_tags and not r.header.has_audio and r.header.version == (2, 2)


def test_split_points_are_gop_starts():
    firsts = list(range(0, 200, 17))   # GOPs of 17 at 25 fps
    assert split_points(firsts, Fraction(25), Fraction(2)) == [0, 51, 102, 153]      # the GOP start after 2, 4, 6 s
    assert split_points(firsts, Fraction(25), Fraction(5)) == [0, 136]
    assert split_points(firsts, Fraction(25), marks=[Fraction(0), Fraction(1), Fraction(3, 2), Fraction(5)]) == \
        [0, 17, 34, 119]                                                             # the GOP that holds each mark


def test_split_parts_hold_every_frame_once(linked_file, tmp_path):
    _, tok, whole = linked_file
    parts = split_file(tok, tmp_path / "parts", every=0.5)   # GOPs of 5 frames (0.2 s): parts from 0, 0.6, 1.0, 1.6 s
    assert [p.first_frame for p in parts] == [0, 15, 25, 40] and sum(p.frames for p in parts) == 45
    assert [Path(p.output).name for p in parts] == [f"t_{i:03d}.tok" for i in range(4)]
    assert [p.recoded_gops for p in parts] == [0, 0, 1, 1]   # (chunks 3 and 6 are key GOPs; 5 and 8 were linked_file)
    decoded = []
    for p in parts:
        assert verify_file(p.output).ok
        decode_video(p.output, tmp_path / "p.mkv", overwrite=True)
        decoded.append(read_frames(tmp_path / "p.mkv"))
    np.testing.assert_array_equal(np.concatenate(decoded), whole)
    with pytest.raises(OutputError, match="already exists"):
        split_file(tok, tmp_path / "parts", every=0.5)
    with pytest.raises(ArgumentError, match="one of"):
        split_file(tok, tmp_path / "parts", every=0.5, chapters=True)
    with pytest.raises(InputError, match="no chapters"):
        split_file(tok, tmp_path / "other", chapters=True)
    assert not (tmp_path / "other").exists() or not any((tmp_path / "other").iterdir())


def test_split_at_chapters_and_join_back(tmp_path, tiny_model):
    clip = make_tagged_clip(tmp_path / "holiday.mov")   # Arrival 0-0.5 s, Beach 0.5-1 s; 25 frames
    tok = tmp_path / "holiday.tok"
    encode_video(clip, tok, model=tiny_model, passes=0, gop=5)
    parts = split_file(tok, tmp_path / "parts", chapters=True)
    assert [(p.first_frame, p.frames) for p in parts] == [(0, 10), (10, 15)]   # Beach from the GOP that holds 0.5 s
    with open_tok(parts[1].output) as r:
        assert [(c.start, c.tags["title"]) for c in r.read_tags().chapters] == [(0, "Arrival"), (Fraction(1, 10), "Beach")]
    # parts every 0.2 s cut the chapters in pieces; joined, they are the two chapters again
    parts = split_file(tok, tmp_path / "fifths", every=0.2)
    concat_files([p.output for p in parts], tmp_path / "joined.tok")
    with open_tok(tok) as a, open_tok(tmp_path / "joined.tok") as b:
        assert b.read_tags().chapters == a.read_tags().chapters and len(a.read_tags().chapters) == 2
    with pytest.raises(ArgumentError, match="a folder"):
        split_file(tok, "-", every=0.2)
    split_file(tok, tmp_path / "fifths", every=0.4, overwrite=True)   # fewer parts: the later ones are said
    assert "also holds 2 other parts" in split_file(tok, tmp_path / "fifths", every=0.4, overwrite=True)[-1].warnings[-1]


def test_cut_and_concat_on_the_command_line(linked_file, tmp_path):
    _, tok, _ = linked_file
    result = runner.invoke(app, ["cut", str(tok), "-o", str(tmp_path / "p.tok"), "--ss", "0.88", "-t", "0.2"])
    assert result.exit_code == 0, result.output
    assert "cut 7 frames 64x48 from 0.800 s (frame 20: the GOP that holds 0.880 s, frame 22, starts there)" in result.output
    assert "2 GOPs, 2 entropy-coded anew (same tokens)" in result.output
    result = runner.invoke(app, ["concat", str(tok), str(tmp_path / "p.tok"), "-o", str(tmp_path / "j.tok")])
    assert result.exit_code == 0, result.output
    assert "joined 2 files: 52 frames 64x48 (2.080 s)" in result.output and "11 GOPs copied" in result.output
    result = runner.invoke(app, ["concat", str(tok), str(tmp_path / "p.tok"), "-o", str(tmp_path / "j.tok")])
    assert result.exit_code == 1 and "already exists" in result.output
    result = runner.invoke(app, ["split", str(tmp_path / "j.tok"), "-o", str(tmp_path / "parts"), "--every", "1"])
    assert result.exit_code == 0, result.output
    assert "split" in result.output and "into 3 parts" in result.output and "52 frames" in result.output
    result = runner.invoke(app, ["split", str(tmp_path / "j.tok"), "-o", str(tmp_path / "parts")])
    assert result.exit_code == 2 and "--every" in result.output
    piped = subprocess.run([sys.executable, "-m", "tokcodec", "cut", str(tok), "-o", "-", "--frames", "7", "-q"],
                           check=True, capture_output=True).stdout   # (a pipe: the header's frame count stays 0)
    subprocess.run([sys.executable, "-m", "tokcodec", "cut", "-", "-o", str(tmp_path / "s.tok"), "--ss", "0.2"],
                   input=piped, check=True, capture_output=True)
    _, grids, frames = read_tokens(tmp_path / "s.tok")
    _, original, _ = read_tokens(tok)
    assert frames == [2] and np.array_equal(grids[0], original[1][:2])   # (2 frames: 2 latent frames)


def test_cut_and_concat_do_not_load_torch(linked_file, tmp_path):
    _, tok, _ = linked_file
    code = (f"import sys, tokcodec; tokcodec.cut_file({str(tok)!r}, {str(tmp_path / 'p.tok')!r}, start=0.9); "
            f"tokcodec.concat_files([{str(tok)!r}, {str(tmp_path / 'p.tok')!r}], {str(tmp_path / 'j.tok')!r}); "
            "assert 'torch' not in sys.modules, 'torch loaded'")
    subprocess.run([sys.executable, "-c", code], check=True)
