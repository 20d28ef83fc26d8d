"""Which faults a job gets, drawn from a seed (pure: the same seed gives the same plan on any machine).

A plan is a list of `Fault`s for one job. Each names its kind, the role of the box it hits (the job's coordinator
or one of the other members), how long it lasts (a SIGSTOP, a network cut, a drain, a full disk), and how many
steps the job makes between the previous fault's recovery and this one. Which box plays a role, and when a step
lands, depend on the real run; the plan does not.

The plan keeps the mesh able to go on: it counts the boxes running (3 at the start, up to 4), so a box is
killed for good (the coordinator's box) only while 3 run, and a join needs a box that is down. A full disk may
end the job (a save that cannot fit is an error no retry fixes), so it comes last.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

KILL_WORKERS = "kill_workers"                # kill -9 of one member's training workers (its daemon lives)
KILL_DAEMON = "kill_daemon"                  # kill -9 of one member's daemon alone, then start it again
KILL_COORDINATOR_BOX = "kill_coordinator_box"  # kill -9 of everything on the coordinator's box; back at a join
STOP_BOX = "stop_box"                        # SIGSTOP of a whole box longer than the failure timeout, SIGCONT
DRAIN = "drain"                              # `p2pft drain` on a member, `p2pft undrain` after a while
JOIN = "join"                                # a box that is down (never started, or killed) starts
NET_CUT = "net_cut"                          # a box's link down, then up (network namespaces only)
DISK_FULL = "disk_full"                      # a box's state dir (a small tmpfs) filled during saves, then freed
RESTART_DAEMON = "restart_daemon"            # SIGTERM to a daemon (as `systemctl restart`), then start it again

ALL_KINDS = (KILL_WORKERS, KILL_DAEMON, KILL_COORDINATOR_BOX, STOP_BOX, DRAIN, JOIN, NET_CUT, DISK_FULL,
             RESTART_DAEMON)
NEEDS_NAMESPACES = (NET_CUT,)
COORDINATOR, MEMBER = "coordinator", "member"
START_BOXES, MAX_BOXES = 3, 4
FAILURE_TIMEOUT_S = 3.0                      # heartbeat 1 s, lost after 3 intervals (docs/daemon.md)


@dataclass(frozen=True)
class Fault:
    kind: str
    role: str             # COORDINATOR or MEMBER: whose box it hits, resolved against the running job
    hold_s: float         # how long the fault lasts before it is healed (0: an instant fault)
    gap_steps: int        # steps to wait after the previous fault's recovery before this one

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _role(kind: str, rng: random.Random) -> str:
    if kind == KILL_COORDINATOR_BOX:
        return COORDINATOR
    if kind in (KILL_WORKERS, KILL_DAEMON, DRAIN, JOIN):
        return MEMBER
    return rng.choice((COORDINATOR, MEMBER))


def _hold(kind: str, rng: random.Random) -> float:
    if kind == STOP_BOX:     # longer than the failure timeout, so the box is really called lost
        return round(FAILURE_TIMEOUT_S + rng.uniform(2.0, 6.0), 1)
    if kind == NET_CUT:
        return round(rng.uniform(4.0, 12.0), 1)
    if kind == DRAIN:
        return round(rng.uniform(2.0, 8.0), 1)
    if kind == DISK_FULL:
        return round(rng.uniform(6.0, 12.0), 1)
    return 0.0


def _possible(kind: str, running: int, index: int, count: int) -> bool:
    if kind == JOIN:
        return running < MAX_BOXES
    if kind == KILL_COORDINATOR_BOX:
        return running >= START_BOXES
    if kind == DISK_FULL:
        return index == count - 1
    return running >= 2


def plan_job(seed: int, job: int, count: int, kinds: Sequence[str] = ALL_KINDS) -> list[Fault]:
    """`count` faults for job number `job` of the campaign seeded `seed`, drawn from `kinds`."""
    unknown = sorted(set(kinds) - set(ALL_KINDS))
    if unknown:
        raise ValueError(f"unknown fault kind {unknown[0]!r}; choose from {', '.join(ALL_KINDS)}")
    if not kinds:
        raise ValueError("no fault kinds to draw from")
    rng = random.Random(f"p2pft-chaos/{seed}/{job}")
    running = START_BOXES
    faults: list[Fault] = []
    for index in range(count):
        choices = [k for k in kinds if _possible(k, running, index, count)]
        if not choices:     # e.g. only disk_full asked for: one per job, at its end
            break
        kind = rng.choice(choices)
        faults.append(Fault(kind, _role(kind, rng), _hold(kind, rng), rng.randint(2, 6)))
        running += 1 if kind == JOIN else -1 if kind == KILL_COORDINATOR_BOX else 0
    return faults


def count_by_kind(faults: Sequence[Fault]) -> dict[str, int]:
    counts = dict.fromkeys(ALL_KINDS, 0)
    for fault in faults:
        counts[fault.kind] += 1
    return {kind: n for kind, n in counts.items() if n}
