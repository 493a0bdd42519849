"""Named tokenizer presets. Each states its compression (time x height x width) and bits per token."""
from __future__ import annotations

from dataclasses import asdict, dataclass

from tokcodec.errors import ModelError


@dataclass(frozen=True)
class TokenizerConfig:
    name: str
    patch: int = 4                          # space-to-depth stem (1 = none)
    channels: tuple[int, ...] = (64, 128)   # width per spatial level after the stem
    blocks: tuple[int, ...] = (0, 1)        # residual blocks per spatial level
    encoder_blocks: tuple[int, ...] = ()    # the encoder's own (>= blocks); () = blocks. Depth
                                            # that costs encode time only: decode is unchanged
    temporal_blocks: int = 1                # residual blocks after each temporal down-sampling
    temporal_downs: int = 2                 # number of x2 temporal down-samplings (at the end)
    temporal_kernel: int = 3                # time taps of every 3x3 convolution (2: 2/3 of the cost)
    bits: int = 18                          # LFQ bits per token (vocabulary 2^bits)
    groups: int = 8                         # GroupNorm groups
    level_skip: bool = False                # encoder: add a projection of each latent cell's mean
                                            # input colour to the latents (per-frame GroupNorm hides it)
    description: str = ""

    def __post_init__(self) -> None:
        # (a weights file's metadata is a config too: nothing a network cannot be built from)
        counts = (self.patch, *self.channels, self.bits, self.groups, self.temporal_kernel)
        if not all(type(v) is int for v in (*counts, *self.blocks, *self.encoder_blocks, self.temporal_blocks,
                                            self.temporal_downs)) \
                or min(counts) < 1 or not self.channels or len(self.blocks) != len(self.channels) \
                or min((*self.blocks, *self.encoder_blocks, self.temporal_blocks, self.temporal_downs)) < 0 \
                or self.bits > 20 or self.temporal_downs > 4 \
                or any(c % min(self.groups, c) for c in self.channels):
            raise ModelError(f"model {self.name!r}: not a tokenizer that can be built (patch {self.patch}, "
                             f"channels {self.channels}, blocks {self.blocks}, bits {self.bits}, groups {self.groups}, "
                             f"temporal downs {self.temporal_downs}, kernel {self.temporal_kernel})")
        if self.encoder_blocks and len(self.encoder_blocks) != len(self.channels):
            raise ModelError(f"model {self.name!r}: encoder_blocks {self.encoder_blocks} needs one entry "
                             f"per spatial level ({len(self.channels)})")
        if tuple(self.encoder_blocks) == tuple(self.blocks):  # one spelling per architecture
            object.__setattr__(self, "encoder_blocks", ())

    @property
    def encoder_depth(self) -> tuple[int, ...]:
        """Residual blocks per spatial level in the encoder."""
        return self.encoder_blocks or self.blocks

    @property
    def spatial_factor(self) -> int:
        return self.patch * 2 ** (len(self.channels) - 1)

    @property
    def temporal_factor(self) -> int:
        return 2 ** self.temporal_downs

    @property
    def compression(self) -> tuple[int, int, int]:
        return (self.temporal_factor, self.spatial_factor, self.spatial_factor)

    @property
    def vocab_size(self) -> int:
        return 1 << self.bits

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TokenizerConfig":
        known = {f for f in cls.__dataclass_fields__}
        kw = {k: v for k, v in d.items() if k in known}
        for key in ("channels", "blocks", "encoder_blocks"):
            if key in kw:
                kw[key] = tuple(int(c) for c in kw[key])
        return cls(**kw)


PRESETS: dict[str, TokenizerConfig] = {
    "tiny": TokenizerConfig(
        name="tiny", patch=4, channels=(8, 16), blocks=(0, 1), temporal_blocks=1, groups=4,
        description="test preset (never trained)"),
    "small": TokenizerConfig(
        name="small", patch=4, channels=(32, 96), blocks=(0, 1), temporal_blocks=1,
        description="4x4 space-to-depth stem, widths 32/96, for CPUs"),
    "medium": TokenizerConfig(
        name="medium", patch=4, channels=(32, 96), blocks=(0, 1), temporal_blocks=2,
        description="small with a second residual block per temporal stage"),
    "fast": TokenizerConfig(
        name="fast", patch=4, channels=(32, 96), blocks=(0, 1), temporal_blocks=2, temporal_kernel=2,
        level_skip=True,
        description="medium with 2-tap causal time kernels (2/3 of its compute) and a level skip"),
    "fast-deep": TokenizerConfig(
        name="fast-deep", patch=4, channels=(32, 96), blocks=(0, 1), encoder_blocks=(1, 3),
        temporal_blocks=2, temporal_kernel=2, level_skip=True,
        description="fast with three more encoder blocks: slower encode, the same decoder"),
    "base": TokenizerConfig(
        name="base", patch=4, channels=(128, 256), blocks=(2, 2), temporal_blocks=2,
        description="widths 128/256, for GPUs"),
}
DEFAULT_PRESET = "fast-deep"


def resolve_name(name: str) -> str:
    """A preset name with the alias "default" resolved."""
    return DEFAULT_PRESET if name == "default" else name


def get_preset(name: str) -> TokenizerConfig:
    key = resolve_name(name)
    try:
        return PRESETS[key]
    except KeyError:
        raise ModelError(f"unknown model preset {name!r}; known: default, {', '.join(PRESETS)}") from None
