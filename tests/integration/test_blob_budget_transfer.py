"""Issue 10 / 11: a box's --blob-budget refuses a push or a fetch that would take its store past it, over real
grpc.aio servers on 127.0.0.1, with one line naming the box and the sizes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from p2pft.transfer import BlobClient, BlobServicer, BlobStore, TransferError
from tests.integration.test_transfer_fetch import FAST, blob_server, channel_to, run_async

MIB = 1024 * 1024


@run_async
async def test_a_push_past_the_budget_is_refused_with_the_sizes(tmp_path: Path) -> None:
    sender = BlobStore(tmp_path / "sender")
    receiver = BlobStore(tmp_path / "receiver", budget_bytes=3 * MIB, box="small-box")
    receiver.add_bytes(os.urandom(2 * MIB))
    digest = sender.add_bytes(os.urandom(2 * MIB))
    servicer = BlobServicer(receiver)
    async with blob_server(servicer) as (_, target), channel_to(target) as channel:
        client = BlobClient(sender, [channel], FAST)
        with pytest.raises(TransferError) as info:
            await client.push(digest)
    message = str(info.value)
    assert "\n" not in message and "RESOURCE_EXHAUSTED" in message
    assert "box small-box" in message and "2.0 MiB" in message and "3.0 MiB" in message
    assert not receiver.has(digest) and not receiver.partial_path(digest).exists()
    assert servicer.counters["pushes_over_budget"] >= 1


@run_async
async def test_a_fetch_past_the_budget_fails_at_once_naming_this_box(tmp_path: Path) -> None:
    source = BlobStore(tmp_path / "source")
    digest = source.add_bytes(os.urandom(4 * MIB))
    local = BlobStore(tmp_path / "local", budget_bytes=3 * MIB, box="laptop")
    async with blob_server(BlobServicer(source)) as (_, target), channel_to(target) as channel:
        client = BlobClient(local, [channel], FAST)
        with pytest.raises(TransferError, match=r"box laptop: blob store full: .*needs 4\.0 MiB"):
            await client.fetch(digest, 4 * MIB)
        assert client.counters["attempts_failed"] == 1   # not retried: no peer can make it fit
    assert not local.has(digest) and not local.partial_path(digest).exists()
