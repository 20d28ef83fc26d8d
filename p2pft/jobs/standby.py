"""A spare rendezvous store on the box that would coordinate a job if its coordinator were lost: a takeover then
does not wait for a fresh store process (it imports torch: seconds)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType

from p2pft.jobs.model import JobRecord
from p2pft.jobs.state import job_coordinator
from p2pft.jobs.store_process import StoreProcess
from p2pft.membership.state import ClusterState

log = logging.getLogger("p2pft.jobs.standby")


class StandbyStores:
    def __init__(self, node_id: str, new_store: Callable[[Path], StoreProcess]) -> None:
        self.node_id = node_id
        self.new_store = new_store
        self._stores: dict[str, tuple[StoreProcess, asyncio.Task[str]]] = {}

    def maybe_start(self, record: JobRecord, state: ClusterState, directory: Path) -> None:
        if record.job_id in self._stores or record.coordinator == self.node_id:
            return
        without = {n: m for n, m in state.members.items() if n != record.coordinator}
        successor = job_coordinator(replace(record, coordinator=""), replace(state, members=MappingProxyType(without)))
        if successor != self.node_id:
            return
        store = self.new_store(directory)
        self._stores[record.job_id] = (store, asyncio.get_running_loop().create_task(store.start()))

    async def take(self, job_id: str) -> StoreProcess | None:
        entry = self._stores.pop(job_id, None)
        if entry is None:
            return None
        store, starting = entry
        try:
            await starting
        except Exception:
            log.warning("job %s: the standby store did not start; starting a fresh one", job_id)
            await store.stop()
            return None
        return store

    async def drop(self, job_id: str) -> None:
        entry = self._stores.pop(job_id, None)
        if entry is not None:
            entry[1].cancel()
            with contextlib.suppress(BaseException):
                await entry[1]
            await entry[0].stop()

    async def close(self) -> None:
        for job_id in list(self._stores):
            await self.drop(job_id)
