"""The MAGVIT-v2 style video tokenizer: layers, LFQ, encoder/decoder, presets and the weights zoo.

The network (torch) loads on first use of ``VideoTokenizer``: presets, weights files and their
hashes (``tokcodec info``/``verify``) do without it."""
from tokcodec.model.presets import PRESETS, TokenizerConfig, get_preset

__all__ = ["PRESETS", "TokenizerConfig", "VideoTokenizer", "get_preset"]


def __getattr__(name: str) -> object:
    if name == "VideoTokenizer":
        from tokcodec.model.tokenizer import VideoTokenizer

        return VideoTokenizer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
