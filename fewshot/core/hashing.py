"""Content hashes: of files, of bytes and of JSON-able descriptions (the keys of caches and checkpoints)."""
from __future__ import annotations

import hashlib
import json
import os
from typing import Any

_CHUNK = 1 << 20


def file_digest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """The ``algorithm`` digest (any of :mod:`hashlib`'s) of the file at ``path`` as a hex string."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    """The sha256 of the file at ``path`` as a hex string."""
    return file_digest(path)


def sha256_json(value: Any, length: int | None = None) -> str:
    """The sha256 of ``value`` as canonical JSON (sorted keys; non-JSON values by ``str``), cut to ``length``."""
    blob = json.dumps(value, sort_keys=True, default=str).encode()
    digest = hashlib.sha256(blob).hexdigest()
    return digest[:length] if length else digest


def sha256_tensor(tensor: Any, length: int | None = None) -> str:
    """The sha256 of a tensor's dtype, shape and values (read on the CPU), cut to ``length``."""
    import torch  # here, so that hashing files and JSON never imports torch

    t = tensor.detach().cpu().contiguous()
    h = hashlib.sha256(f"{t.dtype}:{tuple(t.shape)}:".encode())
    h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())  # the raw bytes, whatever the dtype
    digest = h.hexdigest()
    return digest[:length] if length else digest
