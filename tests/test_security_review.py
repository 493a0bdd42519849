"""What a security review of tokcodec's untrusted inputs found (December 2026): crafted .tok,
weights and token files, planted links, file names FFmpeg reads as protocols. Each test is one
finding, fixed."""
from __future__ import annotations

import json
import os
import struct
import zlib
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from conftest import smooth_clip, write_clip
from test_hardening import chunk_offsets
from tokcodec.codec import memory
from tokcodec.codec.container import AUDIO_HEADER_SIZE, AUDIO_MAGIC, HEADER_SIZE, Header
from tokcodec.codec.pipeline import decode_video, encode_video
from tokcodec.errors import FormatError, ModelError

GOP = 5


@pytest.fixture(scope="module")
def tok(tmp_path_factory, tiny_model) -> Path:
    """17 frames in GOPs of 5: chunks of frames 0-4, 5-9, 10-14, 15-16."""
    d = tmp_path_factory.mktemp("sec")
    clip = write_clip(d / "clip.mkv", smooth_clip(17, 32, 48), Fraction(25))
    encode_video(clip, d / "clip.tok", model=tiny_model, gop=GOP)
    return d / "clip.tok"


def _with_header(data: bytes, **fields) -> bytes:
    """``data`` with header fields replaced (checksum made good)."""
    header = Header.unpack(data[:HEADER_SIZE], "x")
    for k, v in fields.items():
        setattr(header, k, v)
    return header.pack() + data[HEADER_SIZE:]


def _renumbered(data: bytes, offset: int, first_frame: int) -> bytes:
    """The chunk at ``offset`` claiming ``first_frame``, its checksum made good."""
    b = bytearray(data)
    struct.pack_into("<Q", b, offset + 8, first_frame)
    plen = struct.unpack_from("<I", b, offset + 24)[0]
    crc = zlib.crc32(bytes(b[offset + 32:offset + 32 + plen]), zlib.crc32(bytes(b[offset:offset + 28])))
    struct.pack_into("<I", b, offset + 28, crc)
    return bytes(b)


def test_salvage_does_not_believe_a_frame_count_the_file_cannot_hold(tok, tmp_path) -> None:
    """A 637-byte file whose header said 2**40 frames made decode --salvage write filler frames
    without end (4.9 GB in 25 s)."""
    from tokcodec.codec.salvage import TAIL_FILL_FACTOR, open_salvage

    data = tok.read_bytes()
    first = chunk_offsets(data)
    bomb = tmp_path / "bomb.tok"
    bomb.write_bytes(_with_header(data[:first[1]], frame_count=1 << 40))  # header and GOP 0 only
    with open_salvage(bomb) as reader:
        assert [(s.first_frame, s.frames) for s in reader.spots] == [(0, GOP)]
        assert reader.frame_count == GOP * TAIL_FILL_FACTOR
        assert any("stated frame count, 1099511627776, is more than the file could hold" in p for p in reader.problems)
    # the truncated download of the tests before (header count 17, three GOPs left): kept
    cut = tmp_path / "cut.tok"
    cut.write_bytes(data[:first[3] + 10])
    with open_salvage(cut) as reader:
        assert reader.frame_count == 17 and not any("could hold" in p for p in reader.problems)


def test_salvage_does_not_believe_a_chunk_far_past_the_bytes_before_it(tok, tmp_path) -> None:
    """An intact chunk numbered 2**39 made the filler write every frame before it."""
    from tokcodec.codec.salvage import open_salvage

    data = tok.read_bytes()
    first = chunk_offsets(data)
    far = tmp_path / "far.tok"
    far.write_bytes(_renumbered(data, first[1], 1 << 39)[:first[2]])  # GOPs 0 and the renumbered 1
    with open_salvage(far) as reader:
        assert [s.first_frame for s in reader.spots] == [0]
        assert reader.frame_count <= 17 * 16
    # a lost GOP (its bytes there, damaged) still leaves its gap to fill
    lost = tmp_path / "lost.tok"
    b = bytearray(data)
    b[first[1] + 40] ^= 1
    lost.write_bytes(bytes(b))
    with open_salvage(lost) as reader:
        assert reader.lost_ranges() == [(5, 9)] and reader.frame_count == 17


def test_salvage_keeps_good_chunks_after_bytes_cut_out(tmp_path, tiny_model) -> None:
    """Bytes cut out of a file (not zeroed: a disk copy that skips bad blocks) leave good chunks
    with nothing between them; the first version of the rule above lost the chunk after the hole."""
    from tokcodec.codec.salvage import open_salvage

    clip = write_clip(tmp_path / "c.mkv", smooth_clip(25, 32, 48), Fraction(25))
    encode_video(clip, tmp_path / "c.tok", model=tiny_model, gop=GOP)
    data = (tmp_path / "c.tok").read_bytes()
    first = chunk_offsets(data)
    (tmp_path / "cut.tok").write_bytes(data[:first[1]] + data[first[2]:])  # GOP 1's bytes gone
    with open_salvage(tmp_path / "cut.tok") as reader:
        assert [s.first_frame for s in reader.spots] == [0, 10, 15, 20]
        assert reader.lost_ranges() == [(5, 9)] and reader.frame_count == 25


def test_salvage_scan_work_is_bounded(tok, tmp_path, monkeypatch) -> None:
    """Audio headers that each claim the rest of the file made the scan quadratic in its size
    (a 1 MB file took 6.6 s, 16 MB about half an hour)."""
    from tokcodec.codec import salvage
    from tokcodec.codec.container import _AUDIO, AUDIO_KIND_MATROSKA

    data = tok.read_bytes()
    header = _with_header(data[:HEADER_SIZE], has_audio=True)
    first_chunk = data[HEADER_SIZE:chunk_offsets(data)[1]]  # (a file with no intact chunk is refused at once)
    n = 2000
    body = bytearray(header + first_chunk)
    end = len(body) + n * AUDIO_HEADER_SIZE
    for _ in range(n):
        fixed = _AUDIO.pack(AUDIO_MAGIC, AUDIO_HEADER_SIZE, AUDIO_KIND_MATROSKA, 0,
                            end - len(body) - AUDIO_HEADER_SIZE, 1, 0)[:-4]
        body += fixed + struct.pack("<I", zlib.crc32(fixed))
    path = tmp_path / "audi.tok"
    path.write_bytes(bytes(body))
    checked = []
    real = salvage._ScanBudget.take
    monkeypatch.setattr(salvage._ScanBudget, "take", lambda self, *a: checked.append(1) or real(self, *a))
    monkeypatch.setattr(salvage, "SCAN_BYTES_EXTRA", 0)  # (the budget: 8 times the file's 64 kB)
    with salvage.open_salvage(path) as reader:
        assert reader.audio is None
        assert any("the scan stopped" in p for p in reader.problems)
    assert len(checked) < n  # every candidate checked to the end: n of them, n * 32 kB


def test_decode_refuses_gops_that_cannot_fit_in_memory(tok, tmp_path, tiny_model, monkeypatch) -> None:
    """An 11 kB file naming one GOP of 4093 frames at 512x512 made decode allocate tens of GB
    (killed by the kernel); now refused before the first GOP, as encode is."""
    need = memory.DecodeFootprint(512, 512, 4093, "bf16").peak_bytes()
    assert need > 20 * 2**30
    with pytest.raises(memory.MemoryLimitError, match="needs about 4.* GB of memory, and 1.0 GB is available"):
        memory.check_decode_memory(memory.DecodeFootprint(512, 512, 4093, "bf16"), "big.tok",
                                   available=2**30, resident=0)
    monkeypatch.setattr(memory, "available_bytes", lambda: 0)
    monkeypatch.setattr(memory, "resident_bytes", lambda: 100 * 2**20)
    with pytest.raises(memory.MemoryLimitError, match="clip.tok: decoding its GOPs of 5 frames at 48x32"):
        decode_video(tok, tmp_path / "out.mkv", model=tiny_model, device="cpu")
    assert list(tmp_path.iterdir()) == []


def test_detokenize_checks_memory_too(tmp_path, tiny_model, monkeypatch) -> None:
    """A 16 MB token array of one GOP of 4097 frames at 512x512 ran out of memory."""
    from tokcodec.tokens import TokenFile, detokenize

    monkeypatch.setattr(memory, "available_bytes", lambda: 2**30)
    monkeypatch.setattr(memory, "resident_bytes", lambda: 0)
    tokens = TokenFile(np.zeros((1025, 64, 64), np.int32), bits=18, gop_latent_frames=[1025])
    with pytest.raises(memory.MemoryLimitError, match="GOPs of 4097 frames at 512x512 needs about 4.* GB"):
        detokenize(tokens, tmp_path / "x.y4m", model=tiny_model, device="cpu")
    assert list(tmp_path.iterdir()) == []


def test_a_short_file_is_checked_for_the_gops_it_holds(tmp_path, tiny_model, monkeypatch) -> None:
    """The check took the header's GOP (17 by default) for a still image or a short clip: a 4K
    still in fp32 was priced at 6.9 GB where one frame takes under 1 GB."""
    from tokcodec.codec import pipeline

    clip = write_clip(tmp_path / "still.mkv", smooth_clip(2, 32, 48), Fraction(25))
    encode_video(clip, tmp_path / "still.tok", model=tiny_model, gop=17)
    seen = []
    monkeypatch.setattr(pipeline, "check_decode_memory", lambda footprint, source: seen.append(footprint.frames))
    decode_video(tmp_path / "still.tok", tmp_path / "still.y4m", model=tiny_model, device="cpu")
    assert seen == [5]  # two frames: two latent steps, 5 decoded frames (not 17)


def test_token_metadata_names_presets_not_paths(tmp_path, tiny_model) -> None:
    """A token file's metadata "model" was loaded as a path ("/somewhere/x.safetensors")."""
    from tokcodec.tokens import TokenFile, detokenize

    tokens = TokenFile(np.zeros((2, 4, 6), np.int32), bits=18, model=str(tmp_path / "x.safetensors"))
    with pytest.raises(ModelError, match="names weights .* not a preset: pass --model"):
        detokenize(tokens, tmp_path / "x.y4m")


def _weights_file(path: Path, config: dict) -> Path:
    from safetensors.numpy import save

    from tokcodec.model.zoo import CONFIG_KEY, FORMAT_KEY, WEIGHTS_FORMAT

    path.write_bytes(save({"x": np.zeros(1, np.float32)},
                          metadata={FORMAT_KEY: WEIGHTS_FORMAT, CONFIG_KEY: json.dumps(config)}))
    return path


def test_weights_metadata_cannot_make_a_loader_allocate(tmp_path, monkeypatch) -> None:
    """A 292-byte weights file whose config named 24 billion parameters was built (allocated)
    before its tensors were compared; nonsense configs (negative widths, 0 groups) crashed."""
    from tokcodec.model import tokenizer
    from tokcodec.model.zoo import load_tokenizer

    built = []
    real = tokenizer.VideoTokenizer.__init__
    monkeypatch.setattr(tokenizer.VideoTokenizer, "__init__",
                        lambda self, cfg: built.append(cfg.channels) or real(self, cfg))
    huge = _weights_file(tmp_path / "huge.safetensors",
                         {"name": "huge", "channels": [4096, 4096], "blocks": [4, 4], "bits": 18, "groups": 8})
    with pytest.raises(ModelError, match="weights do not fit"):
        load_tokenizer(str(huge))
    assert built == [(4096, 4096)]  # once, on the "meta" device: shapes, no memory
    for bad in ({"channels": [-8, 16]}, {"groups": 0}, {"bits": 0}, {"channels": "abc"}, {"patch": 2.5},
                {"blocks": [0]}):
        path = _weights_file(tmp_path / "bad.safetensors", {"name": "bad", "channels": [8, 16], "blocks": [0, 1],
                                                             "groups": 4, **bad})
        with pytest.raises(ModelError, match="bad model config"):
            load_tokenizer(str(path))


def test_weights_info_reads_shapes_it_can_trust(tmp_path) -> None:
    """`tokcodec info` multiplied a header's shape out as given: ["x", 10**11] made 100 GB of "x",
    other shapes gave unexpected errors."""
    from tokcodec.model.zoo import CONFIG_KEY, FORMAT_KEY, WEIGHTS_FORMAT, weights_info

    for shape in (["x", 10**11], 5, [-1, 2], [2.5]):
        header = json.dumps({"__metadata__": {FORMAT_KEY: WEIGHTS_FORMAT, CONFIG_KEY: "{}"},
                             "a": {"dtype": "F32", "shape": shape, "data_offsets": [0, 0]}}).encode()
        path = tmp_path / "w.safetensors"
        path.write_bytes(len(header).to_bytes(8, "little") + header)
        with pytest.raises(ModelError, match="invalid shape or dtype"):
            weights_info(path)


def test_header_frame_rate_fits_ffmpeg(tok, tmp_path, tiny_model) -> None:
    """A rate of 1/2**31 passed every check (verify said OK) and crashed every decode with an
    OverflowError: FFmpeg's rationals are int32."""
    data = tok.read_bytes()
    raw = bytearray(data[:HEADER_SIZE])
    struct.pack_into("<II", raw, 40, 1, 1 << 31)
    struct.pack_into("<I", raw, HEADER_SIZE - 4, zlib.crc32(bytes(raw[:HEADER_SIZE - 4])))
    with pytest.raises(FormatError, match="invalid header fields"):
        Header.unpack(bytes(raw), "x")
    header = Header.unpack(data[:HEADER_SIZE], "x")
    header.frame_rate = Fraction(1, 1 << 31)
    with pytest.raises(ValueError, match="frame rate"):
        header.pack()


def test_temporary_outputs_are_made_new_never_through_a_link(tmp_path) -> None:
    """The hidden temporary name is predictable: a link planted under it had the output written
    wherever it pointed, and the output left a link to it."""
    from tokcodec.codec.outputs import staged_output, temp_path

    from tokcodec.io import FrameWriter

    victim = tmp_path / "victim.txt"
    victim.write_text("mine")
    dst = tmp_path / "out.tok"
    temp_path(dst).symlink_to(victim)
    with staged_output(dst, "file") as tmp:
        assert tmp == temp_path(dst) and not tmp.is_symlink()  # the link removed, the name made anew
        with tmp.open("wb") as fh:
            fh.write(b"output")
    assert victim.read_text() == "mine"
    assert not dst.is_symlink() and dst.read_bytes() == b"output"
    # a decode to a folder writes each PNG through NAME.part
    frame = tmp_path / "frames" / "frame_000000.png"
    frame.parent.mkdir()
    frame.with_name(frame.name + ".part").symlink_to(victim)
    FrameWriter._write_png(frame, np.zeros((8, 8, 3), np.uint8))
    assert victim.read_text() == "mine" and not frame.is_symlink() and frame.stat().st_size > 0
    # a leftover of a killed run with this process's id (a container's is always 1) is reused
    temp_path(dst).write_bytes(b"leftover")
    with staged_output(dst, "file") as tmp:
        assert tmp == temp_path(dst) and tmp.stat().st_size == 0


def test_batch_leaves_other_peoples_part_files(tmp_path) -> None:
    """Cleaning up after a killed run deleted any hidden `.X.part-PID...` of a dead PID: a
    user's `.notes.part-999999.txt`, git's `.git/.index.part-4000000.lock`."""
    import subprocess

    from tokcodec.batch.plan import remove_stale_parts

    dead = subprocess.Popen(["true"])
    dead.wait()
    (tmp_path / ".git").mkdir()
    ours = tmp_path / f".clip.mp4.part-{dead.pid}.tok"
    theirs = [tmp_path / f".notes.part-{dead.pid}.txt", tmp_path / ".git" / f".index.part-{dead.pid}.lock",
              tmp_path / ".git" / f".pack.part-{dead.pid}.tok"]
    for p in (ours, *theirs):
        p.write_bytes(b"x")
    assert remove_stale_parts(tmp_path) == 1
    assert not ours.exists() and all(p.exists() for p in theirs)


def test_a_damaged_manifest_record_is_passed_over(tmp_path) -> None:
    """`"frames": "nine"`, `"output": [...]` or `"input": 5` in manifest.jsonl crashed the rerun."""
    from tokcodec.batch.manifest import done_records

    path = tmp_path / "manifest.jsonl"
    good = {"status": "done", "output": "b.tok", "input": "b.mp4", "frames": 9, "bpp": 0.05, "model": "x"}
    lines = [{"status": "done", "output": ["a"], "input": "a.mp4"}, {"status": "done", "output": "c.tok", "input": 5},
             {"status": "done", "output": "d.tok", "frames": "nine"}, {"status": "done", "output": "e.tok", "bpp": "x"},
             good]
    path.write_text("".join(json.dumps(rec) + "\n" for rec in lines))
    assert done_records(path) == {"b.tok": good}


def test_names_ffmpeg_would_read_as_protocols_are_files(tmp_path, monkeypatch) -> None:
    """In an image sequence's folder (or the working directory), "concat:0003.png|0002.png" was
    read as FFmpeg's concat protocol: other files' frames."""
    from tokcodec.io import FrameWriter, iter_frames

    monkeypatch.chdir(tmp_path)
    for name, value in (("0001.png", 10), ("0002.png", 200), ("concat:0003.png|0002.png", 40)):
        FrameWriter._write_png(Path(name), np.full((16, 16, 3), value, np.uint8))
    assert os.path.exists("concat:0003.png|0002.png")
    assert [int(f.mean()) for f in iter_frames(Path("."))] == [10, 200, 40]


def test_without_overwrite_an_output_that_appears_meanwhile_is_left_alone(tok, tmp_path, tiny_model) -> None:
    """Two writers of one name without -y: both found it free, and the last to finish replaced the
    other's output. The name is now taken only if still free (a hard link)."""
    from tokcodec.codec.outputs import staged_output
    from tokcodec.errors import OutputError

    dst = tmp_path / "same.tok"
    with pytest.raises(OutputError, match="appeared while this output was being written"):
        with staged_output(dst, "file", overwrite=False) as a:
            a.write_bytes(b"second")
            dst.write_bytes(b"first")  # another process, finishing first
    assert dst.read_bytes() == b"first" and sorted(p.name for p in tmp_path.iterdir()) == ["same.tok"]
    out = tmp_path / "out.mkv"

    def other_writer(frames: int) -> None:
        if not out.exists():
            out.write_bytes(b"theirs")

    with pytest.raises(OutputError, match="appeared while"):
        decode_video(tok, out, model=tiny_model, progress=other_writer)
    assert out.read_bytes() == b"theirs"
    decode_video(tok, out, model=tiny_model, overwrite=True)  # -y: replaced, as asked
    assert out.read_bytes() != b"theirs"
