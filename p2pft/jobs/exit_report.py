"""What a member says about its agent's failed exit: the sentence and the cause, as a pure decision.

The worker's own record (p2pft.launch.worker_error) is the best witness; a network explanation
(p2pft.network.diagnosis) beats a worker error that is only the echo of a lost connection; "agent exit N" is
what is left when nobody said more. Every sentence starts with the box's name: the user reads it on another box.
"""

from __future__ import annotations

from p2pft.launch.worker_error import WorkerError, describe_error

DETERMINISTIC = "deterministic"   # MemberReport.cause: a retry cannot succeed, fail the job at once
NETWORK = "network"
UNFIT = "unfit"                   # this box cannot take part (its GPU holds not one row): the others can go on
# Worker errors about the box itself, not the job: deterministic on that box, yet another box may do.
BOX_ONLY_TYPES = frozenset({"MemoryBoundError"})


def failed_exit(box: str, returncode: int, worker_error: WorkerError | None,
                network: str | None) -> tuple[str, str]:
    """(detail, cause) for a failed exit the daemon did not cause itself."""
    if worker_error is not None and worker_error.type in BOX_ONLY_TYPES:
        return f"{box}: {describe_error(worker_error)}", UNFIT
    if worker_error is not None and worker_error.deterministic:
        return f"{box}: {describe_error(worker_error)}", DETERMINISTIC
    if network:
        return network, NETWORK
    if worker_error is not None:
        return f"{box}: {describe_error(worker_error)}", ""
    return f"{box}: agent exit {returncode}", ""
