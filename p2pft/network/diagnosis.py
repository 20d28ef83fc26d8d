"""A failed round's agent log, turned into one sentence: which box could not reach which address:port, whose
it is, and what to check. Pure: the member reads the log and knows the round's addresses.

The patterns are torch's and gloo's own messages (torch 2.5-2.13): the c10d store client ("trying to connect to
(HOST, PORT)", "failed to connect/validate to host HOST:PORT"), gloo's pairs ("Connect timeout [HOST]:PORT",
"connect [HOST]:PORT: Connection refused") and the rendezvous ("RendezvousTimeoutError"). torch 2.13's gloo
names no address ("socket.cc:142] ... connect: Network is unreachable"): then the culprit is the member whose
collective address this box has no route to (the member checks routes; this module stays pure).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

CLOSED_AT_ONCE = "closed at once"
ERRORS = (
    # torch's store client when the other side hangs up before answering: the store's front refusing an
    # address it does not admit (p2pft.launch.store_front). First: torch's retry lines say "timed out" too.
    ("connection was likely closed", CLOSED_AT_ONCE),
    ("network is unreachable", "no route to that network"),
    ("no route to host", "no route to that host"),
    ("connection refused", "connection refused"),
    ("timed out", "timed out"),
    ("connect timeout", "timed out"),
    ("connection reset", "connection reset by the other side"),
)
_ADDRESS_PATTERNS = (
    re.compile(r"trying to connect to \(([^,()\s]+), (\d+)\)"),
    re.compile(r"failed to connect(?:/validate)? to host \[?([0-9A-Za-z.:_-]+?)\]?:(\d+)"),
    re.compile(r"failed to connect to any network address of \(([^,()\s]+), (\d+)\)"),
    re.compile(r"(?:Connect timeout|connect:?) \[([^\]]+)\]:(\d+)", re.IGNORECASE),
)
_GLOO_CONNECT = re.compile(r"gloo.*connect(?: timeout)?:? (network is unreachable|no route to host|connection "
                           r"refused|connection timed out|timed out)", re.IGNORECASE)

# The words of a round that failed because some member joined the rendezvous too late (p2pft.jobs.round_plan
# gives the next round a longer join timeout when it sees them).
RENDEZVOUS_TIMED_OUT = "not every member joined the rendezvous"
# The sentence of a workers' store that waited for the other members in vain ("(1 of 3 joined)"): it says who
# waited, not who failed. A member cut off by a firewall says so in its own report; a silent one was slow.
_WAITED_IN_VAIN = re.compile(r"'s workers' store.*\(\d+ of \d+ joined\)")


def waited_in_vain(sentence: str) -> bool:
    """Is `sentence` (from `explain`) a workers' store that waited for members in vain?"""
    return _WAITED_IN_VAIN.search(sentence) is not None


@dataclass(frozen=True)
class Unreachable:
    host: str
    port: int
    error: str          # short words: "connection refused", "timed out", ...
    line: str           # the log line it came from

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def find_unreachable(log_text: str) -> Unreachable | None:
    """The first address a log line says could not be connected to (the root cause comes first)."""
    lines = log_text.splitlines()
    for index, line in enumerate(lines):
        for pattern in _ADDRESS_PATTERNS:
            match = pattern.search(line)
            if match:
                # torch logs the errno on the lines just before its summary line.
                context = " ".join(lines[max(0, index - 2):index + 1])
                return Unreachable(match.group(1), int(match.group(2)), _error_words(context), line.strip()[-300:])
    return None


def _error_words(line: str) -> str:
    lowered = line.lower()
    for needle, words in ERRORS:
        if needle in lowered:
            return words
    return "could not connect"


def gloo_connect_error(log_text: str) -> str | None:
    """Error words of a gloo connect failure that names no address."""
    for line in log_text.splitlines():
        match = _GLOO_CONNECT.search(line)
        if match:
            return _error_words(match.group(1))
    return None


_CLIENTS_MISSING = re.compile(r"Timed out after \d+ seconds waiting for clients\. (\d+)/(\d+) clients joined")


_WORKERS_STORE = re.compile(r"p2pft worker: rank 0 of \d+, workers' store (\S+):(\d+),")


def workers_store(log_text: str) -> str | None:
    """host:port of the workers' store when this box hosts rank 0 (the worker logs it)."""
    match = _WORKERS_STORE.search(log_text)
    return f"{match.group(1)}:{match.group(2)}" if match else None


def never_transient(found: Unreachable) -> bool:
    """No route is a configuration problem, unlike 'connection refused' while rank 0 is still starting."""
    return found.error in ("no route to that network", "no route to that host")


def clients_missing(log_text: str) -> tuple[int, int] | None:
    """(joined, expected) when this box's workers' store (rank 0's MASTER_ADDR) waited in vain."""
    match = _CLIENTS_MISSING.search(log_text)
    return (int(match.group(1)), int(match.group(2))) if match else None


def rendezvous_timed_out(log_text: str) -> bool:
    return "RendezvousTimeoutError" in log_text


@dataclass(frozen=True)
class RoundAddresses:
    """What this box knows of the round: whose address is whose."""

    store: str                               # host:port of the rendezvous store
    coordinator: str                         # its box name
    collective: Mapping[str, str]            # host -> box name (each member's chosen address)
    daemon_hosts: Mapping[str, str]          # host -> box name (the members' daemon addresses)
    own_address: str = ""                    # this box's chosen address in the round
    no_route: frozenset[str] = frozenset()   # collective hosts this box has no route to


def explain(box: str, log_text: str, round_addresses: RoundAddresses) -> str | None:
    """'box-a could not reach 10.0.0.2:41234 (box-b's workers): connection refused; check ...', or None when
    the log shows no network failure."""
    found = find_unreachable(log_text)
    if found is None:
        gloo_error = gloo_connect_error(log_text)
        if gloo_error is not None:
            return _explain_gloo(box, gloo_error, round_addresses)
        missing = clients_missing(log_text)
        if missing is not None:
            store = workers_store(log_text) or round_addresses.own_address
            others = sorted({b for h, b in round_addresses.collective.items()
                             if h != round_addresses.own_address and b != box}) or ["the other members"]
            where = f" at {store}" if store else ""
            return (f"{' and '.join(others)} could not reach {box}'s workers' store{where} ({missing[0]} of "
                    f"{missing[1]} joined); check the collective interface of {box} (--collective-interface, or "
                    "leave it unset to choose automatically) and allow TCP between the boxes (run `p2pft doctor`)")
        if rendezvous_timed_out(log_text):
            return (f"{box}: {RENDEZVOUS_TIMED_OUT} on {round_addresses.store} in time: a box "
                    "too slow to start its workers, or one that cannot reach the coordinator's store ports (run "
                    "`p2pft doctor`)")
        return None
    if found.address == round_addresses.store or (
            found.host == round_addresses.store.rpartition(":")[0].strip("[]")
            and str(found.port) == round_addresses.store.rpartition(":")[2]):
        if found.error == CLOSED_AT_ONCE:
            return (f"{box} reached the job's rendezvous store {found.address} on {round_addresses.coordinator} "
                    "but was turned away: the store admits only the addresses its coordinator has for the "
                    f"round's members, and {box} came from another one ({round_addresses.coordinator}'s "
                    "store.log names it); check the address each box shows for the other in `p2pft doctor`")
        return (f"{box} could not reach the job's rendezvous store {found.address} on "
                f"{round_addresses.coordinator} ({found.error}); check that {round_addresses.coordinator} "
                "accepts TCP on its store ports (store_ports, default 47342-47391) from this box: firewall, or "
                "the address it chose (run `p2pft doctor`)")
    workers_owner = round_addresses.collective.get(found.host)
    if workers_owner and ("TCPStore" in found.line or "any network address" in found.line):
        return (f"{box} could not reach {workers_owner}'s workers' store {found.address} ({found.error}); check "
                f"the collective interface of {workers_owner} (--collective-interface, or leave it unset to choose "
                "automatically) and allow TCP between the boxes (run `p2pft doctor`)")
    owner = round_addresses.collective.get(found.host) or round_addresses.daemon_hosts.get(found.host)
    if found.host.startswith("127.") and owner is None:
        return (f"{box} could not reach {found.address} ({found.error}): a loopback address from another box, "
                "which usually means a hostname resolving to 127.0.1.1 was used for collectives; set "
                "--collective-interface on the boxes (run `p2pft doctor`)")
    whose = f"{owner}'s workers" if owner else "another member's workers"
    fix_box = owner or "the other boxes"
    return (f"{box} could not reach {found.address} ({whose}: {found.error}); gloo/NCCL connect on random "
            f"ports above 1024, so allow TCP between the boxes, and check the collective interface of {fix_box} "
            "(--collective-interface; run `p2pft doctor`)")


def _explain_gloo(box: str, error: str, round_addresses: RoundAddresses) -> str:
    others = {h: b for h, b in round_addresses.collective.items() if h != round_addresses.own_address}
    suspects = {h: b for h, b in others.items() if h in round_addresses.no_route} or others
    if not suspects:
        return (f"{box}'s workers could not connect to another member's workers ({error}); allow TCP between "
                "the boxes and check their collective interfaces (run `p2pft doctor`)")
    named = " or ".join(f"{b}'s workers at {h}" for h, b in sorted(suspects.items(), key=lambda hb: hb[1]))
    owners = ", ".join(sorted(set(suspects.values())))
    route = "no route from this box" if set(suspects) <= round_addresses.no_route else error
    return (f"{box} could not reach {named} ({route}); check the collective interface of {owners} "
            "(--collective-interface, or leave it unset to choose automatically) and allow TCP between the boxes "
            "(run `p2pft doctor`)")
