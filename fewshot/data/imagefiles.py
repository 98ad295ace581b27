"""Image files read in place from a folder, a zip or a tar archive, and decoded (resized) into one uint8 array.

A :class:`FileTree` names files by their path below a prefix, whatever holds them, so a loader lists and reads a
dataset the same way from its published archive and from the folder it extracts to. Nothing is ever extracted or
written next to the data.
"""
from __future__ import annotations

import io
import os
import sys
import tarfile
import zipfile
import zlib
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from fewshot.data.errors import damaged, reading
from fewshot.data.sources import digest

__all__ = ["FileTree", "decode_image", "decode_images"]

_LANCZOS = Image.Resampling.LANCZOS
_IMAGE_ADVICE = "it is truncated or corrupt: replace it with a good copy"


class FileTree:
    """The files below ``prefix`` in a folder, a ``.zip`` or a tar archive (``.tar``, ``.tgz``, ``.tar.gz``)."""

    def __init__(self, path: str | os.PathLike, prefix: str = "") -> None:
        self.path = Path(path)
        self.prefix = prefix.strip("/")
        self.kind = "folder" if self.path.is_dir() else "zip" if self.path.suffix.lower() == ".zip" else "tar"
        self._names: list[str] | None = None

    def __repr__(self) -> str:
        return f"FileTree({str(self.path)!r}, {self.prefix!r})"

    def where(self, name: str) -> Path:
        """The path a message names for file ``name`` (a member is named by its archive)."""
        return self.path / self.prefix / name if self.kind == "folder" else self.path

    def _member(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def names(self) -> list[str]:
        """Every file below the prefix (``class/image.jpg``...), sorted; hidden files left out."""
        if self._names is None:
            if self.kind == "folder":
                base = self.path / self.prefix
                found = [p.relative_to(base).as_posix() for p in base.rglob("*") if p.is_file()]
            else:
                with reading(self.path, advice=_IMAGE_ADVICE.replace("it is", "the archive is")):
                    found = self._archive_names()
            self._names = sorted(n for n in found if not any(part.startswith(".") for part in n.split("/")))
        return self._names

    def _archive_names(self) -> list[str]:
        start = f"{self.prefix}/" if self.prefix else ""
        if self.kind == "zip":
            with zipfile.ZipFile(self.path) as archive:
                members = [i.filename for i in archive.infolist() if not i.is_dir()]
        else:
            try:
                with tarfile.open(self.path) as archive:
                    members = [m.name for m in archive.getmembers() if m.isfile()]
            except tarfile.TarError as error:
                raise damaged(self.path, f"cannot read it: {type(error).__name__}: {error}") from error
        return [m[len(start):] for m in members if m.startswith(start)]

    def read(self, names: Sequence[str]) -> Iterator[tuple[str, bytes]]:
        """``(name, bytes)`` of each of ``names``, in whatever order the container reads fastest."""
        wanted = set(names)
        if self.kind == "folder":
            for name in names:
                with reading(self.where(name), advice=_IMAGE_ADVICE):
                    yield name, self.where(name).read_bytes()
        elif self.kind == "zip":
            with reading(self.path), zipfile.ZipFile(self.path) as archive:
                for name in names:
                    with reading(self.path, name):
                        blob = archive.read(self._member(name))
                    yield name, blob
        else:  # a compressed tar is read once, front to back
            start = f"{self.prefix}/" if self.prefix else ""
            try:
                with tarfile.open(self.path) as archive:
                    for member in archive:
                        name = member.name[len(start):] if member.name.startswith(start) else None
                        if name in wanted and member.isfile():
                            yield name, archive.extractfile(member).read()
            except (tarfile.TarError, EOFError, OSError, zlib.error) as error:
                raise damaged(self.path, f"cannot read it: {type(error).__name__}: {error}") from error

    def identity(self) -> dict:
        """What the processed arrays depend on, for a cache key: the archive's sha256, or every file's size and
        modification time (hashing a whole folder of images would cost about as much as decoding it)."""
        if self.kind != "folder":
            return {"archive_sha256": digest(self.path), "prefix": self.prefix}
        base = self.path / self.prefix
        return {"folder": str(base.resolve()),
                "files": [(n, (base / n).stat().st_size, (base / n).stat().st_mtime_ns) for n in self.names()]}


def decode_image(blob: bytes, size: tuple[int, int] | None, grayscale: bool, where: Path, name: str = "",
                 box: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """One image as uint8 ``[C, H, W]`` (1 channel when ``grayscale``, else RGB), cropped to ``box`` (left, top,
    right, bottom) when given, then resized with Lanczos to ``size`` (height, width) when it differs."""
    with reading(where, name, advice=_IMAGE_ADVICE), Image.open(io.BytesIO(blob)) as image:
        image = image.convert("L" if grayscale else "RGB")
        if box is not None:
            image = image.crop(box)
        if size is not None and image.size != (size[1], size[0]):
            image = image.resize((size[1], size[0]), _LANCZOS)
        array = np.asarray(image, dtype=np.uint8)
    return array[None] if grayscale else array.transpose(2, 0, 1)


def decode_images(tree: FileTree, names: Sequence[str], size: tuple[int, int], grayscale: bool = False,
                  boxes: Sequence[tuple[int, int, int, int]] | None = None, desc: str = "") -> np.ndarray:
    """uint8 ``[len(names), C, H, W]``: file ``names[i]`` of ``tree`` decoded by :func:`decode_image` into row i."""
    position = {name: i for i, name in enumerate(names)}
    out = np.empty((len(names), 1 if grayscale else 3, *size), dtype=np.uint8)
    done = np.zeros(len(names), dtype=bool)
    bar = tqdm(total=len(names), desc=desc or tree.path.name, unit="img", leave=False,
               disable=not sys.stderr.isatty() or len(names) < 1000)
    with bar:
        for name, blob in tree.read(names):
            i = position[name]
            out[i] = decode_image(blob, size, grayscale, tree.where(name), name if tree.kind != "folder" else "",
                                  None if boxes is None else boxes[i])
            done[i] = True
            bar.update()
    if not done.all():
        raise damaged(tree.path, f"it lacks {int((~done).sum())} listed files, e.g. "
                      f"{tree._member(names[int(np.flatnonzero(~done)[0])])}")
    return out


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff")


def class_folder_files(tree: FileTree, suffixes: tuple[str, ...] = IMAGE_SUFFIXES) -> dict[str, list[str]]:
    """``{class folder: [its image names]}`` of a tree laid out ``<class>/<image>`` (an ImageFolder)."""
    classes: dict[str, list[str]] = {}
    for name in tree.names():
        parts = name.split("/")
        if len(parts) == 2 and parts[1].lower().endswith(suffixes):
            classes.setdefault(parts[0], []).append(name)
    return classes
