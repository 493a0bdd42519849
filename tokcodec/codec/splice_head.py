"""A cut's first GOP encoded again, for a cut that starts exactly where asked (``cut --exact``).

A GOP's first latent frame codes its first frame alone, so a part that starts inside a GOP cannot
start there by copying: those frames (up to the next GOP start, or the part's end) are decoded as
the whole file decodes them and encoded again, at the file's coded size, with its model, GOP
length and kind of correction record, as GOPs of their own; the rest of the cut is copied. The
frames encoded again lose quality a second time (docs/results.md measures how much); the model is
loaded, as for any encode. This is the one part of tokcodec/codec/splice.py that runs the network.
"""
from __future__ import annotations

import tempfile
from fractions import Fraction
from pathlib import Path

from tokcodec.codec.container import Chunk, Header, open_tok
from tokcodec.codec.tensors import coded_size
from tokcodec.errors import ArgumentError, InputError
from tokcodec.model.zoo import ModelName


def scale_for(header: Header) -> float:
    """A ``--scale`` that makes the header's coded size of its display size, as encode rounds."""
    w, h = header.width, header.height
    for scale in (header.coded_width / w, header.coded_height / h,
                  (header.coded_width / w + header.coded_height / h) / 2):
        try:
            if coded_size(w, h, scale) == (header.coded_width, header.coded_height):
                return scale
        except ArgumentError:
            continue
    raise InputError(f"no --scale makes {header.coded_width}x{header.coded_height} of {w}x{h}, so the first "
                     "GOP cannot be encoded again at this file's size; cut without --exact")


def encoded_head(src: Path, header: Header, start: int, stop: int, model: ModelName | None) -> list[Chunk]:
    """Frames ``start`` to ``stop`` - 1 of the .tok ``src`` (inside one GOP), decoded and encoded
    again as the chunks of a part's beginning: key GOPs, their records of the kinds the file's
    version allows."""
    from tokcodec.codec.correction import CorrectionConfig
    from tokcodec.codec.pipeline import decode_video, encode_video
    from tokcodec.model.zoo import load_tokenizer_version

    weights = model if model is not None else load_tokenizer_version(header.model_name, header.weights_sha256)
    coder = header.coder_id if header.coder_id in (1, 2, 3) else 3   # (key GOPs only: coder 3's payloads)
    with tempfile.TemporaryDirectory(prefix="tokcodec-cut-") as tmp:
        frames, tok = Path(tmp) / "head.mkv", Path(tmp) / "head.tok"
        decode_video(src, frames, model=weights, start=Fraction(start) / header.frame_rate, frames=stop - start,
                     audio=False, metadata=False)
        encode_video(frames, tok, model=weights, gop=header.gop, scale=scale_for(header), coder_id=coder,
                     key_interval=1, audio=False, metadata=False, scenecut=0,
                     correction=CorrectionConfig(enabled=header.correction, detail=header.correction_detail))
        with open_tok(tok) as reader:
            made = reader.header
            if (made.coded_width, made.coded_height, made.weights_sha256, made.grey) != \
                    (header.coded_width, header.coded_height, header.weights_sha256, header.grey):
                raise InputError(f"{src}: its first GOP, encoded again, does not match the file "
                                 f"({made.coded_width}x{made.coded_height}, grey {made.grey}); cut without --exact")
            return list(reader.chunks())
