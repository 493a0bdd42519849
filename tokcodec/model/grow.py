"""Start a preset from another's trained weights: deeper (exactly) or with other time kernels.

A preset with more residual blocks per level (``blocks``, or the encoder's own ``encoder_blocks``)
or per temporal stage (``temporal_blocks``) than another, and otherwise the same shape, can start from the smaller one's
trained weights: every existing layer keeps its weights and each added block starts as the
identity (its last convolution zeroed, so block(x) = x + 0). Training then only has to use the new
capacity instead of learning everything again (Net2Net-style growth, Chen et al. 2016).

A preset with fewer time taps per convolution (``temporal_kernel``) starts from the other's weights
with the oldest taps folded into the oldest tap it keeps. That is exact for the first frame (so
for images) and for the encoder on still video; elsewhere it is an approximation that training
then corrects (the decoder's time up-sampling makes even a still latent's frames differ). More
time taps start as zeros (exact).
"""
from __future__ import annotations

import re

import torch

from tokcodec.model.presets import TokenizerConfig
from tokcodec.model.tokenizer import Encoder
from tokcodec.model.zoo import random_init

_GROWING_FIELDS = ("blocks", "encoder_blocks", "temporal_blocks", "temporal_kernel", "level_skip")
_NAMING_FIELDS = ("name", "description")


def same_architecture(a: TokenizerConfig, b: TokenizerConfig) -> bool:
    """Whether weights of ``a`` load into ``b`` as they are (names and descriptions aside)."""
    blank = dict.fromkeys(_NAMING_FIELDS, "")
    return a.to_dict() | blank == b.to_dict() | blank


def growth_error(src: TokenizerConfig, dst: TokenizerConfig) -> str | None:
    """Why ``src`` weights cannot grow into ``dst`` (None when they can)."""
    src_fields, dst_fields = src.to_dict(), dst.to_dict()
    for name in src_fields:
        if name not in _GROWING_FIELDS + _NAMING_FIELDS and src_fields[name] != dst_fields[name]:
            return f"{name} differs ({src_fields[name]} vs {dst_fields[name]})"
    if len(dst.blocks) != len(src.blocks) or any(d < s for s, d in zip(src.blocks, dst.blocks)) \
            or dst.temporal_blocks < src.temporal_blocks:
        return "the target has fewer residual blocks (weights can only grow)"
    if len(dst.encoder_depth) != len(src.encoder_depth) \
            or any(d < s for s, d in zip(src.encoder_depth, dst.encoder_depth)):
        return "the target's encoder has fewer residual blocks (weights can only grow)"
    if src.level_skip and not dst.level_skip:
        return "the target has no level skip (weights can only grow)"
    return None


def growth_note(src: TokenizerConfig, dst: TokenizerConfig) -> str:
    """What growing ``src`` into ``dst`` does, for the trainer's log."""
    notes = []
    if dst.blocks != src.blocks or dst.encoder_depth != src.encoder_depth \
            or dst.temporal_blocks != src.temporal_blocks:
        notes.append("added residual blocks start as the identity")
    if dst.temporal_kernel < src.temporal_kernel:
        notes.append(f"time kernels of {src.temporal_kernel} taps fold into {dst.temporal_kernel}")
    elif dst.temporal_kernel > src.temporal_kernel:
        notes.append(f"time kernels gain {dst.temporal_kernel - src.temporal_kernel} zero taps")
    if dst.level_skip and not src.level_skip:
        notes.append("the encoder's level skip starts at zero")
    return "; ".join(notes) or "same shapes"


def grow_state(state: dict[str, torch.Tensor], src: TokenizerConfig, dst: TokenizerConfig,
               seed: int = 0) -> dict[str, torch.Tensor]:
    """``src``-shaped weights -> a ``dst``-shaped state (float32) computing the same function,
    except where time kernels are folded (see the module docstring)."""
    reason = growth_error(src, dst)
    if reason:
        raise ValueError(f"cannot grow preset {src.name!r} into {dst.name!r}: {reason}")
    src_index = {role: i for i, role in enumerate(Encoder.stage_roles(src))}
    dst_roles = Encoder.stage_roles(dst)
    fresh = random_init(dst, seed).state_dict()
    out: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    for key, init in fresh.items():
        source_key = key
        m = re.match(r"encoder\.stages\.(\d+)\.(.*)", key)
        if m:
            i = src_index.get(dst_roles[int(m.group(1))])
            source_key = f"encoder.stages.{i}.{m.group(2)}" if i is not None else ""
        if source_key in state:
            value = state[source_key]
            value = value.float() if value.is_floating_point() else value
            if value.ndim == 5 and init.ndim == 5 and value.shape[2] != init.shape[2]:
                value = retap(value, init.shape[2])
            if value.shape != init.shape:
                raise ValueError(f"{source_key}: shape {tuple(value.shape)} does not fit {key} {tuple(init.shape)}")
            out[key] = value.clone()
            used.add(source_key)
        elif re.search(r"\.conv2\.conv\.(weight|bias)$", key) or key.startswith("encoder.level_out."):
            out[key] = torch.zeros_like(init)  # an added block starts as the identity, a level skip at 0
        else:
            out[key] = init.clone()
    unused = sorted(set(state) - used)
    if unused:  # a trained tensor that found no place would silently be lost
        raise ValueError(f"cannot grow preset {src.name!r} into {dst.name!r}: weights without a place: {unused[:3]}")
    return out


def retap(weight: torch.Tensor, taps: int) -> torch.Tensor:
    """A causal (out, in, kt, kh, kw) kernel with ``taps`` time taps: surplus oldest taps are summed
    into the oldest kept one (same output on still input); missing oldest taps are zeros."""
    kt = weight.shape[2]
    if taps < 1:
        raise ValueError(f"a kernel needs at least one time tap, not {taps}")
    if taps >= kt:
        pad = weight.new_zeros(weight.shape[:2] + (taps - kt,) + weight.shape[3:])
        return torch.cat([pad, weight], dim=2)
    oldest = weight[:, :, :kt - taps + 1].sum(dim=2, keepdim=True)
    return torch.cat([oldest, weight[:, :, kt - taps + 1:]], dim=2)
