"""Encode defaults shared by the library and the CLI, in a module that imports nothing heavy:
the CLI declares its options (and ``tokcodec --help`` runs) without loading torch."""
from __future__ import annotations

from tokcodec.errors import ArgumentError, DeviceError

DEFAULT_GOP = 17  # frames per GOP (1 + 4k): 5 latent frames
DEFAULT_PASSES = 2  # closed-loop encoder passes per GOP (tokcodec/model/refine.py)
MAX_PASSES = 16
DEFAULT_RDO = 0.25  # rate-distortion trade of the token bits (tokcodec/codec/rdo.py); 0 = off
MAX_RDO = 10.0
DEFAULT_KEY_INTERVAL = 8  # GOPs per key GOP (coder 4 links the others to the GOP before; codec/context_coder4.py)
MAX_KEY_INTERVAL = 65535
DEFAULT_SHARPEN = 1.5  # detail gains sent per unit of their fit, GOPs of 9+ frames (codec/correction.py; 1 before December 2026)
MAX_SHARPEN = 4.0
MIN_SCALE, MAX_SCALE = 0.05, 2.0  # --scale: the coded size as a multiple of the source's
MIN_CODED = 8  # pixels a side: smaller sources are coded at this size
DEFAULT_SCENECUT = 12.0  # a GOP ends before a scene cut this sharp (code values; codec/scenecut.py); 0 = off
# tokens for language models keep GOPs of one length, so that a bare token array's GOP boundaries
# follow from its length alone (as detokenize cuts one); --scenecut T asks for cuts there too
DEFAULT_TOKEN_SCENECUT = 0.0
MAX_SCENECUT = 255.0
#: how interlaced input is read (io.iter_frames): "auto" deinterlaces an input whose stream or first
#: frame says interlaced, its frames flagged interlaced (one that mixes them with progressive ones
#: keeps those as they are), "on" every frame (interlaced video its stream does not flag), "off" none
#: (each frame's two fields stay woven)
DEINTERLACE_MODES = ("auto", "on", "off")


#: the most frames a GOP may hold (a .tok header's limit)
MAX_GOP = 4097


def check_gop(gop: int, temporal_factor: int) -> None:
    """A GOP that a model of this temporal factor codes: 1 + factor * k frames, up to MAX_GOP."""
    if not 1 <= gop <= MAX_GOP or (gop - 1) % temporal_factor:
        t = temporal_factor
        raise ArgumentError(f"--gop must be 1 + {t}k frames (e.g. {1 + 4 * t}), at most {MAX_GOP}, got {gop}")


def check_scale(scale: float) -> None:
    if not MIN_SCALE <= scale <= MAX_SCALE:
        raise ArgumentError(f"--scale must lie in [{MIN_SCALE:g}, {MAX_SCALE:g}], got {scale}")


def check_scenecut(threshold: float) -> None:
    if not 0 <= threshold <= MAX_SCENECUT:
        raise ArgumentError(f"scenecut must be in [0, {MAX_SCENECUT:g}] (0: off), got {threshold}")


def check_deinterlace(mode: str) -> None:
    if mode not in DEINTERLACE_MODES:
        raise ArgumentError(f"deinterlace must be one of {', '.join(DEINTERLACE_MODES)}, got {mode!r}")


def check_device_name(device: str) -> None:
    """A device name select_runtime knows (whether it is there is its own question)."""
    if device not in ("auto", "cpu", "cuda") and not device.startswith("cuda:"):
        raise DeviceError(f"unknown device {device!r} (use auto, cpu or cuda)")


def check_precision_name(precision: str) -> None:
    if precision not in ("auto", "fp32", "bf16", "fp16"):
        raise DeviceError(f"unknown precision {precision!r} (use auto, fp32, bf16 or fp16)")
