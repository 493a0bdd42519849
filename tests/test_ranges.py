"""decode --ss / -t / --frames: part of a file, exactly the frames a whole decode gives there,
with its audio cut to match, and only the GOPs that hold the part through the network."""
from __future__ import annotations

import dataclasses
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import smooth_clip
from test_audio import streams_of
from tokcodec.cli import app
from tokcodec.codec.pipeline import decode_video, encode_video
from tokcodec.codec.ranges import FrameRange, chunk_span, frame_range, in_range, parse_time, seconds
from tokcodec.errors import ArgumentError, InputError, OutputError
from tokcodec.io import read_frames
from tokcodec.model.tokenizer import VideoTokenizer

runner = CliRunner()


@pytest.mark.parametrize("text, seconds", [
    ("90", 90), ("1.5", Fraction(3, 2)), (".5", Fraction(1, 2)), ("2.", 2), ("250ms", Fraction(1, 4)),
    ("1500us", Fraction(3, 2000)), ("3s", 3), ("1:30", 90), ("01:02:03.5", Fraction(7447, 2)),
    ("0:00:00.04", Fraction(1, 25)), ("75:00", 4500), (" 12 ", 12)])
def test_times_are_read_as_ffmpeg_writes_them_and_kept_exact(text, seconds):
    assert parse_time(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "-1", "1:60", "1:60:00", "1:2:3:4", "1e3", "5 s", "ms", "1:"])
def test_what_is_not_a_time_is_refused(text):
    with pytest.raises(ValueError, match="not a time|below 60"):
        parse_time(text)


def test_a_range_holds_the_frames_from_its_start_for_its_duration():
    rate = Fraction(25)
    assert frame_range(100, rate) == FrameRange(0, 100)
    assert frame_range(100, rate, start=Fraction(1)) == FrameRange(25, 100)
    assert frame_range(100, rate, start=Fraction(101, 100)) == FrameRange(26, 100)  # first frame at or after it
    assert frame_range(100, rate, start=Fraction(1), duration=Fraction(1, 2)) == FrameRange(25, 38)
    assert frame_range(100, rate, duration=Fraction(1, 25)) == FrameRange(0, 1)
    assert frame_range(100, rate, start=Fraction(3), duration=Fraction(10)) == FrameRange(75, 100)  # to the end
    assert frame_range(100, rate, frames=5, duration=Fraction(1)) == FrameRange(0, 5)    # whichever ends first
    assert frame_range(100, rate, frames=50, duration=Fraction(1)) == FrameRange(0, 25)
    part = frame_range(100, rate, start=seconds(np.float64(0.88)), duration=seconds(0.2))   # exact decimals
    assert part == FrameRange(22, 27) and seconds(np.float32(0.5)) == Fraction(1, 2)
    assert frame_range(100, rate, frames=np.int64(3)) == FrameRange(0, 3)
    # settings out of their range are ArgumentErrors (ValueErrors too, as documented): some were
    # InputErrors, which a program catching ValueError for its arguments missed
    for bad in (float("nan"), float("inf"), "x"):
        with pytest.raises(ArgumentError, match="not a time"):
            seconds(bad)
    assert str(pytest.raises(ValueError, seconds, "x").value).count("not a time") == 1
    with pytest.raises(ArgumentError, match="whole number"):
        frame_range(100, rate, frames=2.5)
    ntsc = Fraction(30000, 1001)
    assert frame_range(1000, ntsc, start=Fraction(10)) == FrameRange(300, 1000)           # 299.7 -> 300
    for bad, error, match in ((dict(start=Fraction(4)), InputError, "after the end"),
                              (dict(start=Fraction(-1)), ArgumentError, "negative"),
                              (dict(duration=Fraction(0)), ArgumentError, "more than 0"),
                              (dict(frames=0), ArgumentError, "at least 1"),
                              (dict(start=Fraction(101, 100), duration=Fraction(1, 100)), InputError, "holds no frame")):
        with pytest.raises(error, match=match):
            frame_range(100, rate, source="x.tok", **bad)


def test_the_chunks_read_start_at_the_key_chunk_before_the_part():
    firsts, counts = [0, 5, 10, 15, 20, 25], [5] * 6
    linked = {1, 2, 4, 5}                         # key chunks 0 and 3
    links = linked.__contains__
    assert chunk_span(firsts, counts, FrameRange(12, 14), links) == (0, 2)
    assert chunk_span(firsts, counts, FrameRange(15, 16), links) == (3, 3)
    assert chunk_span(firsts, counts, FrameRange(14, 21), links) == (0, 4)
    assert chunk_span(firsts, counts, FrameRange(26, 30), links) == (3, 5)
    assert chunk_span(firsts, counts, FrameRange(26, 30), lambda i: False) == (5, 5)


def test_only_the_chunks_in_the_part_reach_the_network_and_a_salvage_keeps_a_lead_in():
    chunks = [(0, 5), (5, 5), (15, 5), (20, 5), (25, 5)]      # frames 10-14 lost
    read = []

    def items():
        for c in chunks:
            read.append(c[0])
            yield c
    assert list(in_range(items(), FrameRange(6, 16))) == [(5, 5), (15, 5)]
    assert read == [0, 5, 15, 20]                              # stops at the first chunk past the part
    assert list(in_range(iter(chunks), FrameRange(11, 16), lead_in=True)) == [(5, 5), (15, 5)]
    assert list(in_range(iter(chunks), FrameRange(11, 13), lead_in=True)) == [(5, 5)]
    assert list(in_range(iter(chunks), FrameRange(11, 13))) == []
    assert list(in_range(iter(chunks), FrameRange(15, 16), lead_in=True)) == [(15, 5)]


def test_part_of_a_file_is_the_whole_decode_s_frames_and_runs_only_its_gops(linked_file, tmp_path, monkeypatch):
    _, tok, whole = linked_file
    calls = []
    real = VideoTokenizer.decode_indices

    def counted(self, idx, *args, **kwargs):
        calls.append(tuple(idx.shape))
        return real(self, idx, *args, **kwargs)

    monkeypatch.setattr(VideoTokenizer, "decode_indices", counted)
    st = decode_video(tok, tmp_path / "part.mkv", start=0.88, duration=0.3)   # frames 22-29, in linked chunks 4, 5
    assert (st.first_frame, st.frames) == (22, 8)
    np.testing.assert_array_equal(read_frames(tmp_path / "part.mkv"), whole[22:30])
    assert len(calls) == 2                     # chunk 3 (the key GOP) entropy-decoded, not run
    calls.clear()
    st = decode_video(tok, tmp_path / "tail.mkv", start=Fraction(42, 25))      # past the last key GOP
    assert (st.first_frame, st.frames, len(calls)) == (42, 3, 1)
    np.testing.assert_array_equal(read_frames(tmp_path / "tail.mkv"), whole[42:])
    st = decode_video(tok, tmp_path / "head.mkv", frames=7)
    np.testing.assert_array_equal(read_frames(tmp_path / "head.mkv"), whole[:7])


def test_the_audio_of_a_part_is_cut_to_it(linked_file, tmp_path):
    _, tok, _ = linked_file
    st = decode_video(tok, tmp_path / "part.mkv", start=0.88, duration=0.4)
    assert "aac copied" in st.audio
    streams = streams_of(tmp_path / "part.mkv")
    assert streams["video"][1] == 0
    _, start, end = streams["audio"]
    assert abs(start) < 0.03 and abs(end - 0.4) < 0.05, (start, end)   # whole AAC packets of 21 ms
    st = decode_video(tok, tmp_path / "early.mkv", duration=0.4)           # the tone starts at 0.2 s
    _, start, end = streams_of(tmp_path / "early.mkv")["audio"]
    assert abs(start - 0.2) < 0.03 and abs(end - 0.4) < 0.05, (start, end)
    st = decode_video(tok, tmp_path / "silent.mkv", duration=0.12)         # before the tone
    assert st.audio == "none in this part" and "audio" not in streams_of(tmp_path / "silent.mkv")
    decode_video(tok, tmp_path / "whole.mkv")                               # a part to the end keeps
    decode_video(tok, tmp_path / "tail.mkv", start=1.2)                     # what a whole decode keeps
    whole_end, tail_end = streams_of(tmp_path / "whole.mkv")["audio"][2], streams_of(tmp_path / "tail.mkv")["audio"][2]
    assert abs(tail_end - (whole_end - 1.2)) < 0.03, (whole_end, tail_end)


def test_decode_part_from_the_command_line(linked_file, tmp_path):
    clip, tok, whole = linked_file
    still = tmp_path / "still.png"
    r = runner.invoke(app, ["decode", str(tok), "-o", str(still), "--ss", "0:00:01", "--frames", "1"])
    assert r.exit_code == 0, r.output
    assert "decoded 1 frame from frame 25" in r.output
    np.testing.assert_array_equal(read_frames(still)[0], whole[25])
    r = runner.invoke(app, ["decode", str(tok), "-o", str(tmp_path / "p.mkv"), "--ss", "400ms", "-t", "0.2",
                            "--compare", str(clip)])
    assert r.exit_code == 0, r.output
    assert "decoded 5 frames from frame 10" in r.output and "PSNR" in r.output
    r = runner.invoke(app, ["decode", str(tok), "-o", str(tmp_path / "late.mkv"), "--ss", "5"])
    assert r.exit_code == 1 and "after the end: the file has 45 frames (1.800 s)" in r.output
    assert not (tmp_path / "late.mkv").exists()
    r = runner.invoke(app, ["decode", str(tok), "-o", str(tmp_path / "x.png"), "--ss", "1"])
    assert r.exit_code == 1 and "the part asked for holds 20" in r.output
    r = runner.invoke(app, ["decode", str(tok), "-o", str(tmp_path / "x.mkv"), "-t", "1:2:3:4"])
    assert r.exit_code == 2 and "not a time" in r.output


def test_a_part_of_a_damaged_file_salvages_what_it_can(linked_file, tmp_path):
    from test_hardening import damaged

    _, tok, whole = linked_file
    broken = damaged(tok, tmp_path / "broken.tok", flip_chunk=3)   # frames 15-19, the key GOP of chunks 4, 5
    st = decode_video(broken, tmp_path / "s.mkv", salvage=True, start=0.48, duration=0.6)   # frames 12-26
    assert (st.first_frame, st.frames) == (12, 15)
    assert st.lost_frames == [(15, 26)]       # chunk 3 and the linked chunks 4, 5 after it
    frames = read_frames(tmp_path / "s.mkv")
    np.testing.assert_array_equal(frames[:3], whole[12:15])
    assert all(np.array_equal(f, whole[14]) for f in frames[3:])
    # a part that starts among the lost frames repeats the last good frame before it, as a whole
    # salvage does (not black); the chunks after the part are not read
    st = decode_video(broken, tmp_path / "lost.mkv", salvage=True, start=0.64, duration=0.4)   # frames 16-25
    assert (st.first_frame, st.frames, st.lost_frames) == (16, 10, [(16, 25)])
    assert all(np.array_equal(f, whole[14]) for f in read_frames(tmp_path / "lost.mkv"))
    with pytest.raises(OutputError, match="one frame"):
        decode_video(tok, tmp_path / "many.png", frames=2)


def test_encode_part_of_an_input_is_the_encode_of_those_frames(linked_file, tmp_path):
    """encode --ss/-t: the tokens of the part are those of a clip cut to it, its audio starts with
    it, and the rate plan (--bpp) reads the part too."""
    from conftest import write_clip
    from tokcodec.codec.pipeline import file_info, read_tokens

    clip, _, _ = linked_file
    source = read_frames(clip)
    st = encode_video(clip, tmp_path / "part.tok", start=0.88, duration=0.3, passes=0, gop=5)
    assert st.frames == 8
    cut = write_clip(tmp_path / "cut.mkv", source[22:30])
    encode_video(cut, tmp_path / "cut.tok", passes=0, gop=5)
    _, part_grids, _ = read_tokens(tmp_path / "part.tok")
    _, cut_grids, _ = read_tokens(tmp_path / "cut.tok")
    assert all(np.array_equal(a, b) for a, b in zip(part_grids, cut_grids, strict=True))
    audio = file_info(tmp_path / "part.tok").audio        # the tone plays from 0.2 s: all through the part
    assert -0.03 < audio.start_offset_seconds <= 0 and abs(audio.duration_seconds - 0.32) < 0.05
    st = encode_video(clip, tmp_path / "head.tok", start="0:00:00.4", max_frames=6, passes=0)
    assert st.frames == 6
    st = encode_video(clip, tmp_path / "rate.tok", start=1.0, bpp=0.5, passes=0)
    assert st.frames == 20 and st.target_bpp == 0.5
    with pytest.raises(InputError, match="after the end"):
        encode_video(clip, tmp_path / "late.tok", start=2)
    r = runner.invoke(app, ["encode", str(clip), "-o", str(tmp_path / "c.tok"), "--ss", "400ms", "-t", "0.2",
                            "--passes", "0"])
    assert r.exit_code == 0 and "encoded 5 frames" in r.output, r.output
    still = tmp_path / "still.png"
    decode_video(tmp_path / "c.tok", still, frames=1)
    r = runner.invoke(app, ["encode", str(still), "-o", str(tmp_path / "s.tok"), "--ss", "1"])
    assert r.exit_code == 1 and "an image holds one frame" in r.output


def test_tokens_of_part_of_a_video(linked_file, tmp_path):
    from tokcodec.tokens import read_token_file

    clip, tok, _ = linked_file
    out = tmp_path / "t.safetensors"
    r = runner.invoke(app, ["tokens", str(clip), "-o", str(out), "--ss", "0.4", "-t", "0.36", "--gop", "5"])
    assert r.exit_code == 0, r.output
    assert read_token_file(out).gop_frames == [5, 4]       # frames 10-18
    r = runner.invoke(app, ["tokens", str(tok), "-o", str(tmp_path / "x.npy"), "--ss", "1"])
    assert r.exit_code == 2 and "--ss applies only to a video, image or image sequence input" in r.output


def test_the_part_of_an_input_does_not_trust_a_low_frame_count(tmp_path):
    """A container that states fewer frames than it holds: -t and --frames still say how many to
    read (the input's end ends them), and a start past an unknown end is a clear error."""
    from conftest import write_clip
    from tokcodec.codec.pipeline import input_part
    from tokcodec.io import VideoInfo

    info = VideoInfo(64, 48, Fraction(10), 10, "yuv420p", False)
    assert input_part(Path("x.mp4"), info, 0, 1.5, None)[:2] == (0, 15)
    assert input_part(Path("x.mp4"), info, 0, None, 50)[:2] == (0, 50)
    assert input_part(Path("x.mp4"), info, 0.5, None, None)[0::2] == (5, dataclasses.replace(info, frame_count=5))
    for frames in (0, -1):  # not "no limit": an error, with --ss as without (leave it out for no limit)
        with pytest.raises(ValueError, match="at least 1"):
            input_part(Path("x.mp4"), info, 0.5, None, frames)
    with pytest.raises(InputError, match="after the end"):
        input_part(Path("x.mp4"), info, 1, None, None)
    y4m = write_clip(tmp_path / "five.y4m", smooth_clip(5, 48, 64))  # y4m: a count from its size; 25 fps
    for kwargs in (dict(), dict(bpp=0.05)):
        with pytest.raises(InputError, match=r"starts at 10 s \(frame 250\), after the end: the file has 5 frames"):
            encode_video(y4m, tmp_path / "late.tok", start=10, passes=0, **kwargs)
