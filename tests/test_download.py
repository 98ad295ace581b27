"""Downloads: file:// URLs stand in for the network; checksums, atomic placement and the missing-file message."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from fewshot.core.errors import DataError
from fewshot.data.download import (ChecksumError, DataNotFoundError, download_file, ensure_files, sha256_file,
                                   verify_sha256, writable_dir)

PAYLOAD = os.urandom(3 << 20)  # larger than one read chunk
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "mirror" / "blob.zip"
    path.parent.mkdir()
    path.write_bytes(PAYLOAD)
    return path


def test_download_file_url_succeeds_and_leaves_no_temporary_file(source: Path, tmp_path: Path):
    dest = tmp_path / "root" / "sub" / "blob.zip"
    assert download_file(source.as_uri(), dest, PAYLOAD_SHA) == dest
    assert dest.read_bytes() == PAYLOAD
    assert sorted(p.name for p in dest.parent.iterdir()) == ["blob.zip"]
    verify_sha256(dest, PAYLOAD_SHA.upper())
    assert sha256_file(dest) == PAYLOAD_SHA


def test_wrong_sha256_fails_and_leaves_no_file(source: Path, tmp_path: Path):
    dest = tmp_path / "root" / "blob.zip"
    with pytest.raises(ChecksumError, match="expected 0{64}"):
        download_file(source.as_uri(), dest, "0" * 64)
    assert not dest.exists()
    assert list(dest.parent.iterdir()) == []


def test_wrong_sha256_keeps_an_existing_file(source: Path, tmp_path: Path):
    dest = tmp_path / "blob.zip"
    dest.write_bytes(b"previous")
    with pytest.raises(ChecksumError):
        download_file(source.as_uri(), dest, "f" * 64)
    assert dest.read_bytes() == b"previous"


def test_download_without_checksum_warns_with_the_digest(source: Path, tmp_path: Path):
    with pytest.warns(UserWarning, match=PAYLOAD_SHA):
        download_file(source.as_uri(), tmp_path / "out.zip", None, progress=False)


def test_verify_sha256_names_both_digests(source: Path):
    with pytest.raises(ChecksumError, match=f"sha256 is {PAYLOAD_SHA}, expected {'1' * 64}") as info:
        verify_sha256(source, "1" * 64)
    assert isinstance(info.value, DataError) and str(info.value).startswith(f"{source}: ")


def test_ensure_files_downloads_only_what_is_missing(source: Path, tmp_path: Path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "present.txt").write_bytes(b"here")
    files = {"blob.zip": (source.as_uri(), PAYLOAD_SHA),
             "present.txt": ("file:///nowhere/present.txt", hashlib.sha256(b"here").hexdigest())}
    paths = ensure_files(root, files, download=True)
    assert paths == {"blob.zip": root / "blob.zip", "present.txt": root / "present.txt"}
    assert (root / "blob.zip").read_bytes() == PAYLOAD


def test_ensure_files_rejects_a_corrupt_existing_file(tmp_path: Path):
    (tmp_path / "blob.zip").write_bytes(b"truncated")
    with pytest.raises(ChecksumError, match="blob.zip"):
        ensure_files(tmp_path, {"blob.zip": ("file:///nowhere", PAYLOAD_SHA)}, download=False)


def test_missing_offline_file_says_what_to_put_where(tmp_path: Path):
    url = "https://example.org/data/blob.zip"
    with pytest.raises(DataNotFoundError) as info:
        ensure_files(tmp_path / "root", {"blob.zip": (url, PAYLOAD_SHA)}, download=False, hint="(see the README)")
    message = str(info.value)
    assert f"put {tmp_path / 'root' / 'blob.zip'}" in message
    assert url in message and PAYLOAD_SHA in message and "download=False" in message
    assert message.endswith("(see the README)")
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, DataError)
    assert not (tmp_path / "root").exists()


def test_failed_download_gives_the_same_clear_error(tmp_path: Path):
    url = (tmp_path / "no-such-mirror" / "blob.zip").as_uri()  # stands in for an unreachable server
    with pytest.raises(DataNotFoundError, match="the download failed") as info:
        ensure_files(tmp_path / "root", {"blob.zip": (url, PAYLOAD_SHA)}, download=True)
    assert url in str(info.value)
    assert list((tmp_path / "root").iterdir()) == []


def test_read_only_root_is_never_written(source: Path, tmp_path: Path):
    root = tmp_path / "readonly"
    root.mkdir()
    root.chmod(0o555)
    try:
        assert not writable_dir(root) and not writable_dir(root / "sub" / "folder")
        with pytest.raises(DataNotFoundError, match="read-only"):
            ensure_files(root, {"blob.zip": (source.as_uri(), PAYLOAD_SHA)}, download=True)
        assert list(root.iterdir()) == []
    finally:
        root.chmod(0o755)
    assert writable_dir(root) and writable_dir(root / "not" / "yet" / "made")
