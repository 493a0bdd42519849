"""A broadcast engineer's walk-through, fixed: decoded video carries the source's colour tags
(HDR's BT.2020 and PQ were labelled BT.709), .mov output is converted in the matrix it is tagged
with, and audio re-encoded to Opus keeps its channels (5.1 became stereo)."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from conftest import smooth_clip
from tokcodec.audio_choice import AudioChoice
from tokcodec.codec.container import open_tok
from tokcodec.codec.pipeline import decode_video, encode_video
from tokcodec.io import iter_frames

BARS = [(191, 191, 191), (191, 191, 0), (0, 191, 191), (0, 191, 0), (191, 0, 191), (191, 0, 0), (0, 0, 191)]


def _bars(frames: int = 9, height: int = 48, width: int = 112) -> np.ndarray:
    """75% colour bars, 16 pixels each."""
    row = np.concatenate([np.full((height, width // len(BARS), 3), c, np.uint8) for c in BARS], 1)
    return np.repeat(row[None], frames, 0)


def _tagged_clip(path: Path, primaries: int, transfer: int, matrix: int, audio_layout: str | None = None) -> Path:
    """Colour bars as H.264 4:2:0 converted with ``matrix`` and tagged with these colour enums,
    with PCM audio of ``audio_layout`` (a tone in the first channel, the others their own)."""
    with av.open(str(path), "w") as out:
        v = out.add_stream("libx264", rate=25)
        v.width, v.height, v.pix_fmt = 112, 48, "yuv420p"
        ctx = v.codec_context
        ctx.color_primaries, ctx.color_trc, ctx.colorspace, ctx.color_range = primaries, transfer, matrix, 1
        v.options = {"qp": "0"}
        a = None
        if audio_layout is not None:
            a = out.add_stream("pcm_s16le", rate=48000, layout=audio_layout)
        for picture in _bars():
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24").reformat(format="yuv420p",
                                                                                 dst_colorspace=matrix)
            for packet in v.encode(frame):
                out.mux(packet)
        if a is not None:
            channels = len(av.AudioLayout(audio_layout).channels)
            t = np.arange(48000 * 9 // 25)
            tones = np.stack([np.sin(2 * np.pi * (220 + 110 * c) * t / 48000) * 0.2 for c in range(channels)])
            samples = (tones.T.reshape(1, -1) * 32767).astype(np.int16)
            af = av.AudioFrame.from_ndarray(samples, format="s16", layout=audio_layout)
            af.sample_rate, af.pts = 48000, 0
            for packet in a.encode(af):
                out.mux(packet)
        for stream in (v, a) if a is not None else (v,):
            for packet in stream.encode():
                out.mux(packet)
    return path


def _flat_clip(path: Path, codec: str, rate: Fraction | int, width: int, height: int, frames: int,
               step: int) -> Path:
    """A clip of flat grey frames, ``step`` code values brighter each, in ``codec`` at ``rate``."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(np.full((height, width, 3), step * i, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def _tags(path: Path) -> tuple[int, int, int]:
    with av.open(str(path)) as c:
        ctx = c.streams.video[0].codec_context
        return ctx.color_primaries, ctx.color_trc, ctx.colorspace


@pytest.mark.parametrize("tags", [(9, 16, 9), (9, 18, 9), (6, 6, 6)], ids=["pq", "hlg", "bt601"])
def test_decoded_video_keeps_the_sources_colour_tags(tmp_path, tiny_model, tags):
    """The decoded RGB keeps the source's primaries and transfer (HDR's BT.2020 and PQ/HLG); the
    outputs said BT.709 (.mp4) or nothing (.mkv), so players showed HDR washed out."""
    clip = _tagged_clip(tmp_path / "src.mp4", *tags)
    encode_video(clip, tmp_path / "a.tok", model=tiny_model, passes=0)
    decode_video(tmp_path / "a.tok", tmp_path / "a.mp4", model=tiny_model)
    decode_video(tmp_path / "a.tok", tmp_path / "a.mkv", model=tiny_model)
    assert _tags(tmp_path / "a.mp4") == tags  # (the source's own matrix: swscale has all three)
    assert _tags(tmp_path / "a.mkv") == (tags[0], tags[1], 0)  # RGB


def test_an_untagged_source_decodes_tagged_bt709_as_before(tmp_path, tiny_model):
    clip = _tagged_clip(tmp_path / "src.mp4", 2, 2, 2)
    encode_video(clip, tmp_path / "a.tok", model=tiny_model, passes=0)
    decode_video(tmp_path / "a.tok", tmp_path / "a.mp4", model=tiny_model)
    assert _tags(tmp_path / "a.mp4") == (1, 1, 1)


@pytest.mark.parametrize("suffix", [".mp4", ".mov"])
def test_h264_outputs_are_converted_in_the_matrix_they_state(tmp_path, suffix):
    """.mov was converted to YUV in swscale's default (BT.601) matrix but tagged BT.709: its
    colours came back shifted (the 75% green bar 191 -> 159 in green, red 191 -> 207)."""
    from tokcodec.io import ColorInfo, FrameWriter

    bars = _bars()
    out = tmp_path / f"bars{suffix}"
    with FrameWriter(out, 112, 48, Fraction(25), ColorInfo(1, 1, 1, 1)) as writer:
        for picture in bars:
            writer.write(picture)
    back = np.stack(list(iter_frames(out)))[:, 8:40]
    for i, colour in enumerate(BARS):
        mean = back[:, :, 16 * i + 4:16 * i + 12].reshape(-1, 3).mean(0)
        assert np.abs(mean - colour).max() <= 4, (suffix, colour, mean)


@pytest.mark.parametrize("layout, channels", [("5.1", 6), ("mono", 1), ("quad", 4)])
def test_audio_reencoded_to_opus_keeps_its_channels(tmp_path, tiny_model, layout, channels):
    clip = _tagged_clip(tmp_path / "src.mkv", 1, 1, 1, audio_layout=layout)
    encode_video(clip, tmp_path / "a.tok", model=tiny_model, passes=0, audio=AudioChoice("copy"))  # (PCM: .mp4 holds no PCM)
    st = decode_video(tmp_path / "a.tok", tmp_path / "a.mp4", model=tiny_model)
    assert st.audio == f"re-encoded to Opus ({layout})"
    with av.open(str(tmp_path / "a.mp4")) as c:
        ctx = c.streams.audio[0].codec_context
        assert (ctx.name, ctx.channels) == ("opus", channels)
        decoded = np.concatenate([f.to_ndarray() for f in c.decode(audio=0)], 1)
    assert np.sqrt((decoded.reshape(channels, -1) ** 2).mean(1)).min() > 0.05  # every channel sounds


@pytest.mark.parametrize("rate, stored", [(Fraction(60000, 1001), Fraction(60000, 1001)),
                                          (Fraction(30000, 1001), Fraction(30000, 1001)),
                                          (Fraction(1234, 100), Fraction(1234, 100))])
def test_matroska_keeps_broadcast_rates(tmp_path, rate, stored):
    """Matroska's millisecond timestamps made 59.94 fps read as 19001/317: a rate within 10 ppm
    of a standard one is taken as it; other rates stay as they are."""
    from tokcodec.io import probe

    assert probe(_flat_clip(tmp_path / "clip.mkv", "ffv1", rate, 32, 32, 17, 10)).frame_rate == stored


@pytest.fixture
def sequence(tmp_path) -> tuple[Path, np.ndarray]:
    """12 distinct frames as img_1.png ... img_12.png (natural order differs from sorted names)."""
    from tokcodec.io import FrameWriter

    clip = smooth_clip(12, 48, 64)
    d = tmp_path / "seq"
    d.mkdir()
    for i, frame in enumerate(clip):
        with FrameWriter(d / f"img_{i + 1}.png", 64, 48, Fraction(25)) as writer:
            writer.write(frame)
    (d / "notes.txt").write_text("not an image")
    return d, clip


def test_an_image_sequence_is_read_as_one_video(sequence):
    from tokcodec.io import probe

    d, clip = sequence
    info = probe(d)
    assert (info.frame_count, info.frame_rate, info.is_sequence, info.is_image) == (12, 25, True, False)
    assert np.array_equal(np.stack(list(iter_frames(d))), clip)  # img_2 before img_10
    assert np.array_equal(np.stack(list(iter_frames(d, 3, skip=5))), clip[5:8])


def test_an_image_sequence_encodes_decodes_and_compares(sequence, tmp_path, tiny_model):
    from tokcodec.codec.pipeline import compare_videos

    d, clip = sequence
    st = encode_video(d, tmp_path / "a.tok", model=tiny_model, passes=0, fps="24000/1001")
    assert st.frames == 12 and st.audio == "none"
    with open_tok(tmp_path / "a.tok") as reader:
        assert reader.header.frame_rate == Fraction(24000, 1001)
    decode_video(tmp_path / "a.tok", tmp_path / "out", model=tiny_model)  # a directory of PNGs
    assert encode_video(tmp_path / "out", tmp_path / "b.tok", model=tiny_model, passes=0).frames == 12
    assert compare_videos(d, tmp_path / "out")["frames"] == 12
    part = encode_video(d, tmp_path / "c.tok", model=tiny_model, passes=0, start=0.2)  # frame 5 on, at 25 fps
    assert part.frames == 7


def test_image_sequence_errors(sequence, tmp_path, tiny_model):
    from tokcodec.errors import ArgumentError, InputError
    from tokcodec.io import FrameWriter

    d, clip = sequence
    with FrameWriter(d / "img_13.png", 32, 32, Fraction(25)) as writer:
        writer.write(np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(InputError, match="img_13.png: 32x32, where the sequence's first image is 64x48"):
        list(iter_frames(d))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="is a directory without images"):
        encode_video(tmp_path / "empty", tmp_path / "e.tok", model=tiny_model)
    video = _tagged_clip(tmp_path / "v.mp4", 1, 1, 1)
    with pytest.raises(ArgumentError, match="--fps sets the rate of an image sequence"):
        encode_video(video, tmp_path / "v.tok", model=tiny_model, fps=30)


def test_a_decoded_directory_is_read_as_its_own_frames(sequence, tmp_path, tiny_model):
    """A decode with -y leaves other files in its directory: a stray image there was read as the
    first frame, and --compare compared every frame with the one before."""
    from tokcodec.codec.pipeline import compare_videos
    from tokcodec.io import FrameWriter

    d, clip = sequence
    encode_video(d, tmp_path / "a.tok", model=tiny_model, passes=0)
    out = tmp_path / "out"
    decode_video(tmp_path / "a.tok", out, model=tiny_model)
    with FrameWriter(out / "cover.png", 64, 48, Fraction(25)) as writer:
        writer.write(np.zeros((48, 64, 3), np.uint8))
    decode_video(tmp_path / "a.tok", out, model=tiny_model, overwrite=True)
    decoded = np.stack(list(iter_frames(out)))
    assert decoded.shape[0] == 12
    result = compare_videos(d, out)
    assert result["frames"] == 12 and result["longer"] is None


def test_image_names_sort_naturally_and_stably(tmp_path):
    from tokcodec.io import FrameWriter, image_sequence

    names = ["a10.png", "a2.png", "1\u00b22.png", "A1.png", "a1.png", "01.png", "1.png"]
    for name in names:
        with FrameWriter(tmp_path / name, 8, 8, Fraction(25)) as writer:
            writer.write(np.zeros((8, 8, 3), np.uint8))
    order = [p.name for p in image_sequence(tmp_path)]
    assert order == ["01.png", "1.png", "1\u00b22.png", "A1.png", "a1.png", "a2.png", "a10.png"]


def test_a_rate_near_but_not_at_a_standard_one_is_kept(tmp_path):
    """29.99 fps is not 30: stored as 30 it would drift 1.2 s an hour against its audio."""
    from tokcodec.io import probe

    path = _flat_clip(tmp_path / "clip.mp4", "libx264", Fraction(2999, 100), 32, 32, 10, 9)
    assert probe(path).frame_rate == Fraction(2999, 100)


def test_deinterlace_on_leaves_images_and_tiny_frames_alone(sequence, tmp_path, tiny_model):
    """--deinterlace on said "deinterlaced" for an image sequence it did not touch, would have
    run the deinterlacer on a still image, and failed on frames under 4 lines."""
    d, clip = sequence
    st = encode_video(d, tmp_path / "a.tok", model=tiny_model, passes=0, deinterlace="on")
    assert not st.deinterlaced
    image = d / "img_1.png"
    assert np.array_equal(next(iter_frames(image, deinterlace="on")), clip[0])
    flat = _flat_clip(tmp_path / "flat.mp4", "libx264", 25, 16, 2, 5, 40)
    assert len(list(iter_frames(flat, deinterlace="on"))) == 5


def test_a_sequence_says_what_its_names_leave_open(tmp_path, tiny_model):
    """A VFX walk-through: a missing frame number was skipped without a word (the frames after
    it played early), and two series in one folder (beauty and matte passes) were joined."""
    from tokcodec.io import FrameWriter, sequence_warnings

    d = tmp_path / "shot"
    d.mkdir()
    for n in [1, 2, 3, 5, 6, 9]:
        with FrameWriter(d / f"shot_{n:04d}.png", 16, 16, Fraction(25)) as writer:
            writer.write(np.full((16, 16, 3), 20 * n, np.uint8))
    warnings = sequence_warnings(d)
    assert warnings == [f"{d}: 3 frame numbers missing from shot_#.png (4, 7-8): the frames after a gap play "
                        "early (fill the gaps, e.g. with copies of the frame before)"]
    with FrameWriter(d / "matte_0001.png", 16, 16, Fraction(25)) as writer:
        writer.write(np.zeros((16, 16, 3), np.uint8))
    warnings = sequence_warnings(d)
    assert "holds 2 numbered series" in warnings[0]
    st = encode_video(d, tmp_path / "a.tok", model=tiny_model, passes=0)
    assert any("holds 2 numbered series" in w for w in st.warnings)


def test_an_alpha_channel_is_said_to_be_dropped(tmp_path, tiny_model):
    path = tmp_path / "rgba.png"
    with av.open(str(path), "w", format="image2", options={"update": "1"}) as out:
        stream = out.add_stream("png", rate=1)
        stream.width, stream.height, stream.pix_fmt = 16, 16, "rgba"
        for packet in stream.encode(av.VideoFrame.from_ndarray(np.full((16, 16, 4), 128, np.uint8), format="rgba")):
            out.mux(packet)
    st = encode_video(path, tmp_path / "a.tok", model=tiny_model, passes=0)
    assert any("alpha channel" in w for w in st.warnings)


def test_a_pattern_name_hints_at_the_directory(tmp_path):
    from tokcodec.errors import InputError

    with pytest.raises(InputError, match="no such file \\(an image sequence: give its directory\\)"):
        next(iter_frames(tmp_path / "shot_%04d.png"))


@pytest.mark.parametrize("fps, stored", [("23.976", Fraction(24000, 1001)), ("29.97", Fraction(30000, 1001)),
                                         ("24", Fraction(24)), ("12.5", Fraction(25, 2))])
def test_fps_takes_the_rates_editing_tools_expect(sequence, tmp_path, tiny_model, fps, stored):
    d, _ = sequence
    encode_video(d, tmp_path / "a.tok", model=tiny_model, passes=0, fps=fps, max_frames=1)
    with open_tok(tmp_path / "a.tok") as reader:
        assert reader.header.frame_rate == stored
