"""Audio is kept: stored in the .tok, restored on decode in sync (start offset and duration)."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from tokcodec.audio_choice import AudioChoice
from tokcodec.codec.pipeline import decode_video, encode_video, file_info

RATE = 25


def make_av_clip(path: Path, *, frames: int = 25, audio_start: float = 0.5, video_start_frames: int = 0,
                 acodec: str = "aac", sample_rate: int = 48000, container: str | None = None,
                 pictures: np.ndarray | None = None) -> Path:
    """A small video (flat frames, or ``pictures``: (frames, 48, 64, 3) uint8) with a tone whose
    first sample plays ``audio_start`` s after time 0."""
    out = av.open(str(path), "w", format=container)
    vcodec = "ffv1" if path.suffix == ".mkv" else "libx264"
    v = out.add_stream(vcodec, rate=RATE)
    v.width, v.height, v.pix_fmt = 64, 48, "bgr0" if vcodec == "ffv1" else "yuv420p"
    a = out.add_stream(acodec, rate=sample_rate, layout="mono")
    for i in range(frames):
        picture = np.full((48, 64, 3), (i * 9) % 255, np.uint8) if pictures is None else pictures[i]
        f = av.VideoFrame.from_ndarray(picture, format="rgb24")
        f.pts = i + video_start_frames
        for p in v.encode(f):
            out.mux(p)
    pos, total = round(audio_start * sample_rate), round((frames + video_start_frames) / RATE * sample_rate)
    fmt = "s16" if acodec.startswith("pcm") else "fltp"
    while pos < total:
        tone = np.sin(2 * np.pi * 440 * (np.arange(1024) + pos) / sample_rate) * 0.3
        samples = (tone * 32767).astype(np.int16) if fmt == "s16" else tone.astype(np.float32)
        af = av.AudioFrame.from_ndarray(samples[None], format=fmt, layout="mono")
        af.sample_rate, af.pts = sample_rate, pos
        for p in a.encode(af):
            out.mux(p)
        pos += 1024
    for stream in (v, a):
        for p in stream.encode():
            out.mux(p)
    out.close()
    return path


def streams_of(path: Path) -> dict[str, tuple[str, float, float]]:
    """type -> (codec, start s, end s) measured from the packets."""
    spans: dict[str, list[float]] = {}
    with av.open(str(path)) as c:
        names = {s.type: s.codec_context.name for s in c.streams}
        for p in c.demux():
            if p.pts is None:
                continue
            t = float(p.pts * p.time_base)
            span = spans.setdefault(p.stream.type, [t, t])
            span[0] = min(span[0], t)
            span[1] = max(span[1], t + float((p.duration or 0) * p.time_base))
    return {kind: (names[kind], start, end) for kind, (start, end) in spans.items()}


@pytest.fixture(scope="module")
def aac_clip(tmp_path_factory) -> Path:
    return make_av_clip(tmp_path_factory.mktemp("audio") / "tone.mp4")


def test_audio_kept_in_sync(aac_clip: Path, tmp_path: Path, tiny_model) -> None:
    src = streams_of(aac_clip)["audio"]
    st = encode_video(aac_clip, tmp_path / "a.tok", model=tiny_model)
    assert "aac" in st.audio and "copied" in st.audio
    info = file_info(tmp_path / "a.tok")
    assert info.header.version == (2, 2)  # the correction's format, which holds audio too
    encode_video(aac_clip, tmp_path / "t.tok", model=tiny_model, correction=False)
    assert file_info(tmp_path / "t.tok").header.version == (1, 1)  # tokens and audio: 1.1 readers read it
    assert info.audio.codec == "aac"
    assert abs(info.audio.start_offset_seconds - src[1]) < 0.005
    for ext in (".mp4", ".mkv"):
        out = tmp_path / f"back{ext}"
        d = decode_video(tmp_path / "a.tok", out, model=tiny_model)
        assert d.audio == "aac copied"
        got = streams_of(out)
        assert got["audio"][0] == "aac"
        assert abs(got["audio"][1] - src[1]) < 0.03, (ext, got, src)       # start offset kept
        assert abs(got["audio"][2] - src[2]) < 0.05, (ext, got, src)       # and the end
        assert abs(got["video"][1]) < 0.005


def test_audio_reencoded_when_output_cannot_hold_codec(tmp_path: Path, tiny_model) -> None:
    clip = make_av_clip(tmp_path / "pcm.mkv", frames=20, audio_start=0.2, acodec="pcm_s16le", sample_rate=16000)
    encode_video(clip, tmp_path / "p.tok", model=tiny_model, audio=AudioChoice("copy"))  # (auto: FLAC, .mp4 holds it)
    assert file_info(tmp_path / "p.tok").audio.codec == "pcm_s16le"
    d = decode_video(tmp_path / "p.tok", tmp_path / "p.mp4", model=tiny_model)
    assert d.audio == "re-encoded to Opus (mono)"  # (as many channels as it had)
    codec, start, end = streams_of(tmp_path / "p.mp4")["audio"]
    assert codec == "opus"
    assert abs(start - 0.2) < 0.03 and abs(end - 0.8) < 0.05


def test_audio_before_video_start_and_frame_limit(tmp_path: Path, tiny_model) -> None:
    # video starts 0.32 s in, audio at 0: the audio that plays before the first frame is cut
    clip = make_av_clip(tmp_path / "early.mkv", frames=20, audio_start=0.0, video_start_frames=8,
                        acodec="pcm_s16le", sample_rate=16000)
    encode_video(clip, tmp_path / "e.tok", model=tiny_model, max_frames=10)
    audio = file_info(tmp_path / "e.tok").audio
    assert abs(audio.start_offset_seconds + 0.32) < 0.005
    assert audio.duration_seconds <= 0.32 + 10 / RATE + 0.07   # cut with the frames
    st = decode_video(tmp_path / "e.tok", tmp_path / "e.mkv", model=tiny_model)
    codec, start, end = streams_of(tmp_path / "e.mkv")["audio"]
    assert start < 0.07 and abs(end - 10 / RATE) < 0.07
    # ... and said (it went without a word)
    assert st.warnings == ["the stored audio begins 0.32 s before the first frame; the output starts with "
                           "the first frame, so that much of the audio is left out"]
    later = decode_video(tmp_path / "e.tok", tmp_path / "later.mkv", model=tiny_model, start=0.2)
    assert later.warnings == []  # (a part: the audio before it is not the part's)


def test_no_audio_options_and_audio_less_outputs(aac_clip: Path, tmp_path: Path, tiny_model) -> None:
    st = encode_video(aac_clip, tmp_path / "n.tok", model=tiny_model, audio=False, correction=False)
    assert st.audio.startswith("dropped") and file_info(tmp_path / "n.tok").audio is None
    assert file_info(tmp_path / "n.tok").header.version == (1, 0)
    encode_video(aac_clip, tmp_path / "a.tok", model=tiny_model)
    d = decode_video(tmp_path / "a.tok", tmp_path / "x.mp4", model=tiny_model, audio=False)
    assert "audio" not in streams_of(tmp_path / "x.mp4") and d.audio == "dropped (--no-audio)"  # (was "none")
    d = decode_video(tmp_path / "a.tok", tmp_path / "x.y4m", model=tiny_model)
    assert d.audio.startswith("dropped")


def test_video_without_audio_has_no_block(tmp_path: Path, tiny_model) -> None:
    from conftest import smooth_clip, write_clip

    clip = write_clip(tmp_path / "v.mkv", smooth_clip(5, 32, 32), Fraction(RATE))
    st = encode_video(clip, tmp_path / "v.tok", model=tiny_model)
    assert st.audio == "none" and file_info(tmp_path / "v.tok").audio is None


def test_rates_count_the_video_alone(aac_clip: Path, tmp_path: Path, tiny_model) -> None:
    """bpp, kbit/s and bits/token compare with a video codec's: the stored audio is counted apart
    (the same encode without audio has the same video rates), while the whole-file figures keep it."""
    from typer.testing import CliRunner

    from tokcodec.cli.app import app

    with_audio = encode_video(aac_clip, tmp_path / "a.tok", model=tiny_model)
    without = encode_video(aac_clip, tmp_path / "n.tok", model=tiny_model, audio=False)
    assert with_audio.audio_bytes > 1000 and without.audio_bytes == 0
    assert with_audio.bytes - with_audio.audio_bytes == without.bytes
    assert with_audio.video_bpp == without.video_bpp == without.bpp < with_audio.bpp
    assert with_audio.video_bits_per_token == without.bits_per_token < with_audio.bits_per_token
    a, n = file_info(tmp_path / "a.tok"), file_info(tmp_path / "n.tok")
    assert a.bytes == with_audio.bytes and a.video_bytes == n.video_bytes == n.bytes == without.bytes
    assert a.video_bpp == n.video_bpp == n.bpp < a.bpp and a.video_kbps == n.kbps < a.kbps
    assert a.video_bits_per_token == n.bits_per_token
    text = CliRunner().invoke(app, ["info", str(tmp_path / "a.tok")]).stdout
    assert f"video {n.bytes} bytes, {n.bpp:.4f} bpp" in text
    assert f"{n.bits_per_token:.2f} bits/token" in text


def test_same_input_same_bytes(aac_clip: Path, tmp_path: Path, tiny_model) -> None:
    """The stored audio block and a decode's .mkv are muxed bit-exact (no random segment UID, no
    date): encoding or decoding the same input twice gives the same bytes. (An .mp4's H.264 is
    libx264's: its bytes were seen to differ between two encodes of the same frames in one long
    test process, so only its frames are compared.)"""
    for i in (1, 2):
        encode_video(aac_clip, tmp_path / f"{i}.tok", model=tiny_model)
        decode_video(tmp_path / f"{i}.tok", tmp_path / f"{i}.mkv", model=tiny_model)
    for ext in (".tok", ".mkv"):
        assert (tmp_path / f"1{ext}").read_bytes() == (tmp_path / f"2{ext}").read_bytes(), ext
