"""A worker thread per transfer, so blocking file I/O runs in order and off the event loop."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from typing import Any


class SerialIO:
    """Blocking calls submitted here run one after another on a thread of their own.

    One thread per transfer (not the loop's shared pool) keeps a file's reads/writes ordered even when the
    awaiting coroutine is cancelled mid-call: closing the file is queued behind the write still running.
    """

    def __init__(self) -> None:
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="p2pft-blob-io")

    def submit(self, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        return asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def close(self, fn: Callable[[], Any] | None = None) -> concurrent.futures.Future[Any] | None:
        """Queue `fn` (e.g. closing a file) behind pending work; the thread ends after it, without being awaited."""
        done = self._pool.submit(fn) if fn is not None else None
        self._pool.shutdown(wait=False)
        return done

    async def aclose(self, fn: Callable[[], Any] | None = None) -> None:
        """Like `close`, but wait until `fn` ran: afterwards no work of this transfer touches the file any more."""
        done = self.close(fn)
        if done is not None:
            await asyncio.wrap_future(done)
