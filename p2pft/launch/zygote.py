"""The daemon's side of warm starts (torch-free): keep this box's zygote process running, and turn a round's
agent command into its warm form. See docs/warm-start.md.

Warm form of a round: the torchrun agent is `python -m p2pft.train.warm_shim --warm-target=torch.distributed.run
...` and its workers are `-m p2pft.train.warm_shim`; each shim asks the zygote (`p2pft.train.zygote`, which has
imported torch, transformers, peft and the worker) to fork the real process, and falls back to the cold command
by itself when the zygote is absent or fails. So a warm round is never less correct than a cold one.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from p2pft.launch.agent import AgentProcess
from p2pft.launch.round_spec import RoundLaunch, build_agent_command

log = logging.getLogger("p2pft.launch.zygote")
SHIM_MODULE = "p2pft.train.warm_shim"
AGENT_MODULE = "torch.distributed.run"
SOCKET_ENV = "P2PFT_ZYGOTE_SOCKET"
TARGET_ENV = "P2PFT_WARM_TARGET"
MAX_SOCKET_PATH = 100  # sun_path holds 108 bytes; keep a margin for the zygote's staging name
RESTART_BACKOFF_S = (1.0, 5.0, 30.0)
STARTING_WAIT_S = 30.0
DEMAND_POLL_S = 0.05


def zygote_socket_path(state_dir: Path) -> Path:
    """`<state>/run/zygote.sock`, or a short path in a private /tmp folder when that is too long for AF_UNIX."""
    preferred = Path(state_dir).resolve() / "run" / "zygote.sock"
    if len(str(preferred)) <= MAX_SOCKET_PATH:
        return preferred
    digest = hashlib.sha256(str(preferred).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"p2pft-{os.getuid()}" / f"z-{digest}.sock"


def warm_round_command(launch: RoundLaunch, socket_path: str | Path) -> tuple[list[str], dict[str, str]]:
    """The round's agent argv/env with the agent and every worker started through the zygote."""
    argv, env = build_agent_command(replace(launch, worker_module=SHIM_MODULE))
    agent_at = argv.index(AGENT_MODULE)
    argv[agent_at:agent_at + 1] = [SHIM_MODULE, f"--warm-target={AGENT_MODULE}"]
    env[SOCKET_ENV] = str(socket_path)
    env[TARGET_ENV] = launch.worker_module
    return argv, env


def warm_agent_process(launch: RoundLaunch, socket_path: str | Path, *, cwd: Path | None = None,
                       base_env: Mapping[str, str] | None = None) -> AgentProcess:
    argv, env = warm_round_command(launch, socket_path)
    return AgentProcess(argv, env, log_file=launch.agent_log_file, cwd=cwd, events_file=launch.events_file,
                        base_env=base_env)


class ZygoteKeeper:
    """A daemon component: starts the zygote ahead of need and restarts it when it dies (with backoff).

    "Ahead of need" = as soon as `jobs_around()` says some live box of the cluster is busy (a job runs: this box
    may be ordered into its next round any moment), or a round asks for the socket. A daemon in a cluster that
    never runs a job never pays the zygote's imports (~4 s CPU, ~400 MB)."""

    name = "warm-workers"

    def __init__(self, state_dir: Path, *, python: str = sys.executable, extra_args: Sequence[str] = (),
                 jobs_around: Callable[[], bool] = lambda: True) -> None:
        self.socket_path = zygote_socket_path(state_dir)
        self.python = python
        self.extra_args = list(extra_args)
        self.process: asyncio.subprocess.Process | None = None
        self.log_file = Path(state_dir) / "run" / "zygote.log"
        self.jobs_around = jobs_around
        self._demanded = False

    def socket_if_ready(self) -> str | None:
        """The socket path while a zygote serves on it; None means: launch this round cold."""
        process = self.process
        if process is None or process.returncode is not None or not self.socket_path.exists():
            return None
        return str(self.socket_path)

    async def ready_socket(self, timeout_s: float = STARTING_WAIT_S) -> str | None:
        """The socket, waiting while the zygote is still importing (a fork after that beats a cold start,
        which pays the same imports twice: agent, then worker); None when there is none to wait for."""
        self._demanded = True
        deadline = asyncio.get_running_loop().time() + timeout_s
        while self.process is None and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)  # run() notices the demand within one poll
        while True:
            ready = self.socket_if_ready()
            process = self.process
            if ready or process is None or process.returncode is not None:
                return ready
            if asyncio.get_running_loop().time() >= deadline:
                return None
            await asyncio.sleep(0.05)

    async def run(self) -> None:
        failures = 0
        try:
            while not (self._demanded or self.jobs_around()):
                await asyncio.sleep(DEMAND_POLL_S)
            while True:
                code = await self._run_once()
                failures += 1
                delay = RESTART_BACKOFF_S[min(failures, len(RESTART_BACKOFF_S)) - 1]
                log.warning("zygote exited with %s; restarting in %.0f s (rounds start cold meanwhile)", code, delay)
                await asyncio.sleep(delay)
        finally:
            await self._stop()

    async def _run_once(self) -> int:
        self.socket_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.socket_path.parent, 0o700)
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
        with self.log_file.open("ab") as out:
            self.process = await asyncio.create_subprocess_exec(
                self.python, "-m", "p2pft.train.zygote", "--socket", str(self.socket_path),
                "--parent-pid", str(os.getpid()), *self.extra_args,
                stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=asyncio.subprocess.STDOUT, env=env)
        log.info("zygote started (pid %d, socket %s)", self.process.pid, self.socket_path)
        return await self.process.wait()

    async def _stop(self) -> None:
        process = self.process
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            await asyncio.wait_for(asyncio.shield(process.wait()), timeout=5.0)
        except (TimeoutError, asyncio.CancelledError):
            with contextlib.suppress(ProcessLookupError):
                process.kill()
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
