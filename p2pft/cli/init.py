"""`p2pft init [--token-file F | --token -|T] [--force]`, `p2pft join-token` and `p2pft revoke`: this box's
cluster credentials.

A token is read from a file, stdin or P2PFT_JOIN_TOKEN so that it never sits in argv (`ps`, shell history);
`--token T` still works and says so on stderr.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

from p2pft.cli.main import CliError

TOKEN_ENV = "P2PFT_JOIN_TOKEN"
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd]?)")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("init", help="create a new cluster here, or join one with a token")
    p.add_argument("--token-file", metavar="F",
                   help="join the cluster of the token in file F (from `p2pft join-token`)")
    p.add_argument("--token", metavar="T", help=f"the token itself, or - to read it from stdin (env {TOKEN_ENV}); "
                                               "prefer --token-file or -: an argument lands in `ps` and shell history")
    p.add_argument("--force", action="store_true", help="replace existing credentials (leave the old cluster)")
    p.set_defaults(func=init_handler)
    j = subparsers.add_parser("join-token", help="print a token that lets another box join this cluster "
                                                 "(on the box that holds the cluster CA key)")
    j.add_argument("--ttl", default="24h", metavar="DURATION", help="how long it may be used: 90m, 24h, 7d "
                                                                   "(default 24h, at most 30d)")
    j.add_argument("--uses", type=int, default=1, metavar="N", help="how many boxes may join with it (default 1)")
    j.add_argument("--address", action="append", default=[], metavar="HOST[:PORT]",
                   help="where joining boxes reach this box's join listener (repeatable; default: this box's LAN "
                        "addresses and the port in <state-dir>/join.addr)")
    j.set_defaults(func=join_token_handler)
    r = subparsers.add_parser("revoke", help="stop accepting a node's certificate anywhere in the cluster "
                                             "(on the box that holds the cluster CA key)")
    r.add_argument("node", metavar="NODE", help="node id (see `p2pft peers --json`)")
    r.set_defaults(func=revoke_handler)


def read_token(args: argparse.Namespace) -> str | None:
    """The token from --token-file, --token - (stdin), --token T (with a warning) or P2PFT_JOIN_TOKEN."""
    if args.token_file and args.token:
        raise CliError("give the token once: --token-file F or --token -, not both")
    if args.token_file:
        try:
            text = Path(args.token_file).expanduser().read_text()
        except OSError as exc:
            raise CliError(f"--token-file {args.token_file}: {exc.strerror}; write the output of "
                           "`p2pft join-token` into it") from None
    elif args.token == "-":
        text = sys.stdin.read()
    elif args.token:
        print("warning: --token T puts the token in `ps` output and your shell history; prefer --token-file F, "
              f"--token - (stdin) or {TOKEN_ENV}", file=sys.stderr)
        text = args.token
    else:
        text = os.environ.get(TOKEN_ENV, "")
    text = text.strip()
    if (args.token_file or args.token) and not text:
        raise CliError("the join token is empty: copy the whole output of `p2pft join-token`")
    return text or None


def init_handler(args: argparse.Namespace) -> int:
    from p2pft.cli.connect import state_dir_of
    from p2pft.cli.shared_access import share_cli_credentials
    from p2pft.daemon.state_dir import create_state_dir, load_or_create_node_id, write_node_id
    from p2pft.security.credentials import CredentialsError, create_cluster, join_cluster
    from p2pft.security.enrol import JoinError
    from p2pft.security.token import TokenError

    state_dir = state_dir_of(args)
    token = read_token(args)
    try:
        create_state_dir(state_dir)   # 0700 when new
        node_id = load_or_create_node_id(state_dir)
        if token:
            creds = join_cluster(state_dir, node_id, token, force=args.force)
            verb = "joined"
            if creds.node_id != node_id:   # the CA box granted another id (ours was taken): follow it
                write_node_id(state_dir, creds.node_id)
        else:
            creds = create_cluster(state_dir, node_id, force=args.force)
            verb = "created"
        # A service's state dir (0750, install-service) is shared with its group: so are the CLI's credentials.
        group = share_cli_credentials(state_dir)
    except (CredentialsError, TokenError, JoinError) as exc:
        raise CliError(str(exc)) from None
    except OSError as exc:
        raise CliError(f"--state-dir {state_dir}: {exc.strerror}; pick a writable directory") from None
    print(f"{verb} cluster {creds.cluster_id}; node {creds.node_id}; credentials in {state_dir}/tls")
    if group is not None:
        print(f"members of group {group} can use the p2pft CLI on this box (add one: sudo usermod -aG {group} NAME)")
    if not token:
        print("this box holds the cluster CA key: start p2pftd here, then `p2pft join-token > token` and on each "
              "other box `p2pft init --token-file token`")
    return 0


def parse_duration(text: str) -> float:
    match = _DURATION.fullmatch(text.strip().lower())
    if not match:
        raise CliError(f"--ttl {text!r}: expected a duration such as 90m, 24h or 7d")
    return float(match.group(1)) * _UNITS[match.group(2)]


def join_token_handler(args: argparse.Namespace) -> int:
    from p2pft.cli.connect import state_dir_of
    from p2pft.security.credentials import CredentialsError, make_join_token, tls_dir
    from p2pft.security.enrolment import CA_KEY, EnrolmentRefused, holds_ca_key

    state_dir = state_dir_of(args)
    ttl_s = parse_duration(args.ttl)
    key = tls_dir(state_dir) / CA_KEY
    if not holds_ca_key(state_dir):
        if not (tls_dir(state_dir) / "node.crt").exists():
            raise CliError(f"no cluster credentials in {tls_dir(state_dir)}: run `p2pft --state-dir {state_dir} init` "
                           "first (a new cluster)")
        raise CliError("this box does not hold the cluster CA key, so it cannot issue join tokens: run "
                       "`p2pft join-token` on the box that does (the one that ran `p2pft init`)")
    if not os.access(key, os.R_OK):  # the CA key is the owner's alone, also where the group may use the CLI
        owner = _owner_of(key)
        raise CliError(f"cannot read {key} (permission denied): the cluster CA key is its owner's alone; run: "
                       f"sudo -u {owner} p2pft --state-dir {state_dir} join-token")
    addresses = _join_addresses(state_dir, args.address)
    try:
        token = make_join_token(state_dir, addresses, ttl_s=ttl_s, uses=args.uses)
    except (CredentialsError, EnrolmentRefused) as exc:
        raise CliError(str(exc)) from None
    except ValueError as exc:
        raise CliError(str(exc)) from None
    except PermissionError as exc:
        raise CliError(f"cannot write {exc.filename or tls_dir(state_dir)} (permission denied): run join-token as "
                       f"{_owner_of(key)}") from None
    uses = "once" if args.uses == 1 else f"{args.uses} times"
    print(f"token for {len(addresses)} address(es) {', '.join(addresses)}; good {uses} within {args.ttl}; "
          "share it privately (a file, not a chat); the joining box runs: p2pft init --token-file FILE",
          file=sys.stderr)
    print(token)
    return 0


def _join_addresses(state_dir: Path, given: list[str]) -> tuple[str, ...]:
    """--address values (default port 47340), else this box's join listener: its host, or every LAN address
    when it listens on all interfaces."""
    from p2pft.daemon.join_listener import read_join_addr
    from p2pft.daemon.settings import DEFAULT_JOIN_PORT
    from p2pft.network.addresses import join, split

    if given:
        out = []
        for item in given:
            parts = split(item)
            out.append(join(parts[0], parts[1]) if parts else join(item.strip("[]"), DEFAULT_JOIN_PORT))
        return tuple(out)
    bound = read_join_addr(state_dir)
    parts = split(bound) if bound else None
    if parts is None:
        raise CliError(f"no join listener runs for {state_dir}: start p2pftd on this box (`p2pftd --state-dir "
                       f"{state_dir}`, or `sudo systemctl start p2pftd`), then run join-token again")
    host, port = parts
    if host not in ("0.0.0.0", "::", ""):
        return (join(host, port),)
    from p2pft.network.interfaces import lan_addresses

    hosts = lan_addresses() or ["127.0.0.1"]
    return tuple(join(h, port) for h in hosts)


def revoke_handler(args: argparse.Namespace) -> int:
    from p2pft.cli.connect import state_dir_of
    from p2pft.security.credentials import CredentialsError, load_credentials, tls_dir
    from p2pft.security.enrolment import CA_KEY, NODE_ID, holds_ca_key, issued_nodes
    from p2pft.security.revocation import revoke

    state_dir = state_dir_of(args)
    node = args.node.strip()
    if not NODE_ID.fullmatch(node):
        raise CliError(f"{node!r} is not a node id: see `p2pft peers --json` for them")
    try:
        me = load_credentials(state_dir)
    except CredentialsError as exc:
        raise CliError(str(exc)) from None
    key = tls_dir(state_dir) / CA_KEY
    if not holds_ca_key(state_dir):
        raise CliError("this box does not hold the cluster CA key, so it cannot revoke: run `p2pft revoke` on the "
                       "box that does (the one that ran `p2pft init`)")
    if not os.access(key, os.R_OK):
        raise CliError(f"cannot read {key} (permission denied): run: sudo -u {_owner_of(key)} p2pft --state-dir "
                       f"{state_dir} revoke {node}")
    if node == me.node_id:
        raise CliError(f"{node} is this box, the one holding the CA key: to retire it, move the CA key first "
                       "(docs/daemon.md, 'Security choices')")
    known = node in issued_nodes(state_dir)
    signed = revoke(state_dir, node)
    print(f"revoked node {node} (revocation list v{signed.version}, {len(signed.nodes)} node(s)); the daemons "
          "refuse its calls once the list reaches them (this box's daemon within seconds, the others with the next "
          "heartbeats)")
    if not known:
        print(f"note: this box never signed a certificate for {node} (a typo, or a box joined elsewhere)",
              file=sys.stderr)
    return 0


def _owner_of(path: Path) -> str:
    import pwd

    try:
        return pwd.getpwuid(path.stat().st_uid).pw_name
    except (OSError, KeyError):
        return "its owner"
