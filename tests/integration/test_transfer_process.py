"""A serving process killed with SIGKILL in the middle of a blob: the next fetch moves only the missing bytes."""

from __future__ import annotations

import asyncio
import dataclasses
import select
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from p2pft.transfer import BlobClient, BlobStore, TransferError
from tests.integration.test_transfer_fetch import FAST, KIB, channel_to, random_blob, run_async

REPO_ROOT = Path(__file__).resolve().parents[2]
SIZE = 2048 * KIB


@contextmanager
def serving_process(store_dir: Path, *extra: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    argv = [sys.executable, "-m", "p2pft.transfer.standalone", "--store", str(store_dir), *extra]
    proc = subprocess.Popen(argv, cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 15)
        line = proc.stdout.readline() if ready else ""
        assert line.strip().isdigit(), f"standalone server did not start (said {line!r})"
        yield proc, f"127.0.0.1:{int(line)}"
    finally:
        proc.kill()
        proc.wait(timeout=10)


@pytest.mark.slow
@run_async
async def test_fetch_resumes_after_the_serving_process_was_killed(tmp_path: Path) -> None:
    store_a, store_b = BlobStore(tmp_path / "a"), BlobStore(tmp_path / "b")
    digest, data = random_blob(store_a, SIZE)
    policy = dataclasses.replace(FAST, attempts=1, chunk_bytes=64 * KIB)
    with serving_process(tmp_path / "a", "--max-bytes-per-s", str(2 * SIZE)) as (proc, target):  # ~0.5 s a blob
        async with channel_to(target) as channel:
            fetch = asyncio.create_task(BlobClient(store_b, [channel], policy).fetch(digest, SIZE))
            while store_b.partial_size(digest) < SIZE // 4 and not fetch.done():
                await asyncio.sleep(0.005)
            proc.kill()
            with pytest.raises(TransferError, match="failed: "):
                await fetch
    kept = store_b.partial_size(digest)
    assert SIZE // 4 <= kept < SIZE

    with serving_process(tmp_path / "a") as (_, target):
        async with channel_to(target) as channel:
            client = BlobClient(store_b, [channel], policy)
            path = await client.fetch(digest, SIZE)
    assert client.counters["bytes_received"] == SIZE - kept
    assert path.read_bytes() == data
