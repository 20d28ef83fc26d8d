"""Journal-friendly logging to stderr.

Under systemd (JOURNAL_STREAM set) lines carry no timestamp (the journal stamps them) and start with the
syslog priority `<N>`, which journald turns into the entry's priority, so `journalctl -p warning` works.
"""

from __future__ import annotations

import logging
import sys

from p2pft.daemon.systemd import under_journal

_SYSLOG_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


class JournalFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        priority = _SYSLOG_PRIORITY.get(record.levelno, 6)
        return f"<{priority}>" + super().format(record)


def setup_logging(level: str, name: str) -> None:
    fmt = f"%(levelname)s {name} %(name)s: %(message)s"
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JournalFormatter(fmt) if under_journal() else logging.Formatter("%(asctime)s " + fmt))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # grpc's Python layer logs every event-loop lookup at DEBUG; keep our DEBUG readable.
    for noisy in ("grpc", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.INFO)


def set_level(level: str) -> None:
    logging.getLogger().setLevel(level)
