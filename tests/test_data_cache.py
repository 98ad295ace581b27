"""The processed-data cache (fewshot.core.cache): round trips, keys, damaged entries, orphans, location, memory; the
feature cache on top of it; and the session guard that fails a run which writes into the shared data root."""
from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from fewshot.core import cache as cache_module
from fewshot.core.cache import DataCache, processed_dir, read_entry
from fewshot.data import ClassDataset
from fewshot.evaluate import feature_cache

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FEWSHOT_CACHE", str(tmp_path / "cache"))


def sample_arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "images": rng.integers(0, 256, (7, 1, 5, 3), dtype=np.uint8),
        "mask": rng.random((3, 4)) < 0.5,
        "labels": rng.integers(-5, 5, 7).astype(np.int64),
        "features": rng.standard_normal((4, 3)).astype(np.float32),
        "names": np.array(["alpha", "b", "gamma/char01"]),
        "scalar": np.array(42),
        "empty": np.zeros((0, 3), dtype=np.float64),
        "strided": np.arange(20, dtype=np.int16)[::3],  # not contiguous: stored contiguously
    }


def assert_same(got: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    assert list(got) == list(expected)
    for name in expected:
        assert got[name].dtype == expected[name].dtype and got[name].shape == expected[name].shape, name
        assert got[name].tobytes() == np.ascontiguousarray(expected[name]).tobytes(), name


class Builder:
    """Counts how often the arrays are built."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> dict[str, np.ndarray]:
        self.calls += 1
        return sample_arrays()


# -- round trips and keys ----------------------------------------------------------------------------------------


def test_arrays_round_trip_bit_for_bit_through_the_disk(tmp_path):
    cache, build = DataCache("demo", 1), Builder()
    key = cache.key({"source_sha256": "ab" * 32})
    first = cache.get(key, build, label="demo-set")
    assert build.calls == 1
    assert_same(first, sample_arrays())
    path = cache.path(key, "demo-set")
    assert path == tmp_path / "cache" / "processed" / "demo" / f"demo-set-{key}.arrays"
    assert path.parent == processed_dir() / "demo" and sorted(os.listdir(path.parent)) == [path.name]
    fresh = DataCache("demo", 1)  # another process, say: nothing in memory
    assert_same(fresh.get(key, build, label="demo-set"), sample_arrays())
    assert build.calls == 1
    again = fresh.load(key, "demo-set")
    assert again["images"].flags.writeable  # no memory layer: each caller gets its own arrays


def test_keys_cover_identity_namespace_and_version():
    base = DataCache("demo", 1)
    keys = {base.key({"sha": "1"}), base.key({"sha": "2"}), DataCache("demo", 2).key({"sha": "1"}),
            DataCache("other", 1).key({"sha": "1"})}
    assert len(keys) == 4 and base.key({"sha": "1"}) == DataCache("demo", 1).key({"sha": "1"})
    build = Builder()
    base.get(base.key({"sha": "1"}), build)
    DataCache("demo", 2).get(DataCache("demo", 2).key({"sha": "1"}), build)  # a bumped version is never read
    assert build.calls == 2


def test_an_entry_is_only_read_under_its_own_key():
    cache, build = DataCache("demo", 1), Builder()
    a, b = cache.key("a"), cache.key("b")
    cache.get(a, build)
    shutil.copy(cache.path(a), cache.path(b))  # a file renamed by hand holds another key's data
    assert read_entry(cache.path(b), b) is None
    cache.get(b, build)
    assert build.calls == 2 and read_entry(cache.path(b), b) is not None


def test_object_arrays_are_refused():
    with pytest.raises(TypeError, match="object arrays"):
        DataCache("demo", 1).store("k", {"bad": np.array([{"a": 1}], dtype=object)})


# -- damaged entries -----------------------------------------------------------------------------------------------


def _truncate(data: bytes) -> bytes:
    return data[:len(data) - 10]


def _flip_payload_byte(data: bytes) -> bytes:
    return data[:-40] + bytes([data[-40] ^ 0xFF]) + data[-39:]


def _flip_header_byte(data: bytes) -> bytes:
    return data[:30] + b"\xff" + data[31:]


def _list_header(data: bytes) -> bytes:
    return cache_module._MAGIC + struct.pack("<Q", 6) + b"[1, 2]"


@pytest.mark.parametrize("damage", [_truncate, _flip_payload_byte, _flip_header_byte, _list_header, lambda data: b"",
                                    lambda data: data[:12], lambda data: b"garbage" * 50, lambda data: data + b"x"],
                         ids=["truncated", "payload-byte", "header-byte", "list-header", "empty", "magic-only",
                              "garbage", "appended"])
def test_damaged_entry_is_rebuilt_without_error(damage):
    cache, build = DataCache("demo", 1), Builder()
    key = cache.key("x")
    cache.get(key, build)
    path = cache.path(key)
    whole = path.read_bytes()
    path.write_bytes(damage(whole))
    assert read_entry(path, key) is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert_same(DataCache("demo", 1).get(key, build), sample_arrays())
    assert build.calls == 2 and path.read_bytes() == whole  # rewritten, identical


def test_failed_write_leaves_no_file_and_still_returns_the_arrays(monkeypatch):
    calls = []

    def failing_raw(array):  # the disk fills up after the first array
        calls.append(array)
        if len(calls) > len(sample_arrays()) + 1:
            raise OSError("No space left on device")
        return array.reshape(-1).view(np.uint8)

    monkeypatch.setattr(cache_module, "_raw", failing_raw)
    cache = DataCache("demo", 1)
    with pytest.warns(UserWarning, match=r"cannot write the demo cache in .*No space left on device.*FEWSHOT_CACHE"):
        got = cache.get(cache.key("x"), Builder())
    assert_same(got, sample_arrays())
    assert list(cache.folder.iterdir()) == []  # no entry, no temporary file


def test_orphaned_temporary_files_are_removed_when_the_folder_is_opened():
    folder = processed_dir() / "demo"
    folder.mkdir(parents=True)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    orphan = folder / f".x.arrays.{int(dead.stdout)}.abc123.tmp"  # left by a writer that was killed
    live = folder / f".y.arrays.{os.getpid()}.def456.tmp"  # being written by a running process
    orphan.write_bytes(b"half")
    live.write_bytes(b"half")
    DataCache("demo", 1).load("missing")
    assert not orphan.exists() and live.exists()


# -- location and memory -------------------------------------------------------------------------------------------


def test_location_follows_fewshot_cache_and_memory_is_per_folder(tmp_path, monkeypatch):
    cache, build = DataCache("demo", 1, memory_bytes=1 << 20), Builder()
    key = cache.key("x")
    first = cache.get(key, build)
    assert not first["images"].flags.writeable  # shared by every caller
    assert cache.get(key, build) is first and build.calls == 1  # from memory
    monkeypatch.setenv("FEWSHOT_CACHE", str(tmp_path / "other"))
    assert cache.folder == tmp_path / "other" / "processed" / "demo"
    cache.get(key, build)
    assert build.calls == 2  # a different cache folder does not see the first one's memory
    assert cache.path(key).is_file()


def test_memory_is_bounded_by_bytes():
    cache = DataCache("demo", 1, memory_bytes=3000)
    for k in "abc":
        cache.store(cache.key(k), {"x": np.zeros(1000, np.uint8)})
    assert len(cache._memory) == 3
    cache.store(cache.key("d"), {"x": np.zeros(1000, np.uint8)})
    assert len(cache._memory) == 3 and (str(cache.path(cache.key("a"))), cache.key("a")) not in cache._memory
    assert cache.load(cache.key("a"))["x"].shape == (1000,)  # evicted from memory, still on disk


# -- the feature cache uses it -------------------------------------------------------------------------------------


class Counting(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.feature_cache_identity = {"architecture": "counting"}
        self.images = 0

    def forward(self, images):
        self.images += len(images)
        flat = images.flatten(1)
        return torch.stack([flat.mean(1), flat.std(1), flat[:, :3].sum(1)], 1)


def test_feature_cache_lives_in_the_processed_cache_and_recomputes_a_damaged_entry():
    g = torch.Generator().manual_seed(0)
    dataset = ClassDataset((torch.rand(12, 1, 8, 8, generator=g) * 255).to(torch.uint8),
                           torch.arange(4).repeat_interleave(3), [f"c{i}" for i in range(4)], "tiny/test")
    backbone = Counting()
    first = feature_cache.cached_features(backbone, dataset, torch.arange(12), "cpu", progress=False)
    assert first.path.parent == processed_dir() / "features" and first.path.suffix == ".arrays"
    assert first.path.name.startswith("tiny_test-")
    entry = read_entry(first.path, feature_cache.feature_cache_key(backbone.feature_cache_identity, dataset))
    assert torch.equal(torch.from_numpy(entry["features"]), first.features) and int(entry["size"]) == 12
    first.path.write_bytes(first.path.read_bytes()[:100])
    again = feature_cache.cached_features(backbone, dataset, torch.arange(12), "cpu", progress=False)
    assert again.computed == 12 and backbone.images == 24 and torch.equal(again.features, first.features)
    third = feature_cache.cached_features(backbone, dataset, torch.tensor([5, 2]), "cpu", progress=False)
    assert third.hits == 2 and backbone.images == 24


# -- the session guard ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("writes", [False, True])
def test_a_session_that_writes_into_the_shared_data_root_fails(tmp_path, writes):
    """The guard in tests/conftest.py, run in a separate pytest session on a stand-in shared data folder."""
    project, data = tmp_path / "project", tmp_path / "shared" / "data"
    (project / "tests").mkdir(parents=True)
    (data / "omniglot").mkdir(parents=True)
    (data / "omniglot" / "all_runs.zip").write_bytes(b"data")
    shutil.copy(REPO / "tests" / "conftest.py", project / "tests" / "conftest.py")
    body = f"(SHARED / 'omniglot' / 'cache').mkdir()\n    (SHARED / 'omniglot' / 'all_runs.zip').write_bytes(b'x')" \
        if writes else "assert SHARED.is_dir()"
    (project / "tests" / "test_inner.py").write_text(
        f"from pathlib import Path\nSHARED = Path({str(data)!r})\n\n\ndef test_it():\n    {body}\n")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(project / "tests")],
                            capture_output=True, text=True, env=env, cwd=project)
    assert "1 passed" in result.stdout, result.stdout + result.stderr
    if writes:
        assert result.returncode == 1
        assert f"the test session wrote into the data root {data}" in result.stdout
        assert "added: omniglot/cache" in result.stdout and "modified: omniglot/all_runs.zip" in result.stdout
    else:
        assert result.returncode == 0 and "data root" not in result.stdout
