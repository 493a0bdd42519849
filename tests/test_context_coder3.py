"""Coder 3 (learned per-tokenizer prior): exact round trips, the shipped prior and its binding,
rates that can fail, bit-exactness across processes, and malformed payloads -> FormatError."""
from __future__ import annotations

import hashlib
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from test_coder_conformance import GOLDEN as ALL_GOLDEN
from test_context_coder import video_tokens

from tokcodec.codec import context_coder3 as c3
from tokcodec.codec.context_coder import MODE_CONTEXT, MODE_RAW, ContextCoder
from tokcodec.codec.context_coder3 import (
    MODE_CODER2,
    ContextCoder3,
    load_prior,
    prior_for_model,
)
from tokcodec.codec.entropy import DEFAULT_CODER_ID, get_coder
from tokcodec.errors import FormatError
from tokcodec.model.presets import DEFAULT_PRESET
from tokcodec.model.zoo import shipped_digests

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL_SHA256 = shipped_digests()[f"{DEFAULT_PRESET}.safetensors"]  # the default weights
CODER = ContextCoder3(model_sha256=DEFAULT_MODEL_SHA256)
PRIOR_FILE = c3.WEIGHTS_DIR / f"{DEFAULT_PRESET}.coder3.safetensors"


def roundtrip(tokens: np.ndarray, bits: int = 18, coder: ContextCoder3 = CODER) -> bytes:
    payload = coder.encode(tokens, bits)
    out = coder.decode(payload, tokens.shape, bits)
    assert out.shape == tokens.shape
    np.testing.assert_array_equal(out, tokens)
    frame_bits = coder.frame_bits(payload, tokens.shape, bits)
    assert len(frame_bits) == tokens.shape[0]
    assert sum(frame_bits) == 8 * len(payload)
    return payload


def rate(payload: bytes, tokens: np.ndarray) -> float:
    return 8 * len(payload) / tokens.size


@pytest.fixture(scope="module")
def real_tokens() -> np.ndarray:
    """Tokens of the shipped model on a small held-out validation clip (3 x 12 x 20)."""
    import torch

    from tokcodec.model.zoo import load_tokenizer
    from tokcodec.train.data import validation_clips

    model = load_tokenizer("default").tokenizer.eval()
    clip = validation_clips(frames=9, height=96, width=160, count=1)[0]
    x = torch.from_numpy(clip).float().div(127.5).sub(1.0).permute(3, 0, 1, 2)[None]
    with torch.no_grad():
        return model.encode_indices(x)[0].numpy().astype(np.int64)


# ----------------------------------------------------------------------------- registry and prior


def test_registered_as_coder_3_and_files_of_older_coders_decode() -> None:
    coder = get_coder(3)
    assert isinstance(coder, ContextCoder3) and coder.coder_id == 3
    assert isinstance(get_coder(2), ContextCoder)      # coder 2 files keep decoding
    assert DEFAULT_CODER_ID == 4 and isinstance(get_coder(4), ContextCoder3)  # coder 3 with linked GOPs


def test_shipped_prior_is_bound_to_the_default_weights() -> None:

    prior = load_prior(PRIOR_FILE)
    assert prior.model_sha256 == DEFAULT_MODEL_SHA256
    assert prior.key == hashlib.sha256(PRIOR_FILE.read_bytes()).digest()[:c3.KEY_BYTES]
    assert prior.bits == 18
    assert prior_for_model(DEFAULT_MODEL_SHA256) is not None
    assert prior_for_model("00" * 32) is None


def test_priors_are_read_once_and_match_the_zoo_sums() -> None:

    assert c3._shipped_digests() == shipped_digests()
    assert shipped_digests()[PRIOR_FILE.name] == hashlib.sha256(PRIOR_FILE.read_bytes()).hexdigest()
    first = prior_for_model(DEFAULT_MODEL_SHA256)
    misses = c3.shipped_priors.cache_info().misses
    for _ in range(3):
        assert prior_for_model(DEFAULT_MODEL_SHA256) is first
    assert c3.shipped_priors.cache_info().misses == misses
    assert first.kernel is first.kernel             # tables built once per prior


@pytest.mark.parametrize("damage", ["digest", "unlisted"])
def test_prior_not_matching_sha256sums_is_not_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   damage: str) -> None:
    tokens = video_tokens(t=2, h=8, w=12, seed=45)
    payload = CODER.encode(tokens, 18)
    assert payload[0] == MODE_CONTEXT
    data = PRIOR_FILE.read_bytes()
    (tmp_path / PRIOR_FILE.name).write_bytes(data)
    digest = hashlib.sha256(data).hexdigest() if damage == "unlisted" else "0" * 64
    name = PRIOR_FILE.name if damage == "digest" else "other.coder3.safetensors"
    (tmp_path / "SHA256SUMS").write_text(f"{digest}  {name}\n")
    monkeypatch.setattr(c3, "WEIGHTS_DIR", tmp_path)
    c3.shipped_priors.cache_clear()
    try:
        assert prior_for_model(DEFAULT_MODEL_SHA256) is None
        assert PRIOR_FILE.name in c3.SKIPPED_PRIORS
        with pytest.raises(FormatError, match="damaged" if damage == "digest" else "not listed"):
            CODER.decode(payload, tokens.shape, 18)
        fallback = CODER.encode(tokens, 18)
        assert fallback[0] == MODE_CODER2
    finally:
        monkeypatch.undo()
        c3.shipped_priors.cache_clear()
    np.testing.assert_array_equal(CODER.decode(payload, tokens.shape, 18), tokens)


def test_damaged_prior_file_raises(tmp_path: Path) -> None:
    data = PRIOR_FILE.read_bytes()
    for name, bad in {"truncated": data[: len(data) // 2], "garbage": b"\x07" * 100}.items():
        path = tmp_path / f"{name}.coder3.safetensors"
        path.write_bytes(bad)
        with pytest.raises(FormatError):
            load_prior(path)


def test_prior_arrays_are_checked() -> None:
    from safetensors.numpy import load

    arrays = load(PRIOR_FILE.read_bytes())
    sha = DEFAULT_MODEL_SHA256
    c3.prior_from_arrays(arrays, sha, b"test")
    for key, value in {"w1": arrays["w1"][:-1], "w2": arrays["w2"].astype(np.float32),
                       "w1 ": arrays["w1"] * 0 + 5000, "ar": arrays["ar"][:, :-1]}.items():
        with pytest.raises(FormatError):
            c3.prior_from_arrays({**arrays, key.strip(): value}, sha, b"test")


# ----------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("shape", [(5, 16, 16), (1, 1, 1), (5, 3, 7), (1, 9, 13), (2, 1, 9), (3, 8, 1)])
def test_roundtrip_random(shape: tuple[int, int, int]) -> None:
    roundtrip(np.random.default_rng(1).integers(0, 1 << 18, shape))


@pytest.mark.parametrize("shape", [(5, 16, 16), (1, 1, 1), (5, 3, 7), (1, 12, 20)])
def test_roundtrip_constant(shape: tuple[int, int, int]) -> None:
    for value in (0, (1 << 18) - 1, 0x2A5A5):
        roundtrip(np.full(shape, value))


def test_roundtrip_video_like_and_odd_grids() -> None:
    base = video_tokens(t=5, h=21, w=35, seed=4)
    for t, h, w in [(1, 21, 35), (5, 21, 35), (2, 5, 35), (3, 21, 2), (4, 2, 2)]:
        roundtrip(np.ascontiguousarray(base[:t, :h, :w]))
    tokens = video_tokens(t=3, h=10, w=11, seed=3)
    for dtype in (np.int64, np.int32, np.uint32):
        roundtrip(tokens.astype(dtype))


def test_empty_grid() -> None:
    tokens = np.zeros((2, 0, 5), np.int64)
    assert CODER.decode(CODER.encode(tokens, 18), tokens.shape, 18).shape == (2, 0, 5)


@pytest.mark.parametrize("bits", [1, 8, 20])
def test_other_bit_widths_fall_back_to_coder_2(bits: int) -> None:
    tokens = video_tokens(bits=bits, seed=bits)
    payload = roundtrip(tokens, bits)
    assert payload[0] == MODE_CODER2
    assert payload[1:] == ContextCoder().encode(tokens, bits)


def test_no_prior_for_the_model_falls_back_to_coder_2() -> None:
    coder = ContextCoder3(model_sha256="ab" * 32)
    tokens = video_tokens(seed=5)
    payload = roundtrip(tokens, 18, coder)
    assert payload[0] == MODE_CODER2
    np.testing.assert_array_equal(CODER.decode(payload, tokens.shape, 18), tokens)


def test_rejects_bad_tokens_and_bits() -> None:
    with pytest.raises(ValueError):
        CODER.encode(np.full((1, 2, 2), 1 << 18), 18)
    with pytest.raises(ValueError):
        CODER.encode(np.zeros((1, 2, 2), np.int64), 0)
    with pytest.raises(ValueError):
        CODER.encode(np.zeros((2, 2), np.int64), 18)


# ----------------------------------------------------------------------------- rates


def test_uniform_random_stays_near_raw() -> None:
    tokens = np.random.default_rng(2).integers(0, 1 << 18, (5, 24, 40))
    payload = roundtrip(tokens)
    assert payload[0] == MODE_RAW
    assert rate(payload, tokens) <= 18.1


def test_repeated_frames_cost_far_less_than_raw() -> None:
    frame = video_tokens(t=1, h=24, w=40, noise=0.5, seed=5)[0]
    tokens = np.stack([frame] * 5)
    payload = roundtrip(tokens)
    fb = CODER.frame_bits(payload, tokens.shape, 18)
    assert sum(fb[1:]) / (4 * frame.size) < 2.0, fb
    assert rate(payload, tokens) < 0.5 * 18


def test_constant_grid_is_small() -> None:
    tokens = np.full((5, 24, 40), 12345)
    assert rate(roundtrip(tokens), tokens) < 1.5


def test_real_tokens_roundtrip_and_beat_coder_2(real_tokens: np.ndarray) -> None:
    payload = roundtrip(real_tokens)
    assert payload[0] == MODE_CONTEXT
    coder2 = ContextCoder().encode(real_tokens, 18)
    assert rate(payload, real_tokens) < 0.85 * rate(coder2, real_tokens), \
        (rate(payload, real_tokens), rate(coder2, real_tokens))


# ----------------------------------------------------------------------------- determinism


GOLDEN = ALL_GOLDEN[3]  # (length, crc32) with the default model's shipped prior


def test_golden_payload() -> None:
    """The exact bytes for a fixed input: a machine whose arithmetic differed (BLAS, numpy,
    constriction) would fail here instead of writing files other machines cannot decode.
    Re-fitting the shipped prior changes these bytes (update the number then)."""
    tokens = video_tokens(t=3, h=12, w=20, shift=(0, 1), seed=21)
    payload = CODER.encode(tokens, 18)
    assert payload[0] == MODE_CONTEXT
    assert (len(payload), zlib.crc32(payload)) == GOLDEN, (len(payload), zlib.crc32(payload))



@pytest.fixture
def numpy_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run coder 3 without the compiled kernels (as without numba)."""
    monkeypatch.setattr(c3, "_KERNELS", False)


def _both_paths(tokens: np.ndarray, bits: int = 18) -> bytes:
    """Encode with the compiled and the numpy path; identical bytes, and each decodes the other's."""
    kernels = c3._kernels()
    assert kernels is not None, "numba is a core dependency: the compiled path must load"
    fast = CODER.encode(tokens, bits)
    c3._KERNELS = False
    try:
        slow = CODER.encode(tokens, bits)
        np.testing.assert_array_equal(CODER.decode(fast, tokens.shape, bits), tokens)
    finally:
        c3._KERNELS = kernels
    assert fast == slow
    np.testing.assert_array_equal(CODER.decode(slow, tokens.shape, bits), tokens)
    return fast


def test_compiled_and_numpy_paths_agree_on_real_tokens(real_tokens: np.ndarray) -> None:
    assert _both_paths(real_tokens)[0] == MODE_CONTEXT


def test_compiled_and_numpy_paths_agree_on_synthetic_and_random_tokens() -> None:
    rng = np.random.default_rng(40)
    cases = [video_tokens(t=3, h=13, w=22, shift=(1, -2), seed=41), video_tokens(t=2, h=5, w=3, seed=42),
             np.full((3, 7, 9), 0x15A5A), rng.integers(0, 1 << 18, (2, 6, 10)), np.zeros((1, 1, 1), np.int64)]
    # random cells in a smooth grid: some frames code, the random one is stored raw and the model
    # must still learn from it the same way on both paths
    mixed = video_tokens(t=4, h=24, w=32, seed=43)
    mixed[2] = rng.integers(0, 1 << 18, mixed[2].shape)
    cases.append(mixed)
    for tokens in cases:
        _both_paths(tokens)


def test_numpy_path_roundtrips(numpy_path: None, real_tokens: np.ndarray) -> None:
    roundtrip(real_tokens)
    roundtrip(video_tokens(t=2, h=9, w=7, seed=44))


def test_golden_payload_on_the_numpy_path(numpy_path: None) -> None:
    test_golden_payload()


def test_kernel_constants_match_the_coder() -> None:
    from tokcodec.codec import context_kernels as k

    assert (k.CHUNK, k.LANES) == (c3.CHUNK, c3.LANES)
    assert (k.ACT_SHIFT, k.ACT_MAX, k.SKIP_SCALE) == (c3.ACT_SHIFT, c3.ACT_MAX, c3.LOGIT_UNIT // c3.W1_UNIT)
    assert (k.SSE_SHIFT, k.SSE_HALF, k.N_SSE, k.SSE_WEIGHT) == (c3.SSE_SHIFT, c3.SSE_HALF, c3.N_SSE, c3.SSE_WEIGHT)
    assert (k.PROB_BITS, 1 << 24) == (c3.PROB_BITS, c3.RC_TOP)


def test_a_prior_beyond_int32_uses_the_numpy_path() -> None:
    from safetensors.numpy import load

    arrays = load(PRIOR_FILE.read_bytes())
    big = c3.prior_from_arrays({**arrays, "w2": arrays["w2"] * 3000}, DEFAULT_MODEL_SHA256, b"test")
    assert big.kernel is None
    assert load_prior(PRIOR_FILE).kernel is not None


def test_decode_in_fresh_process(tmp_path: Path) -> None:
    tokens = video_tokens(t=5, h=20, w=28, shift=(1, -1), seed=8)
    payload = CODER.encode(tokens, 18)
    np.save(tmp_path / "tokens.npy", tokens)
    (tmp_path / "payload.bin").write_bytes(payload)
    script = (
        "import sys, numpy as np\n"
        "from pathlib import Path\n"
        "from tokcodec.codec.entropy import CoderContext, get_coder\n"
        "d = Path(sys.argv[1])\n"
        "tokens = np.load(d / 'tokens.npy')\n"
        "coder = get_coder(3, CoderContext(model_sha256=sys.argv[2]))\n"
        "out = coder.decode((d / 'payload.bin').read_bytes(), tokens.shape, 18)\n"
        "np.save(d / 'decoded.npy', out)\n"
        "(d / 'again.bin').write_bytes(coder.encode(tokens, 18))\n"
    )
    subprocess.run([sys.executable, "-c", script, str(tmp_path), DEFAULT_MODEL_SHA256], check=True, cwd=ROOT,
                   timeout=120)
    np.testing.assert_array_equal(np.load(tmp_path / "decoded.npy"), tokens)
    assert (tmp_path / "again.bin").read_bytes() == payload


# ----------------------------------------------------------------------------- malformed payloads


@pytest.fixture(scope="module")
def coded() -> tuple[np.ndarray, bytes]:
    tokens = video_tokens(t=5, h=12, w=16, seed=10)
    payload = CODER.encode(tokens, 18)
    assert payload[0] == MODE_CONTEXT
    return tokens, payload


def test_truncated_and_extended_payloads_raise(coded: tuple[np.ndarray, bytes]) -> None:
    tokens, payload = coded
    for cut in sorted({0, 1, 4, 5, 6, 9, 12, 20, len(payload) // 2, len(payload) - 4, len(payload) - 1}):
        with pytest.raises(FormatError):
            CODER.decode(payload[:cut], tokens.shape, 18)
        with pytest.raises(FormatError):
            CODER.frame_bits(payload[:cut], tokens.shape, 18)
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


def test_unknown_prior_key_raises(coded: tuple[np.ndarray, bytes]) -> None:
    tokens, payload = coded
    bad = payload[:5] + b"\xde\xad\xbe\xef" + payload[9:]
    with pytest.raises(FormatError, match="prior"):
        CODER.decode(bad, tokens.shape, 18)


def test_wrong_shape_bits_or_garbage_raise(coded: tuple[np.ndarray, bytes]) -> None:
    tokens, payload = coded
    t, h, w = tokens.shape
    for shape in [(t, h, w + 1), (t, w, h), (t + 1, h, w), (1, 100_000, 100_000), (t, -1, w)]:
        with pytest.raises(FormatError):
            CODER.decode(payload, shape, 18)
    with pytest.raises(FormatError):
        CODER.decode(payload, tokens.shape, 17)
    for bits in (0, -1, 21, 64):         # never ValueError on the decoding side
        with pytest.raises(FormatError):
            CODER.decode(payload, tokens.shape, bits)
        with pytest.raises(FormatError):
            CODER.frame_bits(payload, tokens.shape, bits)
        with pytest.raises(FormatError):
            CODER.decode(bytes([MODE_CODER2]) + payload[1:], tokens.shape, bits)
    rng = np.random.default_rng(13)
    for n in (1, 5, 6, 30, 200, 1000):
        for mode in (MODE_RAW, MODE_CONTEXT, MODE_CODER2, 9):
            garbage = bytes([mode]) + rng.integers(0, 256, n - 1, dtype=np.uint8).tobytes()
            with pytest.raises(FormatError):
                CODER.decode(garbage, (5, 12, 16), 18)


def test_fitting_features_match_the_coder() -> None:
    """tokcodec/codec/prior_fit.py fits on ``features``; the coder computes the same first layer
    in parts (per frame and per pass). Both must give the same logits, or a fitted prior would
    silently code worse than it measured."""
    from safetensors.numpy import load

    from tokcodec.codec import lattice

    arrays = {k: v.astype(np.float64) for k, v in load(PRIOR_FILE.read_bytes()).items()}
    prior = c3.prior_from_arrays(load(PRIOR_FILE.read_bytes()), DEFAULT_MODEL_SHA256, b"test")
    hidden = prior.hidden
    tokens = video_tokens(t=2, h=9, w=13, shift=(1, 1), seed=30)
    geo = lattice.geometry(9, 13, c3.LEVELS_PER_PASS)
    model = c3.PriorModel(prior, 18)
    prev = None
    for f in range(2):
        prev_feats, has = c3.prev_features(geo, 18, prev, (0, 0) if f == 0 else (1, 1))
        planes = lattice.unpack_bits(tokens[f].reshape(-1)[geo.order], 18)
        fr = c3.FrameState(np.zeros((9 * 13 + 1, 18), np.float32), planes,
                           model.start_frame(geo, prev_feats, has, f == 0), model.pred_part(prev_feats))
        fr.signs[:-1] = planes * 2.0 - 1.0
        for i, ps in enumerate(geo.passes):
            x = c3.features(geo, ps, i, fr.signs, prev_feats, has, f == 0).astype(np.float64)
            z = x @ arrays["w1"] + arrays["b1"]
            act = np.minimum(np.floor(np.maximum(z[:, :hidden], 0) / 16), c3.ACT_MAX)
            expected = act @ arrays["w2"] + arrays["b2"] + z[:, hidden:] * 16
            np.testing.assert_array_equal(model.logits(fr, ps, i), expected)
        rm = np.empty_like(planes)
        rm[geo.order] = planes
        prev = rm


def test_the_prior_fitter_is_a_library_function(tmp_path: Path) -> None:
    """tokcodec.codec.prior_fit fits and writes a prior that coder 3 can load, and refuses to
    replace the prior of weights that still ship (files coded with them name it)."""
    from tokcodec.codec.prior_fit import PriorFitConfig, fit_prior, refuse_to_orphan
    from tokcodec.errors import ModelError

    with pytest.raises(ModelError, match="may have been coded with"):
        refuse_to_orphan(PRIOR_FILE, "0" * 64)
    refuse_to_orphan(PRIOR_FILE, DEFAULT_MODEL_SHA256)  # its own weights may refresh it
    out = fit_prior(PriorFitConfig(weights="tiny", clips360=1, clips128=1, epochs=1, hidden=4,
                                   output=tmp_path / "tiny.coder3.safetensors"), log=lambda _: None).path
    prior = load_prior(out)
    assert out.exists() and prior.bits == 18 and len(prior.model_sha256) == 64
