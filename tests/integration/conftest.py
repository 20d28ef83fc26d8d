"""Fixtures the integration tests share."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.daemon_harness import DaemonPool


@pytest.fixture
def pool() -> Iterator[DaemonPool]:
    """Real daemons started through it are all stopped at the test's end, whatever happened."""
    pool = DaemonPool()
    try:
        yield pool
    finally:
        pool.stop_all()
