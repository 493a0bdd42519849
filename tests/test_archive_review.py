"""An archivist's messy folder (found on a batch walk-through): what a .tok does not keep is said
per file, and a legal long name encodes."""
import subprocess

import pytest

from conftest import smooth_clip, write_clip
from tokcodec.codec.outputs import NAME_MAX, temp_path
from tokcodec.codec.pipeline import decode_video, encode_video


def ffmpeg(*args: str) -> None:
    exe = pytest.importorskip("imageio_ffmpeg").get_ffmpeg_exe()
    subprocess.run([exe, "-v", "error", "-y", *args], check=True, capture_output=True, timeout=120)


def test_what_the_tok_does_not_keep_is_said(tmp_path, tiny_model):
    """Non-square pixels came back square (stretched), 10-bit came back 8-bit, a second audio
    stream and subtitles were dropped: all without a word."""
    src = tmp_path / "anamorphic 10bit.mkv"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=96x64:rate=10", "-f", "lavfi", "-i", "sine=f=440:d=1",
           "-f", "lavfi", "-i", "sine=f=880:d=1", "-t", "1", "-map", "0", "-map", "1", "-map", "2",
           "-vf", "setsar=15/16", "-c:v", "ffv1", "-pix_fmt", "yuv444p10le", "-c:a", "flac", str(src))
    st = encode_video(src, tmp_path / "a.tok", model=tiny_model, passes=0)
    said = " | ".join(st.warnings)
    assert "pixels are not square (sample aspect ratio 15:16)" in said
    assert "10 bits a channel (yuv444p10le)" in said
    assert "other streams are not kept: 1 more audio stream" in said
    quiet = encode_video(write_clip(tmp_path / "plain.mkv", smooth_clip(5, 32, 48)), tmp_path / "b.tok",
                         model=tiny_model, passes=0)
    assert [w for w in quiet.warnings if "untrained" not in w] == []
    no_audio = encode_video(src, tmp_path / "c.tok", model=tiny_model, passes=0, audio=False, overwrite=True)
    assert not [w for w in no_audio.warnings if "streams are not kept" in w]  # (asked for none)


def test_a_long_legal_name_encodes(tmp_path, tiny_model):
    """The hidden temporary name (.NAME.part-PID.tok) went past 255 bytes where the final name did not."""
    name = "x" * (NAME_MAX - len(".mkv.tok")) + ".mkv"
    src = write_clip(tmp_path / "in.mkv", smooth_clip(5, 32, 48)).rename(tmp_path / name)
    dst = tmp_path / f"{name}.tok"
    assert len(dst.name) == NAME_MAX and len(temp_path(dst).name) == NAME_MAX
    assert temp_path(dst) != temp_path(tmp_path / f"{'y' * 200}{name[200:]}.tok")
    encode_video(src, dst, model=tiny_model, passes=0)
    assert decode_video(dst, tmp_path / "out.mkv", model=tiny_model).frames == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([name, dst.name, "out.mkv"])


def test_a_name_that_is_not_utf8_encodes(tmp_path, tiny_model):
    """A Latin-1 name (which Python holds with surrogates) broke the temporary name's length check."""
    import os

    name = os.fsdecode(b"caf\xe9.mkv")
    try:
        src = write_clip(tmp_path / "in.mkv", smooth_clip(5, 32, 48)).rename(tmp_path / name)
    except (OSError, UnicodeEncodeError):
        pytest.skip("this file system takes UTF-8 names only")
    encode_video(src, tmp_path / f"{name}.tok", model=tiny_model, passes=0)
    assert decode_video(tmp_path / f"{name}.tok", tmp_path / "out.mkv", model=tiny_model).frames == 5
