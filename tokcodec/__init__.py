"""tokcodec: a learned video codec (MAGVIT-v2 tokenizer + entropy-coded .tok container).

Library API (the CLI is a thin layer over these)::

    import tokcodec
    stats = tokcodec.encode_video("in.mp4", "out.tok")          # -> EncodeStats
    tokcodec.encode_video("in.mp4", "out.tok", passes=0)       # one-shot encoder: fastest encode
    tokcodec.encode_video("in.mp4", "out.tok", refine=16)      # slow decoder-in-the-loop search
    tokcodec.encode_video("in.mp4", "out.tok", correction=False)  # tokens only (.tok 1.x)
    tokcodec.encode_video("in.mp4", "out.tok", bpp=0.02)       # a target rate (or bitrate=3e5, bits/s)
    tokcodec.encode_video("in.mp4", "out.tok", audio=tokcodec.AudioChoice(bitrate=96e3))  # audio as Opus
    tokcodec.decode_video("out.tok", "back.mkv")               # -> DecodeStats
    info = tokcodec.file_info("out.tok")                        # header, chunks, bpp, bits/token, tags
    tokcodec.cut_file("out.tok", "part.tok", start=90, duration=5)  # part of a .tok, no re-encode -> EditStats
    tokcodec.concat_files(["a.tok", "b.tok"], "ab.tok")          # .tok files joined, no re-encode
    tokcodec.split_file("out.tok", "parts/", every=60)           # parts from GOP starts -> [EditStats]
    header, grids, frames = tokcodec.read_tokens("out.tok")     # token arrays, no decoder run
    tokens = tokcodec.tokenize("in.mp4")                        # TokenFile: tokens alone + what decoding needs
    tokens = tokcodec.tokenize_frames(frames)                   # ... of uint8 (T, H, W, 3) frames in memory
    tokcodec.write_token_file(tokens, "t.safetensors")          # (or .npy, the bare array)
    tokcodec.detokenize("tokens.safetensors", "back.mp4")       # token arrays (tokens -o, an LM's) -> video
    frames = tokcodec.detokenize_frames(token_array)            # ... -> uint8 (T, H, W, 3) in memory
    report = tokcodec.verify_file("out.tok")                    # checksums + weights hash, no decoding
    model = tokcodec.load_tokenizer("default")                  # the network itself
    tokcodec.batch_encode("videos/", "tok/", workers=2)         # whole trees -> BatchSummary
                                                                # (in a script: under if __name__ == "__main__":)

Names are imported on first use, so `import tokcodec` (and the CLI's start-up, `tokcodec verify`,
`tokcodec --help`) does not pay for importing torch until something needs it.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "DecodeStats": "tokcodec.codec.pipeline", "EncodeStats": "tokcodec.codec.pipeline",
    "compare_videos": "tokcodec.codec.pipeline", "decode_video": "tokcodec.codec.pipeline",
    "encode_video": "tokcodec.codec.pipeline", "file_info": "tokcodec.codec.info", "FileInfo": "tokcodec.codec.info",
    "read_tokens": "tokcodec.codec.pipeline", "verify_file": "tokcodec.codec.verify",
    "VerifyReport": "tokcodec.codec.verify", "load_tokenizer": "tokcodec.model.zoo", "LoadedModel": "tokcodec.model.zoo",
    "export_tokens": "tokcodec.tokens", "split_tokens": "tokcodec.tokens", "join_tokens": "tokcodec.tokens",
    "detokenize": "tokcodec.tokens", "detokenize_frames": "tokcodec.tokens", "read_token_file": "tokcodec.tokens",
    "tokenize": "tokcodec.tokens", "tokenize_frames": "tokcodec.frame_tokens", "write_token_file": "tokcodec.tokens",
    "TokenFile": "tokcodec.tokens",
    "cut_file": "tokcodec.codec.splice", "concat_files": "tokcodec.codec.splice", "EditStats": "tokcodec.codec.stats",
    "split_file": "tokcodec.codec.splice",
    "batch_encode": "tokcodec.batch", "batch_decode": "tokcodec.batch", "batch_tokens": "tokcodec.batch",
    "BatchSummary": "tokcodec.batch.run",
    "RefineConfig": "tokcodec.model.refine", "CorrectionConfig": "tokcodec.codec.correction",
    "AudioChoice": "tokcodec.audio_choice", "MediaTags": "tokcodec.media_tags", "read_tags": "tokcodec.media_tags",
    # what the library raises on purpose: TokcodecError and its kinds (docs/usage.md, errors)
    **{name: "tokcodec.errors" for name in ("TokcodecError", "ArgumentError", "DeviceError", "FormatError",
                                            "InputError", "MissingPriorError", "ModelError", "OutputError",
                                            "SetupError")},
}
__all__ = sorted(set(_EXPORTS) | {"__version__"})


if not TYPE_CHECKING:  # (seen by a type checker, it made every misspelt name, tokcodec.encode_vidoe, Any)
    def __getattr__(name: str) -> Any:
        if name in _EXPORTS:
            value = getattr(importlib.import_module(_EXPORTS[name]), name)
            globals()[name] = value
            return value
        raise AttributeError(f"module 'tokcodec' has no attribute {name!r}")


def __dir__() -> list[str]:  # the public names, lazy ones too (tab completion, help())
    return sorted(set(__all__) | {name for name in globals() if name.startswith("__")})


if TYPE_CHECKING:  # for type checkers and IDEs
    from tokcodec.audio_choice import AudioChoice
    from tokcodec.batch import batch_decode, batch_encode, batch_tokens
    from tokcodec.batch.run import BatchSummary
    from tokcodec.codec.correction import CorrectionConfig
    from tokcodec.codec.info import FileInfo
    from tokcodec.codec.pipeline import (DecodeStats, EncodeStats, compare_videos, decode_video,
                                         encode_video, file_info, read_tokens)
    from tokcodec.codec.splice import concat_files, cut_file, split_file
    from tokcodec.codec.stats import EditStats
    from tokcodec.codec.verify import VerifyReport, verify_file
    from tokcodec.media_tags import MediaTags, read_tags
    from tokcodec.errors import (ArgumentError, DeviceError, FormatError, InputError, MissingPriorError,
                                 ModelError, OutputError, SetupError, TokcodecError)
    from tokcodec.frame_tokens import tokenize_frames
    from tokcodec.model.refine import RefineConfig
    from tokcodec.model.zoo import LoadedModel, load_tokenizer
    from tokcodec.tokens import (TokenFile, detokenize, detokenize_frames, export_tokens, join_tokens,
                                 read_token_file, split_tokens, tokenize, write_token_file)
