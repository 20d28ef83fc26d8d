"""Supervise one torchrun agent (and its workers) under asyncio: start, wait, stop, classify the exit.

The agent runs in a session of its own. torchrun starts every worker in a session of ITS own too
(start_new_session=True in torch's subprocess handler), so a signal to the agent's process group does not
reach the workers: killed that way, they live on as orphans and keep training. Stopping a round therefore
signals the agent's group and the group of every process carrying this agent's token in its environment
(inherited by the workers; found even after the agent itself is gone). Torch-free: this runs in the daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import os
import signal
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import psutil

from p2pft.launch.contract import EXIT_STOPPED_ON_REQUEST
from p2pft.launch.events import read_events
from p2pft.launch.round_spec import RoundLaunch, build_agent_command

AGENT_TOKEN_ENV = "P2PFT_AGENT_TOKEN"  # inherited by torchrun's workers: finds them even as orphans


class AgentOutcome(enum.StrEnum):
    FINISHED = "finished"  # every worker exited 0: outputs saved
    STOPPED_ON_REQUEST = "stopped_on_request"  # drained after a committed checkpoint
    FAILED = "failed"  # anything else: a peer was lost, a worker crashed, or we killed it


@dataclass(frozen=True)
class AgentExit:
    returncode: int  # negative = killed by that signal (asyncio's convention)
    outcome: AgentOutcome
    stopped_by_us: bool  # terminate()/kill() was called: the daemon ended this round itself
    runtime_s: float


def classify_agent_exit(returncode: int, *, worker_reported_stop: bool) -> AgentOutcome:
    """Pure. torchrun turns any non-zero worker exit (75 included) into its own exit 1, so a drain is
    recognised by the worker's `stopped_on_request` event in this round's events.jsonl."""
    if returncode == 0:
        return AgentOutcome.FINISHED
    if returncode == EXIT_STOPPED_ON_REQUEST or (returncode > 0 and worker_reported_stop):
        return AgentOutcome.STOPPED_ON_REQUEST
    return AgentOutcome.FAILED


class AgentProcess:
    """One torchrun agent. `start()`, then `wait()` and/or `terminate()`; `kill()` is the fast path."""

    def __init__(
        self,
        argv: Sequence[str],
        env: Mapping[str, str],
        *,
        log_file: Path,
        cwd: Path | None = None,
        events_file: Path | None = None,
        base_env: Mapping[str, str] | None = None,
    ) -> None:
        self.argv = list(argv)
        self.token = uuid.uuid4().hex
        self.env = {**(os.environ if base_env is None else base_env), **env, AGENT_TOKEN_ENV: self.token}
        self.log_file = log_file
        self.cwd = cwd
        self.events_file = events_file
        self._events_offset = 0
        self._process: asyncio.subprocess.Process | None = None
        self._log: IO[bytes] | None = None
        self._started_at = 0.0
        self._stopped_by_us = False
        self._exit: AgentExit | None = None

    @classmethod
    def for_round(cls, launch: RoundLaunch, *, cwd: Path | None = None,
                  base_env: Mapping[str, str] | None = None) -> AgentProcess:
        argv, env = build_agent_command(launch)
        return cls(argv, env, log_file=launch.agent_log_file, cwd=cwd, events_file=launch.events_file,
                   base_env=base_env)

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def returncode(self) -> int | None:
        return self._process.returncode if self._process else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.returncode is None

    async def start(self) -> None:
        if self._process is not None:
            raise RuntimeError("agent already started; make a new AgentProcess for a new round")
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        if self.events_file is not None:
            # Only this round's events count when classifying the exit (the run dir may be reused).
            with contextlib.suppress(FileNotFoundError):
                self._events_offset = self.events_file.stat().st_size
        self._log = self.log_file.open("ab")
        self._started_at = time.monotonic()
        # The agent dies with the daemon (parent-death signal, armed by a stdlib-only exec wrapper: see
        # p2pft.launch.lifetime.main), since its own session keeps a kill of the daemon's group from reaching it.
        guarded = [sys.executable, "-m", "p2pft.launch.lifetime", "--parent", str(os.getpid()), "--", *self.argv]
        self._process = await asyncio.create_subprocess_exec(
            *guarded,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=self._log,
            stderr=asyncio.subprocess.STDOUT,
            cwd=self.cwd,
            env=self.env,
            start_new_session=True,  # own process group: one killpg reaches agent + workers
        )

    async def wait(self) -> AgentExit:
        process = self._require_started()
        returncode = await process.wait()
        return self._finish(returncode)

    async def terminate(self, grace_s: float = 10.0) -> AgentExit:
        """SIGTERM the agent (torchrun stops its workers), then SIGKILL agent and workers after `grace_s`."""
        process = self._require_started()
        if process.returncode is None:
            self._stopped_by_us = True
            self._signal_group(signal.SIGTERM)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(process.wait(), timeout=grace_s)
        # Whatever is left (agent past its grace, workers torchrun did not reap) goes now.
        self.kill()
        returncode = await process.wait()
        return self._finish(returncode)

    def kill(self) -> None:
        """SIGKILL the agent and all its workers now, without waiting (teardown, fault injection)."""
        if self._process is not None and self._process.returncode is None:
            self._stopped_by_us = True
        self._signal_group(signal.SIGKILL)
        for pid in self.worker_pids():
            _signal_process_group(pid, signal.SIGKILL)

    def worker_pids(self) -> list[int]:
        """Live processes started under this agent (found by the inherited token), the agent excluded."""
        if self._process is None:
            return []
        found: list[int] = []
        for proc in psutil.process_iter(["pid"]):
            if proc.pid in (self._process.pid, os.getpid()):
                continue
            with contextlib.suppress(psutil.Error):
                if proc.environ().get(AGENT_TOKEN_ENV) == self.token:
                    found.append(proc.pid)
        return found

    def _signal_group(self, signum: int) -> None:
        if self._process is not None:
            # pgid == pid thanks to start_new_session; valid even after the leader exited while members live.
            _signal_process_group(self._process.pid, signum)

    def _require_started(self) -> asyncio.subprocess.Process:
        if self._process is None:
            raise RuntimeError("agent not started: call start() first")
        return self._process

    def _finish(self, returncode: int) -> AgentExit:
        if self._exit is not None:
            return self._exit
        if self._log is not None:
            self._log.close()
        reported_stop = False
        if self.events_file is not None:
            events, _ = read_events(self.events_file, self._events_offset)
            reported_stop = any(event.event == "stopped_on_request" for event in events)
        self._exit = AgentExit(
            returncode=returncode,
            outcome=classify_agent_exit(returncode, worker_reported_stop=reported_stop),
            stopped_by_us=self._stopped_by_us,
            runtime_s=time.monotonic() - self._started_at,
        )
        return self._exit


def _signal_process_group(pid: int, signum: int) -> None:
    """Signal `pid`'s process group, or `pid` alone if it shares ours (never signal the daemon itself)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        pgid = os.getpgid(pid)
        if pgid == os.getpgrp():
            os.kill(pid, signum)
        else:
            os.killpg(pgid, signum)
