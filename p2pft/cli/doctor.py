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
from collections.abc import Sequence
from dataclasses import asdict, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from p2pft.network.interfaces import Interface
    from p2pft.security.credentials import Credentials

from p2pft.cli.doctor_checks import (
    DEFAULT_TIMEOUT_S,
    LISTEN_S,
    BoxFacts,
    Collective,
    Dial,
    Finding,
    PeerReport,
    Survey,
    evaluate,
    exit_code,
    join_address,
    summary,
)

# The CLI of the state dir's group talks to its daemon on the local socket; dialling a peer needs this box's key.
NOT_PROBED = ("peers are probed with this box's certificate, and tls/node.key is readable by the daemon's user "
              "only")


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
                      credentials: Credentials | None, timeout_s: float) -> PeerReport:
    import grpc

    from p2pft.daemon.probe import dial
    from p2pft.network.routes import host_of
    from p2pft.rpc.client import DaemonClient, describe_rpc_error
    from p2pft.rpc.gen import daemon_pb2

    address, lost = node.peer.address, node.state in ("lost", "left")  # a box stopped cleanly blocks nothing either
    if not address:
        return PeerReport(facts_from_status(node), "", lost, rpc_error="its address is unknown to this daemon")
    if credentials is None:
        return PeerReport(facts_from_status(node), address, lost, not_probed=NOT_PROBED)
    host = host_of(address)
    ours = await _our_collective(host, me, interfaces)
    # What the peer dials back: our gRPC port, our store-range port (":PORT" = the host it sees us come from),
    # and our collective listener.
    back = {"grpc": our_grpc, "store": f":{me.store_port}" if me.store_port else "",
            "collective": ours.endpoint if ours.port else ""}
    back = {k: v for k, v in back.items() if v}
    try:
        # Expecting the node's own certificate: a box answering at a member's address under another identity shows.
        async with DaemonClient(address, credentials, timeout_s=timeout_s, node_id=node.peer.node_id or None) as client:
            reply, offset, rtt = await _timed_probe(client, daemon_pb2.ProbeRequest(listen_s=LISTEN_S,
                                                                                     dial=list(back.values())))
    except grpc.RpcError as exc:
        code = exc.code().name if hasattr(exc, "code") and exc.code() else ""
        return PeerReport(facts_from_status(node), address, lost, rpc_error=describe_rpc_error(exc, address),
                          rpc_code=code, ours=ours)
    box = facts_from_reply(reply, offset)
    dialled = {key: Dial(r.target, "" if r.ok else (r.error or "failed")) for key, r in zip(back, reply.dialled,
                                                                                              strict=False)}
    store_target = join_address(host, box.store_port) if box.store_port else ""
    coll_target = box.collective.endpoint if box.collective.port else ""
    store, coll = await _dial_optional(dial, store_target), await _dial_optional(dial, coll_target)
    return PeerReport(box, address, lost, round_trip_s=rtt, store=store, collective=coll, grpc_back=dialled.get("grpc"),
                      store_back=dialled.get("store"), collective_back=dialled.get("collective"), ours=ours)


async def _dial_optional(dial: Any, target: str) -> Dial | None:
    if not target:
        return None
    outcome = await dial(target)
    return Dial(outcome.target, outcome.error)


async def gather(local_target: str, credentials: Credentials | None, timeout_s: float) -> Survey:
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


def _readable_credentials(args: argparse.Namespace) -> Credentials | None:
    from p2pft.cli.connect import client_state_dir
    from p2pft.security.credentials import CredentialsError, load_credentials

    try:
        return load_credentials(client_state_dir(args))
    except (CredentialsError, OSError):
        return None


def handler(args: argparse.Namespace) -> int:
    import asyncio
    import os

    from p2pft.cli.connect import daemon_target
    from p2pft.cli.main import CliError

    if not 0.5 <= args.timeout <= 60:
        raise CliError(f"--timeout {args.timeout:g}: expected seconds between 0.5 and 60")
    # grpc core prints failed TLS handshakes at INFO; the findings say it in one line instead.
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    import grpc

    from p2pft.rpc.client import describe_rpc_error

    target, credentials = daemon_target(args)
    if credentials is None:   # the local socket: the peers are probed with this box's certificate, if we may read it
        credentials = _readable_credentials(args)
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
