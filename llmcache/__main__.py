"""``python -m llmcache``: the command line."""

from llmcache.tools.cli import main

main()
