"""`p2pft` entry point: each sub-command lives in its own module under p2pft/cli/.

A command module exposes `register(subparsers) -> None`, which adds its parser and sets
`func=handler` where `handler(args: argparse.Namespace) -> int` returns the exit code.
Modules are imported lazily by name so that `p2pft status` never pays for torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from p2pft import __version__

# Order is the order shown in `p2pft --help`. Each name is a module in p2pft.cli.
COMMAND_MODULES: tuple[str, ...] = (
    "validate",
    "run",
    "demo",
    "eval",
    "init",
    "peers",
    "status",
    "top",
    "doctor",
    "jobs",
    "submit",
    "logs",
    "cancel",
    "drain",
    "fetch",
    "install_service",
)


class CliError(Exception):
    """A user-facing error: printed as one line, exit code 1 (or `code`)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="p2pft", description="Elastic fine-tuning across the office's GPUs.")
    parser.add_argument("--version", action="version", version=f"p2pft {__version__}")
    parser.add_argument("--daemon", metavar="HOST:PORT", help="daemon to talk to (env P2PFT_DAEMON)")
    parser.add_argument("--state-dir", metavar="DIR", help="state dir with credentials (env P2PFT_STATE_DIR)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"p2pft.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"p2pft.cli.{name}":
                continue  # command not built yet
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "func", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        return int(handler(args) or 0)
    except CliError as exc:
        print(f"p2pft: error: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    # Run through the package module so CliError is the same class the commands raise.
    from p2pft.cli.main import main as package_main

    sys.exit(package_main())
