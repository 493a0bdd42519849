"""Grow trained weights into a deeper preset without changing what they compute.

A preset with more residual blocks per level (``blocks``) or per temporal stage
(``temporal_blocks``) than another, and otherwise the same shape, can start from the smaller one's
trained weights: every existing layer keeps its weights and each added block starts as the
identity (its last convolution zeroed, so block(x) = x + 0). Training then only has to use the new
capacity instead of learning everything again (Net2Net-style growth, Chen et al. 2016).
"""
from __future__ import annotations

import re

import torch

from tokcodec.model.presets import TokenizerConfig
from tokcodec.model.tokenizer import Encoder
from tokcodec.model.zoo import random_init

_GROWING_FIELDS = ("blocks", "temporal_blocks")
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
    return None


def grow_state(state: dict[str, torch.Tensor], src: TokenizerConfig, dst: TokenizerConfig,
               seed: int = 0) -> dict[str, torch.Tensor]:
    """``src``-shaped weights -> a ``dst``-shaped state computing the same function (float32)."""
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
            if value.shape != init.shape:
                raise ValueError(f"{source_key}: shape {tuple(value.shape)} does not fit {key} {tuple(init.shape)}")
            out[key] = (value.float() if value.is_floating_point() else value).clone()
            used.add(source_key)
        elif re.search(r"\.conv2\.conv\.(weight|bias)$", key):
            out[key] = torch.zeros_like(init)  # an added block starts as the identity
        else:
            out[key] = init.clone()
    unused = sorted(set(state) - used)
    if unused:  # a trained tensor that found no place would silently be lost
        raise ValueError(f"cannot grow preset {src.name!r} into {dst.name!r}: weights without a place: {unused[:3]}")
    return out
