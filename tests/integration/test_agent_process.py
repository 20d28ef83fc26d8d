"""AgentProcess on plain subprocesses (no torch): exit classification, and that stopping an agent reaches
children in sessions of their own, as torchrun's workers are, even after the agent itself is gone."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import psutil
import pytest

from p2pft.launch.agent import AgentOutcome, AgentProcess

# A stand-in for torchrun: starts a "worker" in its own session (as torch's subprocess handler does), prints
# its pid, then waits forever; `ignore_term` makes it shrug off SIGTERM.
FAKE_AGENT = """
import signal, subprocess, sys, time
if sys.argv[1] == "ignore_term":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"], start_new_session=True)
print(worker.pid, flush=True)
time.sleep(300)
"""


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_gone(pid: int, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    return not alive(pid)


async def start_fake(tmp_path: Path, mode: str = "normal") -> tuple[AgentProcess, int]:
    agent = AgentProcess([sys.executable, "-c", FAKE_AGENT, mode], {}, log_file=tmp_path / "agent.log")
    await agent.start()
    deadline = time.monotonic() + 20
    while not (tmp_path / "agent.log").read_text().strip():
        assert time.monotonic() < deadline, "fake agent never started its worker"
        await asyncio.sleep(0.02)
    return agent, int((tmp_path / "agent.log").read_text().split()[0])


def test_kill_reaches_a_worker_in_its_own_session_even_after_the_agent_died(tmp_path: Path) -> None:
    async def scenario() -> tuple[int, AgentProcess]:
        agent, worker = await start_fake(tmp_path)
        assert agent.worker_pids() == [worker]
        assert agent.pid is not None
        os.killpg(agent.pid, signal.SIGKILL)  # what a plain kill of the agent's group does...
        await agent.wait()
        assert alive(worker), "torchrun-like workers survive their agent's group"  # ...leaves the worker
        agent.kill()  # found by the inherited token
        return worker, agent

    worker, agent = asyncio.run(asyncio.wait_for(scenario(), timeout=30))
    assert wait_gone(worker)
    assert agent.worker_pids() == []


def test_terminate_escalates_to_sigkill_after_the_grace(tmp_path: Path) -> None:
    async def scenario() -> tuple[int, float, AgentOutcome, bool, int]:
        agent, worker = await start_fake(tmp_path, "ignore_term")
        started = time.monotonic()
        exit_ = await agent.terminate(grace_s=0.5)
        return worker, time.monotonic() - started, exit_.outcome, exit_.stopped_by_us, exit_.returncode

    worker, took_s, outcome, by_us, returncode = asyncio.run(asyncio.wait_for(scenario(), timeout=30))
    assert 0.5 <= took_s < 5
    assert (outcome, by_us, returncode) == (AgentOutcome.FAILED, True, -signal.SIGKILL)
    assert wait_gone(worker)


@pytest.mark.parametrize(("code", "outcome"), [(0, AgentOutcome.FINISHED), (75, AgentOutcome.STOPPED_ON_REQUEST),
                                               (3, AgentOutcome.FAILED)])
def test_exit_code_is_classified(tmp_path: Path, code: int, outcome: AgentOutcome) -> None:
    async def scenario() -> AgentOutcome:
        agent = AgentProcess([sys.executable, "-c", f"raise SystemExit({code})"], {}, log_file=tmp_path / "a.log")
        await agent.start()
        exit_ = await agent.wait()
        assert exit_.returncode == code and not exit_.stopped_by_us
        return exit_.outcome

    assert asyncio.run(asyncio.wait_for(scenario(), timeout=30)) is outcome


def test_stop_event_in_this_rounds_events_makes_exit_1_a_drain(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text('{"event": "stopped_on_request", "step": 1}\n')  # an earlier round's: must not count
    script = f"open({str(events)!r}, 'a').write('{{\"event\": \"stopped_on_request\", \"step\": 9}}\\n'); exit(1)"

    async def scenario() -> tuple[AgentOutcome, AgentOutcome]:
        plain = AgentProcess([sys.executable, "-c", "exit(1)"], {}, log_file=tmp_path / "p.log", events_file=events)
        await plain.start()
        drained = AgentProcess([sys.executable, "-c", script], {}, log_file=tmp_path / "d.log", events_file=events)
        first = (await plain.wait()).outcome
        await drained.start()
        return first, (await drained.wait()).outcome

    assert asyncio.run(asyncio.wait_for(scenario(), timeout=30)) == (AgentOutcome.FAILED,
                                                                      AgentOutcome.STOPPED_ON_REQUEST)
