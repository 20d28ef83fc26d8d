"""Manifest validation (untrusted paths) and tree <-> store round trips."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from p2pft.transfer.manifest import FileEntry, Manifest, ManifestError, build_manifest, validate_relative_path
from p2pft.transfer.store import BlobStore
from p2pft.transfer.tree import ingest_tree, resolve_destination, write_tree

DIGEST = hashlib.sha256(b"x").hexdigest()


@pytest.mark.parametrize(
    "bad",
    ["", "/etc/passwd", "../x", "a/../../x", "a//b", "./a", "a/.", "a\\b", "C:/x", "a\x00b", None, 3],
)
def test_unsafe_paths_are_refused_with_one_line_naming_the_path(bad: object) -> None:
    with pytest.raises(ManifestError) as info:
        validate_relative_path(bad)
    assert repr(bad) in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("good", ["a", "a/b.json", "step-10/__0_0.distcp", ".metadata", "a..b/c"])
def test_safe_paths_pass(good: str) -> None:
    assert validate_relative_path(good) == good


def test_manifest_json_round_trip_is_canonical() -> None:
    manifest = Manifest((FileEntry("b", 1, DIGEST), FileEntry("a/c", 2, DIGEST)))
    assert [e.path for e in manifest.files] == ["a/c", "b"]
    again = Manifest.from_json(manifest.to_json())
    assert again == manifest and again.to_json() == manifest.to_json()
    assert manifest.total_bytes == 3 and manifest.digests() == {DIGEST: 1}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"version": 2, "files": []}, "version"),
        ({"version": 1, "files": {}}, "must be a list"),
        ({"version": 1, "files": [{"path": "../x", "size": 1, "sha256": DIGEST}]}, "'../x'"),
        ({"version": 1, "files": [{"path": "a", "size": -1, "sha256": DIGEST}]}, "size -1"),
        ({"version": 1, "files": [{"path": "a", "size": 1, "sha256": "nope"}]}, r"'a'.*sha256"),
        ({"version": 1, "files": [{"path": "a", "size": 1, "sha256": DIGEST}] * 2}, "twice"),
        (
            {
                "version": 1,
                "files": [{"path": "a", "size": 1, "sha256": DIGEST}, {"path": "a/b", "size": 1, "sha256": DIGEST}],
            },
            "listed as a file",
        ),
    ],
)
def test_bad_manifests_are_refused(data: dict, message: str) -> None:
    with pytest.raises(ManifestError, match=message):
        Manifest.from_dict(data)


def test_from_committed_files_mapping() -> None:
    manifest = Manifest.from_files_mapping({"__0_0.distcp": {"size": 1, "sha256": DIGEST}})
    assert manifest.files == (FileEntry("__0_0.distcp", 1, DIGEST),)


def test_build_manifest_refuses_symlinks(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "f").write_bytes(b"x")
    assert build_manifest(tmp_path).files == (FileEntry("sub/f", 1, DIGEST),)
    (tmp_path / "sub" / "evil").symlink_to("/etc/passwd")
    with pytest.raises(ManifestError, match="'sub/evil' is a symlink"):
        build_manifest(tmp_path)


def test_destination_outside_root_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "escape").symlink_to(tmp_path)
    assert resolve_destination(root, "data/x") == root.resolve() / "data" / "x"
    for bad in ("../elsewhere", tmp_path / "elsewhere", "escape/inside-the-link"):
        with pytest.raises(ManifestError, match="outside"):
            resolve_destination(root, bad)


def test_ingest_then_write_tree_reproduces_the_tree(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d" / "a.bin").write_bytes(os.urandom(3000))
    (src / "b.json").write_bytes(b"{}")
    store = BlobStore(tmp_path / "blobs")
    manifest = ingest_tree(store, src)
    assert manifest == build_manifest(src)
    dest = resolve_destination(tmp_path, "out")
    first = write_tree(store, manifest, dest)
    assert set(first.written) == {"d/a.bin", "b.json"}
    assert (dest / "d" / "a.bin").read_bytes() == (src / "d" / "a.bin").read_bytes()
    second = write_tree(store, manifest, dest)  # already in place: nothing rewritten
    assert second.written == () and set(second.unchanged) == {"d/a.bin", "b.json"}


def test_write_tree_refuses_writing_through_a_symlinked_dir(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs")
    manifest = Manifest((FileEntry("sub/f", 1, store.add_bytes(b"x")),))
    dest = tmp_path / "out"
    dest.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (dest / "sub").symlink_to(outside)
    with pytest.raises(ManifestError, match=r"'sub/f'.*symlink"):
        write_tree(store, manifest, dest.resolve())
    assert not (outside / "f").exists()


def test_write_tree_requires_every_blob(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs")
    manifest = Manifest((FileEntry("f", 1, DIGEST),))
    with pytest.raises(ManifestError, match="lacks the content of 'f'"):
        write_tree(store, manifest, tmp_path)
