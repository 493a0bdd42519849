"""``python -m tokcodec.bench CLIP... -o DIR``: the bench without the main CLI."""
from tokcodec.cli.bench import main

main()
