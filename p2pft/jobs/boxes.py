"""Pure look-ups behind the CLI's kubectl-like habits: a box by name or id, a job by a unique id prefix."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from p2pft.jobs.model import JobRecord


class AmbiguousError(LookupError):
    """A prefix that matches more than one thing; the message lists them."""


def resolve_box(wanted: str, names: Mapping[str, str], members: Mapping[str, Any]) -> str | None:
    """node id of `wanted`: a box name, a node id, or a unique node-id prefix (names win: people type them)."""
    by_name = [node for node, name in names.items() if name == wanted]
    if len(by_name) == 1:
        return by_name[0]
    if wanted in members:
        return wanted
    by_prefix = [node for node in members if node.startswith(wanted)]
    return by_prefix[0] if len(by_prefix) == 1 else None


def newest_round_of(record: JobRecord, node_id: str) -> int | None:
    """The newest round `node_id` took part in."""
    for info in reversed(record.rounds):
        if node_id in info.members:
            return info.round
    return None


def resolve_job_id(wanted: str, known: Iterable[str]) -> str | None:
    """The job id `wanted` names: itself, or the one known id it is a prefix of (also without `job-`).
    None when nothing matches; AmbiguousError when several do."""
    ids = sorted(set(known))
    if wanted in ids:
        return wanted
    matches = [j for j in ids if j.startswith(wanted) or j.startswith(f"job-{wanted}")]
    if len(matches) > 1:
        shown = ", ".join(matches[:5]) + (" ..." if len(matches) > 5 else "")
        raise AmbiguousError(f"job id prefix {wanted!r} matches {len(matches)} jobs: {shown}")
    return matches[0] if matches else None
