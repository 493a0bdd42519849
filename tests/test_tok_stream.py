"""A .tok piped into `decode -` is decoded as it comes (codec/tok_stream.py), checked as it comes,
and `encode -o -` sends each GOP out whole once it is coded: a live round trip shows its first
frames while its input still runs."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import smooth_clip, write_clip

from tokcodec.codec.container import HEADER_SIZE, ContainerReader, Header
from tokcodec.codec.pipeline import decode_video, encode_video
from tokcodec.codec.tok_stream import TokStream
from tokcodec.errors import ArgumentError, FormatError, InputError, OutputError


@pytest.fixture(scope="module")
def tok_file(tmp_path_factory, tiny_model) -> Path:
    """30 frames of 48x64 coded in GOPs of 5 by the tiny model."""
    work = tmp_path_factory.mktemp("tokstream")
    clip = write_clip(work / "clip.y4m", smooth_clip(30, 48, 64))
    encode_video(clip, work / "t.tok", model=tiny_model, gop=5)
    return work / "t.tok"


def _unstated(data: bytes) -> bytes:
    """The file as `encode -o -` writes it: the header's frame count 0 (it cannot seek back)."""
    header = Header.unpack(data[:HEADER_SIZE], "t")
    return replace(header, frame_count=0).pack() + data[HEADER_SIZE:]


def _pipe(data: bytes, then_close: bool = True) -> io.FileIO:
    """The read end of a pipe a thread writes ``data`` into (and then closes, unless not)."""
    read_fd, write_fd = os.pipe()

    def feed() -> None:
        for at in range(0, len(data), 4096):  # (as a producer's writes come)
            os.write(write_fd, data[at:at + 4096])
        if then_close:
            os.close(write_fd)
    threading.Thread(target=feed, daemon=True).start()
    return io.FileIO(read_fd, "rb")


def _read_all(stream: TokStream) -> list:
    return [(c.index, c.first_frame, c.frames, c.payload, c.correction) for c in stream.chunks()]


@pytest.mark.parametrize("stated", [True, False])
def test_a_stream_gives_the_chunks_of_its_file(tok_file, stated) -> None:
    data = tok_file.read_bytes() if stated else _unstated(tok_file.read_bytes())
    with ContainerReader(tok_file) as reader:
        expected = [(c.index, c.first_frame, c.frames, c.payload, c.correction) for c in reader.chunks()]
    stream = TokStream(_pipe(data), "stdin")
    assert stream.frame_count == (30 if stated else 0) and not stream.ended
    assert _read_all(stream) == expected and len(expected) == 6
    assert stream.ended and stream.frame_count == stream.frames_read == 30
    with pytest.raises(RuntimeError):  # (once)
        next(stream.chunks())


def test_every_cut_and_every_flipped_bit_is_an_error_and_no_damage_is_passed_on(tok_file) -> None:
    """Each byte is checked before it is used: a stream cut anywhere, or with any one byte
    changed, ends in a FormatError, and every chunk handed on before it is the file's own."""
    data = tok_file.read_bytes()
    good = _read_all(TokStream(io.BytesIO(data)))
    for cut in range(0, len(data)):
        with pytest.raises(FormatError, match="ends |is empty|truncated header|bad magic"):
            _read_all(TokStream(io.BytesIO(data[:cut])))
    for at in range(len(data)):
        damaged = bytearray(data)
        damaged[at] ^= 1 << (at % 8)
        handed: list = []
        with pytest.raises(FormatError):
            stream = TokStream(io.BytesIO(bytes(damaged)))
            for chunk in stream.chunks():
                handed.append((chunk.index, chunk.first_frame, chunk.frames, chunk.payload, chunk.correction))
        assert handed == good[:len(handed)], at
    with pytest.raises(FormatError, match="more bytes after the trailer"):
        _read_all(TokStream(io.BytesIO(data + data)))


@pytest.mark.parametrize("stated", [True, False])
@pytest.mark.parametrize("part", [{}, {"start": "0.2", "frames": 9}, {"duration": "0.5"}])
def test_a_stream_decodes_to_the_frames_of_its_file(tok_file, tiny_model, tmp_path, stated, part) -> None:
    data = tok_file.read_bytes() if stated else _unstated(tok_file.read_bytes())
    st = decode_video(tok_file, tmp_path / "file.y4m", model=tiny_model, **part)
    streamed = decode_video(_pipe(data), tmp_path / "pipe.y4m", model=tiny_model, **part)
    assert (tmp_path / "pipe.y4m").read_bytes() == (tmp_path / "file.y4m").read_bytes()
    assert (streamed.frames, streamed.first_frame) == (st.frames, st.first_frame)
    assert streamed.input == "stream"  # (a pipe's file object has no name)


def test_a_part_past_a_streams_end_and_what_a_stream_cannot_give(tok_file, tiny_model, linked_file, tmp_path) -> None:
    unstated = _unstated(tok_file.read_bytes())
    with pytest.raises(InputError, match=r"starts at 2 s \(frame 50\), after the end: the file has 30 frames"):
        decode_video(io.BytesIO(unstated), tmp_path / "late.y4m", model=tiny_model, start=2)
    assert not (tmp_path / "late.y4m").exists()
    with pytest.raises(OutputError, match="a stream of unknown length may hold more"):
        decode_video(io.BytesIO(unstated), tmp_path / "one.png", model=tiny_model)
    decode_video(io.BytesIO(unstated), tmp_path / "one.png", model=tiny_model, frames=1)
    with pytest.raises(ArgumentError, match="--salvage"):
        decode_video(io.BytesIO(unstated), tmp_path / "s.y4m", model=tiny_model, salvage=True)
    _, tok, _ = linked_file  # (its header announces audio: it comes after the video)
    with pytest.raises(ArgumentError, match=r"its audio comes after its video.*without it \(audio=False\)"):
        decode_video(io.BytesIO(tok.read_bytes()), tmp_path / "a.mkv")
    st = decode_video(io.BytesIO(tok.read_bytes()), tmp_path / "a.mkv", audio=False)
    assert st.frames == 45 and st.audio == "dropped (--no-audio)"
    st = decode_video(io.BytesIO(tok.read_bytes()), tmp_path / "a.y4m")
    assert st.audio == "dropped (.y4m holds no audio; decode to .mkv or .mp4 to keep it)"


def test_each_gop_is_decoded_once_it_has_come(tok_file, tiny_model, tmp_path) -> None:
    """A GOP goes through the network as soon as its chunk has come, not when the next one does
    (a batch was handed on only then: a GOP's time late, and never for the last one before
    damage): with the pipe held open after chunk 0, its 5 frames are written."""
    data = tok_file.read_bytes()
    with ContainerReader(tok_file) as reader:
        first_end = reader.entries[1].offset
    read_fd, write_fd = os.pipe()
    os.write(write_fd, data[:first_end])
    written: list[int] = []
    done: list[object] = []

    def decode() -> None:
        try:
            done.append(decode_video(io.FileIO(read_fd, "rb"), tmp_path / "out.y4m", model=tiny_model,
                                     progress=written.append))
        except BaseException as exc:  # (handed to the test)
            done.append(exc)
    worker = threading.Thread(target=decode, daemon=True)
    worker.start()
    deadline = time.monotonic() + 60
    while sum(written) < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        assert sum(written) == 5, written  # (chunk 0's frames, with chunk 1 not yet sent)
    finally:
        os.write(write_fd, data[first_end:])
        os.close(write_fd)
        worker.join(60)
    assert done and not isinstance(done[0], BaseException) and done[0].frames == 30


def test_a_whole_decode_checks_all_of_a_stream_and_a_part_stops_after_it(tok_file, tiny_model, tmp_path) -> None:
    data = tok_file.read_bytes()
    header = Header.unpack(data[:HEADER_SIZE], "t")
    lying = replace(header, frame_count=10).pack() + data[HEADER_SIZE:]  # (its chunks hold 30)
    with pytest.raises(FormatError, match="header says 10 frames, its chunks hold 30"):
        decode_video(io.BytesIO(lying), tmp_path / "whole.y4m", model=tiny_model)
    with ContainerReader(tok_file) as reader:
        cut = data[:reader.entries[3].offset + 10]  # (within chunk 3, frames 15-19)
    st = decode_video(io.BytesIO(cut), tmp_path / "part.y4m", model=tiny_model, frames=7)
    assert st.frames == 7  # (as head does: read no further than needed)
    with pytest.raises(InputError, match=r"frame 1250000000000\), after the end: the file has 30 frames"):
        decode_video(io.BytesIO(_unstated(data)), tmp_path / "far.y4m", model=tiny_model, start=5e10)


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "tokcodec", *args]


def _frames_in(data: bytes) -> int:
    return data.count(b"FRAME\n")


def test_a_live_round_trip_shows_frames_while_its_input_still_runs(tmp_path) -> None:
    """`producer | encode - -o - | decode - -o -`: the first decoded frames come while the
    producer still holds its pipe open (before, `decode -` copied all its input first, and
    `encode -o -` held each GOP's last bytes back until the next one); then, once it ends, the
    whole stream decodes as its file does."""
    clip = write_clip(tmp_path / "clip.y4m", smooth_clip(30, 48, 64))
    header, _, body = clip.read_bytes().partition(b"\n")
    frames = [b"FRAME\n" + f for f in body.split(b"FRAME\n")[1:]]
    env = dict(os.environ, TOKCODEC_NO_REEXEC="1")
    options = ["--model", "tiny", "--gop", "5", "-q"]
    encoder = subprocess.Popen(_cli("encode", "-", "-o", "-", *options), stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, env=env)
    decoder = subprocess.Popen(_cli("decode", "-", "-o", "-", "-q"), stdin=encoder.stdout, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env=env)
    encoder.stdout.close()
    out = bytearray()

    def player() -> None:
        for block in iter(lambda: decoder.stdout.read1(65536), b""):
            out.extend(block)
    reader = threading.Thread(target=player, daemon=True)
    reader.start()
    try:
        encoder.stdin.write(header + b"\n" + b"".join(frames[:20]))
        encoder.stdin.flush()
        deadline = time.monotonic() + 120
        while _frames_in(bytes(out)) < 5 and time.monotonic() < deadline and decoder.poll() is None:
            time.sleep(0.1)
        assert _frames_in(bytes(out)) >= 5, "no frame decoded while the input was still open"
        encoder.stdin.write(b"".join(frames[20:]))
        encoder.stdin.close()
        assert encoder.wait(timeout=240) == 0 and decoder.wait(timeout=240) == 0, decoder.stderr.read()
        reader.join(timeout=60)
    finally:
        encoder.kill()
        decoder.kill()
    subprocess.run(_cli("encode", str(clip), "-o", str(tmp_path / "f.tok"), *options), env=env, check=True,
                   timeout=300)
    whole = subprocess.run(_cli("decode", str(tmp_path / "f.tok"), "-o", "-", "-q"), env=env, check=True,
                           capture_output=True, timeout=300).stdout
    assert bytes(out) == whole and _frames_in(whole) == 30


def test_decode_copies_a_pipe_first_where_the_output_takes_what_comes_after_the_video(linked_file, tmp_path) -> None:
    """Stored audio into .mkv comes after the chunks: `decode -` copies such a pipe first (as
    before), and keeps it; into .y4m, which holds none, it decodes as it comes and says so."""
    _, tok, _ = linked_file
    env = dict(os.environ, TOKCODEC_NO_REEXEC="1", TMPDIR=str(tmp_path))
    for output, note in (("a.mkv", "aac copied"), ("a.y4m", "dropped (.y4m holds no audio")):
        res = subprocess.run(_cli("decode", "-", "-o", str(tmp_path / output), "--json"), input=tok.read_bytes(),
                             env=env, capture_output=True, timeout=300)
        assert res.returncode == 0, res.stderr
        stats = json.loads(res.stdout)
        assert stats["audio"].startswith(note) and stats["input"] == "stdin"  # (not the copy's temporary name)
    res = subprocess.run(_cli("decode", "-", "-o", str(tmp_path / "cut.y4m")), input=tok.read_bytes()[:-20],
                         env=env, capture_output=True, timeout=300)
    assert res.returncode == 1 and b"stdin: ends within the trailer (was the encode interrupted?)" in res.stderr
    assert not (tmp_path / "cut.y4m").exists()
