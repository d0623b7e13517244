"""The names of the files and folders a save writes."""

MANIFEST = "llmhead.json"
HEAD = "head.safetensors"
ADAPTER = "adapter.safetensors"
BACKBONE = "backbone"  # a transformers folder of fine-tuned (or merged) weights
TOKENIZER = "tokenizer"
CARD = "README.md"  # the model card: written by a save, outside its seal (io/save.py)
TFIDF = "tfidf.json"  # the TF-IDF vocabularies of modes tfidf and hybrid (their idf weights: head.safetensors)
