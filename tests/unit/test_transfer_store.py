"""BlobStore: layout, atomic adds, resumable partial writes with verification, digest validation."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from p2pft.transfer.store import (
    BlobBusyError,
    BlobStore,
    DigestMismatchError,
    InvalidDigestError,
    validate_digest,
)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("bad", ["", "abc", "A" * 64, "g" * 64, "0" * 63, "0" * 65, "../" + "0" * 61, None, 7])
def test_validate_digest_refuses_anything_but_64_lowercase_hex(bad: object) -> None:
    with pytest.raises(InvalidDigestError, match="64 lowercase hex") as info:
        validate_digest(bad)
    assert "\n" not in str(info.value)


def test_blob_paths_fan_out_under_root_and_partial_sits_beside(tmp_path: Path) -> None:
    store = BlobStore.for_state_dir(tmp_path)
    digest = sha(b"x")
    assert store.blob_path(digest) == tmp_path.resolve() / "blobs" / digest[:2] / digest
    assert store.partial_path(digest).name == digest + ".partial"
    with pytest.raises(InvalidDigestError):
        store.blob_path("../../etc/passwd")


def test_add_bytes_and_file_are_content_addressed_and_read_only(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs")
    digest = store.add_bytes(b"hello")
    assert digest == sha(b"hello")
    assert store.size_of(digest) == 5 and store.has(digest)
    assert store.blob_path(digest).stat().st_mode & 0o222 == 0
    src = tmp_path / "src.bin"
    src.write_bytes(b"hello")
    assert store.add_file(src) == (digest, 5)  # same content -> same blob
    assert list(store.digests()) == [digest]
    assert not any((tmp_path / "blobs" / "tmp").iterdir())  # temp files renamed or removed


def test_add_file_with_link_never_shares_the_inode(tmp_path: Path) -> None:
    """Issue 10: a hard link let torch's in-place rewrite of a checkpoint file change the blob; link=True is a
    copy-on-write clone where the file system has them, else a copy."""
    store = BlobStore(tmp_path / "blobs")
    src = tmp_path / "ckpt.distcp"
    src.write_bytes(os.urandom(1000))
    digest, size = store.add_file(src, link=True)
    assert size == 1000
    assert store.blob_path(digest).stat().st_ino != src.stat().st_ino


def test_add_file_refuses_symlinks(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs")
    (tmp_path / "real").write_bytes(b"a")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(FileNotFoundError, match="regular file"):
        store.add_file(tmp_path / "link")


def test_partial_writer_resumes_from_existing_bytes_and_commits(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs")
    data = os.urandom(10_000)
    digest = sha(data)
    with store.open_partial(digest, len(data)) as writer:
        writer.write(data[:4000])
    assert store.partial_size(digest) == 4000 and not store.has(digest)
    writer = store.open_partial(digest, len(data))
    assert writer.offset == 4000
    writer.write(data[4000:])
    path = writer.commit()
    assert path.read_bytes() == data
    assert not store.partial_path(digest).exists()


def test_partial_writer_discards_on_hash_mismatch(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs")
    data = b"a" * 100
    writer = store.open_partial(sha(data), len(data))
    writer.write(b"b" * 100)
    with pytest.raises(DigestMismatchError, match="partial discarded"):
        writer.commit()
    assert not store.partial_path(sha(data)).exists() and not store.has(sha(data))


def test_partial_writer_refuses_bytes_beyond_expected_size(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs")
    with store.open_partial(sha(b"ab"), 2) as writer, pytest.raises(DigestMismatchError, match="more than"):
        writer.write(b"abc")


def test_partial_longer_than_blob_is_restarted(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs")
    digest = sha(b"abc")
    store.partial_path(digest).parent.mkdir(parents=True)
    store.partial_path(digest).write_bytes(b"way too long")
    with store.open_partial(digest, 3) as writer:
        assert writer.offset == 0
        writer.write(b"abc")
        writer.commit()
    assert store.blob_path(digest).read_bytes() == b"abc"


def test_second_writer_of_the_same_blob_is_refused(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs")
    digest = sha(b"abc")
    with store.open_partial(digest, 3), pytest.raises(BlobBusyError, match="another transfer"):
        store.open_partial(digest, 3)
    with store.open_partial(digest, 3) as again:  # released on close
        assert again.offset == 0


def test_verify_removes_a_blob_whose_bytes_changed(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs")
    src = tmp_path / "ckpt.distcp"
    digest = store.add_bytes(b"original")
    os.link(store.blob_path(digest), src)  # as stores made before issue 10 hard-linked checkpoint files
    assert store.verify(digest)
    os.chmod(src, 0o644)
    src.write_bytes(b"edited in place")  # the hard-linked blob changes with it
    assert not store.verify(digest) and not store.has(digest)


def test_stale_partials_are_removed_unless_being_written(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs")
    old, busy, fresh = sha(b"old"), sha(b"busy"), sha(b"fresh")
    for digest in (old, busy, fresh):
        with store.open_partial(digest, 10) as writer:
            writer.write(b"x")
    for digest in (old, busy):
        os.utime(store.partial_path(digest), (0, 0))
    with store.open_partial(busy, 10):
        assert store.remove_stale_partials(max_age_s=3600) == [old]
    assert store.partial_size(busy) == 1 and store.partial_size(fresh) == 1
