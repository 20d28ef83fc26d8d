"""The job's rendezvous store, `python -m p2pft.launch.store`, as a child of the coordinating daemon: it outlives
every agent, so a round restarts on it without a new rendezvous endpoint. Its port is an accepting front that
forwards only the admitted addresses (`admit`, before each round's orders; p2pft.launch.admission)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import Iterable
from pathlib import Path

from p2pft.launch.admission import write_admitted

STORE_START_TIMEOUT_S = 60.0


class StoreProcess:
    """`python -m p2pft.launch.store` as a child of the daemon: the job's rendezvous outlives every agent."""

    def __init__(self, host: str, directory: Path, ports: tuple[int, int] = (0, 0), *, listen: str = "") -> None:
        self.host = host            # where this box dials the store (the ready file's host)
        self.directory = directory
        self.ports = ports          # (0, 0): any free port
        self.listen = listen        # where the front listens; "" or a wildcard: every interface
        self.admitted_file = directory / f"admitted-{os.getpid()}.json"
        self.process: asyncio.subprocess.Process | None = None
        self.endpoint = ""

    async def start(self) -> str:
        from p2pft.launch.store import read_ready_file

        self.directory.mkdir(parents=True, exist_ok=True)
        ready = self.directory / f"ready-{os.getpid()}.json"
        ready.unlink(missing_ok=True)
        self.admitted_file.unlink(missing_ok=True)   # nobody but this box until the first round is admitted
        log_file = (self.directory / "store.log").open("ab")
        try:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "p2pft.launch.store", "--host", self.host, *self._port_args(),
                "--ready-file", str(ready), "--admitted-file", str(self.admitted_file),
                *(["--listen", self.listen] if self.listen else []), stdin=asyncio.subprocess.DEVNULL, stdout=log_file,
                stderr=asyncio.subprocess.STDOUT, start_new_session=True,
                env={**os.environ, "OMP_NUM_THREADS": "1"})
        finally:
            log_file.close()
        deadline = time.monotonic() + STORE_START_TIMEOUT_S
        while time.monotonic() < deadline:
            found = read_ready_file(ready)
            if found is not None:
                self.endpoint = f"{found[0]}:{found[1]}"
                return self.endpoint
            if self.process.returncode is not None:
                break
            await asyncio.sleep(0.05)
        raise RuntimeError(f"the rendezvous store did not start (see {self.directory / 'store.log'})")

    def _port_args(self) -> list[str]:
        low, high = self.ports
        return ["--port", "0"] if (low, high) == (0, 0) else ["--ports", f"{low}-{high}"]

    def admit(self, round_number: int, hosts: Iterable[str]) -> None:
        """From now on the front forwards connections from these IP addresses (and this box's) only. Written
        before the round's orders go out, so no member can dial before its address is admitted."""
        write_admitted(self.admitted_file, round_number=round_number, hosts=hosts)

    @property
    def port(self) -> int:
        return int(self.endpoint.rpartition(":")[2]) if self.endpoint else 0

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), timeout=5.0)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
                await self.process.wait()
