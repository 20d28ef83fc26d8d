"""How loud a failed transfer attempt is, over real grpc.aio servers: a peer that does not hold a blob yet (the
normal state of replication in flight) is no warning; a peer failing mid-stream still is."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from p2pft.transfer import BlobClient, BlobServicer, BlobStore, TransferError
from tests.integration.test_transfer_faults import CHUNK, SIZE, FaultyServicer
from tests.integration.test_transfer_fetch import FAST, blob_server, channel_to, random_blob, run_async

CLIENT_LOG = "p2pft.transfer.client"


def _records(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == CLIENT_LOG and r.levelno == level]


@run_async
async def test_a_peer_without_the_blob_yet_is_debug_and_the_next_peer_serves_it(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=CLIENT_LOG)
    holder, empty, here = BlobStore(tmp_path / "holder"), BlobStore(tmp_path / "empty"), BlobStore(tmp_path / "here")
    digest, data = random_blob(holder, SIZE)
    async with blob_server(BlobServicer(empty)) as (_, not_yet), blob_server(BlobServicer(holder)) as (_, has_it), \
            channel_to(not_yet) as first, channel_to(has_it) as second:
        client = BlobClient(here, [first, second], FAST)  # the peer without it is asked first
        path = await client.fetch(digest, SIZE)
    assert path.read_bytes() == data and client.counters["attempts_failed"] == 1
    debug = _records(caplog, logging.DEBUG)
    assert len(debug) == 1 and "attempt 1/3 failed: NOT_FOUND" in debug[0]
    assert _records(caplog, logging.WARNING) == []


@run_async
async def test_no_peer_has_it_ends_in_one_error_for_the_caller_and_no_warning(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=CLIENT_LOG)
    empty, here = BlobStore(tmp_path / "empty"), BlobStore(tmp_path / "here")
    digest = "0" * 64
    async with blob_server(BlobServicer(empty)) as (_, a), blob_server(BlobServicer(empty)) as (_, b), \
            channel_to(a) as first, channel_to(b) as second:
        with pytest.raises(TransferError, match="NOT_FOUND"):
            await BlobClient(here, [first, second], FAST).fetch(digest, 10)
    assert len(_records(caplog, logging.DEBUG)) == 2  # attempts 1 and 2 of 3: another source was left to try
    assert len(_records(caplog, logging.INFO)) == 1  # the last one; the caller holds the TransferError
    assert _records(caplog, logging.WARNING) == []


@run_async
async def test_a_peer_failing_mid_stream_is_still_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import dataclasses

    caplog.set_level(logging.DEBUG, logger=CLIENT_LOG)
    holder, here = BlobStore(tmp_path / "holder"), BlobStore(tmp_path / "here")
    digest, data = random_blob(holder, SIZE)
    failing = FaultyServicer(holder, fault="unavailable", after_chunks=3)
    async with blob_server(failing) as (_, target), channel_to(target) as channel:
        path = await BlobClient(here, [channel], dataclasses.replace(FAST, chunk_bytes=CHUNK)).fetch(digest, SIZE)
    assert path.read_bytes() == data
    warnings = _records(caplog, logging.WARNING)
    assert len(warnings) == 1 and "attempt 1/3 failed" in warnings[0]
