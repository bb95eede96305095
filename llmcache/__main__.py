"""``python -m llmcache``: the command line."""

from .cli import main

main()
