"""fewshot: a few-shot learning benchmark suite."""
__version__ = "0.1.0"
