"""Kept weights stored as deltas: the exact bytes come back, damage and wrong bases are refused,
and the package loads, hashes and decodes with a delta as with the file itself."""
import hashlib
import struct

import pytest
import torch
from safetensors.torch import save

from conftest import smooth_clip, write_clip
from tokcodec.codec.pipeline import compare_videos, decode_video, encode_video
from tokcodec.codec.verify import verify_file
from tokcodec.errors import ModelError
from tokcodec.model import zoo
from tokcodec.model.zoo import save_weights
from tokcodec.model.presets import get_preset
from tokcodec.model.weights_delta import DeltaError, apply_delta, delta_path, make_delta, read_delta_header


def _files() -> tuple[bytes, bytes]:
    g = torch.Generator().manual_seed(0)
    shared = torch.randn(300, 7, generator=g)
    base = save({"a": shared.half(), "b": torch.randn(50, generator=g).half(),
                 "c": torch.randn(9, generator=g)}, metadata={"note": "base"})
    target = save({"a": (shared + 1e-3 * torch.randn(300, 7, generator=g)).half(),  # close: XOR-ed
                   "b": torch.randn(51, generator=g).half(),                         # another size
                   "c": torch.randn(9, generator=g).half(),                          # another dtype
                   "d": torch.arange(13, dtype=torch.int8)},                         # not in the base
                  metadata={"note": "target, a longer header"})
    return target, base


def test_a_delta_rebuilds_the_exact_bytes_and_is_smaller():
    target, base = _files()
    delta = make_delta(target, base, "base.safetensors")
    assert apply_delta(delta, lambda name: base, len(target)) == target
    assert read_delta_header(delta)[:4] == ("base.safetensors", hashlib.sha256(base).hexdigest(), len(target),
                                            hashlib.sha256(target).hexdigest())
    assert len(delta) < len(target)
    # odd sizes split into planes and back (the header region is free-form)
    odd = target + b"\0"
    assert apply_delta(make_delta(odd, base, "b"), lambda name: base, len(odd)) == odd


def test_damaged_deltas_and_wrong_bases_are_refused():
    target, base = _files()
    delta = make_delta(target, base, "base.safetensors")
    name_end = 10 + len("base.safetensors")
    cases = {
        "bad magic": b"X" + delta[1:],
        "version": delta[:8] + b"\x02" + delta[9:],
        "truncated header": delta[:20],
        "damaged payload": delta[:-5],
        "rebuilt file does not match": delta[:name_end + 40] + bytes([delta[name_end + 40] ^ 1]) + delta[name_end + 41:],
        "not a file name": delta[:10] + b"../e.safetensors" + delta[name_end:],
        "larger than": delta[:name_end + 32] + struct.pack("<Q", 1 << 40) + delta[name_end + 40:],
    }
    for reason, bad in cases.items():
        with pytest.raises(DeltaError, match=reason if reason != "damaged payload" else "payload"):
            apply_delta(bad, lambda name: base, 1 << 30)
    with pytest.raises(DeltaError, match="not the file it was made against"):
        apply_delta(delta, lambda name: base + b" ", len(target))
    # a payload whose frame states more bytes than the header allows is refused before it is
    # decompressed (zstd would allocate what the frame states, whatever the caller's bound)
    longer = make_delta(target + bytes(1000), base, "base.safetensors")  # its frame states the longer size
    forged = longer[:name_end + 32] + struct.pack("<Q", len(target)) + longer[name_end + 40:]
    with pytest.raises(DeltaError, match=f"states {len(target) + 1000} bytes, at most {len(target)} expected"):
        apply_delta(forged, lambda name: base, 1 << 30)
    with pytest.raises(ValueError, match="file name"):
        make_delta(target, base, "dir/base.safetensors")


def test_a_kept_version_stored_as_a_delta_loads_hashes_and_decodes(tmp_path, monkeypatch):
    weights = tmp_path / "weights"
    weights.mkdir()
    tiny = get_preset("tiny")
    state = zoo.random_init(tiny, 1).state_dict()
    new = save_weights(state, tiny, weights / "tiny.safetensors")
    nudged = {k: v + 0.01 if k.startswith("decoder.conv_out") else v for k, v in state.items()}
    old = save_weights(nudged, tiny, weights / "kept.safetensors")
    kept = weights / f"tiny-{old[:8]}.safetensors"
    (weights / "kept.safetensors").rename(kept)
    (weights / "SHA256SUMS").write_text(f"{old}  {kept.name}\n{new}  tiny.safetensors\n")
    monkeypatch.setattr(zoo, "WEIGHTS_DIR", weights)
    src = write_clip(tmp_path / "in.mkv", smooth_clip(5, 16, 16))
    encode_video(src, tmp_path / "old.tok", model=zoo.load_tokenizer_version("tiny", old))
    decode_video(tmp_path / "old.tok", tmp_path / "from_file.mkv", device="cpu")

    full = kept.read_bytes()
    delta = make_delta(full, (weights / "tiny.safetensors").read_bytes(), "tiny.safetensors")
    delta_path(kept).write_bytes(delta)
    kept.unlink()
    assert len(delta) < len(full) / 2  # only conv_out differs
    assert zoo.weights_bytes(kept) == full and zoo.weights_sha256(str(kept)) == old
    assert zoo.shipped_version("tiny", old) == kept and zoo.kept_versions("tiny") == [old[:8]]
    assert zoo.load_tokenizer_version("tiny", old).sha256 == old
    assert zoo.weights_config(str(kept)) == tiny  # read from the rebuilt file's metadata
    decode_video(tmp_path / "old.tok", tmp_path / "from_delta.mkv", device="cpu")
    assert compare_videos(tmp_path / "from_file.mkv", tmp_path / "from_delta.mkv")["psnr"] == float("inf")
    assert verify_file(tmp_path / "old.tok").ok

    # a damaged delta, or one whose base changed, is refused like damaged weights
    delta_path(kept).write_bytes(delta[:-3])
    with pytest.raises(ModelError, match="reinstall"):
        decode_video(tmp_path / "old.tok", tmp_path / "x.mkv", device="cpu")
    delta_path(kept).write_bytes(delta)
    save_weights(zoo.random_init(tiny, 5).state_dict(), tiny, weights / "tiny.safetensors")
    with pytest.raises(ModelError, match="not the file it was made against"):
        zoo.weights_bytes(kept)


def test_every_shipped_file_is_there_as_itself_or_as_a_delta():
    for name, digest in zoo.shipped_digests().items():
        path = zoo.WEIGHTS_DIR / name
        assert zoo.weights_exist(path), name
        if not path.exists():
            assert hashlib.sha256(zoo.weights_bytes(path)).hexdigest() == digest, name


@pytest.mark.parametrize("header", [b"[1, 2]", b"", b"{not json", b"\xff\xfe"], ids=["list", "empty", "json", "utf8"])
def test_a_weights_file_with_a_malformed_header_is_a_model_error(tmp_path, header):
    """The zoo reads metadata with the delta module's checked header parser: a header that is not
    a JSON object is a clear ModelError, never a stray AttributeError or JSON error."""
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(len(header).to_bytes(8, "little") + header)
    with pytest.raises(ModelError, match="not a safetensors file"):
        zoo.load_tokenizer(str(bad))
