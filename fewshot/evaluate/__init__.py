"""Evaluation: the harness batched over episodes (:mod:`.harness`), embedding (:mod:`.features`) and the
frozen-feature cache (:mod:`.feature_cache`)."""
from fewshot.evaluate.harness import EvalResult, evaluate, resolve_device

__all__ = ["EvalResult", "evaluate", "resolve_device"]
