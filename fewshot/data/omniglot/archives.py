"""Reading Omniglot's files: the arrays of an .npz (streamed by blocks), the PNGs of an official zip by id and
drawer, and the 1-bit PNGs themselves. A damaged file fails as one DataError naming it."""
from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image

from fewshot.data.errors import damaged, reading
from fewshot.data.omniglot.alphabets import characters, first_id

RAW_SIZE = 105
DRAWERS = 20
CHUNK_CHARACTERS = 32  # characters decoded and resized at a time (32 x 20 x 105 x 105 floats = 28 MB)
_PNG_NAME = re.compile(r"(?:^|/)([^/]+)/(character\d+)/(\d{4})_(\d{2})\.png$")
_NPZ_ADVICE = ("it is truncated or corrupt: replace it with a good copy of the omniglot_npz packing, or remove it "
               "to read the official images_*.zip instead")


def _npy_header(fh) -> tuple[tuple[int, ...], bool, np.dtype]:
    version = np.lib.format.read_magic(fh)
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    return read(fh)


def npz_chunks(path: Path, key: str, rows: int) -> Iterator[np.ndarray]:
    """Consecutive blocks of ``rows`` rows of array ``key`` of an .npz, decompressed as they are read."""
    with reading(path, f"{key}.npy", _NPZ_ADVICE), zipfile.ZipFile(path) as archive, \
            archive.open(f"{key}.npy") as fh:
        shape, fortran, dtype = _npy_header(fh)
        if fortran or dtype.hasobject:
            array = np.load(path)[key]
            for start in range(0, len(array), rows):
                yield array[start:start + rows]
            return
        for start in range(0, shape[0], rows):
            boolean = dtype.kind == "b"
            raw = np.empty((min(rows, shape[0] - start), *shape[1:]), dtype=np.uint8 if boolean else dtype)
            view, filled = memoryview(raw.reshape(-1).view(np.uint8)), 0
            while filled < len(view):
                got = fh.readinto(view[filled:])
                if not got:
                    raise damaged(path, f"{key}.npy ends early (row {start} of {shape[0]})", _NPZ_ADVICE)
                filled += got
            # The omniglot_npz files store True as byte 255, not 1: make the booleans canonical.
            yield raw != 0 if boolean else raw


def npz_shape(path: Path, key: str) -> tuple[int, ...]:
    """The shape of array ``key`` of an .npz, from its header alone."""
    with reading(path, f"{key}.npy", _NPZ_ADVICE), zipfile.ZipFile(path) as archive, \
            archive.open(f"{key}.npy") as fh:
        return tuple(_npy_header(fh)[0])


def png_zip_index(archive: zipfile.ZipFile) -> list[tuple[int, str, str, list[str]]]:
    """``(id, alphabet, character, members by drawer)`` of every character in an official PNG zip, in id order."""
    found: dict[int, tuple[str, str, dict[int, str]]] = {}
    for member in archive.namelist():
        match = _PNG_NAME.search(member)
        if match is None:
            continue
        alphabet, character, ident, drawer = match.group(1), match.group(2), int(match.group(3)), int(match.group(4))
        entry = found.setdefault(ident, (alphabet, character, {}))
        if entry[:2] != (alphabet, character):
            raise damaged(archive.filename, f"character id {ident} appears as {entry[0]}/{entry[1]} and as "
                          f"{alphabet}/{character}")
        entry[2][drawer] = member
    out = []
    for ident in sorted(found):
        alphabet, character, drawers = found[ident]
        if sorted(drawers) != list(range(1, DRAWERS + 1)):
            raise damaged(archive.filename, f"{alphabet}/{character} has drawers {sorted(drawers)}, expected "
                          f"1..{DRAWERS}")
        out.append((ident, alphabet, character, [drawers[d] for d in range(1, DRAWERS + 1)]))
    return out


def decode_png(archive: zipfile.ZipFile, member: str) -> np.ndarray:
    """The background mask (True = white paper, False = ink) of the official 1-bit PNG ``member``."""
    with reading(archive.filename, member), Image.open(io.BytesIO(archive.read(member))) as image:
        return np.asarray(image.convert("1"), dtype=bool)


def decode_characters(archive: zipfile.ZipFile, index: list[tuple[int, str, str, list[str]]]) -> Iterator[np.ndarray]:
    """Background masks ``[k, 20, 105, 105]`` of the characters of ``index`` (from :func:`png_zip_index`), by blocks."""
    for start in range(0, len(index), CHUNK_CHARACTERS):
        yield np.stack([np.stack([decode_png(archive, m) for m in members])
                        for _, _, _, members in index[start:start + CHUNK_CHARACTERS]])


def paper_chunks(path: Path, which: str) -> Iterator[np.ndarray]:
    """Background masks ``[k, 20, 105, 105]`` (True = paper) of set ``which``'s characters, in id order, by blocks."""
    names = characters(which)
    if path.suffix == ".npz":
        shape, expected = npz_shape(path, "images"), (len(names), DRAWERS, RAW_SIZE, RAW_SIZE)
        if shape != expected:
            raise damaged(path, f"images has shape {shape}, expected {expected}", _NPZ_ADVICE)
        yield from npz_chunks(path, "images", CHUNK_CHARACTERS)  # True = white background, as in the PNGs
        return
    with reading(path), zipfile.ZipFile(path) as archive:
        index = png_zip_index(archive)
        layout = [(ident - first_id(which), alphabet, character) for ident, alphabet, character, _ in index]
        if layout != [(row, alphabet, character) for row, (alphabet, character) in enumerate(names)]:
            raise damaged(path, f"its characters do not match the official {which} set's ids and alphabets")
        yield from decode_characters(archive, index)
