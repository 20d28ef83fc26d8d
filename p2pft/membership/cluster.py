"""The daemon's single holder of membership state: applies events through the pure reducer and logs changes."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable

from p2pft.membership.coordinator import choose_coordinator
from p2pft.membership.state import ClusterState, MembershipEvent, apply

log = logging.getLogger("p2pft.membership")


class Cluster:
    """Owns the ClusterState. Everything runs on the event loop thread, so no locks are needed."""

    def __init__(self, state: ClusterState, counters: Counter[str], clock: Callable[[], float] = time.monotonic):
        self._state = state
        self.counters = counters
        self.clock = clock
        self.started_at = clock()
        self._coordinator = choose_coordinator(state)

    @property
    def state(self) -> ClusterState:
        return self._state

    @property
    def coordinator(self) -> str | None:
        return self._coordinator

    def apply(self, event: MembershipEvent) -> ClusterState:
        old = self._state
        new = apply(event, old)
        if new is old:
            return new
        self._state = new
        self._log_transitions(old, new)
        coordinator = choose_coordinator(new)
        if coordinator != self._coordinator:
            log.info("coordinator is now %s (was %s)", coordinator, self._coordinator)
            self._coordinator = coordinator
        return new

    def _log_transitions(self, old: ClusterState, new: ClusterState) -> None:
        for node_id, member in new.members.items():
            before = old.members.get(node_id)
            label = f"{member.name or '?'} ({node_id}) at {member.address or '?'}"
            if before is None:
                extra = f", incompatible: {member.incompatible_reason}" if member.incompatible_reason else ""
                log.info("member joined: %s, state %s%s", label, member.state, extra)
            elif before.state != member.state or before.left != member.left:
                if member.state == "lost" and member.left:
                    log.info("member left: %s: %s", label, member.lost_reason)  # a clean stop: no warning
                elif member.state == "lost":
                    self.counters["members_lost"] += 1
                    log.warning("member lost: %s: %s", label, member.lost_reason)
                elif node_id == new.self_id and member.left:
                    log.info("saying goodbye to the peers")
                elif before.state == "lost":
                    log.info("member back: %s, state %s", label, member.state)
                else:
                    log.info("member %s: %s -> %s", label, before.state, member.state)
            elif before.address != member.address and before.address:
                log.info("member %s moved from %s", label, before.address)

    def alive_addresses(self) -> dict[str, str]:
        """node id -> address of every live member with a dialable address (gossip payload)."""
        return {m.node_id: m.address for m in self._state.members.values() if m.alive and m.address}

    def uptime_s(self) -> float:
        return self.clock() - self.started_at
