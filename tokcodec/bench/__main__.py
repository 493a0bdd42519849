"""``python -m tokcodec.bench CLIP... -o DIR``: the bench without the main CLI."""
from tokcodec.bench.cli import main

main()
