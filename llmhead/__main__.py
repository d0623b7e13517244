"""``python -m llmhead``: the ``llmhead`` command."""

from llmhead.cli.main import run

run()
