"""The names of the files and folders a save writes."""

MANIFEST = "llmhead.json"
HEAD = "head.safetensors"
ADAPTER = "adapter.safetensors"
BACKBONE = "backbone"  # a transformers folder of fine-tuned (or merged) weights
TOKENIZER = "tokenizer"
