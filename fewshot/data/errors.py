"""Damaged data files fail as one :class:`~fewshot.core.errors.DataError` naming the file and what to do.

Readers wrap the code that parses a file in :func:`reading`: whatever a truncated or corrupt file makes the
parser raise (a bad zip, a short read, a broken PNG, an unpicklable stream...) becomes one DataError whose
message starts with the file's path, instead of a traceback from deep inside numpy, zipfile or PIL.
"""
from __future__ import annotations

import os
import pickle
import struct
import zipfile
import zlib
from contextlib import contextmanager
from typing import Iterator

from PIL import UnidentifiedImageError

from fewshot.core.errors import DataError

__all__ = ["DataError", "DataNotFoundError", "damaged", "reading"]

# What a damaged file makes the standard readers raise. FileNotFoundError is left alone (a missing file is
# reported by whoever looks for it); a DataError raised inside passes through unchanged.
_READ_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, KeyError, IndexError, struct.error,
                pickle.UnpicklingError, UnidentifiedImageError, UnicodeDecodeError)
DEFAULT_ADVICE = "it is truncated or corrupt: replace it with a good copy (or delete it to fetch it again)"


class DataNotFoundError(DataError, FileNotFoundError):
    """A data file is missing and could not be downloaded; the message says what to put where."""


def damaged(path: str | os.PathLike, detail: str, advice: str = DEFAULT_ADVICE) -> DataError:
    """The DataError for a file that cannot be used: ``<path>: <detail>; <advice>``."""
    return DataError(f"{os.fspath(path)}: {detail}; {advice}")


@contextmanager
def reading(path: str | os.PathLike, what: str = "", advice: str = DEFAULT_ADVICE) -> Iterator[None]:
    """Turn the errors of reading a damaged ``path`` (``what`` in it, e.g. a zip member) into one DataError."""
    try:
        yield
    except (DataError, FileNotFoundError):
        raise
    except _READ_ERRORS as error:
        where = f" ({what})" if what else ""
        # PIL's message names an in-memory buffer for an image read from a zip: say what it means instead.
        detail = "not an image file PIL can identify" if isinstance(error, UnidentifiedImageError) else str(error)
        if isinstance(error, PermissionError):
            advice = "make it readable by this user"
        raise damaged(path, f"cannot read it{where}: {type(error).__name__}: {detail or repr(error)}", advice) \
            from error
