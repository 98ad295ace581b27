"""Omniglot (Lake, Salakhutdinov & Tenenbaum, 2015): the Vinyals class split, Lake's background/evaluation setting,
the two "minimal" background sets and the official 20-run one-shot task.

Sources, in order: ``images_{background,evaluation}.npz`` (the omniglot_npz packing), else the official
``images_{background,evaluation}.zip``, else those zips downloaded from brendenlake/omniglot with their sha256
checked. Each is looked for in ``root``, ``root/omniglot_npz`` and ``root/omniglot``, so a root pointing at a folder
holding both of those works. Images are ink-bright uint8 ``[N, 1, S, S]``, resized from 105x105 by exact area
averaging; characters resized at one size are cached under ``root/cache`` when it is writable, else under
``fewshot.paths.cache_dir()/datasets`` ($FEWSHOT_CACHE), else only in memory.
"""
from __future__ import annotations

import hashlib
import io
import os
import re
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from fewshot.core.atomic import atomic_open
from fewshot.core.paths import cache_dir
from fewshot.data.dataset import ClassDataset
from fewshot.data.download import ChecksumError, ensure_files, sha256_file, writable_dir
from fewshot.data.episodes import EpisodeSet
from fewshot.data.registry import default_data_root, register_dataset

__all__ = ["BACKGROUND_ALPHABETS", "EVALUATION_ALPHABETS", "VINYALS_VAL_ALPHABETS", "VINYALS_TEST_ALPHABETS",
           "OFFICIAL_FILES", "RunImage", "area_resize", "characters", "load_omniglot", "load_omniglot_background",
           "load_omniglot_evaluation", "load_omniglot_small1", "load_omniglot_small2", "load_omniglot_characters",
           "load_omniglot_runs", "locate_omniglot_runs", "vinyals_class_names", "vinyals_split_of"]

RAW_SIZE = 105
DRAWERS = 20
ROTATIONS = (0, 90, 180, 270)

# First global character id of each alphabet, in id order (the XXXX of the official file names XXXX_YY.png).
BACKGROUND_ALPHABETS: tuple[tuple[str, int], ...] = (
    ("Arcadian", 1), ("Armenian", 27), ("Asomtavruli_(Georgian)", 68), ("Balinese", 108), ("Bengali", 132),
    ("Blackfoot_(Canadian_Aboriginal_Syllabics)", 178), ("Braille", 192), ("Cyrillic", 218),
    ("Early_Aramaic", 251), ("Syriac_(Estrangelo)", 273), ("Anglo-Saxon_Futhorc", 296), ("Futurama", 325),
    ("Grantha", 351), ("Greek", 394), ("Gujarati", 418), ("Hebrew", 466), ("Japanese_(hiragana)", 488),
    ("Inuktitut_(Canadian_Aboriginal_Syllabics)", 540), ("Malay_(Jawi_-_Arabic)", 556),
    ("Japanese_(katakana)", 596), ("Korean", 643), ("Latin", 683), ("Alphabet_of_the_Magi", 709),
    ("Mkhedruli_(Georgian)", 729), ("Burmese_(Myanmar)", 770), ("N_Ko", 804),
    ("Ojibwe_(Canadian_Aboriginal_Syllabics)", 837), ("Sanskrit", 851), ("Tagalog", 893), ("Tifinagh", 910),
)
EVALUATION_ALPHABETS: tuple[tuple[str, int], ...] = (
    ("Angelic", 965), ("Atemayar_Qelisayer", 985), ("Atlantean", 1011), ("Aurek-Besh", 1037), ("Avesta", 1063),
    ("Ge_ez", 1089), ("Glagolitic", 1115), ("Gurmukhi", 1160), ("Kannada", 1205), ("Keble", 1246),
    ("Malayalam", 1272), ("Manipuri", 1319), ("Mongolian", 1359), ("Old_Church_Slavonic_(Cyrillic)", 1389),
    ("Oriya", 1434), ("Syriac_(Serto)", 1480), ("Sylheti", 1503), ("Tengwar", 1531), ("Tibetan", 1556),
    ("ULOG", 1598),
)
_LAST_ID = {"background": 964, "evaluation": 1623}
_TABLES = {"background": BACKGROUND_ALPHABETS, "evaluation": EVALUATION_ALPHABETS}

# The Vinyals et al. (2016) split as used by Snell et al. (2017): val is five background alphabets, test is
# Gurmukhi's last four characters plus twelve evaluation alphabets, train is everything else.
VINYALS_VAL_ALPHABETS = frozenset({"Armenian", "Bengali", "Early_Aramaic", "Hebrew", "Mkhedruli_(Georgian)"})
VINYALS_TEST_ALPHABETS = frozenset({
    "Kannada", "Keble", "Malayalam", "Manipuri", "Mongolian", "Old_Church_Slavonic_(Cyrillic)", "Oriya", "Sylheti",
    "Syriac_(Serto)", "Tengwar", "Tibetan", "ULOG",
})
VINYALS_TEST_GURMUKHI_FROM = 42
VINYALS_SPLITS = ("train", "val", "test", "trainval")

_BASE_URL = "https://github.com/brendenlake/omniglot/raw/master/python/"
# name -> (url, sha256); the sha256 of the four image zips agree with tensorflow_datasets' url_checksums/omniglot.txt
# (and, for the small sets and all_runs.zip, with the copies in shared/data/omniglot).
OFFICIAL_FILES: dict[str, tuple[str, str]] = {
    "images_background.zip": (_BASE_URL + "images_background.zip",
                              "ad41ab679c8b5d90b271ef46be6987cc81211774a695c29dcc5367b2b26ee640"),
    "images_evaluation.zip": (_BASE_URL + "images_evaluation.zip",
                              "1f61a8f3366785b057fc117d9228e78a16e3d976c8953b2a10fcc74cf0609cee"),
    "images_background_small1.zip": (_BASE_URL + "images_background_small1.zip",
                                     "f38eb80f801274ac2b4dff5b24289016bfaba4a7d5bb50deebf27104ad6cb8a4"),
    "images_background_small2.zip": (_BASE_URL + "images_background_small2.zip",
                                     "3ccaa407515a8778e5d0861875af38b17e418f301ad5bb3b5a6b65d901a41c7f"),
    "all_runs.zip": (_BASE_URL + "one-shot-classification/all_runs.zip",
                     "437c1eeab0af8484112e1b4cc0f3d541ec727f7c47b9b202da738af9dfd6c325"),
}
_SUBFOLDERS = ("", "omniglot_npz", "omniglot")
_CACHE_VERSION = 1
_CHUNK_CHARACTERS = 32  # characters decoded and resized at a time (32 x 20 x 105 x 105 floats = 28 MB)


# ----------------------------------------------------------------------------------------------------------------
# The character table and the Vinyals split rule


def characters(which: str) -> list[tuple[str, str]]:
    """``(alphabet, "characterNN")`` of every character of the ``"background"`` or ``"evaluation"`` set, in id order."""
    table = _TABLES[_check_which(which, ("background", "evaluation"))]
    out = []
    for k, (alphabet, first) in enumerate(table):
        end = table[k + 1][1] if k + 1 < len(table) else _LAST_ID[which] + 1
        out += [(alphabet, f"character{n:02d}") for n in range(1, end - first + 1)]
    return out


def vinyals_split_of(alphabet: str, character: str) -> str:
    """``"train"``, ``"val"`` or ``"test"``: where the Vinyals split puts ``alphabet/character``."""
    if alphabet in VINYALS_VAL_ALPHABETS:
        return "val"
    if alphabet in VINYALS_TEST_ALPHABETS:
        return "test"
    if alphabet == "Gurmukhi" and int(character.removeprefix("character")) >= VINYALS_TEST_GURMUKHI_FROM:
        return "test"
    return "train"


def _vinyals_characters(split: str) -> list[tuple[str, int, str, str]]:
    """``(which, row, alphabet, character)`` of the characters of Vinyals split ``split``, in id order."""
    wanted = {"trainval": ("train", "val")}.get(split, (split,))
    return [(which, row, alphabet, character)
            for which in ("background", "evaluation")
            for row, (alphabet, character) in enumerate(characters(which))
            if vinyals_split_of(alphabet, character) in wanted]


def vinyals_class_names(split: str) -> list[str]:
    """The classes of Vinyals split ``split`` as ``alphabet/characterNN/rotDDD``, each character in four rotations."""
    split = _check_which(split, VINYALS_SPLITS)
    return [f"{alphabet}/{character}/rot{deg:03d}" for _, _, alphabet, character in _vinyals_characters(split)
            for deg in ROTATIONS]


def _check_which(value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ValueError(f"unknown Omniglot split or set {value!r}; expected one of {', '.join(allowed)}")
    return value


# ----------------------------------------------------------------------------------------------------------------
# Resizing


def _area_weights(n_in: int, n_out: int) -> Tensor:
    """``[n_out, n_in]`` weights: output pixel ``i`` averages the input pixels it covers, by covered length."""
    edges = torch.arange(n_out + 1, dtype=torch.float64) * (n_in / n_out)
    lo, hi = edges[:-1, None], edges[1:, None]
    pixels = torch.arange(n_in, dtype=torch.float64)[None]
    overlap = (torch.minimum(hi, pixels + 1) - torch.maximum(lo, pixels)).clamp_(min=0)
    return (overlap / overlap.sum(1, keepdim=True)).float()


def area_resize(images: np.ndarray | Tensor, size: int) -> Tensor:
    """Images ``[..., H, W]`` (bool masks or [0, 1] floats) resized to ``size x size``, as uint8 0..255.

    Each output pixel is the exact area-weighted mean of the input pixels it covers (PIL's BOX filter), computed as
    two large matrix products; the weights are mirror-symmetric, so resizing commutes with 90-degree rotations.
    """
    if size < 1:
        raise ValueError(f"image_size must be a positive integer, got {size}")
    x = torch.as_tensor(images)
    *lead, h, w = x.shape
    if (h, w) == (size, size) and x.dtype == torch.bool:
        return x.to(torch.uint8).mul_(255)
    x = x.reshape(-1, h, w).to(torch.float32)
    if (h, w) != (size, size):
        n = x.shape[0]
        x = x.reshape(n * h, w) @ _area_weights(w, size).T  # [n*h, size]: rows resized
        x = x.reshape(n, h, size).transpose(1, 2).reshape(n * size, h) @ _area_weights(h, size).T
        x = x.reshape(n, size, size).transpose(1, 2)  # back to [n, row, column]
    return x.mul(255.0).round_().clamp_(0, 255).to(torch.uint8).reshape(*lead, size, size)


# ----------------------------------------------------------------------------------------------------------------
# Finding and reading the full background / evaluation sets


def _find(root: Path, name: str) -> Path | None:
    for sub in _SUBFOLDERS:
        if (root / sub / name).is_file():
            return root / sub / name
    return None


def _locate(root: Path, which: str, download: bool) -> Path:
    """The file holding set ``which``: a local .npz, else a local official .zip, else the downloaded .zip."""
    found = _find(root, f"images_{which}.npz") or _find(root, f"images_{which}.zip")
    if found is not None:
        return found
    name = f"images_{which}.zip"
    hint = (f"(or put images_{which}.npz, the omniglot_npz packing, in {root} or {root / 'omniglot_npz'}; "
            f"root is the data root: --data-root, $FEWSHOT_DATA or {default_data_root()})")
    return ensure_files(root / "omniglot", {name: OFFICIAL_FILES[name]}, download=download, hint=hint)[name]


_DIGESTS: dict[tuple[str, int, int], str] = {}


def _digest(path: Path) -> str:
    """The file's sha256, remembered per (path, size, mtime) so each file is hashed once per process."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        _DIGESTS[key] = sha256_file(path)
    return _DIGESTS[key]


def _check_official(path: Path) -> str:
    """The sha256 of ``path``; for an official zip, raise :class:`ChecksumError` unless it is the published one."""
    digest = _digest(path)
    expected = OFFICIAL_FILES.get(path.name, (None, None))[1]
    if path.suffix == ".zip" and expected is not None and digest != expected:
        raise ChecksumError(f"{path}: sha256 is {digest}, expected {expected} (the published file); it is "
                            f"corrupt or a different version: delete it and fetch it again")
    return digest


def _npz_chunks(path: Path, key: str, rows: int) -> Iterator[np.ndarray]:
    """Consecutive blocks of ``rows`` rows of array ``key`` of an .npz, decompressed as they are read."""
    with zipfile.ZipFile(path) as archive, archive.open(f"{key}.npy") as fh:
        version = np.lib.format.read_magic(fh)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
            np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read_header(fh)
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
                    raise ValueError(f"{path}: {key}.npy ends early (row {start} of {shape[0]})")
                filled += got
            # The omniglot_npz files store True as byte 255, not 1: make the booleans canonical.
            yield raw != 0 if boolean else raw


def _npz_shape(path: Path, key: str) -> tuple[int, ...]:
    with zipfile.ZipFile(path) as archive, archive.open(f"{key}.npy") as fh:
        version = np.lib.format.read_magic(fh)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
            np.lib.format.read_array_header_2_0
        return tuple(read_header(fh)[0])


_PNG_NAME = re.compile(r"(?:^|/)([^/]+)/(character\d+)/(\d{4})_(\d{2})\.png$")


def _png_zip_index(archive: zipfile.ZipFile) -> list[tuple[int, str, str, list[str]]]:
    """``(id, alphabet, character, members by drawer)`` of every character in an official PNG zip, in id order."""
    found: dict[int, tuple[str, str, dict[int, str]]] = {}
    for member in archive.namelist():
        match = _PNG_NAME.search(member)
        if match is None:
            continue
        alphabet, character, ident, drawer = match.group(1), match.group(2), int(match.group(3)), int(match.group(4))
        entry = found.setdefault(ident, (alphabet, character, {}))
        if entry[:2] != (alphabet, character):
            raise ValueError(f"{archive.filename}: character id {ident} appears as {entry[0]}/{entry[1]} and as "
                             f"{alphabet}/{character}")
        entry[2][drawer] = member
    out = []
    for ident in sorted(found):
        alphabet, character, drawers = found[ident]
        if sorted(drawers) != list(range(1, DRAWERS + 1)):
            raise ValueError(f"{archive.filename}: {alphabet}/{character} has drawers {sorted(drawers)}, "
                             f"expected 1..{DRAWERS}")
        out.append((ident, alphabet, character, [drawers[d] for d in range(1, DRAWERS + 1)]))
    return out


def _decode_png(data: bytes) -> np.ndarray:
    """The background mask (True = white paper, False = ink) of an official 1-bit PNG."""
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("1"), dtype=bool)


def _ink_bright(paper: np.ndarray | Tensor, size: int) -> Tensor:
    """uint8 ink-bright images ``[..., size, size]`` from background masks (True = paper), resized by area."""
    return 255 - area_resize(paper, size)


def _paper_chunks(path: Path, which: str) -> Iterator[np.ndarray]:
    """Background masks ``[k, 20, 105, 105]`` (True = paper) of set ``which``'s characters, in id order, by blocks."""
    names = characters(which)
    if path.suffix == ".npz":
        shape = _npz_shape(path, "images")
        if shape != (len(names), DRAWERS, RAW_SIZE, RAW_SIZE):
            raise ValueError(f"{path}: images has shape {shape}, expected {(len(names), DRAWERS, RAW_SIZE, RAW_SIZE)}")
        for block in _npz_chunks(path, "images", _CHUNK_CHARACTERS):
            yield block  # True = white background in the npz, as in the PNGs
        return
    first_id = _TABLES[which][0][1]
    with zipfile.ZipFile(path) as archive:
        index = _png_zip_index(archive)
        layout = [(ident - first_id, alphabet, character) for ident, alphabet, character, _ in index]
        expected = [(row, alphabet, character) for row, (alphabet, character) in enumerate(names)]
        if layout != expected:
            raise ValueError(f"{path}: its characters do not match the official {which} set's ids and alphabets")
        for start in range(0, len(index), _CHUNK_CHARACTERS):
            yield np.stack([np.stack([_decode_png(archive.read(m)) for m in members])
                            for _, _, _, members in index[start:start + _CHUNK_CHARACTERS]])


# ----------------------------------------------------------------------------------------------------------------
# Processed characters, cached


_MEMORY: OrderedDict[str, np.ndarray] = OrderedDict()
_MEMORY_BYTES = 512 << 20


def _remember(key: str, array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False  # shared by every caller
    _MEMORY[key] = array
    _MEMORY.move_to_end(key)
    while len(_MEMORY) > 1 and sum(a.nbytes for a in _MEMORY.values()) > _MEMORY_BYTES:
        _MEMORY.popitem(last=False)
    return array


def _cache_dirs(root: Path) -> Iterator[Path]:
    yield root / "cache"
    yield cache_dir() / "datasets"


def _cached(root: Path, key: str, build) -> np.ndarray:
    """``build()``, stored as ``cache/<key>.npy`` in the first writable cache folder and in memory."""
    if key in _MEMORY:
        _MEMORY.move_to_end(key)
        return _MEMORY[key]
    for folder in _cache_dirs(root):
        if (folder / f"{key}.npy").is_file():
            try:
                return _remember(key, np.load(folder / f"{key}.npy"))
            except (OSError, ValueError):
                pass  # unreadable or truncated by hand: rebuild below
    array = build()
    for folder in _cache_dirs(root):
        if not writable_dir(folder):
            continue  # read-only (the shared data folder, say): try the next one, else keep it in memory only
        try:
            with atomic_open(folder / f"{key}.npy") as fh:
                np.save(fh, array)
        except OSError:
            continue
        break
    return _remember(key, array)


def _resize_blocks(blocks: Iterator[np.ndarray], image_size: int) -> np.ndarray:
    return np.concatenate([_ink_bright(block, image_size).numpy() for block in blocks])


def _full_set(root: Path, which: str, image_size: int, download: bool) -> np.ndarray:
    """uint8 ``[characters, 20, S, S]`` of set ``which`` (ink bright), row ``r`` = ``characters(which)[r]``."""
    path = _locate(root, which, download)
    key = f"omniglot-{which}-{image_size}px-{_check_official(path)[:16]}-v{_CACHE_VERSION}"
    return _cached(root, key, lambda: _resize_blocks(_paper_chunks(path, which), image_size))


def _small_set(root: Path, which: str, image_size: int, download: bool) -> tuple[list[tuple[str, str]], np.ndarray]:
    name = f"images_background_{which}.zip"
    path = _find(root, name) or ensure_files(root / "omniglot", {name: OFFICIAL_FILES[name]}, download=download)[name]
    digest = _check_official(path)
    with zipfile.ZipFile(path) as archive:
        index = _png_zip_index(archive)

        def build() -> np.ndarray:
            return _resize_blocks((np.stack([np.stack([_decode_png(archive.read(m)) for m in members])
                                             for _, _, _, members in index[start:start + _CHUNK_CHARACTERS]])
                                   for start in range(0, len(index), _CHUNK_CHARACTERS)), image_size)

        images = _cached(root, f"omniglot-{which}-{image_size}px-{digest[:16]}-v{_CACHE_VERSION}", build)
    return [(alphabet, character) for _, alphabet, character, _ in index], images


def load_omniglot_characters(root: str | os.PathLike, which: str, *, image_size: int = 28,
                             download: bool = True) -> tuple[list[tuple[str, str]], np.ndarray]:
    """Every character of an official Omniglot set, rebuilt from the official layout.

    ``which`` is ``"background"`` (964 characters), ``"evaluation"`` (659), ``"small1"`` or ``"small2"`` (the
    minimal background sets). Returns ``(alphabet, "characterNN")`` per character, in id order, and uint8 images
    ``[characters, 20, image_size, image_size]`` (ink bright; index 1 is drawer ``02``), read-only because it is
    shared with the in-memory cache.
    """
    which = _check_which(which, ("background", "evaluation", "small1", "small2"))
    image_size = _check_size(image_size)
    root = Path(root).expanduser()
    if which in ("small1", "small2"):
        return _small_set(root, which, image_size, download)
    return characters(which), _full_set(root, which, image_size, download)


def _check_size(image_size: int) -> int:
    if int(image_size) != image_size or image_size < 1:
        raise ValueError(f"image_size must be a positive integer, got {image_size!r}")
    return int(image_size)


# ----------------------------------------------------------------------------------------------------------------
# Datasets


def _dataset(name: str, images: np.ndarray | Tensor, class_names: list[str], alphabets: list[str]) -> ClassDataset:
    """A ClassDataset from ``[classes, examples, S, S]`` images; groups are the alphabets."""
    images = torch.as_tensor(images)
    classes, per_class = images.shape[:2]
    group_names = list(dict.fromkeys(alphabets))
    lookup = {g: i for i, g in enumerate(group_names)}
    return ClassDataset(
        images.reshape(classes * per_class, 1, *images.shape[2:]),
        torch.arange(classes).repeat_interleave(per_class),
        class_names, name,
        groups=torch.tensor([lookup[a] for a in alphabets], dtype=torch.long),
        group_names=group_names,
    )


def _name(base: str, split: str, image_size: int) -> str:
    return f"{base}/{split}" + ("" if image_size == 28 else f"@{image_size}px")


@register_dataset("omniglot")
def load_omniglot(split: str, root: Path, *, image_size: int = 28, download: bool = True) -> ClassDataset:
    """The Vinyals et al. (2016) split (Matching Networks; Prototypical Networks' ``splits/vinyals``).

    ``split`` is train (4112 classes), val (688), test (1692) or trainval (4800): characters in id order, each in
    rotations 0/90/180/270 degrees counter-clockwise (as PIL's ``Image.rotate``) as four classes named
    ``alphabet/characterNN/rotDDD``, 20 drawings each, ``image_size`` pixels square (28 in the papers). Snell et
    al.'s loader also transposes every image, a fixed reflection of all classes alike; these stay upright.
    """
    split = _check_which(split, VINYALS_SPLITS)
    image_size = _check_size(image_size)
    root = Path(root).expanduser()
    chosen = _vinyals_characters(split)
    parts = []
    for which in ("background", "evaluation"):
        rows = [row for w, row, _, _ in chosen if w == which]
        if rows:
            parts.append(torch.from_numpy(_full_set(root, which, image_size, download)[rows]))
    base = torch.cat(parts)  # [characters, 20, S, S]
    images = torch.stack([torch.rot90(base, k=deg // 90, dims=(-2, -1)) for deg in ROTATIONS], dim=1)
    images = images.reshape(-1, *base.shape[1:])  # [characters * 4, 20, S, S], rotations inner
    alphabets = [alphabet for _, _, alphabet, _ in chosen for _ in ROTATIONS]
    return _dataset(_name("omniglot", split, image_size), images, vinyals_class_names(split), alphabets)


_LAKE_SPLITS = {"omniglot-background": ("train", "all"), "omniglot-evaluation": ("test", "all"),
                "omniglot-small1": ("train", "all"), "omniglot-small2": ("train", "all")}


def _lake_dataset(dataset: str, which: str, split: str, root: Path, image_size: int, download: bool) -> ClassDataset:
    if split not in _LAKE_SPLITS[dataset]:
        raise ValueError(
            f"{dataset} has no {split!r} split: in Lake's setting the background set (omniglot-background, or "
            f"omniglot-small1/-small2) is only for learning (split 'train' or 'all') and the evaluation set "
            f"(omniglot-evaluation, or the 20 runs of load_omniglot_runs) only for testing (split 'test' or 'all'); "
            f"hold out background alphabets yourself for validation, or use 'omniglot' for the Vinyals split")
    names, images = load_omniglot_characters(root, which, image_size=image_size, download=download)
    return _dataset(_name(dataset, split, image_size), images.copy(), [f"{a}/{c}" for a, c in names],
                    [a for a, _ in names])


@register_dataset("omniglot-background")
def load_omniglot_background(split: str, root: Path, *, image_size: int = 28, download: bool = True) -> ClassDataset:
    """Lake et al.'s background set: 964 characters of 30 alphabets, no rotations, for learning only (split train)."""
    return _lake_dataset("omniglot-background", "background", split, root, _check_size(image_size), download)


@register_dataset("omniglot-evaluation")
def load_omniglot_evaluation(split: str, root: Path, *, image_size: int = 28, download: bool = True) -> ClassDataset:
    """Lake et al.'s evaluation set: 659 characters of 20 alphabets, no rotations, for testing only (split test)."""
    return _lake_dataset("omniglot-evaluation", "evaluation", split, root, _check_size(image_size), download)


@register_dataset("omniglot-small1")
def load_omniglot_small1(split: str, root: Path, *, image_size: int = 28, download: bool = True) -> ClassDataset:
    """The minimal background set "small 1": 136 characters of 5 alphabets, for learning only (split train)."""
    return _lake_dataset("omniglot-small1", "small1", split, root, _check_size(image_size), download)


@register_dataset("omniglot-small2")
def load_omniglot_small2(split: str, root: Path, *, image_size: int = 28, download: bool = True) -> ClassDataset:
    """The minimal background set "small 2": 156 characters of 5 alphabets, for learning only (split train)."""
    return _lake_dataset("omniglot-small2", "small2", split, root, _check_size(image_size), download)


# ----------------------------------------------------------------------------------------------------------------
# The 20-run one-shot classification task

RUNS = 20
RUN_WAYS = 20


def _runs_zip(root: Path, download: bool) -> Path:
    path = _find(root, "all_runs.zip") or \
        ensure_files(root / "omniglot", {"all_runs.zip": OFFICIAL_FILES["all_runs.zip"]}, download=download)[
            "all_runs.zip"]
    _check_official(path)
    return path


def _read_runs(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Background masks of the training images ``[20 runs, 20 classes]`` and test items ``[20, 20]``, and the class
    (0-based) of each test item ``[20, 20]``."""
    train = np.empty((RUNS, RUN_WAYS, RAW_SIZE, RAW_SIZE), dtype=bool)
    test = np.empty_like(train)
    labels = np.empty((RUNS, RUN_WAYS), dtype=np.int64)
    with zipfile.ZipFile(path) as archive:
        for r in range(RUNS):
            run = f"run{r + 1:02d}"
            for k in range(RUN_WAYS):
                train[r, k] = _decode_png(archive.read(f"{run}/training/class{k + 1:02d}.png"))
                test[r, k] = _decode_png(archive.read(f"{run}/test/item{k + 1:02d}.png"))
            pairs = [line.split() for line in archive.read(f"{run}/class_labels.txt").decode().splitlines() if line]
            for item, klass in pairs:
                item_no = int(re.fullmatch(rf"{run}/test/item(\d+)\.png", item).group(1))
                class_no = int(re.fullmatch(rf"{run}/training/class(\d+)\.png", klass).group(1))
                labels[r, item_no - 1] = class_no - 1
            if len(pairs) != RUN_WAYS:
                raise ValueError(f"{path}: {run}/class_labels.txt has {len(pairs)} lines, expected {RUN_WAYS}")
    return train, test, labels


def load_omniglot_runs(root: str | os.PathLike, image_size: int = 28, *,
                       download: bool = True) -> tuple[ClassDataset, EpisodeSet]:
    """The official one-shot task (Lake et al. 2015): 20 runs of 20-way 1-shot with 20 queries, from all_runs.zip.

    The dataset holds the 400 training images (rows ``20*r + k``: run ``r+1``, ``classKK`` with ``KK = k+1``) and
    the 400 test items (rows ``400 + 20*r + m``: ``itemMM`` with ``MM = m+1``) as 400 classes ``runRR/classKK`` of
    two images each, the test item labelled with the class ``class_labels.txt`` gives it; groups are the runs. The
    episode set holds the 20 runs as fixed episodes (``seed=None``): support = the run's 20 training images,
    labels 0..19; query = its 20 test items in item order, labels from ``class_labels.txt``. The score is the error
    rate over the 400 queries.
    """
    image_size = _check_size(image_size)
    root = Path(root).expanduser()
    train, test, labels = _read_runs(_runs_zip(root, download))
    n = RUNS * RUN_WAYS
    images = _ink_bright(np.concatenate([train.reshape(n, RAW_SIZE, RAW_SIZE), test.reshape(n, RAW_SIZE, RAW_SIZE)]),
                         image_size).unsqueeze(1)
    run_offset = torch.arange(RUNS).unsqueeze(1) * RUN_WAYS
    class_of = torch.cat([torch.arange(n), (torch.from_numpy(labels) + run_offset).flatten()])
    dataset = ClassDataset(
        images, class_of,
        [f"run{r + 1:02d}/class{k + 1:02d}" for r in range(RUNS) for k in range(RUN_WAYS)],
        _name("omniglot-runs", "test", image_size),
        groups=torch.arange(RUNS).repeat_interleave(RUN_WAYS),
        group_names=[f"run{r + 1:02d}" for r in range(RUNS)],
    )
    episodes = EpisodeSet(
        support=run_offset + torch.arange(RUN_WAYS),
        support_labels=torch.arange(RUN_WAYS).expand(RUNS, -1).clone(),
        query=n + run_offset + torch.arange(RUN_WAYS),
        query_labels=torch.from_numpy(labels).clone(),
        classes=run_offset + torch.arange(RUN_WAYS),
        ways=RUN_WAYS, shots=1, queries=1, seed=None,
        dataset_fingerprint=dataset.fingerprint(),
    )
    return dataset, episodes


@dataclass(frozen=True)
class RunImage:
    """Where one image of the 20-run task comes from in the evaluation set."""

    file: str  # as in all_runs.zip, e.g. "run01/training/class01.png"
    alphabet: str
    character: str
    drawer: int  # 1..20


def locate_omniglot_runs(root: str | os.PathLike, *, download: bool = True) -> list[RunImage]:
    """Find each of the 800 images of the 20-run task in the official evaluation set, pixel for pixel.

    Returns one :class:`RunImage` per image (run-major, the 20 training images then the 20 test items of each
    run); raises ``ValueError`` if an image is not in the evaluation set.
    """
    root = Path(root).expanduser()
    train, test, _ = _read_runs(_runs_zip(root, download))
    names = characters("evaluation")
    where: dict[bytes, tuple[int, int]] = {}
    row = 0
    for block in _paper_chunks(_locate(root, "evaluation", download), "evaluation"):
        packed = np.packbits(block.reshape(*block.shape[:2], -1), axis=-1)
        for c in range(block.shape[0]):
            for d in range(DRAWERS):
                where.setdefault(hashlib.sha1(packed[c, d].tobytes()).digest(), (row + c, d + 1))
        row += block.shape[0]
    out = []
    for r in range(RUNS):
        for kind, images, stem in (("training", train, "class"), ("test", test, "item")):
            for k in range(RUN_WAYS):
                file = f"run{r + 1:02d}/{kind}/{stem}{k + 1:02d}.png"
                found = where.get(hashlib.sha1(np.packbits(images[r, k].reshape(-1)).tobytes()).digest())
                if found is None:
                    raise ValueError(f"{file} does not occur in the Omniglot evaluation set")
                alphabet, character = names[found[0]]
                out.append(RunImage(file, alphabet, character, found[1]))
    return out
