"""`p2pft` entry point: each sub-command lives in its own module under p2pft/cli/.

A command module exposes `register(subparsers) -> None`, which adds its parser and sets
`func=handler` where `handler(args: argparse.Namespace) -> int` returns the exit code.
Modules are imported lazily by name so that `p2pft status` never pays for torch.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
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
    "describe",
    "submit",
    "logs",
    "cancel",
    "drain",
    "undrain",
    "fetch",
    "plot",
    "export",
    "install_service",
)


class CliError(Exception):
    """A user-facing error: printed as one line, exit code 1 (or `code`)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


GLOBAL_FLAGS: tuple[tuple[str, str, str], ...] = (
    ("--daemon", "HOST:PORT", "daemon to talk to (env P2PFT_DAEMON)"),
    ("--state-dir", "DIR", "state dir with credentials (env P2PFT_STATE_DIR)"),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="p2pft", description="Elastic fine-tuning across the office's GPUs.")
    parser.add_argument("--version", action="version", version=f"p2pft {__version__}")
    for flag, metavar, help_text in GLOBAL_FLAGS:
        parser.add_argument(flag, metavar=metavar, help=help_text)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"p2pft.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"p2pft.cli.{name}":
                continue  # command not built yet
            raise
        module.register(sub)
    finish_subcommands(sub)
    return parser


def finish_subcommands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Habits every sub-command shares: global flags after the sub-command too (`p2pft jobs --state-dir D`),
    and its one-line help as the description of its own --help."""
    helps = {action.dest: action.help for action in sub._choices_actions}
    for name, command in sub.choices.items():
        if command.description is None and helps.get(name):
            command.description = helps[name]
        for flag, metavar, help_text in GLOBAL_FLAGS:
            # SUPPRESS: when not given after the sub-command, the value given before it (or None) stays.
            with contextlib.suppress(argparse.ArgumentError):  # a command with its own flag of that name keeps it
                command.add_argument(flag, metavar=metavar, help=help_text, default=argparse.SUPPRESS)


def _quiet_grpc_core() -> None:
    """grpc core prints failed TLS handshakes at INFO unless GRPC_VERBOSITY says otherwise, and reads it once, when
    grpc is first imported (registration imports every command module): import it here with the variable set,
    then put the environment back, so processes the CLI starts (daemons, workers) keep their own logging."""
    if "grpc" in sys.modules or "GRPC_VERBOSITY" in os.environ:
        return
    os.environ["GRPC_VERBOSITY"] = "ERROR"
    try:
        import grpc  # noqa: F401
    finally:
        del os.environ["GRPC_VERBOSITY"]


def main(argv: Sequence[str] | None = None) -> int:
    _quiet_grpc_core()
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "func", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        code = int(handler(args) or 0)
        # Flush here, not at exit: a reader gone by then (`p2pft jobs | head`) would be an "Exception ignored" at
        # shutdown, out of reach of the BrokenPipeError below.
        sys.stdout.flush()
        return code
    except CliError as exc:
        print(f"p2pft: error: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `p2pft logs JOB | head`: the reader left. No traceback; stdout goes nowhere so the exit flush is quiet.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141  # what a shell reports for a writer ended by SIGPIPE


if __name__ == "__main__":
    # Run through the package module so CliError is the same class the commands raise.
    from p2pft.cli.main import main as package_main

    sys.exit(package_main())
