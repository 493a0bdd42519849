"""How encode stores a source's audio: integer PCM packed as FLAC, sample for sample (a camera's
PCM, copied as it was, made a .tok several times the size of its tokens), Opus where asked
(``--audio-bitrate``), everything else copied."""
from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from typer.testing import CliRunner

from test_archive_review import ffmpeg
from test_audio import streams_of
from tokcodec.audio_choice import AudioChoice
from tokcodec.cli import app
from tokcodec.codec.pipeline import decode_video, encode_video, file_info
from tokcodec.errors import ArgumentError

runner = CliRunner()
FRAMES, FPS = 10, 25
# source codec -> (container, sample format written, bits used, layout, sample rate)
PCM = {
    "pcm_s16le": (".mkv", "s16", 16, "stereo", 48000),
    "pcm_s24le": (".mkv", "s32", 24, "stereo", 48000),
    "pcm_u8": (".mkv", "u8", 8, "mono", 11025),
    "pcm_s16be": (".mov", "s16", 16, "mono", 44100),
    "pcm_s32le": (".mkv", "s32", 32, "stereo", 48000),
}


def _pcm_clip(path: Path, codec: str, audio_start: float = 0.2, layout: str | None = None) -> Path:
    """FRAMES frames of video with ``codec`` audio from ``audio_start`` s to the end, in one
    packet: a tone plus noise in every bit the format has (so a coder that dropped low bits
    would show); ``layout`` instead of the codec's own in PCM."""
    _, fmt, bits, own_layout, rate = PCM[codec]
    layout = layout or own_layout
    channels = len(av.AudioLayout(layout).channels)
    rng = np.random.default_rng(len(codec))
    n = round((FRAMES / FPS - audio_start) * rate)
    tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(n) / rate)
    wave = np.clip(tone[None] + rng.normal(0, 0.01, (channels, n)), -1, 1)
    if fmt == "u8":
        samples = np.clip(np.round(wave * 127 + 128), 0, 255).astype(np.uint8)
    else:
        top = 2 ** (bits - 1) - 1
        samples = np.round(wave * top).astype(np.int64) << (32 - bits if fmt == "s32" else 0)
        samples = samples.astype(np.int32 if fmt == "s32" else np.int16)
    with av.open(str(path), "w") as out:
        video = out.add_stream("ffv1" if path.suffix == ".mkv" else "libx264", rate=FPS)
        video.width, video.height, video.pix_fmt = 32, 32, "bgr0" if path.suffix == ".mkv" else "yuv420p"
        audio = out.add_stream(codec, rate=rate, layout=layout)
        for i in range(FRAMES):
            picture = np.full((32, 32, 3), 20 * i, np.uint8)
            for packet in video.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")):
                out.mux(packet)
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples.T).reshape(1, -1), format=fmt, layout=layout)
        frame.sample_rate, frame.pts = rate, round(audio_start * rate)
        for packet in audio.encode(frame):
            out.mux(packet)
        for stream in (video, audio):
            for packet in stream.encode():
                out.mux(packet)
    return path


def _samples(path: Path) -> np.ndarray:
    """The first audio stream's samples, interleaved, as 32-bit integers at full scale (u8 and
    s16 shifted up, as FLAC's decoder gives 8-bit audio back in 16 bits)."""
    with av.open(str(path)) as c:
        frames = [f.to_ndarray() for f in c.decode(audio=0)]
        fmt = c.streams.audio[0].codec_context.format.name
    x = np.concatenate([f.reshape(-1) if f.shape[0] == 1 else f.T.reshape(-1) for f in frames]).astype(np.int64)
    if fmt.startswith("u8"):
        x = x - 128
    shift = {"u8": 24, "s16": 16}.get(fmt.rstrip("p"), 0)
    return x << shift


@pytest.mark.parametrize("codec", ["pcm_s16le", "pcm_s24le", "pcm_u8", "pcm_s16be"])
def test_integer_pcm_is_packed_as_flac_sample_for_sample(tmp_path, tiny_model, codec):
    src = _pcm_clip(tmp_path / f"src{PCM[codec][0]}", codec)
    st = encode_video(src, tmp_path / "a.tok", model=tiny_model, passes=0)
    copied = encode_video(src, tmp_path / "c.tok", model=tiny_model, passes=0, audio=AudioChoice("copy"))
    stored = file_info(tmp_path / "a.tok").audio
    assert stored.codec == "flac" and file_info(tmp_path / "c.tok").audio.codec == codec
    assert f"packed from {codec}, lossless" in st.audio and not any("audio" in w for w in st.warnings)
    assert st.audio_bytes < 0.8 * copied.audio_bytes, (st.audio_bytes, copied.audio_bytes)
    assert stored.start_offset_seconds == pytest.approx(0.2, abs=0.002)
    reference = _samples(src)
    for suffix, kept_as in ((".mkv", "flac"), (".mp4", "flac"), (".mov", "alac")):
        decode_video(tmp_path / "a.tok", tmp_path / f"back{suffix}", model=tiny_model)
        name, start, _ = streams_of(tmp_path / f"back{suffix}")["audio"]
        assert name == kept_as and start == pytest.approx(0.2, abs=0.002), (suffix, name, start)
        back = _samples(tmp_path / f"back{suffix}")
        assert back.shape == reference.shape and np.array_equal(back, reference), suffix


def test_dvd_lpcm_is_kept_sample_for_sample(tmp_path, tiny_model):
    """A DVD's LPCM, which Matroska cannot hold, was re-encoded to Opus (lossy, and a warning);
    packed as FLAC it comes back whole, though its timestamps jump 10 ms in the program stream
    (a gap of silence cut there would have moved every later sample)."""
    src = tmp_path / "dvd.vob"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25:duration=1", "-f", "lavfi",
           "-i", "anoisesrc=r=48000:a=0.2:d=1,aformat=channel_layouts=stereo", "-c:v", "mpeg2video",
           "-c:a", "pcm_dvd", "-sample_fmt", "s16", "-f", "vob", str(src))
    st = encode_video(src, tmp_path / "a.tok", model=tiny_model, passes=0)
    assert "packed from pcm_dvd, lossless" in st.audio and not any("audio" in w for w in st.warnings)
    decode_video(tmp_path / "a.tok", tmp_path / "back.mkv", model=tiny_model)
    assert np.array_equal(_samples(tmp_path / "back.mkv"), _samples(src))


def test_32_bit_pcm_is_copied_as_it_is(tmp_path, tiny_model):
    """FFmpeg's FLAC encoder keeps 24 bits: packing 32-bit PCM would lose its 8 lowest."""
    src = _pcm_clip(tmp_path / "src.mkv", "pcm_s32le")
    st = encode_video(src, tmp_path / "a.tok", model=tiny_model, passes=0)
    assert file_info(tmp_path / "a.tok").audio.codec == "pcm_s32le" and "(copied" in st.audio
    decode_video(tmp_path / "a.tok", tmp_path / "back.mkv", model=tiny_model)
    assert np.array_equal(_samples(tmp_path / "back.mkv"), _samples(src))


def test_opus_where_asked_at_the_rate_asked(tmp_path, tiny_model):
    src = _pcm_clip(tmp_path / "src.mkv", "pcm_s16le")
    st = encode_video(src, tmp_path / "a.tok", model=tiny_model, passes=0, audio=AudioChoice(bitrate=48e3))
    assert file_info(tmp_path / "a.tok").audio.codec == "opus"
    assert "re-encoded to Opus at 48 kb/s from pcm_s16le" in st.audio
    assert not any("audio" in w for w in st.warnings)  # (asked for: that warning is for audio a .tok cannot hold)
    st = encode_video(src, tmp_path / "b.tok", model=tiny_model, passes=0, audio=AudioChoice(bitrate=48000.4))
    assert not any("audio" in w for w in st.warnings)  # (it said "stored at 48k, not the 48.0004k asked")
    seconds = FRAMES / FPS - 0.2
    assert st.audio_bytes < 48e3 / 8 * seconds * 1.5 + 1000  # (noise keeps Opus near its rate)
    decode_video(tmp_path / "a.tok", tmp_path / "back.mkv", model=tiny_model)
    name, start, end = streams_of(tmp_path / "back.mkv")["audio"]
    assert name == "opus" and start == pytest.approx(0.2, abs=0.03) and end == pytest.approx(FRAMES / FPS, abs=0.05)


def test_audio_choices_are_checked():
    assert AudioChoice(bitrate=96e3).codec == "opus"
    for bad in (lambda: AudioChoice("flac"), lambda: AudioChoice("copy", 96e3), lambda: AudioChoice(bitrate=1e3),
                lambda: AudioChoice(bitrate=float("nan")), lambda: AudioChoice(bitrate="96k")):
        with pytest.raises(ArgumentError):
            bad()


def test_opus_above_what_libopus_takes_is_lowered_and_said(tmp_path, tiny_model):
    """Refused before, after the model had loaded: a batch failed its mono files and kept its 8-channel ones."""
    src = _pcm_clip(tmp_path / "src.mov", "pcm_s16be")  # mono
    st = encode_video(src, tmp_path / "a.tok", model=tiny_model, passes=0, audio=AudioChoice(bitrate=300e3))
    assert "re-encoded to Opus at 256 kb/s" in st.audio
    assert "the audio is stored as Opus at 256k, not the 300k asked: Opus takes at most 256k a channel" in st.warnings


def test_opus_says_what_it_mixes_down(tmp_path, tiny_model):
    src = _pcm_clip(tmp_path / "src.mkv", "pcm_s16le", layout="hexadecagonal")
    st = encode_video(src, tmp_path / "a.tok", model=tiny_model, passes=0, audio=AudioChoice("opus"))
    assert file_info(tmp_path / "a.tok").audio.channels == 8
    assert any("16 channels are stored mixed down to 7.1" in w for w in st.warnings), st.warnings
    st = encode_video(src, tmp_path / "b.tok", model=tiny_model, passes=0)  # (FLAC takes 8 at most: copied)
    assert file_info(tmp_path / "b.tok").audio.channels == 16 and "(copied" in st.audio


@pytest.mark.parametrize("layout", ["quad", "7.1", "5.1(side)"])
def test_a_mov_decode_of_layouts_alac_does_not_take(tmp_path, tiny_model, layout):
    """FFmpeg's ALAC takes Apple's layouts only: a quad or 7.1 PCM source, packed as FLAC, could
    not be decoded to .mov ("cannot write (Invalid argument)"). Such layouts go in as PCM now."""
    src = _pcm_clip(tmp_path / "src.mkv", "pcm_s24le", layout=layout)
    encode_video(src, tmp_path / "a.tok", model=tiny_model, passes=0)
    st = decode_video(tmp_path / "a.tok", tmp_path / "back.mov", model=tiny_model)
    assert st.audio == f"re-encoded to pcm_s32le, lossless ({layout})"
    with av.open(str(tmp_path / "back.mov")) as c:
        assert c.streams.audio[0].codec_context.layout.name == layout
    assert np.array_equal(_samples(tmp_path / "back.mov"), _samples(src))


def test_cuts_are_to_the_sample_and_packets_short(tmp_path, tiny_model):
    """The source's audio is one packet of 0.4 s. Cut by whole packets, --frames kept all of it
    past the last frame (a camera's AVI: 1 s of audio for 0.67 s of video); and FLAC's own
    blocks of 96 ms made the cuts at decode (--ss, audio before the first frame) as coarse."""
    src = _pcm_clip(tmp_path / "src.mkv", "pcm_s16le", audio_start=0.0)
    reference = _samples(src).reshape(-1, 2)
    encode_video(src, tmp_path / "a.tok", model=tiny_model, passes=0, max_frames=5)  # 0.2 s
    stored = file_info(tmp_path / "a.tok").audio
    assert stored.start_offset_seconds == 0 and stored.duration_seconds == pytest.approx(0.2, abs=1e-4)
    decode_video(tmp_path / "a.tok", tmp_path / "a.mkv", model=tiny_model)
    assert np.array_equal(_samples(tmp_path / "a.mkv").reshape(-1, 2), reference[:9600])
    encode_video(src, tmp_path / "b.tok", model=tiny_model, passes=0, start=0.12)  # frame 3 on
    stored = file_info(tmp_path / "b.tok").audio
    assert stored.start_offset_seconds == 0 and stored.duration_seconds == pytest.approx(0.28, abs=1e-4)
    decode_video(tmp_path / "b.tok", tmp_path / "b.mkv", model=tiny_model)
    assert np.array_equal(_samples(tmp_path / "b.mkv").reshape(-1, 2), reference[5760:])
    with av.open(str(tmp_path / "b.mkv")) as c:
        longest = max(p.duration * p.time_base for p in c.demux(audio=0) if p.duration)
    assert longest <= 0.025


def test_cli_audio_options(tmp_path):
    src = _pcm_clip(tmp_path / "src.mkv", "pcm_s16le")
    res = runner.invoke(app, ["encode", str(src), "-o", str(tmp_path / "a.tok"), "-m", "tiny", "--passes", "0",
                              "--audio-bitrate", "64k"])
    assert res.exit_code == 0, res.output
    assert "re-encoded to Opus at 64 kb/s from pcm_s16le" in res.output
    for args, message in ((["--no-audio", "--audio-codec", "opus"], "--no-audio drops the audio"),
                          (["--audio-codec", "copy", "--audio-bitrate", "64k"], "cannot go with copying"),
                          (["--audio-codec", "flac"], "expected one of auto, copy, opus"),
                          (["--audio-bitrate", "2k"], "at least 6k")):
        res = runner.invoke(app, ["encode", str(src), "-o", str(tmp_path / "b.tok"), "-m", "tiny", *args])
        said = " ".join(res.output.replace("│", " ").split())  # (a usage error comes in a box)
        assert res.exit_code == 2 and message in said, (args, res.output)
        assert not (tmp_path / "b.tok").exists()


def test_batch_encode_stores_audio_as_asked(tmp_path):
    from tokcodec.batch import batch_encode

    _pcm_clip((tmp_path / "in").mkdir() or tmp_path / "in" / "a.mkv", "pcm_s16le")
    summary = batch_encode(tmp_path / "in", tmp_path / "out", model="tiny", workers=1, passes=0,
                           audio=AudioChoice(bitrate=32e3))
    assert summary.failed == 0
    assert file_info(tmp_path / "out" / "a.mkv.tok").audio.codec == "opus"


def test_64_bit_pcm_cut_by_frames(tmp_path, tiny_model):
    """numpy cannot hold PyAV's s64 frames: cutting them to the sample failed the encode ("cannot
    read the audio stream"), where Matroska, refusing pcm_s64le, leaves Opus as the only way."""
    src = tmp_path / "s64.nut"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=s=64x48:r=25", "-f", "lavfi", "-i", "sine=r=48000", "-t", "1",
           "-c:v", "ffv1", "-c:a", "pcm_s64le", str(src))
    st = encode_video(src, tmp_path / "a.tok", model=tiny_model, passes=0, max_frames=10)
    assert file_info(tmp_path / "a.tok").audio.codec == "opus", st.audio


def test_a_long_gap_is_filled_a_second_at_a_time(tmp_path, tiny_model, monkeypatch):
    """A jump of 30 minutes in PCM timestamps became one frame of silence of 30 minutes (1.2 GB
    in memory) when packed as FLAC."""
    import tokcodec.audio as audio

    path = tmp_path / "gap.mkv"
    with av.open(str(path), "w") as out:
        video = out.add_stream("ffv1", rate=FPS)
        video.width, video.height, video.pix_fmt = 32, 32, "bgr0"
        sound = out.add_stream("pcm_s16le", rate=8000, layout="mono")
        for i in range(FRAMES):
            for packet in video.encode(av.VideoFrame.from_ndarray(np.full((32, 32, 3), 9 * i, np.uint8), "rgb24")):
                out.mux(packet)
        for start in (0, 8000 * 5):  # 0.1 s at 0, then 0.1 s at 5 s: a gap of 4.9 s
            frame = av.AudioFrame.from_ndarray(np.full((1, 800), 1000, np.int16), format="s16", layout="mono")
            frame.sample_rate, frame.pts = 8000, start
            for packet in sound.encode(frame):
                out.mux(packet)
        for stream in (video, sound):
            for packet in stream.encode():
                out.mux(packet)
    sizes = []
    made = audio._silence
    monkeypatch.setattr(audio, "_silence", lambda like, n: sizes.append(n) or made(like, n))
    encode_video(path, tmp_path / "a.tok", model=tiny_model, passes=0)
    assert sum(sizes) == 8000 * 5 - 800 and max(sizes) <= 8000, sizes
    assert file_info(tmp_path / "a.tok").audio.duration_seconds == pytest.approx(5.1, abs=0.01)
