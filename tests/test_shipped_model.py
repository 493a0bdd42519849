"""End to end on the shipped default weights and the bundled sample clip."""
import re
from pathlib import Path

import numpy as np
import pytest

import tokcodec
from tokcodec.codec.context_coder3 import prior_for_model
from tokcodec.codec.entropy import DEFAULT_CODER_ID
from tokcodec.model.presets import DEFAULT_PRESET
from tokcodec.model.zoo import load_tokenizer, load_tokenizer_version, shipped_digests, shipped_weights_path

SAMPLE = Path(tokcodec.__file__).parent / "data" / "sample.mp4"


def test_default_weights_ship_and_load():
    path = shipped_weights_path(DEFAULT_PRESET)
    assert path.exists(), f"{path} is missing"
    assert path.stat().st_size < 50 * 2 ** 20
    loaded = load_tokenizer("default")
    assert loaded.trained and loaded.name == DEFAULT_PRESET
    assert (path.parent / f"{DEFAULT_PRESET}.md").exists(), "model card missing"


def test_sample_round_trip_quality(tmp_path):
    st = tokcodec.encode_video(SAMPLE, tmp_path / "s.tok", max_frames=17)
    assert st.frames == 17 and st.width == 640 and st.height == 360
    info = tokcodec.file_info(tmp_path / "s.tok")
    assert not info.untrained_model
    assert info.header.coder_id == DEFAULT_CODER_ID
    assert info.payload_bits_per_token < 16.0  # the context coder beats 18 raw bits
    tokcodec.decode_video(tmp_path / "s.tok", tmp_path / "s.mkv")
    cmp = tokcodec.compare_videos(SAMPLE, tmp_path / "s.mkv")
    assert cmp["frames"] == 17
    # an untrained or broken model lands near 10 dB; the shipped one (fast) measured 21.3 dB here
    assert cmp["psnr"] > 17.5, cmp


@pytest.mark.parametrize("previous", ["small", "medium"])
def test_files_of_the_previous_defaults_still_decode(tmp_path, previous):
    """The earlier defaults stay shipped: a file made with one names it, and decoding picks it
    without --model."""
    st = tokcodec.encode_video(SAMPLE, tmp_path / "old.tok", max_frames=5, model=previous)
    assert tokcodec.file_info(tmp_path / "old.tok").header.model_name == previous != DEFAULT_PRESET
    assert tokcodec.decode_video(tmp_path / "old.tok", tmp_path / "old.mkv").frames == st.frames == 5


#: previous versions of presets' weights, kept so that files made with them decode
KEPT_VERSIONS = sorted(n for n in shipped_digests() if re.fullmatch(r"[a-z0-9_]+-[0-9a-f]{8}\.safetensors", n))


@pytest.mark.parametrize("name", KEPT_VERSIONS)
def test_files_of_kept_versions_still_decode(tmp_path, name):
    preset = name.rsplit("-", 1)[0]
    digest = shipped_digests()[name]
    assert digest.startswith(name[-len("12345678.safetensors"):-len(".safetensors")])
    assert prior_for_model(digest) is not None, f"{name}: its coder 3 prior is not shipped"
    old = load_tokenizer_version(preset, digest)
    assert (old.name, old.sha256) == (preset, digest) != (preset, load_tokenizer(preset).sha256)
    tokcodec.encode_video(SAMPLE, tmp_path / "old.tok", max_frames=5, model=old)  # as that release did
    header = tokcodec.file_info(tmp_path / "old.tok").header
    assert (header.model_name, header.weights_sha256) == (preset, digest)
    assert tokcodec.decode_video(tmp_path / "old.tok", tmp_path / "old.mkv").frames == 5
    assert tokcodec.compare_videos(SAMPLE, tmp_path / "old.mkv")["psnr"] > 17.5


#: largest mean-colour drift (8-bit code values) a decoded flat clip may show
MAX_FLAT_DRIFT = 4.0
#: what the model's tokens alone must reach to count as fixed: below MAX_FLAT_DRIFT by a margin
#: that bf16 rounding on different hosts cannot cross (the skin clip drifts by 3.93 on a 2-core
#: AMD EPYC with AVX512-BF16 and by more than 4 on an Intel Xeon with AMX; grey 6.34 on the EPYC)
FIXED_TOKEN_DRIFT = 3.0


def _flat_clip_drift(tmp_path, rgb, correction: bool, passes: int | None = None, rdo: float | None = None) -> float:
    from conftest import write_clip

    rng = np.random.default_rng(0)
    ramp = np.linspace(-6, 6, 128)[None, None, :, None]
    clip = np.clip(np.round(np.asarray(rgb, float) + ramp + rng.normal(0, 2, (17, 96, 128, 3))), 0, 255)
    src = write_clip(tmp_path / "flat.mkv", clip.astype(np.uint8))
    extra = {} if rdo is None else {"rdo": rdo}
    tokcodec.encode_video(src, tmp_path / "flat.tok", correction=correction, passes=passes, **extra)
    tokcodec.decode_video(tmp_path / "flat.tok", tmp_path / "out.mkv")
    return tokcodec.compare_videos(src, tmp_path / "out.mkv")["colour_drift"]


@pytest.mark.parametrize("rgb", [(128, 128, 128), (224, 172, 145)], ids=["grey", "skin"])
def test_flat_clips_keep_their_colour(tmp_path, rgb):
    """Default settings: the correction layer pins each GOP's mean colour."""
    drift = _flat_clip_drift(tmp_path, rgb, correction=True)
    assert drift <= MAX_FLAT_DRIFT, f"mean colour of a flat {rgb} clip moved by {drift:.1f} code values"


@pytest.mark.xfail(strict=True, reason="known defect (issue 19): the default model's tokens alone move the "
                   "mean colour of flat clips by 4-9 code values (skin 3.9 on some hosts; python bench/colour_drift.py "
                   "--no-correction --passes 0 --rdo 0); strict, so this fails as soon as a model fixes it, and then "
                   "the mark must go. The closed-loop passes bring the mean over 8 colours from 5.8 to 3.3 "
                   "but pick passes by error, not drift: single colours still land at 4-5")
@pytest.mark.parametrize("rgb", [(128, 128, 128), (224, 172, 145)], ids=["grey", "skin"])
def test_flat_clips_keep_their_colour_from_tokens_alone(tmp_path, rgb):
    drift = _flat_clip_drift(tmp_path, rgb, correction=False, passes=0, rdo=0)  # the model's own tokens
    assert drift <= FIXED_TOKEN_DRIFT, f"mean colour of a flat {rgb} clip moved by {drift:.1f} code values"
