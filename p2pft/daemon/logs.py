"""Journal-friendly logging to stderr: no timestamps under systemd (the journal stamps lines itself)."""

from __future__ import annotations

import logging
import sys

from p2pft.daemon.systemd import under_journal


def setup_logging(level: str, name: str) -> None:
    fmt = f"%(levelname)s {name} %(name)s: %(message)s"
    if not under_journal():
        fmt = "%(asctime)s " + fmt
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(fmt))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # grpc's Python layer logs every event-loop lookup at DEBUG; keep our DEBUG readable.
    for noisy in ("grpc", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.INFO)


def set_level(level: str) -> None:
    logging.getLogger().setLevel(level)
