"""Issue 10 / 11: the blob store's disk budget (`p2pftd --blob-budget`) and its garbage collection, on real
stores in tmp dirs."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

from p2pft.daemon.settings import parse_settings
from p2pft.transfer.budget import DEFAULT_BLOB_BUDGET, BlobBudget, BlobBudgetError, parse_budget
from p2pft.transfer.collect import collect_garbage
from p2pft.transfer.store import BlobStore

MIB = 1024 * 1024


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_budget_values() -> None:
    assert parse_budget("50GiB") == BlobBudget(size_bytes=50 * 1024**3, fraction=None)
    assert parse_budget("64G").size_bytes == 64 * 1024**3
    assert parse_budget("40%") == BlobBudget(size_bytes=None, fraction=0.4)
    assert parse_budget("40%").resolve(1000 * MIB) == 400 * MIB
    assert DEFAULT_BLOB_BUDGET.resolve(1000 * MIB) == 500 * MIB   # half the disk unless told
    for bad in ("lots", "0%", "150%", "10K"):
        with pytest.raises(ValueError):
            parse_budget(bad)


def test_the_flag_and_the_environment_set_it(tmp_path: Path) -> None:
    flag = parse_settings(["--state-dir", str(tmp_path), "--blob-budget", "50GiB"], environ={})
    assert flag.blob_budget.size_bytes == 50 * 1024**3
    env = parse_settings(["--state-dir", str(tmp_path)], environ={"P2PFT_BLOB_BUDGET": "25%"})
    assert env.blob_budget.fraction == 0.25
    assert parse_settings(["--state-dir", str(tmp_path)], environ={}).blob_budget == DEFAULT_BLOB_BUDGET
    with pytest.raises(ValueError, match="blob_budget='lots'"):
        parse_settings(["--state-dir", str(tmp_path), "--blob-budget", "lots"], environ={})


def test_an_ingest_past_the_budget_is_refused_in_one_line_naming_box_and_sizes(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs", budget_bytes=3 * MIB, box="gpu-7")
    first = tmp_path / "a.bin"
    first.write_bytes(os.urandom(2 * MIB))
    digest, _ = store.add_file(first)
    second = tmp_path / "b.bin"
    second.write_bytes(os.urandom(2 * MIB))
    with pytest.raises(BlobBudgetError) as info:
        store.add_file(second)
    message = str(info.value)
    assert "\n" not in message
    assert "box gpu-7" in message and "b.bin" in message
    assert "2.0 MiB" in message and "3.0 MiB" in message and "--blob-budget" in message
    assert list(store.digests()) == [digest]                   # nothing of it became visible
    assert not any((tmp_path / "blobs" / "tmp").iterdir())       # nor was left behind
    assert store.used_bytes() == 2 * MIB
    assert store.add_file(first) == (digest, 2 * MIB)           # content already held takes no room
    with pytest.raises(BlobBudgetError):
        store.add_bytes(os.urandom(2 * MIB))


def test_a_fetch_or_push_is_refused_before_any_byte_arrives(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs", budget_bytes=3 * MIB, box="gpu-7")
    data = os.urandom(2 * MIB)
    writer = store.open_partial(sha(data), len(data))   # in flight: its whole size is reserved
    with pytest.raises(BlobBudgetError, match="being received"):
        store.open_partial(sha(b"x" * (2 * MIB)), 2 * MIB)
    assert not store.partial_path(sha(b"x" * (2 * MIB))).exists()
    writer.write(data)
    writer.commit()
    assert store.used_bytes() == 2 * MIB and store.account.reserved == 0
    small = os.urandom(MIB // 2)
    with store.open_partial(sha(small), len(small)) as resumable:   # closed without commit: reservation freed
        resumable.write(small[:100])
    assert store.account.reserved == 0


def test_the_count_survives_a_restart_and_removals(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs")
    digests = [store.add_bytes(os.urandom(1000)) for _ in range(3)]
    again = BlobStore(tmp_path / "blobs", budget_bytes=2500)
    assert again.used_bytes() == 3000
    again.remove(digests[0])
    assert again.used_bytes() == 2000


def test_the_collector_removes_only_old_unreferenced_blobs(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs", budget_bytes=10 * MIB)
    kept, old, fresh = (store.add_bytes(os.urandom(MIB)) for _ in range(3))
    past = time.time() - 3600
    for digest in (kept, old):
        os.utime(store.blob_path(digest), (past, past))
    partial = os.urandom(1000)
    with store.open_partial(sha(partial), 2000) as writer:   # a transfer in progress
        writer.write(partial)
    done = collect_garbage(store, {kept}, grace_s=600)
    assert done.removed == (old,) and done.freed_bytes == MIB and done.spared_young == 1
    assert store.has(kept) and store.has(fresh) and not store.has(old)
    assert store.partial_path(sha(partial)).exists()
    assert store.used_bytes() == 2 * MIB


def test_content_added_again_is_young_again(tmp_path: Path) -> None:
    """A submission ingesting content the store already held must not lose it to the collector before its
    record references it."""
    store = BlobStore(tmp_path / "blobs")
    data = os.urandom(1000)
    digest = store.add_bytes(data)
    past = time.time() - 3600
    os.utime(store.blob_path(digest), (past, past))
    source = tmp_path / "same.bin"
    source.write_bytes(data)
    store.add_file(source)
    assert collect_garbage(store, set(), grace_s=600).removed == ()
    # ... also when the collector ignores writes (right after a job ended): being added again is a use
    assert collect_garbage(store, set(), candidates=[digest], grace_s=600, count_writes=False).removed == ()
    assert collect_garbage(store, set(), grace_s=600, now=time.time() + 601).removed == (digest,)


def test_a_full_store_stalling_replication_is_said_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Replication retries every pass quietly (DEBUG); a budget refusal does not heal by itself: one WARNING."""
    import logging

    from p2pft.jobs.replication import CheckpointReplicator, over_budget
    from p2pft.transfer import TransferError

    store = BlobStore(tmp_path / "blobs", budget_bytes=MIB, box="gpu-7")
    replicator = CheckpointReplicator(node_id="n", state_dir=tmp_path, store=store, channels_for=lambda _: [],
                                      send=lambda _: None)  # type: ignore[arg-type, return-value]
    step = tmp_path / "step-2"
    step.mkdir()
    (step / "shard").write_bytes(os.urandom(2 * MIB))
    try:
        store.add_file(step / "shard", link=True)
    except BlobBudgetError as refused:
        wrapped = TransferError("blob x: failed")
        wrapped.__cause__ = refused
    assert over_budget(wrapped) is not None and over_budget(TransferError("peer gone")) is None
    with caplog.at_level(logging.WARNING, logger="p2pft.jobs.replication"):
        for _ in range(3):
            replicator._warn_if_over_budget(wrapped)
        replicator._warn_if_over_budget(TransferError("peer gone"))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "box gpu-7: blob store full" in warnings[0]


def test_a_replicated_step_offered_again_is_collected_when_its_job_ends(tmp_path: Path) -> None:
    """Replication writes a peer's step files here from blobs, then offers them back to the store: that must not
    count as a new use (touch), or every replicated file of an ended job would outlive the job by the grace
    period (seen in `p2pft demo`: 50 of 79 blobs stayed on a member)."""
    from p2pft.formats.checkpoint_index import describe_files, write_commit_marker
    from p2pft.jobs.paths import JobPaths
    from p2pft.jobs.replication import CheckpointReplicator

    store = BlobStore.for_state_dir(tmp_path)
    paths = JobPaths.of(tmp_path, "job-1")
    step = paths.checkpoints / "step-4"
    step.mkdir(parents=True)
    data = os.urandom(5000)
    digest = store.add_bytes(data)              # fetched from the peer that saved it
    (step / "__1_0.distcp").write_bytes(data)   # laid out from the blob
    write_commit_marker(step, {"step": 4, "files": describe_files(step)})
    replicator = CheckpointReplicator(node_id="n", state_dir=tmp_path, store=store, channels_for=lambda _: [],
                                      send=lambda _: None)  # type: ignore[arg-type, return-value]
    replicator._ingest_local(paths, 4)
    assert store.touched_at(digest) == 0.0
    done = collect_garbage(store, set(), candidates=[digest], grace_s=600, count_writes=False)
    assert done.removed == (digest,)


def test_abandoned_partials_and_temp_files_go_after_an_hour(tmp_path: Path) -> None:
    """Nothing removed them: a transfer whose peer never came back left its .partial for good, outside the
    budget's count."""
    from p2pft.transfer.collect import remove_stale_leftovers

    store = BlobStore(tmp_path / "blobs")
    old, live = os.urandom(100), os.urandom(100)
    with store.open_partial(sha(old), 1000) as writer:
        writer.write(old)
    held = store.open_partial(sha(live), 1000)   # a transfer in progress holds its partial
    held.write(live)
    (tmp_path / "blobs" / "tmp").mkdir(exist_ok=True)
    stale_tmp = tmp_path / "blobs" / "tmp" / "add-x"
    stale_tmp.write_bytes(b"half")
    past = time.time() - 7200
    for path in (store.partial_path(sha(old)), store.partial_path(sha(live)), stale_tmp):
        os.utime(path, (past, past))
    fresh_tmp = tmp_path / "blobs" / "tmp" / "add-y"
    fresh_tmp.write_bytes(b"now")
    assert remove_stale_leftovers(store) == 2
    assert not store.partial_path(sha(old)).exists() and not stale_tmp.exists()
    assert store.partial_path(sha(live)).exists() and fresh_tmp.exists()
    held.close()
