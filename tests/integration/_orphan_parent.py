"""A stand-in daemon for tests/integration/test_no_orphans.py: starts, through the daemon's own code, the warm
zygote (ZygoteKeeper), a job's rendezvous store (StoreProcess) and a cold agent (AgentProcess) whose "torchrun"
starts a real `python -m p2pft.train` worker in a session of its own, as torchrun does. It writes their pids to
a JSON file once all of them run, then waits to be killed.

`python tests/integration/_orphan_parent.py STATE_DIR PIDS_FILE`
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from pathlib import Path

from p2pft.launch.agent import AgentProcess
from p2pft.launch.zygote import ZygoteKeeper

try:
    from p2pft.jobs.store_process import StoreProcess
except ImportError:  # before jobs/coordinator.py was split
    from p2pft.jobs.coordinator import StoreProcess  # type: ignore[attr-defined,no-redef]

# The agent's stand-in: start the worker as torchrun does (own session, torchrun's variables), report its pid,
# then wait. The worker blocks reading its job file (a FIFO nobody writes), after its imports.
AGENT_CODE = """
import os, subprocess, sys, time
job, run_dir, pid_file = sys.argv[1:4]
env = {**os.environ, "RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
       "MASTER_PORT": "29999", "P2PFT_NODE_ID": "n1", "P2PFT_RUN_DIR": run_dir}
worker = subprocess.Popen([sys.executable, "-m", "p2pft.train", "--job", job, "--plan", job, "--run-dir", run_dir],
                          env=env, start_new_session=True)
with open(pid_file + ".tmp", "w") as out:
    out.write(str(worker.pid))
os.replace(pid_file + ".tmp", pid_file)
time.sleep(600)
"""


async def main(state_dir: Path, pids_file: Path) -> None:
    keeper = ZygoteKeeper(state_dir)
    keeper_task = asyncio.create_task(keeper.run())
    store = StoreProcess("127.0.0.1", state_dir / "jobs" / "j1" / "store")
    run_dir = state_dir / "jobs" / "j1" / "rounds" / "0"
    run_dir.mkdir(parents=True)
    fifo = run_dir / "job.fifo"
    os.mkfifo(fifo)
    worker_pid_file = run_dir / "worker.pid"
    agent = AgentProcess([sys.executable, "-c", AGENT_CODE, str(fifo), str(run_dir), str(worker_pid_file)],
                         {"P2PFT_RUN_DIR": str(run_dir)}, log_file=run_dir / "agent.log")
    await agent.start()
    await store.start()
    socket_path = await keeper.ready_socket(timeout_s=120.0)
    while not worker_pid_file.exists():
        await asyncio.sleep(0.05)
    worker_pid = int(worker_pid_file.read_text())
    # Past its imports (torch is mapped), so long past the start where it arms its parent-death signal.
    while "libtorch" not in _maps(worker_pid):
        await asyncio.sleep(0.1)
    assert socket_path is not None and keeper.process is not None and store.process is not None
    pids_file.write_text(json.dumps({"zygote": keeper.process.pid, "store": store.process.pid,
                                     "agent": agent.pid, "worker": worker_pid}))
    await asyncio.sleep(600)
    keeper_task.cancel()


def _maps(pid: int) -> str:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/maps").read_text()
    return ""


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), Path(sys.argv[2])))
