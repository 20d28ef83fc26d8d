"""Real mDNS on 127.0.0.1 between real processes.

Loopback multicast needs no change to `lo`: python-zeroconf with interfaces=["127.0.0.1"] joins the group on
lo and multicast loop delivers to every socket on the box, although `ip link show lo` has no MULTICAST flag
(checked: `<LOOPBACK,UP,LOWER_UP>` on the dev box and these tests pass). So no fixture toggles
`ip link set lo multicast on`.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest
from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

from p2pft.discovery.events import PeerLost, PeerSeen
from p2pft.discovery.mdns import SERVICE_TYPE, MdnsDiscovery
from p2pft.discovery.txt import cluster_id_for_key
from p2pft.testing.mdns_probe import ProbeProcess

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]
LOOPBACK = "127.0.0.1"
KEY = f"test-cluster-{secrets.token_hex(4)}"  # per run: parallel runs on one box stay apart
CLUSTER = cluster_id_for_key(KEY)
T = TypeVar("T")


@pytest.fixture
def probes() -> Iterator[list[ProbeProcess]]:
    started: list[ProbeProcess] = []
    try:
        yield started
    finally:
        for probe in started:
            probe.kill()


async def _register_garbage(aiozc: AsyncZeroconf) -> list[AsyncServiceInfo]:
    """Raw zeroconf registrations that a p2pft daemon must ignore (and count as malformed)."""
    bad = {
        "badport": {b"id": b"badport", b"cluster": CLUSTER.encode(), b"port": b"http", b"proto": b"1"},
        "badutf8": {b"id": b"\xff\xfe", b"cluster": CLUSTER.encode(), b"port": b"7", b"proto": b"1"},
        "nokeys": {b"hello": b"world"},
        "longid": {b"id": b"x" * 200, b"cluster": CLUSTER.encode(), b"port": b"7", b"proto": b"1"},
    }
    infos = []
    for name, properties in bad.items():
        info = AsyncServiceInfo(
            SERVICE_TYPE,
            f"{name}.{SERVICE_TYPE}",
            port=7,
            properties=properties,
            server=f"garbage-{name}.local.",
            parsed_addresses=[LOOPBACK],
        )
        await aiozc.async_register_service(info, cooperating_responders=True)
        infos.append(info)
    return infos


def test_three_processes_see_each_other_and_ignore_garbage_and_foreigners(probes: list[ProbeProcess]) -> None:
    async def scenario() -> None:
        aiozc = AsyncZeroconf(interfaces=[LOOPBACK])
        try:
            await _register_garbage(aiozc)
            ids = {"node-a", "node-b", "node-c"}
            probes.extend(ProbeProcess(node_id=i, cluster_key=KEY, interface=LOOPBACK) for i in sorted(ids))
            foreigner = ProbeProcess(node_id="stranger", cluster_key="another-key", interface=LOOPBACK)
            probes.append(foreigner)
            ours = probes[:3]
            begin = time.monotonic()
            for probe in ours:
                await asyncio.to_thread(probe.wait_seen, ids - {probe.node_id}, 15.0)
            elapsed = time.monotonic() - begin
            assert elapsed < 10.0, f"discovery took {elapsed:.1f}s"

            for probe in ours:  # garbage (4 records) and the foreigner were resolved, dropped, counted
                counters = await _wait_counters(probe, malformed=4, foreign=1)
                assert counters["peers_seen"] >= 2 and counters["callback_errors"] == 0
            foreign_counters = await _wait_counters(foreigner, malformed=4, foreign=3)
            assert foreign_counters["peers_seen"] == 0 and foreigner.seen() == set()

            # A state change is a new PeerSeen with the new TXT.
            mark = len(ours[1].events)
            ours[0].send("state training")
            seen = await asyncio.to_thread(
                ours[1].wait_for,
                lambda e: e["event"] == "seen" and e["node_id"] == "node-a" and e["txt"]["state"] == "training",
                5.0,
                after=mark,
            )
            assert seen["port"] == 1 and seen["host"] == LOOPBACK

            # A clean stop sends goodbyes: the others get PeerLost.
            stopped = await asyncio.to_thread(ours[2].stop)
            assert stopped["callback_errors"] == 0
            for probe in ours[:2]:
                await asyncio.to_thread(probe.wait_for, lambda e: e == {**e, "event": "lost", "node_id": "node-c"}, 5)
                assert probe.seen() == ids - {probe.node_id, "node-c"}
        finally:
            await aiozc.async_close()

    asyncio.run(scenario())


async def _wait_counters(probe: ProbeProcess, *, malformed: int, foreign: int) -> dict[str, int]:
    deadline = time.monotonic() + 10
    while True:
        counters = await asyncio.to_thread(probe.counters)
        if counters["malformed_records"] >= malformed and counters["foreign_cluster_records"] >= foreign:
            return counters
        assert time.monotonic() < deadline, f"{probe.node_id}: counters {counters}"
        await asyncio.sleep(0.3)


def test_in_process_instances_update_and_lose_each_other() -> None:
    """Two MdnsDiscovery on one event loop; also: an exception in on_event is counted, never raised."""

    async def scenario() -> None:
        events: list[PeerSeen | PeerLost] = []

        def explode(event: PeerSeen | PeerLost) -> None:
            raise RuntimeError("consumer bug")

        a = MdnsDiscovery(
            node_id="solo-a",
            cluster_id=CLUSTER,
            port=4001,
            interfaces=[LOOPBACK],
            txt={"dev": "cpu:2x", "state": "idle"},
            on_event=events.append,
        )
        b = MdnsDiscovery(
            node_id="solo-b",
            cluster_id=CLUSTER,
            port=4002,
            interfaces=[LOOPBACK],
            txt={"dev": "RTX 3090 24GB", "state": "idle"},
            on_event=explode,
        )
        await a.start()
        await b.start()
        try:
            first = await _until(lambda: [e for e in events if isinstance(e, PeerSeen)], 5)
            assert first[0] == PeerSeen("solo-b", CLUSTER, LOOPBACK, 4002, 1, first[0].txt, "mdns")
            assert first[0].txt["dev"] == "RTX 3090 24GB"
            await _until(lambda: b.counters["callback_errors"], 5)
            assert b.counters["peers_seen"] >= 1
            await b.update_txt({"dev": "RTX 3090 24GB", "state": "draining"})
            await _until(lambda: [e for e in events if isinstance(e, PeerSeen) and e.txt["state"] == "draining"], 5)
            await b.stop()
            await _until(lambda: PeerLost("solo-b", "mdns") in events, 5)
            assert a.counters["peers_lost"] == 1
        finally:
            await b.stop()
            await a.stop()

    asyncio.run(scenario())


async def _until(check: Callable[[], T], timeout: float) -> T:
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)
    return result


def test_a_crashed_and_restarted_node_is_seen_again(probes: list[ProbeProcess]) -> None:
    """kill -9 sends no goodbye, so no PeerLost (liveness is the heartbeats' job); the restart, with a new
    `boot` TXT value, replaces the cached record and gives a fresh PeerSeen."""
    watcher = ProbeProcess(node_id="watcher", cluster_key=KEY, interface=LOOPBACK)
    crasher = ProbeProcess(node_id="crasher", cluster_key=KEY, interface=LOOPBACK)
    probes.extend([watcher, crasher])
    first = watcher.wait_for(lambda e: e["event"] == "seen" and e["node_id"] == "crasher", 10)
    crasher.kill()
    mark = len(watcher.events)
    reborn = ProbeProcess(node_id="crasher", cluster_key=KEY, interface=LOOPBACK)
    probes.append(reborn)
    again = watcher.wait_for(lambda e: e["event"] == "seen" and e["node_id"] == "crasher", 10, after=mark)
    assert again["txt"]["boot"] != first["txt"]["boot"]
    assert not [e for e in watcher.events if e["event"] == "lost"]
