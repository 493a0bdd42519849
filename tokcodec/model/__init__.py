"""The MAGVIT-v2 style video tokenizer: layers, LFQ, encoder/decoder, presets and the weights zoo."""
from tokcodec.model.presets import PRESETS, TokenizerConfig, get_preset
from tokcodec.model.tokenizer import VideoTokenizer

__all__ = ["PRESETS", "TokenizerConfig", "VideoTokenizer", "get_preset"]
