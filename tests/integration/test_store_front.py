"""The job's rendezvous store behind its accepting front (p2pft.launch.store_front), as the daemon runs it.

A real `python -m p2pft.launch.store` started by the daemon's own StoreProcess; real torch TCPStore clients. A
"box" at another loopback address is a client whose connection arrives from that address (tests.source_relay).
The store itself must listen on loopback only; an admitted member's client works through the front; a stranger's
connection is closed at once and never reaches the store (its key never appears); the admitted set follows the
round without restarting the store. One store serves the module (it imports torch: seconds); each test admits
what it needs, uses addresses of its own (the front logs an address once per 10 minutes) and reads only the log
lines written since it began.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator
from datetime import timedelta

import psutil
import pytest
from torch.distributed import TCPStore

from p2pft.jobs.store_process import StoreProcess
from tests.source_relay import SourceRelay

pytestmark = pytest.mark.slow

@pytest.fixture(scope="module")
def shared_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StoreProcess]:
    process = StoreProcess("127.0.0.1", tmp_path_factory.mktemp("front") / "store")
    loop = asyncio.new_event_loop()
    loop.run_until_complete(process.start())
    try:
        yield process
    finally:
        loop.run_until_complete(process.stop())
        loop.close()


LOG_START: dict[int, int] = {}   # id(store) -> length of its log when the current test began


@pytest.fixture
def store(shared_store: StoreProcess) -> StoreProcess:
    shared_store.admitted_file.unlink(missing_ok=True)   # no round admitted: this box only
    LOG_START[id(shared_store)] = len((shared_store.directory / "store.log").read_text())
    return shared_store


def client(port: int, timeout_s: float = 10.0) -> TCPStore:
    return TCPStore("127.0.0.1", port, is_master=False, timeout=timedelta(seconds=timeout_s))


def store_log(process: StoreProcess) -> str:
    """What the store wrote since the test began."""
    return (process.directory / "store.log").read_text()[LOG_START.get(id(process), 0):]


def ready_info(process: StoreProcess) -> dict[str, int]:
    ready = next(process.directory.glob("ready-*.json"))
    return json.loads(ready.read_text())  # type: ignore[no-any-return]


def closed_at_once(source_ip: str, port: int) -> bool:
    """A raw connection from `source_ip`: True when the front hangs up without a byte (within 2 s)."""
    with socket.socket() as sock:
        sock.bind((source_ip, 0))
        sock.connect(("127.0.0.1", port))
        sock.settimeout(2.0)
        try:
            return sock.recv(1) == b""
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False


def test_store_listens_on_loopback_only_behind_the_front(store: StoreProcess) -> None:
    assert closed_at_once("127.0.0.5", store.port)       # before any round: this box only
    assert client(store.port).num_keys() >= 0
    assert "refused a connection from 127.0.0.5: no round admitted yet" in store_log(store)
    info = ready_info(store)
    assert info["port"] == store.port and info["store_port"] not in (0, store.port)
    listening = {(c.laddr.ip, c.laddr.port) for c in psutil.Process(info["pid"]).net_connections("tcp")
                 if c.status == psutil.CONN_LISTEN}
    assert listening == {("127.0.0.1", info["store_port"]), ("::", store.port)} or \
        listening == {("127.0.0.1", info["store_port"]), ("0.0.0.0", store.port)}, listening


def test_member_passes_and_stranger_never_reaches_the_store(store: StoreProcess) -> None:
    member_ip, stranger_ip = "127.0.0.3", "127.0.0.2"
    store.admit(1, [member_ip])
    member_relay, stranger_relay = (SourceRelay(ip, ("127.0.0.1", store.port)) for ip in (member_ip, stranger_ip))
    try:
        member = client(member_relay.port)
        member.set("from-member", "yes")
        assert member.get("from-member") == b"yes"

        started = time.monotonic()
        with pytest.raises(Exception):  # noqa: B017  (torch raises DistNetworkError or RuntimeError by version)
            client(stranger_relay.port, timeout_s=3.0).set("from-stranger", "pwned")
        assert time.monotonic() - started < 10.0
        for _ in range(5):
            assert closed_at_once(stranger_ip, store.port)
        assert not member.check(["from-stranger"]), "the stranger's key reached the store"
        local = client(store.port)      # this box (127.0.0.1) is always admitted
        assert local.get("from-member") == b"yes"
    finally:
        member_relay.close()
        stranger_relay.close()
    log = store_log(store)
    refusals = [line for line in log.splitlines() if "refused a connection" in line]
    assert len(refusals) == 1 and f"from {stranger_ip}: not a member of round 1" in refusals[0], log


def test_admitted_set_follows_the_round(store: StoreProcess) -> None:
    leaving, joining = "127.0.0.6", "127.0.0.7"
    store.admit(1, [leaving])
    assert not closed_at_once(leaving, store.port)
    store.admit(2, [joining, "10.9.8.7"])     # a new round: one box left, another joined
    assert closed_at_once(leaving, store.port)
    relay = SourceRelay(joining, ("127.0.0.1", store.port))
    try:
        joined = client(relay.port)
        joined.set("round-2", "ok")
        assert client(store.port).get("round-2") == b"ok"
    finally:
        relay.close()
    assert f"refused a connection from {leaving}: not a member of round 2" in store_log(store)
