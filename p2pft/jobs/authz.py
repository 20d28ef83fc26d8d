"""Who may call what on JobService: pure decisions on the caller's certificate identity (CN = node id).

Every function returns None when the call is allowed, else one line saying why not (the PERMISSION_DENIED
message). "The local CLI" (the operator role) is a call on the daemon's Unix socket (LOCAL_OPERATOR,
p2pft/rpc/caller.py), or one with this box's own node certificate (an older CLI, `--daemon HOST:PORT`: whoever
holds node.key is this box anyway); a peer daemon is any other CN the cluster CA signed. The local operator is no
node: it sends no reports, orders, stops or shared records.
"""

from __future__ import annotations

from p2pft.jobs.model import JobRecord, MemberReport, RoundOrder
from p2pft.rpc.caller import LOCAL_OPERATOR

# Calls only this box's own user makes (the CLI, `p2pft top`, the demo): never a peer daemon.
LOCAL_ONLY = frozenset({"Submit", "ListJobs", "WatchJob", "Logs", "Drain", "Undrain", "Fetch"})


def is_operator(caller: str, self_id: str) -> bool:
    """This box's own CLI: the Unix socket, or this box's own certificate."""
    return caller in (LOCAL_OPERATOR, self_id)


def job_nodes(record: JobRecord) -> frozenset[str]:
    """The boxes that belong to a job: its submitter, its coordinator and every member of any of its rounds."""
    nodes = {record.submitter, record.coordinator}
    for info in record.rounds:
        nodes.update(info.members)
    return frozenset(n for n in nodes if n)


def sees_rendezvous(caller: str, record: JobRecord, self_id: str) -> bool:
    """Whether a GetRecord caller may read the rounds' rendezvous keys: this box's CLI and the boxes of the job.
    Any member may read a record (records are refreshed from every box), but the key lets whoever holds it into
    the round's unauthenticated store, so a box outside the job gets the record without it."""
    return is_operator(caller, self_id) or caller in job_nodes(record)


def _short(node: str) -> str:
    return repr(node[:40])


def local_only(method: str, caller: str, self_id: str) -> str | None:
    if is_operator(caller, self_id):
        return None
    return f"{method} is only for this box's own CLI; node {_short(caller)} is a peer"


def may_report(caller: str, report: MemberReport, known: JobRecord | None, self_id: str) -> str | None:
    """A report only for the caller's own node; on the job's coordinator, only from a box of the job (the
    coordinator writes every round into its record before it sends the orders, so members are always known)."""
    if report.node_id != caller:
        return f"report for node {_short(report.node_id)} sent by node {_short(caller)}: a box reports only for itself"
    if known is not None and known.coordinator == self_id and caller not in job_nodes(known):
        return f"report from node {_short(caller)}, which is no box of job {known.job_id}"
    return None


def _term_check(what: str, caller: str, record: JobRecord, known: JobRecord | None) -> str | None:
    if known is None:
        return None
    if record.term < known.term:
        return (f"{what} of job {known.job_id} from node {_short(caller)} has term {record.term}, "
                f"older than {known.term}")
    if record.term == known.term and record.coordinator != known.coordinator:
        return (f"{what} of job {known.job_id} names coordinator {_short(record.coordinator)} for term {record.term}, "
                f"which is {_short(known.coordinator)}'s")
    return None


def may_order(caller: str, order: RoundOrder, known: JobRecord | None) -> str | None:
    """A round order only from the coordinator its record names, never with an older term than the one known,
    and never naming another coordinator for the term already known."""
    if order.record.coordinator != caller:
        return (f"round order of job {order.record.job_id} sent by node {_short(caller)}, but its record names "
                f"coordinator {_short(order.record.coordinator)}")
    return _term_check("round order", caller, order.record, known)


def may_stop(caller: str, job_id: str, known: JobRecord | None, chosen_coordinator: str | None) -> str | None:
    """A stop only from the job's coordinator: the one the known record names, or the one this box's view of
    the membership would choose (a coordinator that just took over may stop a box before its new record comes)."""
    if known is None:
        return f"stop of job {job_id[:80]!r}, which this box does not know"
    if caller in (known.coordinator, chosen_coordinator):
        return None
    return f"stop of job {known.job_id} sent by node {_short(caller)}, which does not coordinate it"


def may_share(caller: str, record: JobRecord, known: JobRecord | None, self_id: str) -> str | None:
    """A shared record only from its coordinator or a box of the job (as this box knew it, when it did), only to
    a box of the job, and never lowering the term."""
    nodes = job_nodes(known) if known is not None else job_nodes(record)
    if caller != record.coordinator and caller not in nodes:
        return f"record of job {record.job_id} shared by node {_short(caller)}, which is no box of the job"
    if self_id not in job_nodes(record) and (known is None or self_id not in job_nodes(known)):
        return f"record of job {record.job_id} shared with this box, which is no box of the job"
    return _term_check("shared record", caller, record, known)


def may_cancel(caller: str, self_id: str, known: JobRecord | None) -> str | None:
    """Cancel: this box's CLI, or a box of the job (a member's CLI, forwarded to the coordinator)."""
    if is_operator(caller, self_id):
        return None
    if known is not None and caller in job_nodes(known):
        return None
    return f"cancel sent by node {_short(caller)}, which is no box of this job"


def may_read_logs(caller: str, self_id: str, worker: str, known: JobRecord | None) -> str | None:
    """Logs: this box's CLI, or a box of the job relaying `p2pft logs --worker` for this box's own agent log."""
    if is_operator(caller, self_id):
        return None
    if worker == self_id and known is not None and caller in job_nodes(known):
        return None
    return local_only("Logs", caller, self_id)
