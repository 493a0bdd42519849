"""What a video engineer with an archive of every container met (December 2026): inputs named,
scanned or probed by rules meant for outputs or for a short list of names. An animated PNG named
.png was stored at 25 fps; DPX, EXR, TGA stills were one-frame videos (refusing --fps) and their
sequences "a directory without images"; `batch` left .vob and .dv out; the bench read a DV file
at 60000 fps; a JPEG XL still crashed; `detokenize --compare` checked its reference after the
decode. Each test is one finding, fixed."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import smooth_clip, write_clip
from test_archive_review import ffmpeg
from tokcodec.cli import app
from tokcodec.codec.pipeline import encode_video
from tokcodec.errors import InputError, OutputError
from tokcodec.io import _video_stream, image_sequence, media_files, probe

runner = CliRunner()


def test_an_animated_png_named_png_keeps_its_rate(tmp_path) -> None:
    """APNG's usual name is .png: taken for a still by its name, 20 frames at 10 fps were stored
    at 25 fps (0.8 s for 2 s), with no word."""
    clip = tmp_path / "animated.png"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=48x32:rate=10", "-frames:v", "6", "-f", "apng", str(clip))
    info = probe(clip)
    assert not info.is_image and info.frame_rate == 10
    still = tmp_path / "still.png"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=48x32:rate=10", "-frames:v", "1", str(still))
    assert probe(still).is_image


@pytest.mark.parametrize("suffix", [".dpx", ".tga", ".ppm"])
def test_film_and_vfx_stills_are_images_and_their_folders_sequences(tmp_path, tiny_model, suffix) -> None:
    folder = tmp_path / "seq"
    folder.mkdir()
    for k in range(3):
        ffmpeg("-f", "lavfi", "-i", f"color=c=0x{40 * k + 40:02x}8040:size=48x32", "-frames:v", "1",
                str(folder / f"f_{k + 1:04d}{suffix}"))
    assert probe(folder / f"f_0001{suffix}").is_image        # (--fps is for stills: it was refused)
    assert [p.name for p in image_sequence(folder)] == [f"f_{k:04d}{suffix}" for k in (1, 2, 3)]
    st = encode_video(folder, tmp_path / "s.tok", model=tiny_model, passes=0, fps=24)
    assert st.frames == 3


def test_batch_finds_archive_videos_and_encode_keeps_their_names(tmp_path) -> None:
    for name in ("dvd.vob", "cam.dv", "win.asf", "lib.nut", "still.tga", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    found = {p.name for p in media_files([tmp_path])}
    assert found == {"dvd.vob", "cam.dv", "win.asf", "lib.nut", "still.tga"}
    clip = write_clip(tmp_path / "clip.mkv", smooth_clip(2, 32, 48))
    for name in ("out.vob", "out.dv"):  # (a .tok written under a video's name)
        res = runner.invoke(app, ["encode", str(clip), "-o", str(tmp_path / name)])
        assert res.exit_code != 0 and not (tmp_path / name).exists() and name in res.output


def test_a_still_this_ffmpeg_cannot_decode_is_said_so() -> None:
    """A JPEG XL still (no decoder in this FFmpeg build): "unexpected AttributeError"."""
    stream = SimpleNamespace(disposition=0, codec_context=None)
    container = SimpleNamespace(streams=SimpleNamespace(video=[stream]), format=SimpleNamespace(name="jpegxl_pipe"))
    with pytest.raises(InputError, match="no decoder for its pictures"):
        _video_stream(container, Path("still.jxl"))


def test_the_bench_reads_a_dv_file_at_its_rate(tmp_path) -> None:
    from tokcodec.bench.reference import read_rgb_frames

    clip = tmp_path / "cam.dv"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=720x576:rate=25", "-frames:v", "3", "-target", "pal-dv", str(clip))
    frames, rate = read_rgb_frames(clip)
    assert rate == probe(clip).frame_rate == 25 and len(frames) == 3


def test_detokenize_checks_its_reference_first(tmp_path, tiny_model) -> None:
    clip = write_clip(tmp_path / "clip.mkv", smooth_clip(5, 32, 48))
    res = runner.invoke(app, ["tokens", str(clip), "-o", str(tmp_path / "t.npy"), "--model", "tiny"])
    assert res.exit_code == 0, res.output
    out = tmp_path / "d.mkv"
    res = runner.invoke(app, ["detokenize", str(tmp_path / "t.npy"), "-o", str(out), "--model", "tiny",
                              "--compare", str(tmp_path / "missing.avi")])
    assert res.exit_code == 1 and "--compare" in res.output and "no such file" in res.output
    assert not out.exists()                                  # (it decoded first, then failed)
    small = write_clip(tmp_path / "small.mkv", smooth_clip(5, 16, 16))
    res = runner.invoke(app, ["tokens", str(clip), "-o", str(tmp_path / "t.safetensors"), "--model", "tiny"])
    assert res.exit_code == 0, res.output                   # (it records the size; a bare .npy does not)
    res = runner.invoke(app, ["detokenize", str(tmp_path / "t.safetensors"), "-o", str(out), "--model", "tiny",
                              "--compare", str(small)])
    assert res.exit_code == 1 and "its frames are 16x16" in res.output and not out.exists()


def test_wrong_kinds_of_input_name_the_right_command(tmp_path, tiny_model) -> None:
    clip = write_clip(tmp_path / "clip.mkv", smooth_clip(1, 32, 48))
    res = runner.invoke(app, ["decode", str(clip), "-o", str(tmp_path / "d.mkv")])
    assert res.exit_code != 0 and "tokcodec encode" in res.output
    np.save(tmp_path / "t.npy", np.zeros((1, 4, 6), np.int32))
    res = runner.invoke(app, ["tokens", str(tmp_path / "t.npy"), "-o", str(tmp_path / "u.npy")])
    assert res.exit_code != 0 and "detokenize" in res.output
    encode_video(clip, tmp_path / "one.tok", model=tiny_model, passes=0)
    res = runner.invoke(app, ["info", str(tmp_path / "one.tok")])
    assert "1 frame at" in res.output and "1 frames" not in res.output


def test_output_errors_still_refuse_unknown_output_kinds(tmp_path) -> None:
    """(The input lists grew; what decode writes did not: a .dpx output is still refused.)"""
    from tokcodec.io import output_kind

    with pytest.raises(OutputError, match="unknown output format"):
        output_kind(tmp_path / "x.dpx")


def test_an_opaque_gif_is_not_warned_of_an_alpha_channel(tmp_path, tiny_model) -> None:
    """FFmpeg decodes every GIF as bgra: each one was warned "the input's alpha channel
    (transparency, bgra) is not kept". A frame that uses its alpha still is."""
    gif = tmp_path / "anim.gif"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=48x32:rate=10", "-frames:v", "4", str(gif))
    st = encode_video(gif, tmp_path / "g.tok", model=tiny_model, passes=0)
    assert st.frames == 4 and not any("alpha" in w for w in st.warnings)
    see_through = tmp_path / "alpha.mov"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=48x32,format=rgba,geq=r='r(X,Y)':a='if(lt(X,10),0,255)'",
            "-frames:v", "2", "-c:v", "png", str(see_through))
    st = encode_video(see_through, tmp_path / "a.tok", model=tiny_model, passes=0)
    assert any("alpha channel (transparency, rgba)" in w for w in st.warnings)


def test_an_animated_webp_without_its_name_is_still_explained(tmp_path) -> None:
    """From standard input (a spooled file without the .webp name) it read a bare "invalid frame
    size 0x0"; the hint now follows FFmpeg's demuxer."""
    anim = tmp_path / "anim.webp"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=48x32:rate=10", "-frames:v", "3", "-loop", "0", str(anim))
    nameless = tmp_path / "spooled"
    nameless.write_bytes(anim.read_bytes())
    with pytest.raises(InputError, match="an animated WebP"):
        probe(nameless)


def test_a_stream_of_pictures_in_an_image_pipe_is_a_video(tmp_path) -> None:
    """`ffmpeg -f image2pipe -c:v ppm -` writes a video as a stream of PPM pictures: read through
    FFmpeg's ppm_pipe it is no still (the review of the change above found it taken for one:
    "an image holds one frame: --ss and -t are for videos")."""
    stream = tmp_path / "stream.ppm"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=48x32:rate=10", "-frames:v", "5", "-f", "image2pipe",
            "-c:v", "ppm", str(stream))
    info = probe(stream)
    assert not info.is_image and info.frame_count == 5


def test_a_video_whose_later_frames_are_transparent_is_warned(tmp_path) -> None:
    from tokcodec.io import not_kept

    clip = tmp_path / "fade.mov"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=48x32:rate=10,format=rgba,geq=r='r(X,Y)':g='g(X,Y)':b='b(X,Y)':"
            "a='if(gte(N,1),0,255)'", "-frames:v", "3", "-c:v", "png", str(clip))
    assert any("alpha channel" in w for w in not_kept(probe(clip)))
