"""`p2pft init [--token T] [--force]` and `p2pft join-token`: this box's cluster credentials."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from p2pft.cli.main import CliError


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("init", help="create a new cluster here, or join one with --token")
    p.add_argument("--token", metavar="T", help="join the cluster of this token (from `p2pft join-token`)")
    p.add_argument("--force", action="store_true", help="replace existing credentials (leave the old cluster)")
    p.set_defaults(func=init_handler)
    j = subparsers.add_parser("join-token", help="print a token that lets another box join this cluster")
    j.set_defaults(func=join_token_handler)


def init_handler(args: argparse.Namespace) -> int:
    from p2pft.cli.connect import state_dir_of
    from p2pft.cli.shared_access import share_cli_credentials
    from p2pft.daemon.state_dir import create_state_dir, load_or_create_node_id
    from p2pft.security.credentials import CredentialsError, create_cluster, join_cluster
    from p2pft.security.token import TokenError

    state_dir = state_dir_of(args)
    try:
        create_state_dir(state_dir)   # 0700 when new
        node_id = load_or_create_node_id(state_dir)
        if args.token:
            creds = join_cluster(state_dir, node_id, args.token, force=args.force)
            verb = "joined"
        else:
            creds = create_cluster(state_dir, node_id, force=args.force)
            verb = "created"
        # A service's state dir (0750, install-service) is shared with its group: so are the CLI's credentials.
        group = share_cli_credentials(state_dir)
    except (CredentialsError, TokenError) as exc:
        raise CliError(str(exc)) from None
    except OSError as exc:
        raise CliError(f"--state-dir {state_dir}: {exc.strerror}; pick a writable directory") from None
    print(f"{verb} cluster {creds.cluster_id}; node {creds.node_id}; credentials in {state_dir}/tls")
    if group is not None:
        print(f"members of group {group} can use the p2pft CLI on this box (add one: sudo usermod -aG {group} NAME)")
    if not args.token:
        print("other boxes join with: p2pft init --token \"$(p2pft join-token)\"  (token from this box)")
    return 0


def join_token_handler(args: argparse.Namespace) -> int:
    from p2pft.cli.connect import state_dir_of
    from p2pft.security.credentials import CredentialsError, make_join_token

    state_dir = state_dir_of(args)
    try:
        token = make_join_token(state_dir)
    except CredentialsError as exc:
        raise CliError(str(exc)) from None
    except PermissionError as exc:  # the CA key is the owner's alone, also where the group may use the CLI
        owner = _owner_of(Path(exc.filename)) if exc.filename else "its owner"
        raise CliError(f"cannot read {exc.filename or state_dir} (permission denied): the cluster CA key is its "
                       f"owner's alone; run: sudo -u {owner} p2pft --state-dir {state_dir} join-token") from None
    print("warning: this token holds the cluster CA key; whoever has it can join boxes. Share it privately.",
          file=sys.stderr)
    print(token)
    return 0


def _owner_of(path: Path) -> str:
    import pwd

    try:
        return pwd.getpwuid(path.stat().st_uid).pw_name
    except (OSError, KeyError):
        return "its owner"
