"""Addresses a round is given: where its members dial the coordinator's store, and the address and interface
each member's agent and workers use (`--local-addr`, GLOO_SOCKET_IFNAME/NCCL_SOCKET_IFNAME).

Chosen per round from the members' addresses in this daemon's own view of the cluster (addresses it reached
them on), so a box with Wi-Fi, Ethernet, docker0 and a VPN picks the one that reaches this round's members.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from p2pft.membership.state import ClusterState
from p2pft.network.addresses import WILDCARD_HOSTS, join
from p2pft.network.collective import collective_env
from p2pft.network.interfaces import Interface, read_interfaces
from p2pft.network.routes import LocalChoice, choose_local_address, host_of, route_source


@dataclass(frozen=True)
class AddressSettings:
    listen_host: str = "0.0.0.0"
    collective_interface: str = ""
    store_ports: tuple[int, int] = (0, 0)
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)


class RoundAddressing:
    def __init__(self, settings: AddressSettings, state: Callable[[], ClusterState], *,
                 interfaces: Callable[[], Sequence[Interface]] = read_interfaces,
                 source_of: Callable[[str], str | None] = route_source) -> None:
        self.settings = settings
        self.state = state
        self.interfaces = interfaces
        self.source_of = source_of
        self.last_choice: LocalChoice | None = None   # this box's address in its newest round

    @property
    def listens_everywhere(self) -> bool:
        return self.settings.listen_host in WILDCARD_HOSTS

    def store_client_host(self) -> str:
        """Where the store process's own client dials it (the server listens on every interface)."""
        return "127.0.0.1" if self.listens_everywhere else self.settings.listen_host

    def peer_hosts(self, members: Sequence[str]) -> list[str]:
        state = self.state()
        me = state.me.node_id
        hosts = []
        for node_id in members:
            member = state.members.get(node_id)
            if node_id != me and member is not None and member.address:
                hosts.append(host_of(member.address))
        return hosts

    def store_endpoint(self, members: Sequence[str], port: int) -> str:
        """host:port the round's members dial the store on: the listen address when one is set (the members
        reach it already), else this box's address on the route towards them."""
        if not self.listens_everywhere:
            return join(self.settings.listen_host, port)
        choice = choose_local_address(self.peer_hosts(members), self.interfaces(), source_of=self.source_of)
        return join(choice.address, port)

    def local_choice(self, members: Sequence[str]) -> LocalChoice:
        """This member's address and interface for the round (raises NoReachableAddress with one line)."""
        environ = self.settings.environ
        user_gloo = environ.get("GLOO_SOCKET_IFNAME", "")
        self.last_choice = choose_local_address(self.peer_hosts(members), self.interfaces(), source_of=self.source_of,
                                    interface_setting=self.settings.collective_interface,
                                    interface_env=user_gloo if "," not in user_gloo else "")
        return self.last_choice

    def box_name(self, node_id: str) -> str:
        member = self.state().members.get(node_id)
        return member.name if member is not None and member.name else node_id

    def worker_env(self, choice: LocalChoice) -> dict[str, str]:
        return collective_env(choice, self.settings.environ)
