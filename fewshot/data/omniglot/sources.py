"""Where Omniglot's files are: the omniglot_npz packing or the official zips, looked for under the data root (or
downloaded from brendenlake/omniglot), and the published sha256 every official zip is checked against."""
from __future__ import annotations

from pathlib import Path

from fewshot.data.download import ChecksumError, ensure_files, sha256_file
from fewshot.data.registry import default_data_root

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
# Each file is looked for in the root and these folders of it, so a root holding both packings works.
_SUBFOLDERS = ("", "omniglot_npz", "omniglot")


def find(root: Path, name: str) -> Path | None:
    """``root/name``, ``root/omniglot_npz/name`` or ``root/omniglot/name``, the first that is a file; else None."""
    for sub in _SUBFOLDERS:
        if (root / sub / name).is_file():
            return root / sub / name
    return None


def official_file(root: Path, name: str, download: bool, hint: str = "") -> Path:
    """The official file ``name`` found under ``root``, else downloaded to ``root/omniglot``; its sha256 checked."""
    path = find(root, name)
    if path is None:
        path = ensure_files(root / "omniglot", {name: OFFICIAL_FILES[name]}, download=download, hint=hint)[name]
    check_official(path)
    return path


def locate_set(root: Path, which: str, download: bool) -> Path:
    """The file holding set ``which``: a local .npz, else a local official .zip, else the downloaded .zip."""
    found = find(root, f"images_{which}.npz")
    if found is not None:
        return found
    hint = (f"(or put images_{which}.npz, the omniglot_npz packing, in {root} or {root / 'omniglot_npz'}; "
            f"root is the data root: --data-root, $FEWSHOT_DATA or {default_data_root()})")
    return official_file(root, f"images_{which}.zip", download, hint)


_DIGESTS: dict[tuple[str, int, int], str] = {}


def digest(path: Path) -> str:
    """The file's sha256, remembered per (path, size, mtime) so each file is hashed once per process."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        _DIGESTS[key] = sha256_file(path)
    return _DIGESTS[key]


def check_official(path: Path) -> str:
    """The sha256 of ``path``; for an official zip, raise :class:`ChecksumError` unless it is the published one."""
    actual = digest(path)
    expected = OFFICIAL_FILES.get(path.name, (None, None))[1]
    if path.suffix == ".zip" and expected is not None and actual != expected:
        raise ChecksumError(f"{path}: sha256 is {actual}, expected {expected} (the published file); it is "
                            f"corrupt or a different version: delete it and fetch it again")
    return actual
