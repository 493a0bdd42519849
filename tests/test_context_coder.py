"""Coder 2 (context-adaptive token coder): exact round trips, rates that can fail, determinism
across processes, and malformed payloads that must raise FormatError."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tokcodec.codec.context_coder import (
    MODE_CONTEXT,
    MODE_RAW,
    ContextCoder,
    _flip_bytes,
)
from tokcodec.codec.lattice import geometry
from tokcodec.codec.entropy import get_coder
from tokcodec.errors import FormatError

ROOT = Path(__file__).resolve().parents[1]
CODER = ContextCoder()


def video_tokens(t: int = 5, h: int = 16, w: int = 24, bits: int = 18, shift: tuple[int, int] = (1, 1),
                 noise: float = 0.1, seed: int = 0) -> np.ndarray:
    """Tokens that behave like a tokenizer's on a panning shot: each bit is the sign of a smooth
    random field (one per channel), the fields move by ``shift`` cells per latent frame."""
    rng = np.random.default_rng(seed)
    pad_y, pad_x = 2 * abs(shift[0]) * t + 12, 2 * abs(shift[1]) * t + 12
    field = rng.standard_normal((bits, h + pad_y, w + pad_x))
    for axis in (1, 2):                       # 5-tap box blur, twice: smooth but not flat
        for _ in range(2):
            c = np.cumsum(field, axis=axis)
            field = (np.take(c, range(5, c.shape[axis]), axis) - np.take(c, range(c.shape[axis] - 5), axis)) / 5
    frames = []
    for f in range(t):
        oy = (field.shape[1] - h) // 2 + shift[0] * (f - t // 2)
        ox = (field.shape[2] - w) // 2 + shift[1] * (f - t // 2)
        z = field[:, oy:oy + h, ox:ox + w] + noise * rng.standard_normal((bits, h, w))
        frames.append(((z > 0).astype(np.int64) << np.arange(bits)[:, None, None]).sum(0))
    return np.stack(frames)


def roundtrip(tokens: np.ndarray, bits: int) -> bytes:
    payload = CODER.encode(tokens, bits)
    out = CODER.decode(payload, tokens.shape, bits)
    assert out.shape == tokens.shape
    np.testing.assert_array_equal(out, tokens)
    frame_bits = CODER.frame_bits(payload, tokens.shape, bits)
    assert len(frame_bits) == tokens.shape[0]
    assert sum(frame_bits) == 8 * len(payload)
    return payload


def bits_per_token(payload: bytes, tokens: np.ndarray) -> float:
    return 8 * len(payload) / tokens.size


# ----------------------------------------------------------------------------- round trips


def test_registered_as_coder_2() -> None:
    coder = get_coder(2)
    assert isinstance(coder, ContextCoder)
    assert coder.coder_id == 2


@pytest.mark.parametrize("bits", [18, 8])
@pytest.mark.parametrize("shape", [(5, 16, 16), (1, 1, 1), (5, 3, 7), (1, 9, 13), (2, 1, 9), (3, 8, 1)])
def test_roundtrip_random(shape: tuple[int, int, int], bits: int) -> None:
    tokens = np.random.default_rng(1).integers(0, 1 << bits, shape)
    roundtrip(tokens, bits)


@pytest.mark.parametrize("bits", [18, 8, 1, 20])
def test_roundtrip_video_like(bits: int) -> None:
    tokens = video_tokens(bits=bits, seed=bits)
    payload = roundtrip(tokens, bits)
    if bits >= 8:
        assert payload[0] == MODE_CONTEXT


@pytest.mark.parametrize("shape", [(5, 16, 16), (1, 1, 1), (5, 3, 7), (1, 12, 20)])
def test_roundtrip_constant(shape: tuple[int, int, int]) -> None:
    for value in (0, (1 << 18) - 1, 0x2A5A5):
        roundtrip(np.full(shape, value), 18)


def test_roundtrip_extremes_and_dtypes() -> None:
    tokens = video_tokens(t=3, h=10, w=11, seed=3)
    tokens[0, 0, 0], tokens[1, 2, 3], tokens[2, -1, -1] = 0, (1 << 18) - 1, 1
    for dtype in (np.int64, np.int32, np.uint32):
        roundtrip(tokens.astype(dtype), 18)


def test_odd_grids_and_single_frame() -> None:
    base = video_tokens(t=5, h=21, w=35, seed=4)
    for t, h, w in [(1, 21, 35), (5, 21, 35), (2, 5, 35), (3, 21, 2), (4, 2, 2)]:
        roundtrip(np.ascontiguousarray(base[:t, :h, :w]), 18)


def test_empty_grid() -> None:
    tokens = np.zeros((2, 0, 5), np.int64)
    assert CODER.decode(CODER.encode(tokens, 18), tokens.shape, 18).shape == (2, 0, 5)


def test_rejects_bad_tokens_and_bits() -> None:
    with pytest.raises(ValueError):
        CODER.encode(np.full((1, 2, 2), 1 << 18), 18)
    with pytest.raises(ValueError):
        CODER.encode(np.full((1, 2, 2), -1), 18)
    with pytest.raises(ValueError):
        CODER.encode(np.zeros((1, 2, 2), np.int64), 0)
    with pytest.raises(ValueError):
        CODER.encode(np.zeros((2, 2), np.int64), 18)


# ----------------------------------------------------------------------------- rates


def test_uniform_random_stays_near_raw() -> None:
    tokens = np.random.default_rng(2).integers(0, 1 << 18, (5, 24, 40))
    payload = roundtrip(tokens, 18)
    assert payload[0] == MODE_RAW
    assert bits_per_token(payload, tokens) <= 18.1


def test_repeated_frames_cost_far_less_than_raw() -> None:
    frame = video_tokens(t=1, h=24, w=40, noise=0.5, seed=5)[0]
    tokens = np.stack([frame] * 5)
    payload = roundtrip(tokens, 18)
    fb = CODER.frame_bits(payload, tokens.shape, 18)
    per_later = sum(fb[1:]) / (4 * frame.size)
    assert per_later < 1.0, f"repeated frames cost {per_later:.2f} bits/token"
    assert bits_per_token(payload, tokens) < 0.5 * 18


def test_constant_grid_is_tiny() -> None:
    tokens = np.full((5, 24, 40), 12345)
    payload = roundtrip(tokens, 18)
    assert bits_per_token(payload, tokens) < 0.6
    fb = CODER.frame_bits(payload, tokens.shape, 18)
    assert all(b / tokens[0].size < 0.1 for b in fb[2:]), fb


def test_video_like_tokens_compress() -> None:
    tokens = video_tokens(t=5, h=24, w=40, shift=(1, 2), seed=6)
    payload = roundtrip(tokens, 18)
    rate = bits_per_token(payload, tokens)
    fb = CODER.frame_bits(payload, tokens.shape, 18)
    first, later = fb[0] / tokens[0].size, sum(fb[1:]) / tokens[1:].size
    assert rate < 0.75 * 18, f"{rate:.2f} bits/token"
    assert later < first, "motion-compensated later frames should cost less than the first"


def test_motion_compensation_finds_the_pan() -> None:
    """The same tokens panned by 3 cells per frame must cost about as little as a still shot."""
    still = video_tokens(t=5, h=24, w=40, shift=(0, 0), noise=0.0, seed=7)
    panned = video_tokens(t=5, h=24, w=40, shift=(0, 3), noise=0.0, seed=7)
    roundtrip(still, 18)
    fb_pan = CODER.frame_bits(roundtrip(panned, 18), panned.shape, 18)
    assert sum(fb_pan[1:]) < 0.5 * 4 * 18 * still[0].size
    assert sum(fb_pan[1:]) < sum(fb_pan[:1]) * 4 * 0.5


# ----------------------------------------------------------------------------- determinism


def test_decode_in_fresh_process(tmp_path: Path) -> None:
    """Encode here, encode and decode again in a new interpreter: identical bytes and tokens."""
    tokens = video_tokens(t=5, h=20, w=28, shift=(1, -1), seed=8)
    payload = CODER.encode(tokens, 18)
    np.save(tmp_path / "tokens.npy", tokens)
    (tmp_path / "payload.bin").write_bytes(payload)
    script = (
        "import sys, numpy as np\n"
        "from pathlib import Path\n"
        "from tokcodec.codec.entropy import get_coder\n"
        "d = Path(sys.argv[1])\n"
        "tokens = np.load(d / 'tokens.npy')\n"
        "coder = get_coder(2)\n"
        "out = coder.decode((d / 'payload.bin').read_bytes(), tokens.shape, 18)\n"
        "np.save(d / 'decoded.npy', out)\n"
        "(d / 'again.bin').write_bytes(coder.encode(tokens, 18))\n"
    )
    subprocess.run([sys.executable, "-c", script, str(tmp_path)], check=True, cwd=ROOT, timeout=120)
    np.testing.assert_array_equal(np.load(tmp_path / "decoded.npy"), tokens)
    assert (tmp_path / "again.bin").read_bytes() == payload


def test_encode_is_deterministic_in_process() -> None:
    tokens = video_tokens(seed=9)
    assert CODER.encode(tokens, 18) == CODER.encode(tokens.copy(), 18)


# ----------------------------------------------------------------------------- malformed payloads


@pytest.fixture(scope="module")
def coded() -> tuple[np.ndarray, bytes]:
    tokens = video_tokens(t=5, h=12, w=16, seed=10)
    payload = CODER.encode(tokens, 18)
    assert payload[0] == MODE_CONTEXT
    return tokens, payload


def test_truncated_payloads_raise(coded: tuple[np.ndarray, bytes]) -> None:
    tokens, payload = coded
    for cut in sorted({0, 1, 4, 5, 6, 9, 12, 20, len(payload) // 2, len(payload) - 4, len(payload) - 1}):
        with pytest.raises(FormatError):
            CODER.decode(payload[:cut], tokens.shape, 18)
        with pytest.raises(FormatError):
            CODER.frame_bits(payload[:cut], tokens.shape, 18)


def test_extended_payload_raises(coded: tuple[np.ndarray, bytes]) -> None:
    tokens, payload = coded
    with pytest.raises(FormatError):
        CODER.decode(payload + b"\0\0\0\0", tokens.shape, 18)


def test_bit_flips_raise(coded: tuple[np.ndarray, bytes]) -> None:
    tokens, payload = coded
    rng = np.random.default_rng(11)
    positions = list(range(min(len(payload), 24))) + list(rng.integers(0, len(payload), 40))
    for pos in positions:
        for bit in (0, 3, 7):
            bad = bytearray(payload)
            bad[pos] ^= 1 << bit
            with pytest.raises(FormatError):
                CODER.decode(bytes(bad), tokens.shape, 18)


def test_raw_mode_corruption_raises() -> None:
    tokens = np.random.default_rng(12).integers(0, 1 << 18, (2, 8, 8))
    payload = CODER.encode(tokens, 18)
    assert payload[0] == MODE_RAW
    bad = bytearray(payload)
    bad[-1] ^= 0x10
    for broken in (bytes(bad), payload[:-1], payload + b"\0"):
        with pytest.raises(FormatError):
            CODER.decode(broken, tokens.shape, 18)


def test_wrong_header_fields_raise(coded: tuple[np.ndarray, bytes]) -> None:
    tokens, payload = coded
    t, h, w = tokens.shape
    passes = len(geometry(h, w, CODER.config.levels).passes)
    lengths_at = 5 + (t - 1) + _flip_bytes(passes, 18)
    cases = {
        "unknown mode": bytes([7]) + payload[1:],
        "motion out of range": payload[:5] + bytes([0x08]) + payload[6:],
        "huge varint": payload[:lengths_at] + b"\xff\xff\xff\xff\xff\x7f" + payload[lengths_at + 1:],
        "lengths do not add up": payload[:lengths_at] + bytes([payload[lengths_at] + 1]) + payload[lengths_at + 1:],
        "empty": b"",
    }
    for bad in cases.values():
        with pytest.raises(FormatError):
            CODER.decode(bad, tokens.shape, 18)
        with pytest.raises(FormatError):
            CODER.frame_bits(bad, tokens.shape, 18)


def test_wrong_shape_or_bits_raise(coded: tuple[np.ndarray, bytes]) -> None:
    tokens, payload = coded
    t, h, w = tokens.shape
    for shape in [(t, h, w + 1), (t, w, h), (t + 1, h, w), (1, 100_000, 100_000), (t, -1, w)]:
        with pytest.raises(FormatError):
            CODER.decode(payload, shape, 18)
    with pytest.raises(FormatError):
        CODER.decode(payload, tokens.shape, 17)


def test_random_garbage_raises() -> None:
    rng = np.random.default_rng(13)
    for n in (5, 6, 30, 200, 1000):
        for mode in (MODE_RAW, MODE_CONTEXT):
            garbage = bytes([mode]) + rng.integers(0, 256, n - 1, dtype=np.uint8).tobytes()
            with pytest.raises(FormatError):
                CODER.decode(garbage, (5, 12, 16), 18)


def test_alternating_channels_are_flipped() -> None:
    """Channels whose signs alternate between neighbouring cells (checkerboard-like) must cost
    about as much as smooth ones: the encoder flips their neighbour votes."""
    smooth = video_tokens(t=5, h=24, w=40, shift=(0, 1), noise=0.05, seed=14)
    yy, xx = np.mgrid[0:24, 0:40]
    checker = ((yy + xx) % 2).astype(np.int64)
    mask = sum(1 << p for p in range(0, 18, 2))           # every other channel alternates
    alternating = smooth ^ (checker * mask)[None]
    rate_smooth = bits_per_token(roundtrip(smooth, 18), smooth)
    rate_alt = bits_per_token(roundtrip(alternating, 18), alternating)
    assert rate_alt < rate_smooth + 1.5, (rate_smooth, rate_alt)   # 4+ bits more unflipped
