"""Few-shot methods: the interface (:class:`FewShotMethod`), the registry, and the built-in methods."""
from __future__ import annotations

import importlib
import pkgutil

from fewshot.core.plugins import load_entry_points
from fewshot.methods.base import METHODS, FewShotMethod, create_method, method_class, register_method


def list_methods(pattern: str = "*") -> list[str]:
    """Names of all registered methods (built-in ones and those a user registered)."""
    _import_builtin()
    return METHODS.names(pattern)


def _import_builtin() -> None:
    # Every module in this package registers its methods on import: adding a method is adding a file. Installed
    # packages add theirs through the "fewshot.methods" entry-point group.
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_") and info.name != "base":
            importlib.import_module(f"{__name__}.{info.name}")
    load_entry_points()


__all__ = ["FewShotMethod", "METHODS", "register_method", "create_method", "method_class", "list_methods"]
