"""Plug-ins: user modules that register datasets, backbones or methods when imported.

``--plugin my_pkg.my_methods`` (or a path to a ``.py`` file) imports a module by name; installed packages
declare theirs in the ``fewshot.methods`` entry-point group and are imported with the built-in methods.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from fewshot.core.errors import UsageError

ENTRY_POINT_GROUP = "fewshot.methods"
_loaded_entry_points: set[str] = set()
_scanned: set[str] = set()


def import_plugin(name: str) -> ModuleType:
    """Import the module ``name`` (dotted, importable from ``sys.path``) or the Python file at path ``name``."""
    path = Path(name)
    try:
        if name.endswith(".py"):
            if not path.is_file():
                raise UsageError(f"--plugin {name}: no such file; give a module name or the path of a .py file")
            module_name = f"fewshot_plugin_{path.stem}"
            if module_name in sys.modules:
                return sys.modules[module_name]
            spec = importlib.util.spec_from_file_location(module_name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[module_name] = module
            try:
                spec.loader.exec_module(module)
            except BaseException:
                del sys.modules[module_name]
                raise
            return module
        return importlib.import_module(name)
    except UsageError:
        raise
    except ModuleNotFoundError as error:
        raise UsageError(f"--plugin {name}: cannot import {error.name!r}; install it or add its folder to "
                         f"PYTHONPATH") from None
    except Exception as error:
        where = f" ({error.filename}, line {error.lineno})" if isinstance(error, SyntaxError) else ""
        raise UsageError(f"--plugin {name}: importing it failed with {type(error).__name__}: {error}{where}; "
                         f"fix the module") from None


def load_entry_points(group: str = ENTRY_POINT_GROUP) -> list[str]:
    """Import every module an installed package declares in ``group``, once per process; returns their names."""
    if group in _scanned:
        return []
    _scanned.add(group)
    names = []
    for entry in importlib.metadata.entry_points(group=group):
        if entry.value in _loaded_entry_points:
            continue
        try:
            entry.load()
        except Exception as error:
            package = entry.dist.name if entry.dist is not None else "an installed package"
            raise UsageError(f"the {group} plug-in {entry.name!r} of {package} ({entry.value}) failed to import: "
                             f"{type(error).__name__}: {error}; fix or uninstall that package") from None
        _loaded_entry_points.add(entry.value)
        names.append(entry.name)
    return names
