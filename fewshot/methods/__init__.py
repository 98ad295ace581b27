"""Few-shot methods: the contract (:class:`FewShotMethod`, :mod:`.base`), the registry, the built-in methods."""
from __future__ import annotations

from fewshot.methods.base import (METHODS, FewShotMethod, TrainKind, create_method, list_methods, method_class,
                                  register_method)

__all__ = ["FewShotMethod", "METHODS", "TrainKind", "create_method", "list_methods", "method_class",
           "register_method"]
