"""tokcodec: a learned video codec (MAGVIT-v2 tokenizer + entropy-coded .tok container).

Library API (the CLI is a thin layer over these)::

    import tokcodec
    stats = tokcodec.encode_video("in.mp4", "out.tok")          # -> EncodeStats
    tokcodec.decode_video("out.tok", "back.mkv")               # -> DecodeStats
    info = tokcodec.file_info("out.tok")                        # header, chunks, bpp, bits/token
    header, grids, frames = tokcodec.read_tokens("out.tok")     # token arrays, no decoder run
    model = tokcodec.load_tokenizer("default")                  # the network itself
"""
from __future__ import annotations

__version__ = "0.1.0"

from tokcodec.codec.pipeline import (DecodeStats, EncodeStats, compare_videos, decode_video,
                                     encode_video, file_info, read_tokens)
from tokcodec.errors import TokcodecError
from tokcodec.model.zoo import load_tokenizer
from tokcodec.tokens import export_tokens, split_tokens

__all__ = ["DecodeStats", "EncodeStats", "TokcodecError", "compare_videos", "decode_video",
           "encode_video", "export_tokens", "file_info", "load_tokenizer", "read_tokens",
           "split_tokens", "__version__"]
