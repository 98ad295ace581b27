"""The dataset registry: ``list_datasets()`` and ``load_dataset(name, split, root=...)``."""
from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Callable, Protocol

from fewshot.core.paths import cache_dir
from fewshot.core.registry import Registry
from fewshot.data.dataset import ClassDataset
from fewshot.data.union import SEPARATOR, source_names, union_of

SPLITS = ("train", "val", "test")


class DatasetLoader(Protocol):
    def __call__(self, split: str, root: Path, **options) -> ClassDataset: ...


DATASETS: Registry[DatasetLoader] = Registry("dataset")


def register_dataset(name: str) -> Callable[[DatasetLoader], DatasetLoader]:
    """Decorator registering ``loader(split, root, **options) -> ClassDataset`` under ``name``."""
    return DATASETS.register(name)


def list_datasets(pattern: str = "*") -> list[str]:
    _import_builtin_loaders()
    return DATASETS.names(pattern)


def _sources(name: str) -> list[str] | None:
    """The sources of a name ``a+b+...`` (:mod:`fewshot.data.union`); None for one dataset (registered, or a
    folder, whose name may hold a ``+``)."""
    _import_builtin_loaders()
    if name in DATASETS or SEPARATOR not in name or Path(name).is_dir():
        return None
    return source_names(name)


def known_dataset(name: str) -> bool:
    """True when ``name`` is a registered dataset, a folder of class folders, or ``a+b+...`` of those."""
    return all(p in list_datasets() or os.sep in p or Path(p).is_dir() for p in _sources(name) or [name])


def loader_options(name: str) -> set[str]:
    """The keyword options that dataset ``name``'s loader takes (none for a folder of class folders; for sources
    ``a+b``, those every source's loader takes)."""
    sources = _sources(name)
    if sources:
        return set.intersection(*(loader_options(n) for n in sources))
    if name not in DATASETS:
        return set()
    parameters = inspect.signature(DATASETS.get(name)).parameters.values()
    return {p.name for p in parameters if p.kind == inspect.Parameter.KEYWORD_ONLY}


def default_data_root() -> Path:
    """``$FEWSHOT_DATA`` if set, else ``data/`` in the user cache directory (:func:`fewshot.paths.cache_dir`)."""
    if os.environ.get("FEWSHOT_DATA"):
        return Path(os.environ["FEWSHOT_DATA"]).expanduser()
    return cache_dir() / "data"


def resolve_data_root(root: str | os.PathLike | None = None) -> Path:
    """The data root: the given one (``--data-root``), then ``$FEWSHOT_DATA``, then the user cache directory."""
    return Path(root).expanduser() if root is not None else default_data_root()


def load_dataset(name: str, split: str, root: str | os.PathLike | None = None, **options) -> ClassDataset:
    """Load split ``split`` of dataset ``name``; a ``name`` that is a directory loads a folder of class folders, and
    ``a+b`` the union of the splits of ``a`` and ``b`` (:mod:`fewshot.data.union`), each loaded with the options
    its loader takes."""
    names = _sources(name)
    if names:                           # several sources: their union
        # Each source gets the options its loader takes (image_size, say; QuickDraw's loader has none: the
        # union brings its images to the first source's format, and records that).
        return union_of([load_dataset(n, split, root, **_options_for(n, options)) for n in names], names)
    if name not in DATASETS and (os.sep in name or Path(name).is_dir()):
        from fewshot.data.folder import load_image_folder

        return load_image_folder(Path(name), split, **options)
    loader = DATASETS.get(name)
    return loader(split, resolve_data_root(root), **options)


def _options_for(name: str, options: dict) -> dict:
    if name not in DATASETS:          # a folder of class folders takes its options as they are
        return options
    takes = loader_options(name)
    return {k: v for k, v in options.items() if k in takes}


def _import_builtin_loaders() -> None:
    # Imported lazily so that `import fewshot` stays quick and loaders may import heavy modules.
    from fewshot.data import (bscdfsl, cifar, cub, digits, fashion_mnist, folder, gtsrb,  # noqa: F401
                              meta_dataset_sources, miniimagenet, omniglot, synthetic, text, tiered_imagenet)
