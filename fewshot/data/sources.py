"""Where a dataset's published files are: looked for under the data root, checked against their published digests,
and, when absent, one clear "put file X in folder Y" error naming where to get it."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from fewshot.core.hashing import file_digest
from fewshot.data.download import ChecksumError
from fewshot.data.errors import DataNotFoundError

__all__ = ["Published", "check_published", "digest", "find_first", "not_found"]

_DIGESTS: dict[tuple[str, str, int, int], str] = {}


@dataclass(frozen=True)
class Published:
    """A file as its publisher distributes it: its name, where to get it, and the digests known for it."""

    name: str
    url: str
    sha256: str | None = None
    md5: str | None = None

    def checksum(self) -> str:
        """The digests, as a message gives them."""
        known = [f"{k} {v}" for k, v in (("sha256", self.sha256), ("md5", self.md5)) if v]
        return ", ".join(known) or "no published checksum"


def digest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """The file's digest, remembered per (path, size, modification time): each file is hashed once per process."""
    path = Path(path)
    st = path.stat()
    key = (algorithm, str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        _DIGESTS[key] = file_digest(path, algorithm)
    return _DIGESTS[key]


def check_published(path: str | os.PathLike, published: Published) -> None:
    """Raise :class:`ChecksumError` unless ``path`` has the published sha256 (else md5; nothing when neither is)."""
    for algorithm in ("sha256", "md5"):
        expected = getattr(published, algorithm)
        if expected:
            actual = digest(path, algorithm)
            if actual != expected:
                raise ChecksumError(f"{path}: {algorithm} is {actual}, expected {expected} (the published "
                                    f"{published.name}); it is corrupt, truncated or a different version: replace "
                                    f"it with the file from {published.url}")
            return


def find_first(candidates: Iterable[Path], kind: str = "any") -> Path | None:
    """The first candidate that exists (``kind``: ``file``, ``dir`` or ``any``)."""
    for path in candidates:
        if (kind in ("file", "any") and path.is_file()) or (kind in ("dir", "any") and path.is_dir()):
            return path
    return None


def not_found(dataset: str, folder: Path, files: Sequence[Published], alternative: str = "",
              looked: Sequence[Path] = ()) -> DataNotFoundError:
    """The error for a dataset whose files are absent: put each of ``files`` (or ``alternative``) in ``folder``."""
    lines = [f"{dataset} not found{' (looked in ' + ', '.join(map(str, looked)) + ')' if looked else ''}: put"]
    lines += [f"{f.name} (from {f.url}; {f.checksum()})" for f in files]
    text = lines[0] + " " + " and ".join(lines[1:]) + f" in {folder}"
    if alternative:
        text += f", or {alternative}"
    return DataNotFoundError(text + "; the data root is --data-root or $FEWSHOT_DATA")
