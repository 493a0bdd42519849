"""Bitstream side of tokcodec: entropy coders, the .tok container and the streaming pipeline."""
