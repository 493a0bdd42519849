"""What a metrics auditor and an audio engineer met (December 2026): `decode --compare` paired
frames by number against a reference at another frame rate without a word; re-encoded audio
closed the gaps in its source's timestamps (all after a gap played early by its length); a
decode to .mov of Opus or FLAC audio failed; a lossy re-encode at encode was said only in the
stats line. Each test is one finding, fixed."""
from __future__ import annotations

import json
import subprocess
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import smooth_clip, write_clip
from test_archive_review import ffmpeg
from test_audio import streams_of
from tokcodec.audio_choice import AudioChoice
from tokcodec.cli import app
from tokcodec.codec.pipeline import compare_videos, decode_video, encode_video

runner = CliRunner()


def test_compare_against_a_reference_at_another_rate_warns(tmp_path, tiny_model) -> None:
    """The same content at 12 fps against a 25 fps decode: 1.9 dB low, no warning."""
    frames = smooth_clip(5, 32, 48)
    clip = write_clip(tmp_path / "clip.mkv", frames, Fraction(25))
    slow = write_clip(tmp_path / "slow.mkv", frames, Fraction(12))
    encode_video(clip, tmp_path / "c.tok", model=tiny_model, gop=5)
    assert compare_videos(slow, clip)["rates"] == (12.0, 25.0)
    assert compare_videos(clip, clip)["rates"] is None
    res = runner.invoke(app, ["decode", str(tmp_path / "c.tok"), "-o", str(tmp_path / "d.mkv"), "--compare", str(slow)])
    assert res.exit_code == 0 and "the reference runs at 12 fps, the decode at 25 fps" in res.stderr, res.output
    res = runner.invoke(app, ["decode", str(tmp_path / "c.tok"), "-o", str(tmp_path / "d.mkv"), "-y",
                              "--compare", str(clip), "--json"])
    assert res.exit_code == 0 and "warning" not in res.stderr
    assert json.loads(res.stdout)["compare"]["rates"] is None


@pytest.mark.parametrize("suffix", [".avi", ".mpg"])
def test_compare_takes_a_reference_in_any_input_format(tmp_path, tiny_model, suffix) -> None:
    """A source .avi or .mpg, as encode reads it, failed `decode --compare` after the whole
    decode: "w.avi: unknown output format '.avi'" (its kind was asked as an output's)."""
    clip = write_clip(tmp_path / "clip.mkv", smooth_clip(5, 32, 48), Fraction(25))
    source = tmp_path / f"source{suffix}"
    ffmpeg("-i", str(clip), "-c:v", "mpeg2video", "-q:v", "2", str(source))
    encode_video(source, tmp_path / "c.tok", model=tiny_model, gop=5)
    res = runner.invoke(app, ["decode", str(tmp_path / "c.tok"), "-o", str(tmp_path / "d.mkv"),
                              "--compare", str(source), "--json"])
    assert res.exit_code == 0, res.output
    compared = json.loads(res.stdout)["compare"]
    assert compared["frames"] == 5 and compared["rates"] is None and compared["psnr"] > 10


def _clicks_after_a_gap(path: Path, audio_codec: str) -> Path:
    """2 s of 96x64 video at 25 fps and audio with a click every 0.4 s from 0.2 s, whose
    timestamps jump 0.2 s ahead at 0.8 s (a gap: the clicks after it play at 1.2 and 1.6 s)."""
    ffmpeg = pytest.importorskip("imageio_ffmpeg").get_ffmpeg_exe()
    click = "aevalsrc=exprs='if(lt(mod(t+0.2\\,0.4)\\,0.001)\\,0.8\\,0)':s=48000:d=1.8"
    subprocess.run([ffmpeg, "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=96x64:rate=25:duration=2",
                    "-f", "lavfi", "-i", click, "-filter_complex", "[1:a]asetpts='if(gte(T,0.8),PTS+0.2/TB,PTS)'[a]",
                    "-map", "0:v", "-map", "[a]", "-c:v", "ffv1", "-c:a", audio_codec, str(path)], check=True)
    return path


def _click_times(path: Path) -> list[float]:
    """The clicks' times as a player plays the audio: its samples one after another from the
    first frame's timestamp (gaps in timestamps are not silence to it)."""
    with av.open(str(path)) as c:
        stream = c.streams.audio[0]
        frames = list(c.decode(stream))
    first = float(frames[0].pts * frames[0].time_base)
    mono = np.concatenate([np.abs(f.to_ndarray()).reshape(-1, f.layout.nb_channels if hasattr(f.layout, "nb_channels")
                                                            else len(f.layout.channels)).max(1) for f in frames])
    loud = np.flatnonzero(mono > 0.3 * mono.max())
    starts = loud[np.insert(np.diff(loud) > 0.05 * stream.rate, 0, True)]
    return [round(first + i / stream.rate, 3) for i in starts]


def test_re_encoded_audio_keeps_the_gaps_in_its_timestamps(tmp_path, tiny_model) -> None:
    """Re-encoding numbered the samples by a running count: everything after a gap played early
    by the gap's length, at decode (PCM to .mp4: Opus) and at encode (float PCM, which Matroska
    cannot hold, stored as Opus: every later decode), with nothing said but "re-encoded"."""
    pcm = _clicks_after_a_gap(tmp_path / "pcm.mkv", "pcm_s16le")
    encode_video(pcm, tmp_path / "pcm.tok", model=tiny_model, passes=0, audio=AudioChoice("copy"))
    decode_video(tmp_path / "pcm.tok", tmp_path / "pcm.mp4", model=tiny_model)
    assert streams_of(tmp_path / "pcm.mp4")["audio"][0] == "opus"
    assert _click_times(tmp_path / "pcm.mp4") == pytest.approx([0.2, 0.6, 1.2, 1.6], abs=0.005)
    # packed as FLAC at encode (the default for PCM), the gap is silence in the .tok itself
    encode_video(pcm, tmp_path / "flac.tok", model=tiny_model, passes=0)
    decode_video(tmp_path / "flac.tok", tmp_path / "flac.mp4", model=tiny_model)
    assert streams_of(tmp_path / "flac.mp4")["audio"][0] == "flac"
    assert _click_times(tmp_path / "flac.mp4") == pytest.approx([0.2, 0.6, 1.2, 1.6], abs=0.005)

    floats = _clicks_after_a_gap(tmp_path / "f32be.nut", "pcm_f32be")
    st = encode_video(floats, tmp_path / "f.tok", model=tiny_model, passes=0)
    assert any("re-encoded to Opus" in w for w in st.warnings), st.warnings
    decode_video(tmp_path / "f.tok", tmp_path / "f.mkv", model=tiny_model)
    assert _click_times(tmp_path / "f.mkv") == pytest.approx([0.2, 0.6, 1.2, 1.6], abs=0.005)


def test_a_mov_decode_keeps_audio_quicktime_cannot_hold_as_it_is(tmp_path, tiny_model) -> None:
    """Opus, FLAC (on .mov's list of codecs it takes as they are, but FFmpeg's QuickTime muxer
    refuses them) and what was re-encoded (to Opus, which it refuses too) failed: "cannot write
    (Invalid argument)". Re-encoded to ALAC now, lossless, in sync."""
    opus = _clicks_after_a_gap(tmp_path / "opus.mkv", "libopus")
    encode_video(opus, tmp_path / "o.tok", model=tiny_model, passes=0)
    st = decode_video(tmp_path / "o.tok", tmp_path / "o.mov", model=tiny_model)
    assert st.audio.startswith("re-encoded to ALAC, lossless") and streams_of(tmp_path / "o.mov")["audio"][0] == "alac"
    assert _click_times(tmp_path / "o.mov") == pytest.approx([0.2, 0.6, 1.2, 1.6], abs=0.005)
