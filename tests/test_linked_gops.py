"""Coder 4's linked GOPs: the first latent frame (and the correction record, kind 3) coded
against the GOP before; key GOPs every ``key_interval``; the same tokens and pictures as unlinked
files; decode, verify and salvage follow the links (a damaged GOP loses frames up to the next
key GOP)."""
from __future__ import annotations

import threading
import zlib
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import smooth_clip, write_clip
from test_context_coder import video_tokens
from test_hardening import damaged
from tokcodec.cli import app
from tokcodec.codec import context_coder3 as c3
from tokcodec.codec.container import ContainerReader
from tokcodec.codec.correction_record import record_needs_previous
from tokcodec.codec.entropy import CoderContext, get_coder
from tokcodec.codec.parallel import linked_map
from tokcodec.codec.pipeline import decode_video, encode_video, file_info, read_tokens
from tokcodec.codec.verify import verify_file
from tokcodec.errors import FormatError
from tokcodec.io import read_frames
from tokcodec.model.presets import DEFAULT_PRESET
from tokcodec.model.zoo import load_tokenizer, shipped_digests

CONTEXT = CoderContext(model_sha256=shipped_digests()[f"{DEFAULT_PRESET}.safetensors"])
GOLDEN_LINKED = (1547, 2199085096)  # (length, crc32) of the linked payload below, default prior
runner = CliRunner()


def _linked_case() -> tuple[np.ndarray, np.ndarray]:
    whole = video_tokens(t=4, h=12, w=20, shift=(0, 1), seed=21)
    return whole[0], whole[1:]          # the GOP before's last latent frame, this GOP's tokens


def test_linked_payload_round_trip_golden_and_numpy_path(monkeypatch) -> None:
    previous, tokens = _linked_case()
    coder = get_coder(4, CONTEXT)
    payload = coder.encode(tokens, 18, previous)
    assert coder.links(payload) and payload[0] == 3
    assert (len(payload), zlib.crc32(payload)) == GOLDEN_LINKED
    assert len(payload) < len(get_coder(3, CONTEXT).encode(tokens, 18))
    np.testing.assert_array_equal(get_coder(4).decode(payload, tokens.shape, 18, previous), tokens)
    per = coder.frame_bits(payload, tokens.shape, 18)
    assert len(per) == 3 and sum(per) <= 8 * len(payload)
    monkeypatch.setattr(c3, "_KERNELS", False)      # as without numba: the same bytes both ways
    assert coder.encode(tokens, 18, previous) == payload
    np.testing.assert_array_equal(coder.decode(payload, tokens.shape, 18, previous), tokens)


def test_linked_payload_needs_the_right_previous_frame() -> None:
    previous, tokens = _linked_case()
    coder = get_coder(4, CONTEXT)
    payload = coder.encode(tokens, 18, previous)
    with pytest.raises(FormatError, match="missing"):
        coder.decode(payload, tokens.shape, 18)
    with pytest.raises(FormatError):             # another frame: the tokens' checksum fails
        coder.decode(payload, tokens.shape, 18, previous ^ 1)
    with pytest.raises(FormatError, match="12x19"):
        coder.decode(payload, tokens.shape, 18, previous[:, :-1])
    for broken in (payload[:-1], payload + b"\0", payload[:len(payload) // 2], payload[:6]):
        with pytest.raises(FormatError):
            coder.decode(broken, tokens.shape, 18, previous)


def test_unlinked_where_linking_does_not_pay_and_other_coders_ignore_previous() -> None:
    previous, tokens = _linked_case()
    noise = np.random.default_rng(5).integers(0, 1 << 18, previous.shape)
    coder = get_coder(4, CONTEXT)
    own = get_coder(3, CONTEXT).encode(tokens, 18)
    assert coder.encode(tokens, 18) == own          # a key GOP: coder 3's bytes
    assert coder.encode(tokens, 18, noise) == own   # an unrelated GOP before: not linked
    assert coder.encode(tokens, 18, previous[:, :-1]) == own  # another grid: not linked
    for cid in (1, 2, 3):
        c = get_coder(cid, CONTEXT)
        payload = c.encode(tokens, 18, previous)
        assert payload == c.encode(tokens, 18) and not c.links(payload)


def test_linked_map_hands_each_item_the_one_before() -> None:
    seen = list(linked_map(lambda x, before: (x, before()), range(40), threads=3))
    assert seen[0] == (0, None)
    assert all(prev == seen[i - 1] for i, (_, prev) in enumerate(seen) if i)

    def fails_at_3(x: int, before) -> int:
        if x == 3:
            raise ValueError("3")
        before()
        return x
    with pytest.raises(ValueError):                 # item 4 waits on 3 and gets its error
        list(linked_map(fails_at_3, range(6), threads=2))

    started = []

    def slow(x: int, before) -> int:
        started.append(x)
        before()
        return x
    items = linked_map(slow, range(1000), threads=2)
    assert [next(items) for _ in range(3)] == [0, 1, 2]
    items.close()                                   # a consumer that stops early: nothing hangs
    assert len(started) < 1000


def test_linked_map_runs_from_independent_items_side_by_side() -> None:
    """Items 0, 4, 8, ... are independent (key GOPs), the rest need the one before. Item 1 holds
    its worker until item 9 has run, so with two workers the later runs must go on without the
    worker item 1 holds: linked items waiting for it (2, 3) must not take the other one. And no
    linked item starts before the one before it is done."""
    third_run = threading.Event()
    done: set[int] = set()
    early: list[int] = []

    def fn(x: int, before) -> int:
        if x % 4 and x - 1 not in done:
            early.append(x)
        if x == 1:
            assert third_run.wait(10), "the later runs waited for the first"
        if x == 9:
            third_run.set()
        if x % 4:
            assert before() == x - 1
        done.add(x)
        return x

    assert list(linked_map(fn, range(24), lambda x: x % 4 != 0, threads=2)) == list(range(24))
    assert early == []
    with pytest.raises(RuntimeError, match="independent"):   # an independent item has no "before"
        list(linked_map(lambda x, before: before(), range(3), lambda x: False, threads=2))


@pytest.fixture(scope="module")
def linked_files(tmp_path_factory) -> tuple[Path, Path, Path, np.ndarray]:
    """A 33-frame clip in GOPs of 5 (7 chunks) with the default model: key GOPs every 3 (chunks 0
    and 3 and 6 are key GOPs) and every GOP a key GOP."""
    d = tmp_path_factory.mktemp("linked")
    clip = write_clip(d / "clip.mkv", smooth_clip(33, 48, 64), Fraction(25))
    model = load_tokenizer("default")
    linked = d / "linked.tok"
    st = encode_video(clip, linked, model=model, gop=5, key_interval=3)
    assert (st.gops, st.linked_gops) == (7, 4)
    plain = d / "plain.tok"
    assert encode_video(clip, plain, model=model, gop=5, key_interval=1).linked_gops == 0
    return linked, plain, clip, read_frames(clip)


def test_linked_file_holds_the_same_tokens_and_pictures_in_fewer_bytes(linked_files, tmp_path) -> None:
    linked, plain, _, _ = linked_files
    info, plain_info = file_info(linked), file_info(plain)
    assert (info.header.coder_id, plain_info.header.coder_id) == (4, 3)   # coder 3: older releases read it
    assert [c.linked for c in info.chunks] == [False, True, True, False, True, True, False]
    assert info.bytes < plain_info.bytes
    with ContainerReader(linked) as reader:     # a record may be coded against the one before, not at a key GOP
        predicted = [record_needs_previous(reader.read_chunk(i).correction) for i in range(7)]
    assert not any(predicted[i] for i in (0, 3, 6))
    for a, b in zip(read_tokens(linked)[1], read_tokens(plain)[1]):
        np.testing.assert_array_equal(a, b)
    decode_video(linked, tmp_path / "a.mkv")
    decode_video(plain, tmp_path / "b.mkv")
    np.testing.assert_array_equal(read_frames(tmp_path / "a.mkv"), read_frames(tmp_path / "b.mkv"))
    assert verify_file(linked).ok


def test_linked_decode_is_the_same_on_one_coder_thread(linked_files, tmp_path, monkeypatch) -> None:
    linked = linked_files[0]
    decode_video(linked, tmp_path / "many.mkv")
    monkeypatch.setenv("TOKCODEC_CODER_THREADS", "1")
    decode_video(linked, tmp_path / "one.mkv")
    np.testing.assert_array_equal(read_frames(tmp_path / "many.mkv"), read_frames(tmp_path / "one.mkv"))


def test_damage_loses_frames_up_to_the_next_key_gop(linked_files, tmp_path) -> None:
    linked = linked_files[0]
    decode_video(linked, tmp_path / "good.mkv")
    good = read_frames(tmp_path / "good.mkv")
    bad = damaged(linked, tmp_path / "bad.tok", flip_chunk=1)        # frames 5-9; chunk 2 links to it
    with pytest.raises(FormatError, match="--salvage"):
        decode_video(bad, tmp_path / "out.mkv")
    report = verify_file(bad)
    assert any("chunk 1" in p for p in report.problems)
    assert any("chunk 2" in p and "linked" in p for p in report.problems)
    st = decode_video(bad, tmp_path / "salvaged.mkv", salvage=True)
    assert st.frames == 33 and st.lost_frames == [(5, 14)]         # the next key GOP starts at 15
    assert any("chunk 2" in p and "linked" in p for p in st.problems)
    out = read_frames(tmp_path / "salvaged.mkv")
    np.testing.assert_array_equal(out[:5], good[:5])
    np.testing.assert_array_equal(out[15:], good[15:])


def test_cli_key_interval_and_info(linked_files, tmp_path) -> None:
    _, _, clip, _ = linked_files
    out = tmp_path / "c.tok"
    res = runner.invoke(app, ["encode", str(clip), "-o", str(out), "--gop", "5", "--key-interval", "2"])
    assert res.exit_code == 0, res.output
    assert "linked 3/7 GOPs" in res.output
    info = runner.invoke(app, ["info", str(out)])
    assert info.exit_code == 0 and info.output.count("  linked") == 3
    bad = runner.invoke(app, ["encode", str(clip), "-o", str(tmp_path / "d.tok"), "--key-interval", "0"])
    assert bad.exit_code != 0 and not (tmp_path / "d.tok").exists()
    with pytest.raises(ValueError, match="key interval"):
        encode_video(clip, tmp_path / "e.tok", key_interval=0)


def test_records_coded_against_the_gop_before_decode_to_the_same_pictures(tmp_path) -> None:
    """A still scene in GOPs of 9 frames (8-pixel cells, a 12x16 grid): its records repeat, and
    are coded against the previous GOP's; the pictures equal those of a file of key GOPs only."""
    still = np.repeat(smooth_clip(1, 96, 128), 27, axis=0)
    clip = write_clip(tmp_path / "clip.mkv", still, Fraction(25))
    model = load_tokenizer("default")
    encode_video(clip, tmp_path / "linked.tok", model=model, gop=9, key_interval=8)
    encode_video(clip, tmp_path / "plain.tok", model=model, gop=9, key_interval=1)
    with ContainerReader(tmp_path / "linked.tok") as reader:
        predicted = [record_needs_previous(reader.read_chunk(i).correction) for i in range(3)]
    assert predicted == [False, True, True]
    for name in ("linked", "plain"):
        decode_video(tmp_path / f"{name}.tok", tmp_path / f"{name}.mkv")
    np.testing.assert_array_equal(read_frames(tmp_path / "linked.mkv"), read_frames(tmp_path / "plain.mkv"))
    assert verify_file(tmp_path / "linked.tok").ok
    bad = damaged(tmp_path / "linked.tok", tmp_path / "bad.tok", flip_chunk=0)
    # no key GOP after the first: all of it is lost, the intact chunks with it (linked to it); a
    # video of black filler, exit status 0, was written for it
    with pytest.raises(FormatError, match=r"no GOP of its 27 frames could be decoded \(the intact ones are "
                                          r"linked to a lost one\); nothing to salvage \(chunk 1: its GOP is linked"):
        decode_video(bad, tmp_path / "salvaged.mkv", salvage=True)
    assert not (tmp_path / "salvaged.mkv").exists()


def test_a_gop_whose_record_alone_is_linked_counts_as_linked(tmp_path) -> None:
    """Coder 3 (asked for, or for a model without a prior) has no token links, but the records of
    GOPs between key GOPs may still be coded against the GOP before's: such GOPs decode only
    after that one, and the stats line and ``info`` count and mark them as linked."""
    still = np.repeat(smooth_clip(1, 96, 128), 27, axis=0)
    clip = write_clip(tmp_path / "clip.mkv", still, Fraction(25))
    st = encode_video(clip, tmp_path / "c3.tok", gop=9, key_interval=8, coder_id=3)
    info = file_info(tmp_path / "c3.tok")
    assert info.header.coder_id == 3
    with ContainerReader(tmp_path / "c3.tok") as reader:
        predicted = [record_needs_previous(reader.read_chunk(i).correction) for i in range(3)]
    assert predicted == [False, True, True]
    assert [c.linked for c in info.chunks] == predicted and st.linked_gops == 2
