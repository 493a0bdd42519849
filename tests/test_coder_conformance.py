"""Every registered entropy coder keeps the same promises (round trip, determinism, frame
accounting, clean errors on damage), and each one's bytes for a fixed input are pinned: a change
of a shared helper that changed a coder's bitstream fails here, not in users' files."""
from __future__ import annotations

import sys
import zlib

import numpy as np
import pytest

from test_context_coder import video_tokens
from tokcodec.codec import entropy
from tokcodec.codec.entropy import CoderContext, coder_ids, get_coder
from tokcodec.errors import FormatError, SetupError
from tokcodec.model.presets import DEFAULT_PRESET
from tokcodec.model.zoo import shipped_digests

DEFAULT_SHA = shipped_digests()[f"{DEFAULT_PRESET}.safetensors"]
CONTEXT = CoderContext(model_sha256=DEFAULT_SHA)  # coder 3 with the shipped default prior


def grids() -> list[tuple[str, np.ndarray, int]]:
    rng = np.random.default_rng(7)
    return [
        ("video-like", video_tokens(t=3, h=10, w=14, shift=(1, 0), seed=3), 18),
        ("random", rng.integers(0, 1 << 18, (2, 5, 7)), 18),
        ("constant", np.full((3, 4, 6), 12345), 18),
        ("single frame", video_tokens(t=1, h=6, w=9, seed=4), 18),
        ("odd 1x1", rng.integers(0, 1 << 18, (2, 1, 1)), 18),
        ("12 bits", video_tokens(t=2, h=7, w=5, bits=12, seed=5), 12),
        ("1 bit", rng.integers(0, 2, (2, 3, 4)), 1),
        ("empty", np.zeros((0, 4, 4), np.int64), 18),
    ]


@pytest.mark.parametrize("coder_id", coder_ids())
@pytest.mark.parametrize("name,tokens,bits", grids(), ids=[g[0] for g in grids()])
def test_round_trip_frame_bits_and_determinism(coder_id: int, name: str, tokens: np.ndarray, bits: int) -> None:
    coder = get_coder(coder_id, CONTEXT)
    payload = coder.encode(tokens, bits)
    assert isinstance(payload, bytes) and coder.encode(tokens.copy(), bits) == payload
    out = coder.decode(payload, tokens.shape, bits)
    assert out.shape == tokens.shape and np.issubdtype(out.dtype, np.integer)
    np.testing.assert_array_equal(out, tokens)
    per = coder.frame_bits(payload, tokens.shape, bits)
    assert len(per) == tokens.shape[0] and sum(per) <= 8 * len(payload)
    # a decoder built with no context reads the same payload (it names what it needs)
    np.testing.assert_array_equal(get_coder(coder_id).decode(payload, tokens.shape, bits), tokens)


@pytest.mark.parametrize("coder_id", coder_ids())
def test_damage_is_a_format_error(coder_id: int) -> None:
    coder = get_coder(coder_id, CONTEXT)
    tokens = video_tokens(t=3, h=10, w=14, shift=(1, 0), seed=9)
    payload = coder.encode(tokens, 18)
    for broken in (payload[:-1], payload + b"\0", payload[: len(payload) // 2]):
        with pytest.raises(FormatError):
            coder.decode(broken, tokens.shape, 18)
    with pytest.raises(FormatError):
        coder.decode(payload, (3, 10, 15), 18)  # the wrong grid


# (length, crc32) of each coder's payload for one fixed grid; coder 3 with the default prior; coder 4
# with no GOP before writes coder 3's bytes (its linked payloads: tests/test_linked_gops.py)
GOLDEN = {1: (1620, 1191720495), 2: (1234, 481144754), 3: (1506, 4163265232), 4: (1506, 4163265232)}


@pytest.mark.parametrize("coder_id", coder_ids())
def test_golden_payloads(coder_id: int) -> None:
    """The exact bytes: coders share helpers (lattice, segments, raw fallback), and a change to
    one of them must not silently change what any coder writes. Re-fitting the shipped prior
    changes coder 3's bytes (update its number then)."""
    payload = get_coder(coder_id, CONTEXT).encode(video_tokens(t=3, h=12, w=20, shift=(0, 1), seed=21), 18)
    assert (len(payload), zlib.crc32(payload)) == GOLDEN[coder_id]


def test_every_coder_has_a_golden_payload() -> None:
    assert sorted(GOLDEN) == coder_ids()


def test_unknown_ids_and_broken_installs_are_told_apart(monkeypatch) -> None:
    with pytest.raises(FormatError, match="unknown entropy coder id 250"):
        get_coder(250)
    monkeypatch.setitem(entropy.CODERS, 3, ("tokcodec.codec.no_such_module", "ContextCoder3"))
    monkeypatch.delitem(sys.modules, "tokcodec.codec.no_such_module", raising=False)
    with pytest.raises(SetupError, match="entropy coder 3 .* cannot be loaded"):
        get_coder(3)
