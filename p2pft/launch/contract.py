"""The contract between the daemon (torch-free) and the worker it starts: files, exit codes, event names,
environment variables. Both sides import these names from here; docs/interfaces.md explains each one.
"""

from __future__ import annotations

# <run-dir>/stop-request: the daemon asks the round to checkpoint at the next step boundary and stop.
STOP_REQUEST_FILE = "stop-request"
# The worker's exit after a stop request, once its checkpoint is committed (torchrun reports it as 1).
EXIT_STOPPED_ON_REQUEST = 75
# <run-dir>/events.jsonl: one JSON object per line, appended by local rank 0 (p2pft.launch.events reads it).
EVENTS_FILE = "events.jsonl"
EVENT_STEP_COMPLETED = "step_completed"
EVENT_CHECKPOINT_COMMITTED = "checkpoint_committed"
EVENT_FINISHED = "finished"
EVENT_STOPPED_ON_REQUEST = "stopped_on_request"
KNOWN_EVENTS = frozenset({EVENT_STEP_COMPLETED, EVENT_CHECKPOINT_COMMITTED, EVENT_FINISHED, EVENT_STOPPED_ON_REQUEST})
# <run-dir>/errors/rank-<RANK>.json: a failing worker's last error (p2pft.launch.worker_error).
ERRORS_DIR = "errors"
# Environment the daemon sets for every worker of a round (p2pft.launch.round_spec).
ENV_NODE_ID = "P2PFT_NODE_ID"          # the worker finds its plan entries by node id, never by rank
ENV_JOB_ID = "P2PFT_JOB_ID"
ENV_ROUND = "P2PFT_ROUND"
ENV_RUN_DIR = "P2PFT_RUN_DIR"
ENV_CHECKPOINT_DIR = "P2PFT_CHECKPOINT_DIR"
# "1": the daemon prunes old checkpoint steps from every box's verified holdings (p2pft.jobs.durability); the
# worker must not delete steps itself. Unset (`p2pft run`, a worker started by hand): the worker prunes.
ENV_DAEMON_PRUNES = "P2PFT_DAEMON_PRUNES"
