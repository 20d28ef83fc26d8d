"""`p2pftd`: parse settings, load credentials, run the node until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

from p2pft.daemon.settings import SettingsError, parse_settings


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        settings = parse_settings(args)
    except SettingsError as exc:
        print(f"p2pftd: error: {exc}", file=sys.stderr)
        return 2
    from p2pft.daemon.logs import setup_logging
    from p2pft.daemon.node import Node
    from p2pft.daemon.state_dir import read_node_id
    from p2pft.security.credentials import CredentialsError, load_credentials

    setup_logging(settings.log_level, settings.name)
    try:
        credentials = load_credentials(settings.state_dir)
    except CredentialsError as exc:
        print(f"p2pftd: error: {exc}", file=sys.stderr)
        return 2
    on_disk = read_node_id(settings.state_dir)
    if on_disk and on_disk != credentials.node_id:
        print(f"p2pftd: error: {settings.state_dir}/node_id says {on_disk} but the node certificate is for "
              f"{credentials.node_id}: run `p2pft init --force` to make them agree", file=sys.stderr)
        return 2
    node = Node(settings, credentials, reload_settings=lambda: parse_settings(args))
    try:
        return asyncio.run(node.run())
    except OSError as exc:
        print(f"p2pftd: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
