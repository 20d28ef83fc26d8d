"""Drive `python -m p2pft.discovery` probe processes from tests and benchmarks.

    probe = ProbeProcess(node_id="a", cluster_key="k", interface="127.0.0.1")
    probe.wait_for(lambda e: e["event"] == "seen" and e["node_id"] == "b", timeout=10)
    counters = probe.stop()          # graceful: goodbye packets, then the final counters
Inside a network namespace pass `prefix=["ip", "netns", "exec", NS]` (or a Host's popen as `popen`).
Always call stop() or kill() (a finally block or fixture): the probe also exits when its stdin closes.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

Event = dict[str, Any]


class ProbeProcess:
    """One MdnsDiscovery in its own process; its JSON-line events are collected by a reader thread."""

    def __init__(
        self,
        *,
        node_id: str,
        interface: str,
        cluster_key: str | None = None,
        cluster_id: str | None = None,
        state: str = "idle",
        port: int = 1,
        prefix: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        popen: Callable[..., subprocess.Popen[str]] = subprocess.Popen,
    ) -> None:
        cluster = ["--cluster-key", cluster_key] if cluster_key is not None else ["--cluster-id", str(cluster_id)]
        argv = [*prefix, sys.executable, "-m", "p2pft.discovery", "--node-id", node_id, *cluster]
        argv += ["--interface", interface, "--state", state, "--port", str(port)]
        self.node_id = node_id
        self.spawned_at = time.monotonic()
        self.events: list[Event] = []
        self.stderr_lines: list[str] = []
        self._changed = threading.Condition()
        self.process = popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=None if env is None else dict(env),
        )
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()

    def _read_stdout(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                event = {"event": "unparsed", "line": line}
            with self._changed:
                self.events.append(event)
                self._changed.notify_all()
        with self._changed:
            self.events.append({"event": "exited"})
            self._changed.notify_all()

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.stderr_lines.append(line.rstrip())

    def wait_for(self, predicate: Callable[[Event], bool], timeout: float, *, after: int = 0) -> Event:
        """The first event (from index `after`) matching predicate; AssertionError with the log on timeout."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for event in self.events[after:]:
                    if predicate(event):
                        return event
                left = deadline - time.monotonic()
                if left <= 0 or self.events[-1:] == [{"event": "exited"}]:
                    raise AssertionError(f"probe {self.node_id}: no matching event in {timeout}s; {self.describe()}")
                self._changed.wait(left)

    def seen(self) -> set[str]:
        """Node ids currently seen (seen and not lost since)."""
        current: set[str] = set()
        for event in list(self.events):
            if event["event"] == "seen":
                current.add(event["node_id"])
            elif event["event"] == "lost":
                current.discard(event["node_id"])
        return current

    def wait_seen(self, node_ids: set[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while self.seen() != node_ids:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"probe {self.node_id}: sees {sorted(self.seen())}, not {sorted(node_ids)}")
                self._changed.wait(min(left, 0.5))

    def send(self, command: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()

    def counters(self, timeout: float = 5.0) -> Event:
        start = len(self.events)
        self.send("counters")
        return self.wait_for(lambda e: e["event"] == "counters", timeout, after=start)

    def stop(self, timeout: float = 10.0) -> Event:
        """Graceful stop (goodbye packets); returns the final counters."""
        start = len(self.events)
        try:
            self.send("stop")
            self.process.wait(timeout)
        finally:
            self.kill()
        return self.wait_for(lambda e: e["event"] == "counters", 1.0, after=start)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)

    def describe(self) -> str:
        return f"exit={self.process.poll()} events={self.events[-8:]} stderr={self.stderr_lines[-5:]}"
