"""The ``llmhead`` command line (main.py) and what it shares with the recipes: the training recipe (recipe.py),
streamed scoring of files (predict.py, stream.py), model information (info.py) and error reporting (errors.py)."""
