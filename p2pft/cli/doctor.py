"""`p2pft doctor [--json] [--timeout S]`: everything that blocks a multi-box job, seen from this box, each
problem with its fix in one line; exit 1 when something blocks training.

Two halves. `gather` (I/O): the local daemon's status and Probe, then every peer's Probe, where each peer opens
listeners on its collective address and a store-range port (we dial them) and dials back our gRPC port, our
store port and a listener we open on our own collective address. `evaluate` (pure): findings from what was
gathered (a `Survey`), so every verdict is unit-tested without a network. This module is imported by every
`p2pft` command (the parser), so the top level imports nothing heavy.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from p2pft.network.interfaces import Interface
    from p2pft.security.credentials import Credentials

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
        return _join(self.address, self.port) if self.port else self.address

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
        return f"join {name} to this cluster: on {name}, `p2pft init --force --token T` (T from `p2pft join-token`)"
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


def _join(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _ok(box: BoxFacts, what: str, fix: str = "") -> Finding:
    return Finding("ok", box.label, what, fix, box.node_id)


def _warn(box: BoxFacts, what: str, fix: str) -> Finding:
    return Finding("warn", box.label, what, fix, box.node_id)


def _fail(box: BoxFacts, what: str, fix: str) -> Finding:
    return Finding("fail", box.label, what, fix, box.node_id)


# ---- output ---------------------------------------------------------------------------------------------------


def render_text(findings: Sequence[Finding], survey: Survey) -> str:
    width = max((len(f.box) for f in findings), default=0)
    peers = ", ".join(p.box.label for p in survey.peers) or "none"
    lines = [f"p2pft doctor on {survey.me.label} (node {survey.me.node_id}); peers: {peers}"]
    for f in findings:
        mark = {"ok": "ok", "warn": "WARN", "fail": "FAIL"}[f.severity]
        lines.append(f"{mark:<4}  {f.box:<{width}}  {f.what}")
        if f.fix and f.severity != "ok":
            lines.append(f"{'':<4}  {'':<{width}}  fix: {f.fix}")
    s = summary(findings, survey)
    verdict = "something blocks training across boxes" if s["blocks_training"] else "nothing blocks training"
    lines.append(f"{s['ok']} ok, {s['warn']} warning(s), {s['fail']} failure(s): {verdict} (exit {s['exit_code']})")
    return "\n".join(lines)


def render_json(findings: Sequence[Finding], survey: Survey) -> str:
    return json.dumps({"findings": [asdict(f) for f in findings], "summary": summary(findings, survey)}, indent=2)


# ---- gathering (I/O) ------------------------------------------------------------------------------------------


def facts_from_reply(reply: Any, clock_offset_s: float = 0.0) -> BoxFacts:
    """A ProbeReply as BoxFacts."""
    v, c = reply.versions, reply.collective
    return BoxFacts(
        node_id=reply.node_id, name=reply.name, p2pft=v.p2pft, protocol=v.protocol, torch=v.torch, cuda=v.cuda,
        gpus=tuple(d.name for d in reply.devices if d.kind == "cuda"), state_dir=reply.state_dir,
        free_bytes=reply.state_dir_free_bytes, mdns=reply.mdns, static_peers=tuple(reply.static_peers),
        store_range=(reply.store_port_low, reply.store_port_high), store_port=reply.store_port,
        listener_error=reply.listener_error, clock_offset_s=clock_offset_s,
        collective=Collective(setting=c.setting, env=c.env, address=c.address, interface=c.interface, how=c.how,
                              error=c.error, port=reply.collective_port),
    )


def facts_from_status(node: Any) -> BoxFacts:
    """What our daemon's status says of a peer that did not answer its probe."""
    v = node.peer.versions
    return BoxFacts(node_id=node.peer.node_id, name=node.peer.name, p2pft=v.p2pft, protocol=v.protocol,
                    torch=v.torch, cuda=v.cuda, gpus=tuple(d.name for d in node.peer.devices if d.kind == "cuda"))


def clock_offset_s(sent_ns: int, received_ns: int, replied_ns: int, back_ns: int) -> float:
    """NTP's estimate of their clock minus ours, from our send/receive and their arrival/departure times."""
    if not received_ns or not replied_ns:
        return 0.0
    return ((received_ns - sent_ns) + (replied_ns - back_ns)) / 2e9


async def _timed_probe(client: Any, request: Any) -> tuple[Any, float, float]:
    """(reply, their clock offset, round trip without their handling time; the TLS handshake included)."""
    import time

    sent = time.time_ns()
    reply = await client.probe(request)
    back = time.time_ns()
    held = reply.replied_unix_ns - reply.received_unix_ns if reply.received_unix_ns else 0
    offset = clock_offset_s(sent, reply.received_unix_ns, reply.replied_unix_ns, back)
    return reply, offset, max(0, back - sent - held) / 1e9


async def _our_collective(host: str, me: BoxFacts, interfaces: Sequence[Interface]) -> Collective:
    """Our collective address towards `host` (as our daemon would choose it), with a listener on it."""
    from p2pft.daemon.probe import bind_listener, serve_briefly
    from p2pft.network.routes import NoReachableAddress, choose_local_address

    mine = me.collective
    try:
        choice = choose_local_address([host], interfaces, interface_setting=mine.setting, interface_env=mine.env)
    except NoReachableAddress as exc:
        return Collective(setting=mine.setting, env=mine.env, error=str(exc))
    chosen = Collective(setting=mine.setting, env=mine.env, address=choice.address, interface=choice.interface,
                        how=choice.how)
    try:
        port = await serve_briefly(bind_listener(choice.address, [0]), LISTEN_S)
    except OSError as exc:
        return replace(chosen, error=f"cannot listen on {choice.address}: {exc.strerror or exc}")
    return replace(chosen, port=port)


async def _probe_peer(node: Any, me: BoxFacts, our_grpc: str, interfaces: Sequence[Interface],
                      credentials: Credentials, timeout_s: float) -> PeerReport:
    import grpc

    from p2pft.daemon.probe import dial
    from p2pft.network.routes import host_of
    from p2pft.rpc.client import DaemonClient, describe_rpc_error
    from p2pft.rpc.gen import daemon_pb2

    address, lost = node.peer.address, node.state == "lost"
    if not address:
        return PeerReport(facts_from_status(node), "", lost, rpc_error="its address is unknown to this daemon")
    host = host_of(address)
    ours = await _our_collective(host, me, interfaces)
    # What the peer dials back: our gRPC port, our store-range port (":PORT" = the host it sees us come from),
    # and our collective listener.
    back = {"grpc": our_grpc, "store": f":{me.store_port}" if me.store_port else "",
            "collective": ours.endpoint if ours.port else ""}
    back = {k: v for k, v in back.items() if v}
    try:
        async with DaemonClient(address, credentials, timeout_s=timeout_s) as client:
            reply, offset, rtt = await _timed_probe(client, daemon_pb2.ProbeRequest(listen_s=LISTEN_S,
                                                                                     dial=list(back.values())))
    except grpc.RpcError as exc:
        code = exc.code().name if hasattr(exc, "code") and exc.code() else ""
        return PeerReport(facts_from_status(node), address, lost, rpc_error=describe_rpc_error(exc, address),
                          rpc_code=code, ours=ours)
    box = facts_from_reply(reply, offset)
    dialled = {key: Dial(r.target, "" if r.ok else (r.error or "failed")) for key, r in zip(back, reply.dialled,
                                                                                              strict=False)}
    store_target = _join(host, box.store_port) if box.store_port else ""
    coll_target = box.collective.endpoint if box.collective.port else ""
    store, coll = await _dial_optional(dial, store_target), await _dial_optional(dial, coll_target)
    return PeerReport(box, address, lost, round_trip_s=rtt, store=store, collective=coll, grpc_back=dialled.get("grpc"),
                      store_back=dialled.get("store"), collective_back=dialled.get("collective"), ours=ours)


async def _dial_optional(dial: Any, target: str) -> Dial | None:
    if not target:
        return None
    outcome = await dial(target)
    return Dial(outcome.target, outcome.error)


async def gather(local_target: str, credentials: Credentials, timeout_s: float) -> Survey:
    """Ask our daemon who the peers are and what it would do, then probe every peer at once."""
    import asyncio

    from p2pft.network.interfaces import read_interfaces
    from p2pft.rpc.client import DaemonClient
    from p2pft.rpc.gen import daemon_pb2

    async with DaemonClient(local_target, credentials, timeout_s=timeout_s) as local:
        status = await local.status()
        # Our daemon opens its store-range listener for the peers' dial-backs.
        reply, _, _ = await _timed_probe(local, daemon_pb2.ProbeRequest(listen_s=LISTEN_S))
    me = facts_from_reply(reply)
    our_grpc = next((n.peer.address for n in status.nodes if n.is_self), "")
    interfaces = await asyncio.to_thread(read_interfaces)
    others = sorted((n for n in status.nodes if not n.is_self), key=lambda n: (n.peer.name or n.peer.node_id))
    peers = await asyncio.gather(*(_probe_peer(n, me, our_grpc, interfaces, credentials, timeout_s)
                                   for n in others))
    return Survey(me, tuple(peers))


# ---- the command ----------------------------------------------------------------------------------------------


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("doctor", help="check everything that blocks a multi-box job, with fixes")
    p.add_argument("--json", action="store_true", help="machine-readable output: findings and a summary")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, metavar="S",
                   help=f"seconds to wait for each daemon's answer (default {DEFAULT_TIMEOUT_S:g})")
    p.set_defaults(func=handler)


def handler(args: argparse.Namespace) -> int:
    import asyncio
    import os

    from p2pft.cli.connect import state_dir_of
    from p2pft.cli.main import CliError

    if not 0.5 <= args.timeout <= 60:
        raise CliError(f"--timeout {args.timeout:g}: expected seconds between 0.5 and 60")
    # grpc core prints failed TLS handshakes at INFO; the findings say it in one line instead.
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    import grpc

    from p2pft.rpc.client import describe_rpc_error, resolve_daemon_target
    from p2pft.security.credentials import CredentialsError, load_credentials

    state_dir = state_dir_of(args)
    try:
        credentials = load_credentials(state_dir)
    except CredentialsError as exc:
        raise CliError(str(exc)) from None
    target = resolve_daemon_target(getattr(args, "daemon", None), state_dir)
    if not target:
        raise CliError(f"no daemon address: {state_dir}/daemon.addr is missing (is p2pftd running with this state "
                       "dir?); start it (sudo systemctl start p2pftd) or pass --daemon HOST:PORT")
    try:
        survey = asyncio.run(gather(target, credentials, args.timeout))
    except grpc.RpcError as exc:
        message = describe_rpc_error(exc, target)
        if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
            message += "; restart p2pftd so it runs this p2pft release"
        raise CliError(message) from None
    findings = evaluate(survey)
    print(render_json(findings, survey) if args.json else render_text(findings, survey))
    return exit_code(findings)
