import pytest
import torch

from tokcodec.errors import ModelError
from tokcodec.model import VideoTokenizer, get_preset
from tokcodec.model.layers import AdaptiveGroupNorm, depth_to_space, pad_front_frames, space_to_depth
from tokcodec.model.lfq import LFQ, bits_to_indices, indices_to_bits, indices_to_codes, split_indices
from tokcodec.model.zoo import random_init


@pytest.fixture(scope="module", params=[3, 2], ids=["3-tap", "2-tap"])
def model(request) -> VideoTokenizer:
    """The tiny preset with 3-tap (as medium) and 2-tap (as fast) causal time kernels."""
    import dataclasses

    return random_init(dataclasses.replace(get_preset("tiny"), temporal_kernel=request.param)).eval()


def test_presets_state_compression_and_bits():
    for name in ("tiny", "small", "medium", "fast", "base", "default"):
        cfg = get_preset(name)
        assert cfg.compression == (4, 8, 8)
        assert cfg.bits == 18 and cfg.vocab_size == 2 ** 18


def test_encoder_is_causal(model):
    torch.manual_seed(0)
    x = torch.rand(1, 3, 17, 32, 32) * 2 - 1
    base = model.encoder(x)
    for k in (1, 4, 5, 9, 16):
        y = x.clone()
        y[:, :, k] += 0.5
        out = model.encoder(y)
        # latent frame j sees input frames <= 4j: every latent frame before ceil(k/4) is unchanged
        first_affected = -(-k // 4)
        assert torch.equal(out[:, :, :first_affected], base[:, :, :first_affected]), k
        assert not torch.equal(out[:, :, first_affected], base[:, :, first_affected]), k


def test_decoder_is_causal(model):
    idx = torch.randint(0, 2 ** 18, (1, 5, 4, 4))
    base = model.decode_indices(idx)
    idx2 = idx.clone()
    idx2[:, 3] = torch.randint(0, 2 ** 18, (1, 4, 4))
    out = model.decode_indices(idx2)
    # latent frame 3 drives frames 9..12; frames before 9 must not change
    assert torch.equal(out[:, :, :9], base[:, :, :9])
    assert not torch.equal(out[:, :, 9:13], base[:, :, 9:13])


def test_image_tokens_equal_first_latent_frame_of_video(model):
    torch.manual_seed(1)
    video = torch.rand(1, 3, 9, 24, 40) * 2 - 1
    image = video[:, :, :1]
    assert torch.equal(model.encode_indices(image)[:, 0], model.encode_indices(video)[:, 0])


@pytest.mark.parametrize("frames", [1, 5, 17])
def test_shapes(model, frames):
    x = torch.rand(2, 3, frames, 16, 24) * 2 - 1
    recon, q = model(x)
    assert recon.shape == x.shape
    assert q.indices.shape == (2, 1 + (frames - 1) // 4, 2, 3)
    assert q.indices.min() >= 0 and q.indices.max() < 2 ** 18


def test_invalid_frame_count_is_rejected(model):
    with pytest.raises(ValueError, match="1 \\+ 4k"):
        model.encode_indices(torch.zeros(1, 3, 18, 16, 16))


def test_index_bits_round_trip():
    idx = torch.randint(0, 2 ** 18, (1000,))
    bits = indices_to_bits(idx, 18)
    assert torch.equal(bits_to_indices(bits), idx)
    codes = indices_to_codes(idx.view(1, 10, 10, 10), 18)
    q = LFQ(18)(codes)
    assert torch.equal(q.indices, idx.view(1, 10, 10, 10))
    # index = sum 2^i [z_i > 0]
    z = torch.full((1, 18, 1, 1, 1), -1.0)
    z[0, 3] = z[0, 17] = 2.0
    assert int(LFQ(18)(z).indices) == 2 ** 3 + 2 ** 17


@pytest.mark.parametrize("bits", [5, 10, 18, 19])
def test_codes_by_table_equal_codes_by_shifts(bits):
    idx = torch.randint(0, 2 ** bits, (2, 3, 4, 5))
    shifted = ((idx.unsqueeze(-1) >> torch.arange(bits)) & 1).float() * 2 - 1  # one shift per bit
    codes = indices_to_codes(idx, bits)
    assert codes.shape == (2, bits, 3, 4, 5)
    assert torch.equal(codes, shifted.permute(0, 4, 1, 2, 3))
    assert codes.is_contiguous(memory_format=torch.channels_last_3d)  # the CPU decoder's layout


def test_split_indices():
    idx = torch.tensor([0, 511, 512, 2 ** 18 - 1, 12345])
    parts = split_indices(idx, 18, 9)
    assert torch.equal(parts[:, 0] + (parts[:, 1] << 9), idx)
    assert int(parts.max()) < 512


def test_lfq_straight_through_and_losses():
    z = torch.randn(2, 18, 3, 4, 4, requires_grad=True)
    q = LFQ(18)(z)
    assert set(q.codes.detach().unique().tolist()) == {-1.0, 1.0}
    assert torch.isfinite(q.entropy_loss) and torch.isfinite(q.commit_loss)
    (q.codes.sum() + q.entropy_loss + q.commit_loss).backward()
    assert z.grad is not None and z.grad.abs().sum() > 0


def test_space_to_depth_round_trip():
    x = torch.randn(2, 3, 5, 16, 24)
    assert torch.equal(depth_to_space(space_to_depth(x, 4), 4), x)


def test_grow_keeps_the_function_and_refuses_shrinking():
    import dataclasses

    from tokcodec.model.grow import grow_state, growth_error

    small_cfg = get_preset("tiny")
    torch.manual_seed(1)
    small = VideoTokenizer(small_cfg).eval()
    with torch.no_grad():  # trained-looking weights: no block is the identity any more
        for p in small.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    deep_cfg = dataclasses.replace(small_cfg, name="deep", blocks=(2, 2), temporal_blocks=3)
    deep = VideoTokenizer(deep_cfg).eval()
    deep.load_state_dict(grow_state(small.state_dict(), small_cfg, deep_cfg))
    assert len(deep.encoder.stages) == len(small.encoder.stages) + 2 + 1 + 2 * 2
    x = torch.rand(1, 3, 9, 16, 16) * 2 - 1
    with torch.no_grad():
        assert torch.equal(deep.encoder(x), small.encoder(x))  # added blocks add exact zeros
        codes = small.quantize(x).codes
        assert torch.equal(deep.decoder(codes), small.decoder(codes))
    with pytest.raises(ValueError, match="fewer residual blocks"):
        grow_state(deep.state_dict(), deep_cfg, small_cfg)
    with pytest.raises(ValueError, match="channels differs"):
        grow_state(small.state_dict(), small_cfg, get_preset("small"))
    with pytest.raises(ValueError, match="without a place"):
        grow_state({**small.state_dict(), "encoder.extra": torch.zeros(1)}, small_cfg, deep_cfg)
    assert growth_error(get_preset("small"), get_preset("medium")) is None


def test_a_deeper_encoder_grows_exactly_and_leaves_the_decoder_as_it_was():
    import dataclasses

    from tokcodec.model.grow import grow_state, growth_error
    from tokcodec.model.presets import TokenizerConfig

    cfg = get_preset("tiny")
    torch.manual_seed(2)
    src = VideoTokenizer(cfg).eval()
    with torch.no_grad():
        for p in src.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    deep_cfg = dataclasses.replace(cfg, name="deep-encoder", encoder_blocks=(1, 3))
    deep = VideoTokenizer(deep_cfg).eval()
    deep.load_state_dict(grow_state(src.state_dict(), cfg, deep_cfg))
    assert len(deep.encoder.stages) == len(src.encoder.stages) + 3
    decoder_shapes = lambda m: {k: v.shape for k, v in m.decoder.state_dict().items()}  # noqa: E731
    assert decoder_shapes(deep) == decoder_shapes(src)
    x = torch.rand(1, 3, 9, 16, 16) * 2 - 1
    with torch.no_grad():
        assert torch.equal(deep.encoder(x), src.encoder(x))
    assert "encoder has fewer" in growth_error(deep_cfg, cfg)
    # the config round-trips through a weights file's metadata; encoder_blocks equal to blocks
    # is the same architecture as none
    assert TokenizerConfig.from_dict(deep_cfg.to_dict()) == deep_cfg
    assert dataclasses.replace(cfg, encoder_blocks=cfg.blocks) == cfg
    with pytest.raises(ModelError, match="one entry per spatial level"):
        dataclasses.replace(cfg, encoder_blocks=(1,))


def test_time_kernels_fold_exactly_on_still_frames_and_pad_exactly_anywhere():
    import dataclasses

    from tokcodec.model.grow import grow_state, growth_note, retap

    three = dataclasses.replace(get_preset("tiny"), name="three")
    two = dataclasses.replace(three, name="two", temporal_kernel=2)
    four = dataclasses.replace(three, name="four", temporal_kernel=4)
    torch.manual_seed(2)
    src = VideoTokenizer(three).eval()
    with torch.no_grad():
        for p in src.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    folded, padded = VideoTokenizer(two).eval(), VideoTokenizer(four).eval()
    folded.load_state_dict(grow_state(src.state_dict(), three, two))
    padded.load_state_dict(grow_state(src.state_dict(), three, four))
    assert folded.decoder.conv_out.conv.weight.shape[2] == 2
    w = torch.arange(2 * 3 * 3 * 9, dtype=torch.float32).view(2, 3, 3, 3, 3)
    assert torch.equal(retap(w, 2)[:, :, 0], w[:, :, 0] + w[:, :, 1])
    assert torch.equal(retap(w, 2)[:, :, 1], w[:, :, 2])
    assert torch.equal(retap(retap(w, 5), 3), w)  # zero taps fold away again
    torch.manual_seed(3)
    still = (torch.rand(1, 3, 1, 16, 16) * 2 - 1).expand(1, 3, 9, 16, 16).contiguous()
    moving = torch.rand(1, 3, 9, 16, 16) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(folded.encoder(still), src.encoder(still), atol=1e-5)
        assert not torch.allclose(folded.encoder(moving), src.encoder(moving), atol=1e-3)
        assert torch.allclose(padded.encoder(moving), src.encoder(moving), atol=1e-5)
        codes = src.quantize(moving).codes
        assert torch.allclose(padded.decoder(codes), src.decoder(codes), atol=1e-5)
        # the first frame (an image) sees only itself at every layer; later frames differ, as the
        # decoder's time up-sampling makes them from different channels even for a still latent
        out, ref = folded.decoder(codes), src.decoder(codes)
        assert torch.allclose(out[:, :, :1], ref[:, :, :1], atol=1e-5)
        assert not torch.allclose(out[:, :, 1:], ref[:, :, 1:], atol=1e-3)
    assert "fold into 2" in growth_note(three, two) and "zero taps" in growth_note(three, four)


def test_level_skip_grows_exactly_stays_causal_and_sees_flat_levels():
    import dataclasses

    from tokcodec.model.grow import grow_state, growth_error, growth_note

    plain = get_preset("tiny")
    skip = dataclasses.replace(plain, name="skip", level_skip=True)
    torch.manual_seed(4)
    src = VideoTokenizer(plain).eval()
    with torch.no_grad():
        for p in src.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    grown = VideoTokenizer(skip).eval()
    grown.load_state_dict(grow_state(src.state_dict(), plain, skip))
    assert src.encoder.level_out is None and grown.encoder.level_out.weight.shape == (plain.bits, 3, 1, 1, 1)
    x = torch.rand(1, 3, 9, 16, 16) * 2 - 1
    with torch.no_grad():
        assert torch.equal(grown.encoder(x), src.encoder(x))  # starts as exactly the old model
    assert "level skip" in growth_note(plain, skip)
    assert "no level skip" in growth_error(skip, plain)

    # cell means: frame 0 alone, then groups of s frames; later frames never reach earlier cells
    means = grown.encoder.cell_means(x)
    assert means.shape == (1, 3, 3, 2, 2)
    assert torch.allclose(means[:, :, 0, 0, 0], x[:, :, 0, :8, :8].mean(dim=(2, 3)), atol=1e-6)
    assert torch.allclose(means[:, :, 2, 1, 1], x[:, :, 5:9, 8:, 8:].mean(dim=(2, 3, 4)), atol=1e-6)
    with torch.no_grad():
        grown.encoder.level_out.weight.normal_(0, 1.0)
        later = x.clone()
        later[:, :, 5:] = torch.rand(1, 3, 4, 16, 16)
        assert torch.equal(grown.encoder(later)[:, :, :2], grown.encoder(x)[:, :, :2])
        image = grown.encode_indices(x[:, :, :1])
        assert torch.equal(image[:, 0], grown.encode_indices(x)[:, 0])

    # inside a flat area the skip moves every latent by its projection of the level change,
    # whatever the normalised features do (per-frame GroupNorm divides the level out of those)
    def centre_latents(model: VideoTokenizer, level: float) -> torch.Tensor:
        flat = torch.full((1, 3, 1, 64, 64), level)
        with torch.no_grad():
            return model.encoder(flat)[0, :, 0, 4, 4]

    change = (centre_latents(grown, 0.6) - centre_latents(grown, 0.2)) \
        - (centre_latents(src, 0.6) - centre_latents(src, 0.2))
    expected = grown.encoder.level_out.weight.detach()[:, :, 0, 0, 0].sum(1) * 0.4
    assert torch.allclose(change, expected, atol=1e-4)


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last_3d], ids=["contiguous", "channels_last"])
def test_modulation_and_time_padding_with_autograd_compute_what_inference_does(layout):
    """Training and the encoder's search run the decoder with autograd, where the adaptive norm's
    modulation and the time padding take other kernels than inference, per layout (a channels_last
    activation keeps its layout): the same values, and the gradient of the padded frames summed
    into frame 0."""
    torch.manual_seed(1)
    norm = AdaptiveGroupNorm(16, 18, groups=4)
    torch.nn.init.normal_(norm.to_scale_shift.weight, std=0.2)  # modulation that varies with the latent frame
    cond = torch.randn(1, 18, 3, 4, 5)
    for frames in (3, 5, 9):  # latent frame j drives frames (j-1)*s+1 .. j*s, for s = 1, 2, 4
        x = torch.randn(1, 16, frames, 8, 10).contiguous(memory_format=layout)
        with torch.inference_mode():
            expected = norm(x.clone(), cond)
        out = norm(x.clone().requires_grad_(True), cond)
        assert torch.allclose(out, expected, atol=1e-5)
        if frames > 3 and layout == torch.channels_last_3d:
            assert out.is_contiguous(memory_format=layout)

    x = torch.randn(1, 2, 3, 4, 5).contiguous(memory_format=layout).requires_grad_(True)
    padded = pad_front_frames(x, 2)
    assert torch.equal(padded.detach(), torch.cat([x[:, :, :1]] * 2 + [x], dim=2).detach())
    padded.backward(torch.ones_like(padded))
    assert x.grad[:, :, 0].eq(3).all() and x.grad[:, :, 1:].eq(1).all()
