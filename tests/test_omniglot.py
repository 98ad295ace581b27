"""Omniglot on the real files in ../shared/data (read in place): the Vinyals split, rotations, sources, the 20 runs."""
from __future__ import annotations

import io
import re
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fewshot.core.cache import processed_dir
from fewshot.data import list_datasets, load_dataset, omniglot
from fewshot.data.download import DataNotFoundError, sha256_file
from fewshot.data.omniglot import (area_resize, characters, load_omniglot_characters, load_omniglot_runs,
                                   locate_omniglot_runs, vinyals_class_names)
from fewshot.data.omniglot import alphabets, archives, loaders, sources

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
pytestmark = pytest.mark.skipif(not (DATA / "omniglot_npz").is_dir() or not (DATA / "omniglot").is_dir(),
                                reason=f"the shared Omniglot data is not at {DATA} (../shared/data beside the repo)")
SPLIT_FILES = DATA / "omniglot" / "splits" / "vinyals"
COUNTS = {"train": 4112, "val": 688, "test": 1692, "trainval": 4800}


@pytest.fixture(autouse=True, scope="module")
def private_cache(tmp_path_factory):
    """Send the processed-data cache to a temporary folder, not the user's cache."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FEWSHOT_CACHE", str(tmp_path_factory.mktemp("fewshot-cache")))
        yield


def _official(split: str) -> list[str]:
    return (SPLIT_FILES / f"{split}.txt").read_text().split()


def _png(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("1"), dtype=bool)


# ---------------------------------------------------------------------------------------------------- the split rule


@pytest.mark.parametrize("split", list(COUNTS))
def test_vinyals_rule_equals_the_official_split_files(split):
    ours, official = vinyals_class_names(split), _official(split)
    assert len(ours) == len(set(ours)) == len(official) == COUNTS[split]
    assert set(ours) == set(official)


def test_vinyals_splits_partition_all_characters():
    characters_of = {s: {n.rsplit("/", 1)[0] for n in vinyals_class_names(s)} for s in ("train", "val", "test")}
    assert [len(characters_of[s]) for s in ("train", "val", "test")] == [1028, 172, 423]
    assert not (characters_of["train"] & characters_of["val"]) and not (characters_of["train"] & characters_of["test"])
    everything = {f"{a}/{c}" for which in ("background", "evaluation") for a, c in characters(which)}
    assert characters_of["train"] | characters_of["val"] | characters_of["test"] == everything
    assert set(vinyals_class_names("trainval")) == set(vinyals_class_names("train")) | set(vinyals_class_names("val"))


def test_character_table_matches_the_official_file_names():
    assert (len(characters("background")), len(characters("evaluation"))) == (964, 659)
    table = {which: characters(which) for which in ("background", "evaluation")}
    pattern = re.compile(r"/([^/]+)/(character\d\d)/(\d{4})_(\d\d)\.png$")
    for name in ("images_background_small1.zip", "images_background_small2.zip"):
        for member in zipfile.ZipFile(DATA / "omniglot" / name).namelist():
            if match := pattern.search(member):
                assert table["background"][int(match.group(3)) - 1] == match.group(1, 2), member


# ---------------------------------------------------------------------------------------------------- loading


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_vinyals_split_loads(split):
    start = time.perf_counter()
    ds = load_dataset("omniglot", split, root=DATA)
    print(f"omniglot {split}: {time.perf_counter() - start:.2f}s")
    assert ds.class_names == vinyals_class_names(split)
    assert ds.data.shape == (COUNTS[split] * 20, 1, 28, 28) and ds.data.dtype == torch.uint8
    assert (ds.class_counts == 20).all()
    assert [ds.group_names[g] for g in ds.groups] == [n.split("/")[0] for n in ds.class_names]
    ink = ds.data.float().mean() / 255
    assert 0.03 < ink < 0.3, "ink must be bright on a dark background"
    assert ds.data.max() == 255 and ds.data.min() == 0


def test_rotations_rotate_counter_clockwise_like_pil():
    ds = load_dataset("omniglot", "train", root=DATA)
    index = {name: i for i, name in enumerate(ds.class_names)}
    base = "Balinese/character07"  # a train character of the minimal set small1, read here from its PNG
    upright = ds.data[ds.class_index[index[f"{base}/rot000"]]]
    for k, deg in enumerate(omniglot.ROTATIONS):
        rotated = ds.data[ds.class_index[index[f"{base}/rot{deg:03d}"]]]
        assert torch.equal(rotated, torch.rot90(upright, k=k, dims=(-2, -1)))
    # Snell et al. rotate the 105x105 drawing with PIL's Image.rotate (counter-clockwise), then resize.
    archive = zipfile.ZipFile(DATA / "omniglot" / "images_background_small1.zip")
    member = next(m for m in sorted(archive.namelist()) if f"/{base}/" in m and m.endswith("_01.png"))
    with Image.open(io.BytesIO(archive.read(member))) as image:
        pil_90 = np.asarray(image.convert("L").rotate(90), dtype=np.uint8).astype(bool)  # True = paper
    ours_90 = ds.data[ds.class_index[index[f"{base}/rot090"]][0], 0]
    ours_270 = ds.data[ds.class_index[index[f"{base}/rot270"]][0], 0]
    expected = 255 - area_resize(pil_90, 28)
    assert (ours_90.int() - expected.int()).abs().max() <= 1
    assert (ours_270.int() - expected.int()).abs().float().mean() > 10, "the character is symmetric: pick another"


def test_image_size_option():
    # The minimal set keeps this quick; the Vinyals split resizes its characters with the same code.
    small = load_dataset("omniglot-small1", "train", root=DATA, image_size=84)
    assert small.data.shape == (136 * 20, 1, 84, 84) and small.name == "omniglot-small1/train@84px"
    at_28 = load_dataset("omniglot-small1", "train", root=DATA)
    assert abs(small.data.float().mean() - at_28.data.float().mean()) < 0.5  # area resizing keeps the ink
    with pytest.raises(ValueError, match="image_size"):
        load_dataset("omniglot", "val", root=DATA, image_size=0)


def test_npz_rows_equal_the_minimal_set_pngs():
    """The npz (background) and the official PNGs of small1/small2 hold the same drawings."""
    wanted = {("images_background_small1.zip", "Korean/character05"),
              ("images_background_small1.zip", "Latin/character26"),
              ("images_background_small2.zip", "Japanese_(katakana)/character47"),
              ("images_background_small2.zip", "Tagalog/character01")}
    rows, pngs = {}, {}
    for zip_name, character in wanted:
        archive = zipfile.ZipFile(DATA / "omniglot" / zip_name)
        members = sorted(m for m in archive.namelist() if f"/{character}/" in m and m.endswith(".png"))
        assert [m[-6:-4] for m in members] == [f"{d:02d}" for d in range(1, 21)]
        rows[character] = int(members[0].rsplit("/", 1)[1][:4]) - 1
        pngs[character] = np.stack([_png(archive.read(m)) for m in members])
    found = {}
    offset = 0
    for block in archives.npz_chunks(DATA / "omniglot_npz" / "images_background.npz", "images", 128):
        for character, row in rows.items():
            if offset <= row < offset + len(block):
                found[character] = block[row - offset]
        offset += len(block)
    for character in rows:
        assert np.array_equal(found[character], pngs[character]), character


def test_minimal_sets_equal_the_same_characters_of_the_background_set():
    background = load_dataset("omniglot-background", "train", root=DATA)
    assert background.num_classes == 964 and len(background.group_names) == 30
    index = {name: i for i, name in enumerate(background.class_names)}
    for name, count in (("omniglot-small1", 136), ("omniglot-small2", 156)):
        small = load_dataset(name, "train", root=DATA)
        assert small.num_classes == count and len(small.group_names) == 5
        ours = background.data[background.class_index[[index[n] for n in small.class_names]]]
        theirs = small.data[small.class_index]
        assert (ours.int() - theirs.int()).abs().max() <= 1  # same drawings, same resizing (up to float ties)


def test_lake_datasets_have_fixed_roles():
    evaluation = load_dataset("omniglot-evaluation", "test", root=DATA)
    assert evaluation.num_classes == 659 and len(evaluation) == 659 * 20 and len(evaluation.group_names) == 20
    assert evaluation.class_names[0] == "Angelic/character01"
    with pytest.raises(ValueError, match="only for testing"):
        load_dataset("omniglot-evaluation", "train", root=DATA)
    with pytest.raises(ValueError, match="no 'val' split"):
        load_dataset("omniglot-background", "val", root=DATA)
    assert {"omniglot", "omniglot-background", "omniglot-evaluation", "omniglot-small1",
            "omniglot-small2"} <= set(list_datasets("omniglot*"))


# ---------------------------------------------------------------------------------------------------- the 20 runs


def test_twenty_runs_load_and_pixel_nearest_neighbour_is_sane():
    ds, episodes = load_omniglot_runs(DATA)
    assert len(episodes) == 20 and (episodes.ways, episodes.shots, episodes.queries, episodes.seed) == (20, 1, 1, None)
    assert ds.num_classes == 400 and len(ds) == 800 and (ds.class_counts == 2).all()
    assert ds.data.shape == (800, 1, 28, 28) and ds.data.dtype == torch.uint8
    assert episodes.dataset_fingerprint == ds.fingerprint()
    assert torch.equal(episodes.support_labels, torch.arange(20).expand(20, 20))
    assert all(sorted(row.tolist()) == list(range(20)) for row in episodes.query_labels)
    # Every query's label points at the training image of its class, as class_labels.txt says.
    truth = ds.labels[episodes.query]
    assert torch.equal(truth, episodes.classes.gather(1, episodes.query_labels))
    archive = zipfile.ZipFile(DATA / "omniglot" / "all_runs.zip")
    first = archive.read("run01/class_labels.txt").decode().split()
    assert int(first[1][-6:-4]) - 1 == episodes.query_labels[0, 0]  # item01's class
    # Raw-pixel 1-nearest-neighbour: Lake et al. (2015) report 78.3% error for their pixel baseline; ours is 79.25%.
    support, query = ds.gather(episodes.support).flatten(2), ds.gather(episodes.query).flatten(2)
    error = (torch.cdist(query, support).argmin(-1) != episodes.query_labels).float().mean().item()
    assert 0.70 < error < 0.88
    # The original images are kept: at 105 pixels they are the PNGs, ink bright.
    big, _ = load_omniglot_runs(DATA, image_size=105)
    assert np.array_equal(big.data[0, 0].numpy() == 255, ~_png(archive.read("run01/training/class01.png")))


def test_run_images_come_from_the_evaluation_alphabets():
    located = locate_omniglot_runs(DATA)
    assert len(located) == 800
    evaluation_alphabets = {a for a, _ in omniglot.EVALUATION_ALPHABETS}
    for r in range(20):
        run = located[40 * r:40 * (r + 1)]
        assert len({x.alphabet for x in run}) == 1 and run[0].alphabet in evaluation_alphabets  # within-alphabet
        train_drawers, test_drawers = {x.drawer for x in run[:20]}, {x.drawer for x in run[20:]}
        assert len(train_drawers) == len(test_drawers) == 1 and train_drawers != test_drawers
        assert len({x.character for x in run[:20]}) == 20


# ---------------------------------------------------------------------------------------------------- sources, cache


def _snapshot(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.lstat().st_mtime_ns for p in [folder, *folder.rglob("*")]}


def test_shared_root_is_not_written():
    before = _snapshot(DATA)
    loaders.CACHE.clear_memory()  # so that this loads from the files, not from memory
    load_dataset("omniglot", "val", root=DATA)
    load_dataset("omniglot-small2", "train", root=DATA, image_size=20)
    load_omniglot_runs(DATA)
    assert _snapshot(DATA) == before
    assert not (DATA / "cache").exists() and not (DATA / "omniglot" / "cache").exists()


def test_writable_root_is_not_written_either_and_the_cache_is_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("FEWSHOT_CACHE", str(tmp_path / "elsewhere"))
    root = tmp_path / "root"
    root.mkdir()
    (root / "omniglot_npz").symlink_to(DATA / "omniglot_npz", target_is_directory=True)
    loaders.CACHE.clear_memory()
    first = load_dataset("omniglot", "val", root=root)
    assert sorted(p.name for p in root.iterdir()) == ["omniglot_npz"]  # nothing written into a data root
    digest = sha256_file(DATA / "omniglot_npz" / "images_background.npz")
    key = loaders.CACHE.key({"set": "background", "image_size": 28, "source_sha256": digest})
    folder = tmp_path / "elsewhere" / "processed" / "omniglot"
    assert folder == processed_dir() / "omniglot" == loaders.CACHE.folder
    assert sorted(p.name for p in folder.iterdir()) == [f"background-28px-{key}.arrays"]

    def no_decoding(*args, **kwargs):
        raise AssertionError("the cached characters should have been read")

    loaders.CACHE.clear_memory()
    monkeypatch.setattr(archives, "paper_chunks", no_decoding)
    assert load_dataset("omniglot", "val", root=root).fingerprint() == first.fingerprint()


def test_damaged_cache_entry_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("FEWSHOT_CACHE", str(tmp_path / "cache"))
    loaders.CACHE.clear_memory()
    first = load_dataset("omniglot-small1", "train", root=DATA)
    (entry,) = (tmp_path / "cache" / "processed" / "omniglot").iterdir()
    entry.write_bytes(entry.read_bytes()[:-1000])  # truncated (by a full disk, say)
    loaders.CACHE.clear_memory()
    assert load_dataset("omniglot-small1", "train", root=DATA).fingerprint() == first.fingerprint()
    loaders.CACHE.clear_memory()
    assert load_dataset("omniglot-small1", "train", root=DATA).fingerprint() == first.fingerprint()
    assert entry.stat().st_size > 136 * 20 * 28 * 28  # rewritten whole


def test_downloads_and_official_zips_are_used_when_there_is_no_npz(tmp_path, monkeypatch):
    """An empty root: the official zips are downloaded (file:// stands in for GitHub) and read as PNGs."""
    # The full evaluation zip is not on these machines: write one in the official layout from the npz, for the
    # first two alphabets only (the table is cut to match) so that the test stays quick.
    cut = omniglot.EVALUATION_ALPHABETS[:2]
    monkeypatch.setitem(alphabets._TABLES, "evaluation", cut)
    monkeypatch.setitem(alphabets._LAST_ID, "evaluation", omniglot.EVALUATION_ALPHABETS[2][1] - 1)
    names = characters("evaluation")
    assert len(names) == 46
    made = tmp_path / "mirror" / "images_evaluation.zip"
    made.parent.mkdir()
    block = next(archives.npz_chunks(DATA / "omniglot_npz" / "images_evaluation.npz", "images", len(names)))
    with zipfile.ZipFile(made, "w") as archive:
        for row, ((alphabet, character), drawings) in enumerate(zip(names, block, strict=True)):
            for d, white in enumerate(drawings):
                png = io.BytesIO()
                Image.fromarray(white).save(png, format="PNG")
                ident = cut[0][1] + row
                member = f"images_evaluation/{alphabet}/{character}/{ident:04d}_{d + 1:02d}.png"
                archive.writestr(member, png.getvalue())
    files = dict(sources.OFFICIAL_FILES)
    files["images_evaluation.zip"] = (made.as_uri(), sha256_file(made))
    for name in ("all_runs.zip", "images_background_small1.zip"):
        files[name] = ((DATA / "omniglot" / name).as_uri(), files[name][1])
    monkeypatch.setattr(sources, "OFFICIAL_FILES", files)

    root = tmp_path / "root"
    with pytest.raises(DataNotFoundError, match="images_evaluation.zip") as info:
        load_omniglot_characters(root, "evaluation", download=False)
    assert f"put {root / 'omniglot' / 'images_evaluation.zip'}" in str(info.value)
    assert made.as_uri() in str(info.value) and "images_evaluation.npz" in str(info.value)

    names_zip, from_zip = load_omniglot_characters(root, "evaluation", image_size=105)
    assert (root / "omniglot" / "images_evaluation.zip").is_file()
    assert names_zip == names and np.array_equal(from_zip, np.where(block, 0, 255).astype(np.uint8))
    assert np.array_equal(load_omniglot_characters(root, "evaluation")[1], 255 - area_resize(block, 28).numpy())

    assert load_omniglot_runs(root)[0].fingerprint() == load_omniglot_runs(DATA)[0].fingerprint()
    assert load_dataset("omniglot-small1", "train", root=root).fingerprint() == \
        load_dataset("omniglot-small1", "train", root=DATA).fingerprint()


def test_corrupt_official_zip_is_refused(tmp_path):
    (tmp_path / "omniglot").mkdir()
    (tmp_path / "omniglot" / "all_runs.zip").write_bytes(b"not the published file")
    with pytest.raises(ValueError, match="sha256"):
        load_omniglot_runs(tmp_path, download=False)
