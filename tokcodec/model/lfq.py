"""Lookup-Free Quantization (MAGVIT-v2 section 3.1).

Each of the ``bits`` latent channels is quantized to its sign, q(z) = sign(z) in {-1, +1}, and the
token index is sum_i 2^i [z_i > 0]. Gradients pass straight through. The entropy penalty
E[H(q(z))] - H[E(q(z))] uses soft assignments; the full 2^bits distribution is far too large, so
the codebook is factorised into sub-groups (default 2 x 2^9) and both terms are summed over groups.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class LFQOutput:
    codes: torch.Tensor          # +-1 values with straight-through gradient, (B, bits, t, h, w)
    indices: torch.Tensor        # int64 token indices, (B, t, h, w)
    entropy_loss: torch.Tensor   # sample entropy - codebook entropy (scalar)
    commit_loss: torch.Tensor    # ||z - q(z)||^2 (scalar)
    bit_usage: torch.Tensor      # fraction of +1 per bit, (bits,)
    latents: torch.Tensor | None = None  # the encoder's z before quantisation (with_losses only)


def indices_to_bits(indices: torch.Tensor, bits: int) -> torch.Tensor:
    """(...,) int -> (..., bits) in {0, 1}, LSB first."""
    shifts = torch.arange(bits, device=indices.device)
    return (indices.unsqueeze(-1) >> shifts) & 1


def bits_to_indices(bit_tensor: torch.Tensor) -> torch.Tensor:
    """(..., bits) in {0,1} -> (...,) int64."""
    bits = bit_tensor.shape[-1]
    weights = (1 << torch.arange(bits, device=bit_tensor.device)).to(torch.int64)
    return (bit_tensor.to(torch.int64) * weights).sum(-1)


_TABLE_BITS = 9


@functools.lru_cache(maxsize=8)
def _sign_table(bits: int, device: torch.device) -> torch.Tensor:
    """(2^bits, bits) float: row i holds the +-1 codes of the bits of i, LSB first."""
    rows = torch.arange(1 << bits, device=device)
    return indices_to_bits(rows, bits).float() * 2 - 1


def indices_to_codes(indices: torch.Tensor, bits: int) -> torch.Tensor:
    """(B, t, h, w) int -> (B, bits, t, h, w) float codes in {-1, +1}.

    Looked up 9 bits at a time (faster than shifting every bit) and returned as a view in the
    channels-last layout the CPU decoder runs in, so no layout conversion follows."""
    parts = []
    for low in range(0, bits, _TABLE_BITS):
        n = min(_TABLE_BITS, bits - low)
        parts.append(_sign_table(n, indices.device)[(indices >> low) & ((1 << n) - 1)])
    return torch.cat(parts, -1).permute(0, 4, 1, 2, 3)


def split_indices(indices: torch.Tensor, bits: int, sub_bits: int) -> torch.Tensor:
    """Token factorisation: an index of ``bits`` bits -> bits/sub_bits sub-tokens (last dim), low first."""
    if bits % sub_bits:
        raise ValueError(f"{bits} bits do not split into {sub_bits}-bit sub-tokens")
    n = bits // sub_bits
    shifts = torch.arange(n, device=indices.device) * sub_bits
    return (indices.unsqueeze(-1) >> shifts) & ((1 << sub_bits) - 1)


class LFQ(nn.Module):
    def __init__(self, bits: int = 18, group_bits: int = 9, temperature: float = 0.01) -> None:
        super().__init__()
        if bits % group_bits:
            group_bits = bits
        self.bits, self.group_bits, self.temperature = bits, group_bits, temperature
        # made on the CPU, then moved where the model is built (torch.device("cuda") as a context),
        # but not to the meta device (zoo: shapes only), whose arange and & run through torch's
        # Python decompositions and import its compiler: a second or more on every model load
        sub = torch.arange(1 << group_bits, device="cpu")
        codebook = ((sub.unsqueeze(-1) >> torch.arange(group_bits, device="cpu")) & 1).float() * 2 - 1
        here = torch.empty(()).device
        if here.type not in ("cpu", "meta"):
            codebook = codebook.to(here)
        self.register_buffer("group_codebook", codebook, persistent=False)  # (2^g, g)

    def forward(self, z: torch.Tensor, with_losses: bool = True) -> LFQOutput:
        z = z.float()
        positive = z > 0
        q = torch.where(positive, 1.0, -1.0)
        codes = z + (q - z).detach()
        shifts = torch.arange(self.bits, device=z.device).view(1, -1, 1, 1, 1)
        indices = (positive.to(torch.int64) << shifts).sum(1)
        zero = z.new_zeros(())
        if not with_losses:
            return LFQOutput(codes, indices, zero, zero, positive.float().mean((0, 2, 3, 4)))
        commit = F.mse_loss(z, q.detach())
        flat = z.permute(0, 2, 3, 4, 1).reshape(-1, self.bits)
        groups = flat.view(flat.shape[0], -1, self.group_bits)  # (N, G, g)
        # in fp32 under the trainer's autocast too: the einsum ran in bf16 there, and logits of
        # 200 z.c lost most of their precision (the entropy term's gradient cos 0.68 to fp32's)
        with torch.autocast(z.device.type, enabled=False):
            # -||z - c||^2 = 2 z.c + const, so soft assignment logits are z.c scaled by temperature
            logits = torch.einsum("ngd,kd->ngk", groups, self.group_codebook.float()) * (2.0 / self.temperature)
            log_p = logits.log_softmax(-1)
            p = log_p.exp()
            sample_entropy = -(p * log_p).sum(-1).mean(0).sum()
            avg_p = p.mean(0)
            codebook_entropy = -(avg_p * (avg_p + 1e-10).log()).sum()
        return LFQOutput(codes, indices, sample_entropy - codebook_entropy, commit,
                         positive.float().mean((0, 2, 3, 4)), z)
