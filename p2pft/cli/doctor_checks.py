"""The verdicts of `p2pft doctor` (pure): findings, each with its one-line fix, from what `p2pft.cli.doctor`
gathered from this box's daemon and its peers (a `Survey`). Unit-tested without a network."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

Severity = Literal["ok", "warn", "fail"]
GIB = 1024**3
CLOCK_WARN_S = 2.0            # heartbeats and deadlines use monotonic clocks; logs and checkpoints do not
DISK_WARN_BYTES = 5 * GIB     # a small model's checkpoints and blobs
DISK_FAIL_BYTES = 1 * GIB     # not even one checkpoint
LISTEN_S = 10.0               # how long the probe listeners stay open (the daemon caps it at 10 s too)
DEFAULT_TIMEOUT_S = 5.0


# ---- what was gathered (pure data) ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Dial:
    target: str
    error: str = ""          # "" when a TCP connection was established

    @property
    def ok(self) -> bool:
        return not self.error


@dataclass(frozen=True)
class Collective:
    """A box's collective address (what rounds give the workers) towards one other box."""

    setting: str = ""        # its collective_interface setting ("" = automatic)
    env: str = ""            # GLOO_SOCKET_IFNAME in its daemon's environment
    address: str = ""
    interface: str = ""
    how: str = ""            # alone | route | setting | environment
    error: str = ""          # why no address could be chosen (or listened on)
    port: int = 0            # the probe listener on it; 0 when none

    @property
    def endpoint(self) -> str:
        return join_address(self.address, self.port) if self.port else self.address

    @property
    def cause(self) -> str:
        """What decided the address: the setting, the environment, or the routing table."""
        if self.how:
            return self.how
        return "setting" if self.setting else "environment" if self.env else "route"

    def describe(self) -> str:
        origin = {"setting": f"from --collective-interface {self.setting}",
                  "environment": f"from GLOO_SOCKET_IFNAME={self.env}"}.get(self.cause, "chosen by route")
        return f"{self.endpoint} ({self.interface or 'interface unknown'}, {origin})"


@dataclass(frozen=True)
class BoxFacts:
    node_id: str
    name: str = ""
    p2pft: str = ""
    protocol: int = 0
    torch: str = ""
    cuda: str = ""
    gpus: tuple[str, ...] = ()
    state_dir: str = ""
    free_bytes: int | None = None            # None: not known (the box did not answer a probe)
    mdns: bool = True
    static_peers: tuple[str, ...] = ()
    store_range: tuple[int, int] = (0, 0)
    store_port: int = 0                      # its probe listener in the store range; 0 when none
    listener_error: str = ""
    collective: Collective = field(default_factory=Collective)   # towards whoever probed it
    clock_offset_s: float = 0.0              # its clock minus this box's

    @property
    def label(self) -> str:
        return self.name or self.node_id

    @property
    def has_versions(self) -> bool:
        return bool(self.p2pft or self.protocol)


@dataclass(frozen=True)
class PeerReport:
    box: BoxFacts                            # from its probe; from our daemon's status when it did not answer
    address: str                             # its gRPC address as our daemon knows it
    lost: bool = False                       # our daemon lost its heartbeats (it gets no work)
    rpc_error: str = ""                      # "" when the probe answered
    not_probed: str = ""                     # why this CLI could not probe it at all ("" when it tried)
    rpc_code: str = ""                       # grpc status name, e.g. UNAVAILABLE
    round_trip_s: float = 0.0
    store: Dial | None = None                # here -> its store-range port
    collective: Dial | None = None           # here -> its collective address
    grpc_back: Dial | None = None            # it -> our gRPC port
    store_back: Dial | None = None           # it -> our store-range port
    collective_back: Dial | None = None      # it -> our collective address
    ours: Collective = field(default_factory=Collective)   # our collective address towards it


@dataclass(frozen=True)
class Survey:
    me: BoxFacts
    peers: tuple[PeerReport, ...] = ()


@dataclass(frozen=True)
class Finding:
    severity: Severity
    box: str
    what: str
    fix: str = ""
    node_id: str = ""


# ---- evaluation (pure) ----------------------------------------------------------------------------------------


def evaluate(survey: Survey) -> list[Finding]:
    """Every finding, mesh-wide first, then this box, then each peer; duplicates (one cause seen from several
    peers) once."""
    me = survey.me
    findings = [*discovery_findings(survey), *version_findings(survey), *box_findings(me)]
    if me.collective.error and (me.collective.setting or me.collective.env):
        findings.append(_fail(me, f"collective address: {me.collective.error}", _collective_fix(me, me.collective)))
    if not me.store_port:
        findings.append(_store_listener_failure(me))
    for peer in survey.peers:
        findings += peer_findings(peer, me)
        if not peer.rpc_error:
            findings += box_findings(peer.box)
    return list(dict.fromkeys(findings))


def exit_code(findings: Iterable[Finding]) -> int:
    return 1 if any(f.severity == "fail" for f in findings) else 0


def summary(findings: Sequence[Finding], survey: Survey) -> dict[str, Any]:
    counts = Counter(f.severity for f in findings)
    return {"box": survey.me.label, "node_id": survey.me.node_id, "peers": [p.box.label for p in survey.peers],
            "ok": counts["ok"], "warn": counts["warn"], "fail": counts["fail"],
            "blocks_training": counts["fail"] > 0, "exit_code": exit_code(findings)}


def discovery_findings(survey: Survey) -> list[Finding]:
    me = survey.me
    if survey.peers and all(p.lost for p in survey.peers):
        names = ", ".join(p.box.label for p in survey.peers)
        return [_fail(me, f"no live peers: every known peer is lost ({names})",
                      "start p2pftd on the other boxes (sudo systemctl start p2pftd) and check that this box "
                      "reaches them (see below)")]
    if survey.peers:
        names = ", ".join(p.box.label for p in survey.peers)
        how = "mDNS" if me.mdns else "no mDNS"
        static = f", static peers {', '.join(me.static_peers)}" if me.static_peers else ""
        return [_ok(me, f"{len(survey.peers)} peer(s) known: {names} ({how}{static})")]
    if me.static_peers:
        return [_fail(me, f"no peers: none of the static peers {', '.join(me.static_peers)} answered",
                      f"check that p2pftd runs at {me.static_peers[0]} and that its port is open to this box "
                      "(give the box's LAN address, not 127.0.0.1)")]
    if me.mdns:
        return [_fail(me, "no peers found over mDNS",
                      "multicast may be blocked: pass --peer HOST:PORT (another box's p2pftd) to p2pftd, or set "
                      "peers in its config")]
    return [_fail(me, "mDNS is off and no static peers are configured",
                  "pass --peer HOST:PORT (another box's p2pftd) to p2pftd, or drop --no-mdns")]


def version_findings(survey: Survey) -> list[Finding]:
    me = survey.me
    boxes = [me, *(p.box for p in survey.peers if p.box.has_versions)]
    findings = [_fail(b, "torch is not installed for p2pftd: its rounds cannot start workers",
                      f"on {b.label}, install torch in p2pftd's Python environment (pip install torch)")
                for b in boxes if not b.torch]
    for box in boxes[1:]:
        if box.protocol != me.protocol or box.p2pft != me.p2pft:
            findings.append(_fail(box, f"p2pft {box.p2pft} (protocol {box.protocol}) differs from {me.label}'s "
                                       f"{me.p2pft} (protocol {me.protocol})",
                                  f"install the same p2pft release on every box (pip install p2pft=={me.p2pft} on "
                                  f"{box.label}, or upgrade {me.label})"))
        if box.torch and me.torch and _release(box.torch) != _release(me.torch):
            findings.append(_warn(box, f"torch {box.torch} differs from {me.label}'s {me.torch}",
                                  "install the same torch release on every box (numerics and checkpoints may "
                                  "differ otherwise)"))
        if box.cuda and me.cuda and box.cuda != me.cuda:
            findings.append(_warn(box, f"driver supports CUDA {box.cuda}, {me.label}'s supports {me.cuda}",
                                  "update the NVIDIA drivers so every box supports the CUDA that torch was built for"))
    if not findings:
        cuda = sorted({b.cuda for b in boxes if b.cuda})
        findings.append(_ok(me, f"versions match on {len(boxes)} box(es): p2pft {me.p2pft}, protocol {me.protocol}, "
                                f"torch {me.torch}" + (f", CUDA {'/'.join(cuda)}" if cuda else "")))
    return findings


def box_findings(box: BoxFacts) -> list[Finding]:
    """GPUs and free disk, as that box's daemon sees them."""
    findings = []
    if box.gpus:
        findings.append(_ok(box, f"{len(box.gpus)} GPU(s) visible to p2pftd: {', '.join(box.gpus)}"))
    else:
        findings.append(_ok(box, "no GPU visible to p2pftd: trains on the CPU",
                            f"if {box.label} has an NVIDIA GPU, make `nvidia-smi` work for p2pftd's user"))
    if box.free_bytes is not None:
        free = f"{box.free_bytes / GIB:.1f} GiB free in the state dir {box.state_dir}"
        room = f"on {box.label}, free space on the file system of {box.state_dir} (or move it with --state-dir)"
        if box.free_bytes < DISK_FAIL_BYTES:
            findings.append(_fail(box, f"only {free}: checkpoints and blobs cannot be written", room))
        elif box.free_bytes < DISK_WARN_BYTES:
            findings.append(_warn(box, f"only {free}", room))
        else:
            findings.append(_ok(box, free))
    return findings


def peer_findings(peer: PeerReport, me: BoxFacts) -> list[Finding]:
    box = peer.box
    if peer.not_probed:
        return [_warn(box, f"not probed from {me.label}: {peer.not_probed}",
                      "run p2pft doctor as the daemon's user (sudo -u p2pft p2pft doctor on a service)")]
    if peer.rpc_error and peer.lost:
        # A box switched off (or gone) blocks nothing: rounds go on without it. Still say how to get it back.
        return [_warn(box, f"lost (no heartbeats), and gRPC {peer.address or '(address unknown)'} is not "
                           f"reachable from {me.label}: {peer.rpc_error}", _rpc_fix(peer, me))]
    if peer.rpc_error:
        return [_fail(box, f"gRPC {peer.address or '(address unknown)'} not reachable from {me.label}: "
                           f"{peer.rpc_error}", _rpc_fix(peer, me))]
    return [*_grpc_findings(peer, me), *_clock_findings(peer, me), *_store_findings(peer, me),
            *_collective_findings(peer, me)]


def _grpc_findings(peer: PeerReport, me: BoxFacts) -> list[Finding]:
    box = peer.box
    found = [_ok(box, f"gRPC {peer.address} answers {me.label} in {peer.round_trip_s * 1000:.0f} ms")]
    back = peer.grpc_back
    if back is not None and not back.ok:
        port = back.target.rpartition(":")[2]
        found.append(_fail(me, f"{me.label}'s gRPC port {back.target} not reachable from {box.label} (dialled "
                               f"back): {back.error}",
                           f"on {me.label}, open TCP port {port} to the office LAN in the firewall (e.g. sudo ufw "
                           f"allow {port}/tcp), and listen on 0.0.0.0 or the LAN address"))
    return found


def _clock_findings(peer: PeerReport, me: BoxFacts) -> list[Finding]:
    offset = peer.box.clock_offset_s
    if abs(offset) > CLOCK_WARN_S:
        return [_warn(peer.box, f"clock is {offset:+.1f} s off {me.label}'s",
                      f"turn on time sync on both boxes (sudo timedatectl set-ntp true on {peer.box.label} and "
                      f"{me.label})")]
    return [_ok(peer.box, f"clock offset {offset:+.3f} s from {me.label}")]


def _store_findings(peer: PeerReport, me: BoxFacts) -> list[Finding]:
    box = peer.box
    found = []
    if not box.store_port:
        found.append(_store_listener_failure(box))
    elif peer.store is not None and not peer.store.ok:
        found.append(_fail(box, f"store port {peer.store.target} of {box.label} not reachable from {me.label}: "
                                f"{peer.store.error}", _store_fix(box)))
    if peer.store_back is not None and not peer.store_back.ok:
        found.append(_fail(me, f"{me.label}'s store port {peer.store_back.target} not reachable from {box.label} "
                               f"(dialled back): {peer.store_back.error}", _store_fix(me)))
    if not found and peer.store is not None:
        back = f"; {me.label}'s {peer.store_back.target} from {box.label}" if peer.store_back else ""
        found.append(_ok(box, f"store ports reachable: {box.label}'s {peer.store.target} from {me.label}{back}"))
    return found


def _store_listener_failure(box: BoxFacts) -> Finding:
    return _fail(box, f"could not open a store-range port: {box.listener_error or 'no port returned'}",
                 f"on {box.label}, widen --store-ports or stop what holds ports {_range(box.store_range)}")


def _collective_findings(peer: PeerReport, me: BoxFacts) -> list[Finding]:
    box, theirs, ours = peer.box, peer.box.collective, peer.ours
    theirs_bad, ours_bad = _their_collective(peer, me), _our_collective_back(peer, me)
    if not theirs_bad and not ours_bad:
        return [_ok(box, f"collectives: {box.label}'s {theirs.address} ({theirs.interface or '?'}) reachable from "
                         f"{me.label}, {me.label}'s {ours.address} ({ours.interface or '?'}) from {box.label}")]
    return [*(theirs_bad or [_ok(box, f"collective address {theirs.describe()} of {box.label} reachable from "
                                      f"{me.label}")]),
            *(ours_bad or [_ok(me, f"{me.label}'s collective address {ours.describe()} reachable from "
                                   f"{box.label}")])]


def _their_collective(peer: PeerReport, me: BoxFacts) -> list[Finding]:
    box, theirs = peer.box, peer.box.collective
    if theirs.error:
        return [_fail(box, f"collective address towards {me.label}: {theirs.error}",
                      _collective_fix(box, theirs, me))]
    if not theirs.port:
        return [_fail(box, f"could not listen on its collective address {theirs.address}: "
                           f"{box.listener_error or 'no port returned'}", _collective_fix(box, theirs, me))]
    if peer.collective is not None and not peer.collective.ok:
        return [_fail(box, f"collective address {theirs.describe()} of {box.label} not reachable from "
                           f"{me.label}: {peer.collective.error}", _collective_fix(box, theirs, me))]
    return []


def _our_collective_back(peer: PeerReport, me: BoxFacts) -> list[Finding]:
    box, ours = peer.box, peer.ours
    if ours.error:
        return [_fail(me, f"collective address: {ours.error}", _collective_fix(me, ours, box))]
    if peer.collective_back is not None and not peer.collective_back.ok:
        return [_fail(me, f"{me.label}'s collective address {ours.describe()} not reachable from {box.label} "
                          f"(dialled back): {peer.collective_back.error}", _collective_fix(me, ours, box))]
    return []


def _collective_fix(box: BoxFacts, choice: Collective, other: BoxFacts | None = None) -> str:
    if choice.cause == "setting":
        return (f"on {box.label}, set --collective-interface to the interface on the office LAN (or remove it to "
                "choose automatically)")
    if choice.cause == "environment":
        return (f"on {box.label}, unset GLOO_SOCKET_IFNAME in p2pftd's environment (or set --collective-interface "
                "to the interface on the office LAN)")
    towards = f" from {other.label}" if other is not None else ""
    return (f"on {box.label}, allow inbound TCP{towards} in the firewall (gloo/NCCL use any port) and check the "
            "route (ip route), or set --collective-interface to the interface on the office LAN")


def _rpc_fix(peer: PeerReport, me: BoxFacts) -> str:
    name = peer.box.label
    if peer.rpc_code == "UNIMPLEMENTED":
        return f"install p2pft {me.p2pft} on {name} and restart its p2pftd (it has no Probe)"
    if "TLS handshake" in peer.rpc_error:
        return (f"join {name} to this cluster: on {name}, `p2pft init --force --token-file F` "
                "(F: `p2pft join-token` on the CA box)")
    port = peer.address.rpartition(":")[2] or "47341"
    return (f"on {name}, start p2pftd (sudo systemctl start p2pftd) and open TCP port {port} to the office LAN in "
            f"its firewall (if {name} left for good, restart p2pftd here to forget it)")


def _store_fix(box: BoxFacts) -> str:
    low, high = box.store_range
    if (low, high) == (0, 0):
        return (f"on {box.label}, set --store-ports LOW-HIGH and open that range to the office LAN in the "
                "firewall (any free port is used now)")
    return (f"on {box.label}, open TCP ports {low}-{high} to the office LAN in the firewall (e.g. sudo ufw allow "
            f"{low}:{high}/tcp)")


def _range(ports: tuple[int, int]) -> str:
    return "any free port" if ports == (0, 0) else f"{ports[0]}-{ports[1]}"


def _release(version: str) -> str:
    """'2.4.0+cu121' -> '2.4.0': a CUDA build and a CPU build of one release work together."""
    return version.partition("+")[0]


def join_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _ok(box: BoxFacts, what: str, fix: str = "") -> Finding:
    return Finding("ok", box.label, what, fix, box.node_id)


def _warn(box: BoxFacts, what: str, fix: str) -> Finding:
    return Finding("warn", box.label, what, fix, box.node_id)


def _fail(box: BoxFacts, what: str, fix: str) -> Finding:
    return Finding("fail", box.label, what, fix, box.node_id)


# ---- output ---------------------------------------------------------------------------------------------------
