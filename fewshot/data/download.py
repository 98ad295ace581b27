"""Fetching data files: streamed downloads checked against sha256, and clear errors when a file must be placed by hand.

Files are downloaded to a temporary file beside the destination and moved into place only once their sha256 is
verified, so a data root never holds a partial or corrupt file under its final name.
"""
from __future__ import annotations

import hashlib
import os
import sys
import urllib.error
import urllib.request
import warnings
from pathlib import Path
from typing import Mapping

from tqdm.auto import tqdm

from fewshot.core.atomic import atomic_open
from fewshot.core.errors import DataError
from fewshot.core.hashing import sha256_file
from fewshot.data.errors import DataNotFoundError

__all__ = ["ChecksumError", "DataNotFoundError", "download_file", "ensure_files", "sha256_file", "verify_sha256",
           "writable_dir"]

_CHUNK = 1 << 20


class ChecksumError(DataError):
    """A file's sha256 is not the one expected (a :class:`DataError`, so also a ValueError)."""


def writable_dir(path: str | os.PathLike) -> bool:
    """Whether files may be created in folder ``path`` (or, if it does not exist yet, in its nearest existing parent).

    The folder's permission bits must allow writing and this process must have write access: a folder shared
    read-only (mode ``r-x``) counts as read-only even for root, who could write through its permission bits.
    """
    path = Path(path).expanduser().absolute()
    while not path.exists():
        if path.parent == path:
            return False
        path = path.parent
    return path.is_dir() and bool(path.stat().st_mode & 0o222) and os.access(path, os.W_OK)


def verify_sha256(path: str | os.PathLike, expected: str) -> None:
    """Raise :class:`ChecksumError` naming both digests unless the file at ``path`` has sha256 ``expected``."""
    actual = sha256_file(path)
    if actual != expected.lower():
        raise ChecksumError(f"{path}: sha256 is {actual}, expected {expected.lower()}; the file is corrupt, "
                            f"truncated or a different version: delete it and fetch it again")


def download_file(url: str, dest: str | os.PathLike, sha256: str | None, *, progress: bool = True) -> Path:
    """Download ``url`` (``http(s)://`` or ``file://``) to ``dest`` and return ``dest``.

    The file is streamed to a temporary file in ``dest``'s folder (:func:`fewshot.core.atomic.atomic_open`) and
    moved into place only when its sha256 equals ``sha256``; on a mismatch the temporary file is deleted and
    :class:`ChecksumError` is raised, leaving ``dest`` untouched. ``sha256=None`` skips the check with a warning
    that gives the digest to pin. The progress bar is shown only when ``progress`` is true and stderr is a terminal.
    """
    dest = Path(dest)
    request = urllib.request.Request(url, headers={"User-Agent": "fewshot (python urllib)"})
    # atomic_open moves the file into place only when the block ends without an error (a checksum mismatch is one).
    with atomic_open(dest) as out, urllib.request.urlopen(request, timeout=60) as response:
        h = hashlib.sha256()
        length = response.headers.get("Content-Length")
        with tqdm(total=int(length) if length else None, unit="B", unit_scale=True, unit_divisor=1024,
                  desc=dest.name, disable=not (progress and sys.stderr.isatty()), leave=False) as bar:
            for chunk in iter(lambda: response.read(_CHUNK), b""):
                out.write(chunk)
                h.update(chunk)
                bar.update(len(chunk))
        out.flush()
        os.fsync(out.fileno())
        digest = h.hexdigest()
        if sha256 is None:
            warnings.warn(f"downloaded {url} without a checksum to verify; its sha256 is {digest}", stacklevel=2)
        elif digest != sha256.lower():
            raise ChecksumError(f"{url}: the downloaded file has sha256 {digest}, expected {sha256.lower()}; "
                                f"it was deleted and nothing was written to {dest}")
    return dest


def ensure_files(root: str | os.PathLike, files: Mapping[str, tuple[str, str | None]], *, download: bool,
                 verify_existing: bool = True, hint: str = "") -> dict[str, Path]:
    """Paths ``root/name`` of every file in ``files`` (``name -> (url, sha256)``), downloading missing ones.

    Files already present are checked against their sha256 when ``verify_existing`` (a mismatch raises
    :class:`ChecksumError`). Missing files are downloaded when ``download`` is true; a file that is still missing
    (download disabled, no network, read-only root) raises :class:`DataNotFoundError` listing, for each such
    file, the path to put it at and the URL to fetch it from, followed by ``hint``. Nothing is written to a root
    that :func:`writable_dir` finds read-only.
    """
    root = Path(root)
    paths: dict[str, Path] = {}
    missing: dict[str, str] = {}
    for name, (url, sha256) in files.items():
        path = root / name
        if path.is_file():
            if verify_existing and sha256 is not None:
                verify_sha256(path, sha256)
            paths[name] = path
            continue
        if not download:
            missing[name] = "downloading is disabled (download=False)"
            continue
        if not writable_dir(root):
            missing[name] = f"{root} is read-only, so it was not downloaded"
            continue
        try:
            paths[name] = download_file(url, path, sha256)
        except ChecksumError:
            raise
        except (urllib.error.URLError, OSError, ValueError) as error:  # no network, HTTP error, read-only root
            missing[name] = f"the download failed: {error}"
    if missing:
        lines = [f"missing data file{'s' if len(missing) > 1 else ''} in {root}:"]
        for name, reason in missing.items():
            url, sha256 = files[name]
            lines.append(f"  put {root / name}\n    downloaded from {url}\n    (sha256 {sha256 or 'not pinned'}; "
                         f"{reason})")
        if hint:
            lines.append(hint)
        raise DataNotFoundError("\n".join(lines))
    return paths
