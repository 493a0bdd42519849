"""What a new user met and found wrong (a walk-through of the CLI, December 2026): each test is
one finding, fixed."""
from __future__ import annotations

import shutil
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import smooth_clip, write_clip
from tokcodec.cli.app import app
from tokcodec.codec.pipeline import compare_videos, decode_video, encode_video, file_info
from tokcodec.errors import InputError, OutputError
from tokcodec.io import read_frames

runner = CliRunner()


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return write_clip(tmp_path_factory.mktemp("review") / "clip.mkv", smooth_clip(9, 32, 48), Fraction(25))


@pytest.fixture(scope="module")
def tok(clip, tiny_model) -> Path:
    out = clip.with_suffix(".tok")
    encode_video(clip, out, model=tiny_model, gop=5)
    return out


def test_frames_must_be_at_least_one(clip, tmp_path, tiny_model) -> None:
    """--frames 0 encoded one frame with all the audio; a negative count one frame and no audio."""
    for command in ("encode", "tokens"):
        out = tmp_path / ("x.tok" if command == "encode" else "x.npy")
        res = runner.invoke(app, [command, str(clip), "-o", str(out), "--frames", "0", "--model", "tiny"])
        assert res.exit_code == 2 and not out.exists(), (command, res.output)
    for frames in (0, -3):
        with pytest.raises(ValueError, match="at least 1"):
            encode_video(clip, tmp_path / "y.tok", model=tiny_model, max_frames=frames)


def test_encode_refuses_a_video_name_and_its_own_input(clip, tmp_path, tiny_model) -> None:
    """`encode in.mp4 -o x.mp4` wrote a .tok named x.mp4; `-o` the input itself with -y replaced it."""
    for name in ("x.mp4", "x.MKV", "x.png", "x.npy"):
        with pytest.raises(OutputError, match="encode writes a .tok file"):
            encode_video(clip, tmp_path / name, model=tiny_model)
        assert not (tmp_path / name).exists()
    source = tmp_path / "clip.bin"  # a video under a name that is not a video's
    shutil.copy(clip, source)
    before = source.read_bytes()
    res = runner.invoke(app, ["encode", str(source), "-o", str(source), "-y", "--model", "tiny"])
    assert res.exit_code == 1 and "is the input" in res.output
    assert source.read_bytes() == before


def test_mp3_is_copied_into_mp4_under_its_codec_name(tmp_path, tiny_model) -> None:
    """MP3 in an .mp4 was re-encoded to Opus, and named by its decoder (mp3float)."""
    from test_audio import make_av_clip, streams_of

    src = make_av_clip(tmp_path / "mp3.mp4", acodec="mp3", sample_rate=44100)
    st = encode_video(src, tmp_path / "a.tok", model=tiny_model)
    assert st.audio.startswith("mp3 ") and file_info(tmp_path / "a.tok").audio.codec == "mp3"
    d = decode_video(tmp_path / "a.tok", tmp_path / "back.mp4", model=tiny_model)
    assert d.audio == "mp3 copied"
    assert streams_of(tmp_path / "back.mp4")["audio"][0].startswith("mp3")


def test_compare_checks_the_reference_first_and_says_what_it_compared(clip, tok, tmp_path) -> None:
    other = write_clip(tmp_path / "other.mkv", smooth_clip(9, 48, 64), Fraction(25))
    res = runner.invoke(app, ["decode", str(tok), "-o", str(tmp_path / "o.mkv"), "--compare", str(other),
                              "--model", "tiny"])
    assert res.exit_code == 1 and "its frames are 64x48, the decoded ones 48x32" in res.output
    assert not (tmp_path / "o.mkv").exists()  # refused before decoding
    res = runner.invoke(app, ["decode", str(tok), "-o", str(tmp_path / "p.mkv"), "--frames", "4",
                              "--compare", str(clip), "--model", "tiny"])
    assert res.exit_code == 0, res.output
    assert "the reference has more frames than the decode; compared the first 4 of the reference" in res.output
    assert compare_videos(clip, tmp_path / "p.mkv")["longer"] == "reference"
    assert compare_videos(tmp_path / "p.mkv", clip)["longer"] == "decoded"
    decode_video(tok, tmp_path / "all.mkv")
    whole = compare_videos(clip, tmp_path / "all.mkv")
    assert whole["longer"] is None and whole["frames"] == 9


def test_a_directory_output_holds_one_decode(tok, tmp_path) -> None:
    """decode -o DIR -y over a longer earlier decode left that decode's last frames behind."""
    out = tmp_path / "frames"
    decode_video(tok, out)
    assert len(list(out.glob("frame_*.png"))) == 9
    (out / "notes.txt").write_text("mine")
    decode_video(tok, out, overwrite=True, frames=4)
    assert sorted(p.name for p in out.iterdir()) == [f"frame_{i:06d}.png" for i in range(4)] + ["notes.txt"]


def test_an_odd_size_mp4_says_it_is_4_4_4(tmp_path, tiny_model) -> None:
    odd = write_clip(tmp_path / "odd.y4m", smooth_clip(5, 33, 47), Fraction(25))
    encode_video(odd, tmp_path / "odd.tok", model=tiny_model)
    st = decode_video(tmp_path / "odd.tok", tmp_path / "odd.mp4")
    assert any("4:4:4" in w and "47x33" in w for w in st.warnings)
    assert not decode_video(tmp_path / "odd.tok", tmp_path / "odd.mkv").warnings
    assert read_frames(tmp_path / "odd.mp4").shape == (5, 33, 47, 3)


def test_tokens_takes_rdo_and_refine_as_batch_tokens_does(clip, tok, tmp_path) -> None:
    res = runner.invoke(app, ["tokens", str(clip), "-o", str(tmp_path / "a.npy"), "--model", "tiny",
                              "--rdo", "0", "--passes", "0", "--frames", "5"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["tokens", str(tok), "-o", str(tmp_path / "b.npy"), "--rdo", "0.5"])
    assert res.exit_code == 2 and "--rdo applies only to a video, image or image sequence input" in res.output
    res = runner.invoke(app, ["tokens", str(tok), "-o", str(tmp_path / "c.npy"), "--split", "0"])
    assert res.exit_code == 2


def test_paths_that_are_not_files_are_named_as_such(tok, tmp_path) -> None:
    res = runner.invoke(app, ["verify", str(tmp_path)])  # a folder: the .tok files under it, here none
    assert res.exit_code == 2 and "a folder without .tok files" in res.output and res.output.count(str(tmp_path)) == 1
    (tmp_path / "a" / "b").mkdir(parents=True)
    for rel in ("a/x.tok", "a/b/y.tok"):
        (tmp_path / rel).write_bytes(tok.read_bytes())
    (tmp_path / "a" / "b" / "z.tok").write_bytes(tok.read_bytes()[:-40])  # cut short
    res = runner.invoke(app, ["verify", str(tmp_path)])
    lines = res.output.strip().splitlines()
    assert res.exit_code == 1 and [line.split(":")[0] for line in lines] == [
        str(tmp_path / rel) for rel in ("a/b/y.tok", "a/b/z.tok", "a/x.tok")]
    assert ": OK" in lines[0] and ": BAD" in lines[1]
    res = runner.invoke(app, ["decode", str(tmp_path), "-o", str(tmp_path / "x.mkv")])
    assert res.exit_code == 1 and "is a directory" in res.output
    res = runner.invoke(app, ["decode", str(tok), "-o", str(tok / "x.mkv")])
    assert res.exit_code == 1 and "is a file, not a directory" in res.output


def test_batch_with_nothing_to_do_is_an_error_and_leaves_no_folder(tmp_path) -> None:
    from tokcodec.batch.run import batch_decode

    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "notes.txt").write_text("no .tok here")
    with pytest.raises(InputError, match="no .tok files found"):
        batch_decode(tmp_path / "in", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_batch_decode_salvages_damaged_files(tok, tmp_path) -> None:
    from test_hardening import damaged

    from tokcodec.batch.run import batch_decode

    (tmp_path / "in").mkdir()
    damaged(tok, tmp_path / "in" / "bad.mkv.tok", flip_chunk=1)
    assert batch_decode(tmp_path / "in", tmp_path / "plain").failed == 1
    summary = batch_decode(tmp_path / "in", tmp_path / "out", salvage=True)
    assert summary.failed == 0
    assert len(read_frames(tmp_path / "out" / "bad.mkv")) == 9
    records = [line for line in (tmp_path / "out" / "manifest.jsonl").read_text().splitlines() if "bad.mkv" in line]
    assert '"lost_frames": 4' in records[-1]  # the second GOP: frames 5-8
    assert any("damaged" in w for w in summary.results[0].warnings)  # what salvage found, as decode says
    # a file cut short (an interrupted copy: no index, no trailer) too
    damaged(tok, tmp_path / "in" / "bad.mkv.tok", keep=0.6)
    summary = batch_decode(tmp_path / "in", tmp_path / "cut", salvage=True)
    assert summary.failed == 0 and summary.results[0].lost_frames >= 4


def test_batch_takes_part_of_each_video_and_images_whole(clip, tmp_path) -> None:
    """batch encode/tokens --ss, -t, --frames: the part of each video, as encode's options; an image
    (which refuses --ss alone) is taken whole."""
    from tokcodec.batch.run import batch_encode, batch_tokens
    from tokcodec.tokens import read_token_file, tokenize

    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(clip, src / "v.mkv")
    image = smooth_clip(1, 32, 48, seed=3)[0]
    from tokcodec.io import FrameWriter
    with FrameWriter(src / "still.png", 48, 32, Fraction(25)) as w:
        w.write(image)
    tok = batch_tokens(src, tmp_path / "tok", model="tiny", gop=5, passes=0, start="0.2", max_frames=3)
    assert tok.failed == 0 and tok.done == 2
    got = read_token_file(tmp_path / "tok" / "v.mkv.safetensors")
    want = tokenize(clip, model="tiny", gop=5, passes=0, start=0.2, max_frames=3)
    assert list(got.gop_frames) == list(want.gop_frames) == [3]
    np.testing.assert_array_equal(got.tokens, want.tokens)
    assert list(read_token_file(tmp_path / "tok" / "still.png.safetensors").gop_frames) == [1]
    enc = batch_encode(src, tmp_path / "enc", model="tiny", gop=5, passes=0, duration=0.2)
    assert enc.failed == 0
    assert file_info(tmp_path / "enc" / "v.mkv.tok").frames == 5 and file_info(tmp_path / "enc" / "still.png.tok").frames == 1
    late = batch_encode(src, tmp_path / "late", model="tiny", passes=0, start=60)
    assert late.failed == 1 and "after the end" in late.failures[0].error
    with pytest.raises(ValueError, match="more than 0"):
        batch_encode(src, tmp_path / "bad", model="tiny", duration=0)


def _vfr_clip(path: Path) -> Path:
    """20 frames: 10 at 30 fps, then 10 at 10 fps (a phone's variable rate), in a 1 ms time base."""
    import av

    pictures = smooth_clip(20, 32, 48, seed=4)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("ffv1", rate=30)
        stream.width, stream.height, stream.pix_fmt = 48, 32, "bgr0"
        stream.time_base = Fraction(1, 1000)
        times = [round(1000 * i / 30) for i in range(10)] + [333 + 100 * i for i in range(1, 11)]
        for picture, t in zip(pictures, times):
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
            frame.pts, frame.time_base = t, Fraction(1, 1000)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def test_variable_rate_and_missed_targets_are_warned_in_the_stats(clip, tmp_path, tiny_model) -> None:
    """A variable-rate input stored at its average rate moved its frames 0.18 s against its audio
    without a word; a missed target rate was warned by the CLI only, not in EncodeStats."""
    from tokcodec.io import timing_drift

    vfr = _vfr_clip(tmp_path / "vfr.mkv")
    st = encode_video(vfr, tmp_path / "v.tok", model=tiny_model, passes=0)
    assert st.frames == 20
    warned = [w for w in st.warnings if "untrained" not in w]  # (the tiny test preset's, said too)
    assert len(warned) == 1 and "variable frame rate" in warned[0], st.warnings
    assert timing_drift(clip, Fraction(25)) < 0.002
    assert [w for w in encode_video(clip, tmp_path / "c.tok", model=tiny_model, passes=0).warnings
            if "untrained" not in w] == []
    res = runner.invoke(app, ["encode", str(vfr), "-o", str(tmp_path / "w.tok"), "--model", "tiny", "--passes", "0"])
    assert res.exit_code == 0 and "warning: the input's frame times are not those of one rate" in res.output
    missed = encode_video(clip, tmp_path / "m.tok", model="default", passes=0, bpp=0.0005)
    assert any("off the target" in w for w in missed.warnings)


def test_token_value_errors_name_the_file_and_dir_lists_the_api(tmp_path) -> None:
    import tokcodec
    from tokcodec.tokens import detokenize

    bad = tmp_path / "bad.npy"
    np.save(bad, np.full((2, 4, 6), 1 << 18, np.int32))
    with pytest.raises(InputError, match=r"bad\.npy: tokens range over"):
        detokenize(bad, tmp_path / "x.mkv", model="tiny")
    assert {"encode_video", "decode_video", "batch_encode", "tokenize"} <= set(dir(tokcodec))
