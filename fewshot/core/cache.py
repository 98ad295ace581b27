"""The processed-data cache: named numpy arrays kept in memory and on disk under ``cache_dir()/processed/<namespace>``.

One entry is one file, ``<label>-<key>.arrays``: a small JSON header (format, namespace, key, each array's dtype,
shape and offset, the payload's length and sha256) followed by the raw arrays. The key is a sha256 of the
namespace, its version and a JSON identity (the sha256 of the source files, the generator's settings, ...), so a
changed source or a bumped version never reads an old entry. Writes go through :func:`fewshot.core.atomic.atomic_open`;
an entry that is truncated, corrupt or written for another key reads as absent and is rebuilt; temporary files
that killed writers left behind are removed when a folder is first opened. Nothing is ever written anywhere else
(never into a data root): the cache belongs to the suite, the data to the user.
"""
from __future__ import annotations

import hashlib
import json
import os
import struct
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from fewshot.core.atomic import atomic_open, remove_orphans
from fewshot.core.hashing import sha256_json
from fewshot.core.paths import cache_dir

__all__ = ["FORMAT", "DataCache", "processed_dir", "read_entry", "write_entry"]

FORMAT = 1  # of the file layout below; bump it when the layout changes
_MAGIC = b"FEWSHOT-ARRAYS\0\0"  # 16 bytes, then the header's length (uint64, little-endian), header, payload
_ALIGN = 64  # every array starts at a multiple of 64 bytes, so views of the payload are aligned
_SUFFIX = ".arrays"
Arrays = dict[str, np.ndarray]


def processed_dir() -> Path:
    """``cache_dir()/processed``: the parent of every namespace's folder (``$FEWSHOT_CACHE/processed``)."""
    return cache_dir() / "processed"


def _pad(n: int) -> int:
    return -n % _ALIGN


def _contiguous(array: np.ndarray) -> np.ndarray:
    array = np.asarray(array)
    return array if array.flags.c_contiguous else array.copy(order="C")  # (ascontiguousarray makes 0-d 1-d)


def _raw(array: np.ndarray) -> np.ndarray:
    """The array's bytes as a flat uint8 view (any dtype but object, any shape, 0-d included)."""
    return array.reshape(-1).view(np.uint8)


class DataCache:
    """Arrays built once and reused: ``get(key, build)`` reads memory, then disk, else builds and stores.

    ``namespace`` names the folder (``processed_dir()/namespace`` unless ``folder`` is given); ``version`` goes into
    every key, so bumping it retires all old entries. ``memory_bytes`` bounds an in-process LRU copy (0: none);
    arrays handed out from memory are read-only because every caller shares them.
    """

    def __init__(self, namespace: str, version: int, *, memory_bytes: int = 0,
                 folder: str | os.PathLike | None = None) -> None:
        self.namespace = namespace
        self.version = int(version)
        self.memory_bytes = int(memory_bytes)
        self._folder = Path(folder) if folder is not None else None
        self._memory: OrderedDict[tuple[str, str], Arrays] = OrderedDict()
        self._opened: set[str] = set()
        self._warned: set[str] = set()

    @property
    def folder(self) -> Path:
        """Where entries live, resolved on every use (``$FEWSHOT_CACHE`` may change, in tests say)."""
        return self._folder if self._folder is not None else processed_dir() / self.namespace

    def key(self, identity: Any) -> str:
        """The key of what ``identity`` (JSON-able) describes, for this namespace, version and file format."""
        return sha256_json({"format": FORMAT, "namespace": self.namespace, "version": self.version,
                            "identity": identity})[:32]

    def path(self, key: str, label: str = "") -> Path:
        """The entry's file: ``<folder>/<label>-<key>.arrays`` (the label only helps people browsing the folder)."""
        return self.folder / (f"{label}-{key}{_SUFFIX}" if label else f"{key}{_SUFFIX}")

    def clear_memory(self) -> None:
        """Forget the in-memory copies (the files stay)."""
        self._memory.clear()

    def get(self, key: str, build: Callable[[], Mapping[str, np.ndarray]], label: str = "") -> Arrays:
        """The arrays stored under ``key``; on a miss (or a damaged file) ``build()`` makes them and they are stored."""
        found = self.load(key, label)
        if found is not None:
            return found
        return self.store(key, build(), label)

    def load(self, key: str, label: str = "") -> Arrays | None:
        """The arrays stored under ``key``, or None when there are none or the file is damaged."""
        path = self.path(key, label)
        remembered = self._memory.get((str(path), key))
        if remembered is not None:
            self._memory.move_to_end((str(path), key))
            return remembered
        self._open()
        arrays = read_entry(path, key)
        return None if arrays is None else self._remember(path, key, arrays)

    def store(self, key: str, arrays: Mapping[str, np.ndarray], label: str = "") -> Arrays:
        """Write ``arrays`` under ``key`` atomically and return them (read-only when kept in memory too).

        A cache folder that cannot be written is not an error: the arrays are still returned (and kept in memory
        if this cache has some), with one warning per folder.
        """
        arrays = {name: _contiguous(a) for name, a in arrays.items()}
        path = self.path(key, label)
        self._open()
        try:
            write_entry(path, self.namespace, key, arrays)
        except OSError as error:
            if str(self.folder) not in self._warned:
                self._warned.add(str(self.folder))
                kept = "keeping it in memory only" if self.memory_bytes > 0 else "rebuilding it on every use"
                warnings.warn(f"cannot write the {self.namespace} cache in {self.folder} ({error}); {kept}: set "
                              f"$FEWSHOT_CACHE to a writable folder", stacklevel=2)
        return self._remember(path, key, arrays)

    def _open(self) -> None:
        folder = str(self.folder)
        if folder not in self._opened:
            self._opened.add(folder)
            try:
                remove_orphans(folder)
            except OSError:
                pass  # a read-only cache: its orphans stay, harmlessly (their names are never read as entries)

    def _remember(self, path: Path, key: str, arrays: Arrays) -> Arrays:
        if self.memory_bytes <= 0:
            return arrays
        for array in arrays.values():
            array.flags.writeable = False  # shared by every caller
        self._memory[(str(path), key)] = arrays
        self._memory.move_to_end((str(path), key))
        total = sum(a.nbytes for entry in self._memory.values() for a in entry.values())
        while len(self._memory) > 1 and total > self.memory_bytes:
            _, dropped = self._memory.popitem(last=False)
            total -= sum(a.nbytes for a in dropped.values())
        return arrays


def write_entry(path: Path, namespace: str, key: str, arrays: Mapping[str, np.ndarray]) -> None:
    """Write one entry file (header, then the arrays) atomically."""
    arrays = {name: _contiguous(a) for name, a in arrays.items()}
    layout, offset, digest = [], 0, hashlib.sha256()
    for name, array in arrays.items():
        if array.dtype.hasobject:
            raise TypeError(f"cache entry {name!r}: object arrays cannot be cached")
        layout.append({"name": name, "dtype": array.dtype.str, "shape": list(array.shape), "offset": offset})
        digest.update(_raw(array))
        digest.update(bytes(_pad(array.nbytes)))
        offset += array.nbytes + _pad(array.nbytes)
    header = json.dumps({"format": FORMAT, "namespace": namespace, "key": key, "arrays": layout,
                         "payload_bytes": offset, "sha256": digest.hexdigest()}).encode()
    header += b" " * _pad(len(_MAGIC) + 8 + len(header))
    with atomic_open(path) as fh:
        fh.write(_MAGIC + struct.pack("<Q", len(header)) + header)
        for array in arrays.values():
            fh.write(_raw(array))
            fh.write(bytes(_pad(array.nbytes)))


def read_entry(path: Path, key: str) -> Arrays | None:
    """The arrays of the entry file at ``path`` if it is complete, intact and written for ``key``; else None."""
    try:
        with open(path, "rb") as fh:
            start = fh.read(len(_MAGIC) + 8)
            if len(start) != len(_MAGIC) + 8 or start[:len(_MAGIC)] != _MAGIC:
                return None
            (length,) = struct.unpack("<Q", start[len(_MAGIC):])
            if length > 1 << 24:
                return None
            header = json.loads(fh.read(length))
            if header.get("format") != FORMAT or header.get("key") != key:
                return None
            size = int(header["payload_bytes"])
            if os.fstat(fh.fileno()).st_size != len(start) + length + size:
                return None  # truncated, or something appended
            payload = bytearray(size)
            if fh.readinto(payload) != size or hashlib.sha256(payload).hexdigest() != header["sha256"]:
                return None
            out = {}
            for entry in header["arrays"]:
                dtype, shape = np.dtype(entry["dtype"]), tuple(entry["shape"])
                out[entry["name"]] = np.frombuffer(payload, dtype, int(np.prod(shape, dtype=np.int64)),
                                                   entry["offset"]).reshape(shape)
            return out
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError, struct.error):
        return None  # unreadable or damaged by hand: the caller rebuilds it
