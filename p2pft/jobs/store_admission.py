"""Which addresses the job's store front admits for a round (p2pft.launch.admission): every member's address in
this daemon's view of the cluster (what it reached them on; with no --listen, the address their calls came
from) and the collective addresses they reported in earlier rounds of the job. A member's agent dials the store
from its route source towards this box, which is one of those on any network where the members reach each
other. This box itself is always admitted by the front.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Iterable, Mapping
from typing import Protocol

from p2pft.jobs.model import MemberReport
from p2pft.launch.admission import normalize_ip
from p2pft.network.routes import host_of

log = logging.getLogger("p2pft.jobs.store_admission")
RESOLVE_TIMEOUT_S = 2.0


class AdmittingStore(Protocol):
    def admit(self, round_number: int, hosts: Iterable[str]) -> None: ...


def round_hosts(addresses: Mapping[str, str], reports: Mapping[tuple[str, int], Mapping[str, MemberReport]],
                job_id: str) -> list[str]:
    """The hosts (IPs or names) of the members' daemon addresses and of the addresses they reported using."""
    hosts = {host_of(address) for address in addresses.values() if address}
    for (job, _round), by_node in reports.items():
        if job == job_id:
            hosts.update(r.local_addr for node, r in by_node.items() if node in addresses and r.local_addr)
    return sorted(h for h in hosts if h)


async def resolve(hosts: Iterable[str]) -> tuple[list[str], list[str]]:
    """(IP addresses, names that did not resolve in time). IP literals pass as they are; a name (a `--listen`
    given as a host name) is looked up without blocking the daemon."""
    ips: set[str] = set()
    unresolved: list[str] = []
    loop = asyncio.get_running_loop()
    for host in hosts:
        ip = normalize_ip(host)
        if ip is not None:
            ips.add(ip)
            continue
        try:
            found = await asyncio.wait_for(loop.getaddrinfo(host, None, type=socket.SOCK_STREAM),
                                           RESOLVE_TIMEOUT_S)
        except (OSError, TimeoutError):
            unresolved.append(host)
            continue
        ips.update(str(entry[4][0]) for entry in found)
    return sorted(ips), unresolved


async def admit_round(store: AdmittingStore, job_id: str, round_number: int, addresses: Mapping[str, str],
                      reports: Mapping[tuple[str, int], Mapping[str, MemberReport]]) -> None:
    """Admit the round's members at the store's front; must finish before the round's orders go out."""
    ips, unresolved = await resolve(round_hosts(addresses, reports, job_id))
    if unresolved:
        log.warning("job %s: round %d: could not resolve %s; the store front will refuse connections from them",
                    job_id, round_number, ", ".join(unresolved))
    store.admit(round_number, ips)
