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
EVENT_MEMORY_BOUND = "memory_bound"    # this box's local rank 0: its bound (null on CPU), where from, how long
KNOWN_EVENTS = frozenset({EVENT_STEP_COMPLETED, EVENT_CHECKPOINT_COMMITTED, EVENT_FINISHED, EVENT_STOPPED_ON_REQUEST,
                          EVENT_MEMORY_BOUND})
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
# The memory bound (p2pft.train.memory_bounds): the box's cache file of bounds (a daemon: <state-dir>/
# MEMORY_BOUNDS_FILE; unset: ~/.cache/p2pft/) and the share of each GPU's memory left free (the daemon's
# gpu_memory_headroom; unset: 10 %).
ENV_MEMORY_BOUNDS = "P2PFT_MEMORY_BOUNDS"
ENV_GPU_MEMORY_HEADROOM = "P2PFT_GPU_MEMORY_HEADROOM"
MEMORY_BOUNDS_FILE = "memory-bounds.json"
