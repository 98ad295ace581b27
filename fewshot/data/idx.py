"""The IDX format of MNIST-style datasets (``*-idx3-ubyte`` images, ``*-idx1-ubyte`` labels), plain or gzipped.

A file is a 4-byte magic (two zero bytes, a type code, the number of dimensions), one big-endian uint32 per
dimension, then the values in C order. Only unsigned bytes (type ``0x08``) occur in these datasets.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import struct
from pathlib import Path

import numpy as np

from fewshot.data.download import ChecksumError
from fewshot.data.errors import damaged, reading

__all__ = ["read_idx", "read_idx_bytes"]

_UBYTE = 0x08


def read_idx_bytes(path: str | os.PathLike) -> bytes:
    """The file's IDX bytes: gunzipped when it ends in ``.gz``; a damaged file fails as a DataError naming it."""
    path = Path(path)
    with reading(path):
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as fh:
                return fh.read()
        return path.read_bytes()


def read_idx(path: str | os.PathLike, ndim: int, expected_sha256: str | None = None) -> np.ndarray:
    """The uint8 array of an IDX file with ``ndim`` dimensions (1: labels, 3: images).

    ``expected_sha256`` is the sha256 of the uncompressed IDX bytes: it is the same for a plain file and for any
    gzip of it (Debian's recompressed ``.gz`` and the publisher's differ as files, not in content).
    """
    path = Path(path)
    blob = read_idx_bytes(path)
    if expected_sha256 is not None:
        actual = hashlib.sha256(blob).hexdigest()
        if actual != expected_sha256:
            raise ChecksumError(f"{path}: the sha256 of its IDX content is {actual}, expected {expected_sha256}; "
                                f"it is corrupt or a different version: replace it with the published file")
    if len(blob) < 4 or blob[0] != 0 or blob[1] != 0:
        raise damaged(path, "not an IDX file (bad magic number)")
    if blob[2] != _UBYTE or blob[3] != ndim:
        raise damaged(path, f"expected an IDX file of unsigned bytes with {ndim} dimensions, found type "
                      f"0x{blob[2]:02x} with {blob[3]} dimensions")
    header = 4 + 4 * ndim
    if len(blob) < header:
        raise damaged(path, "truncated IDX header")
    shape = struct.unpack(f">{ndim}I", blob[4:header])
    size = int(np.prod(shape, dtype=np.int64))
    if len(blob) != header + size:
        raise damaged(path, f"its header announces {size} values of shape {shape}, but it holds "
                      f"{len(blob) - header}")
    return np.frombuffer(blob, dtype=np.uint8, count=size, offset=header).reshape(shape)
