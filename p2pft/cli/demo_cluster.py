"""The cluster demo's run: start the boxes, submit, follow the job and make the moves of p2pft.demo.script,
summarise, stop everything (also on Ctrl-C or an error)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from pathlib import Path
from typing import Any

from p2pft.cli.main import CliError
from p2pft.demo.script import DRAIN, JOIN, KILL, Seen, next_move

FIRST_MOVE_AT = 12     # steps before box-c is killed (a few checkpoints replicated by then)
STEPS_BETWEEN = 12     # steps each recovered round trains before the next move
MESH_TIMEOUT_S = 60.0


def say(text: str) -> None:
    print(f"p2pft demo: {text}", flush=True)


def run_cluster_demo(workdir: Path, job_path: Path, names: tuple[str, ...]) -> int:
    from p2pft.demo.cluster import LocalCluster

    cluster = LocalCluster(workdir / "boxes", names)
    started = time.monotonic()
    try:
        for name in names:
            cluster.start(name)
            say(f"started {name} (p2pftd on {cluster.boxes[name].address}, state in {cluster.boxes[name].state_dir})")
        wait_mesh(cluster, names)
        say(f"{len(names)} boxes see each other; submitting the demo job to {names[0]}")
        final, moves = asyncio.run(drive(cluster, job_path, names))
        return summarise(final, moves, time.monotonic() - started, workdir)
    except KeyboardInterrupt:
        say("interrupted: stopping the demo's daemons")
        return 130
    finally:
        cluster.stop_all()
        say(f"stopped every daemon it started; their logs are in {cluster.root}")


def wait_mesh(cluster: Any, names: tuple[str, ...]) -> None:
    deadline = time.monotonic() + MESH_TIMEOUT_S
    while time.monotonic() < deadline:
        states = [asyncio.run(status_of(cluster, name)) for name in names]
        if all(s is not None and sum(1 for n in s.nodes if n.state in ("idle", "busy")) == len(names)
               for s in states):
            return
        time.sleep(0.5)
    raise CliError(f"the demo's boxes did not see each other within {MESH_TIMEOUT_S:.0f} s; see {cluster.root}/*.log")


async def status_of(cluster: Any, name: str) -> Any:
    import grpc

    from p2pft.rpc.client import DaemonClient
    from p2pft.security.credentials import load_credentials

    box = cluster.boxes[name]
    try:
        async with DaemonClient(box.address, load_credentials(box.state_dir)) as client:
            return await client.status()
    except grpc.RpcError:
        return None


async def drive(cluster: Any, job_path: Path, names: tuple[str, ...]) -> tuple[tuple[Any, Any], list[tuple[str, int]]]:
    """Submit, follow, and make each move when its moment comes; returns ((final view, follower), moves)."""
    from p2pft.cli.follow_job import JobFollower
    from p2pft.cli.job_render import record_of
    from p2pft.cli.submit import load_for_submit
    from p2pft.rpc.client import DaemonClient
    from p2pft.rpc.gen import jobs_pb2, jobs_pb2_grpc
    from p2pft.security.credentials import load_credentials

    first, second, third = names
    box = cluster.boxes[first]
    spec, warnings = load_for_submit(str(job_path))
    moves: list[tuple[str, int]] = []
    background: set[asyncio.Task[Any]] = set()
    async with DaemonClient(box.address, load_credentials(box.state_dir)) as client:
        stub = jobs_pb2_grpc.JobServiceStub(client.channel)
        reply = await stub.Submit(jobs_pb2.SubmitRequest(job_json=json.dumps(spec), warnings=warnings), timeout=60)
        say(f"job {reply.job_id}: {spec.get('max_steps')} steps, global batch "
            f"{spec['p2pft']['global_batch_size']} split over the boxes")
        follower = JobFollower(reply.job_id)
        follower.open()
        final = None
        try:
            async for view in stub.WatchJob(jobs_pb2.WatchJobRequest(job_id=reply.job_id, interval_s=0.3)):
                final = view
                follower.update(view)
                record = record_of(view)
                current = record.current_round if record else None
                seen = Seen(view.status, int(view.step), int(view.round),
                            current.first_step if current is not None else None)
                move = next_move(tuple(moves), seen, first_at=FIRST_MOVE_AT, steps_between=STEPS_BETWEEN)
                if move is None:
                    continue
                moves.append((move, int(view.round)))
                follower.say(f"p2pft demo: step {view.step}: {move}")
                if move == KILL:
                    await asyncio.to_thread(cluster.kill, third)
                elif move == DRAIN:
                    task = asyncio.create_task(drain(cluster, second))
                    background.add(task)
                elif move == JOIN:
                    await asyncio.to_thread(cluster.start, third)
        finally:
            follower.close()
            for task in background:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(task, timeout=30)
    return (final, follower), moves


async def drain(cluster: Any, name: str) -> None:
    from p2pft.rpc.client import DaemonClient
    from p2pft.rpc.gen import jobs_pb2, jobs_pb2_grpc
    from p2pft.security.credentials import load_credentials

    box = cluster.boxes[name]
    async with DaemonClient(box.address, load_credentials(box.state_dir)) as client:
        await jobs_pb2_grpc.JobServiceStub(client.channel).Drain(jobs_pb2.DrainRequest(), timeout=120)


def summarise(final_and_follower: Any, moves: list[tuple[str, int]], seconds: float, workdir: Path) -> int:
    final, follower = final_and_follower
    if final is None:
        raise CliError("lost track of the demo's job")
    print()
    for line in follower.summary(final):
        print(line)
    print(f"p2pft demo: {len(moves)} events ({', '.join(m for m, _ in moves) or 'none'}) in {seconds:.0f} s; "
          f"work dir {workdir}")
    if final.status != "succeeded":
        raise CliError(f"the demo's job {final.status}: {final.message}")
    print(f"p2pft demo: adapter in {final.output_dir} (load with PeftModel.from_pretrained), metrics in "
          f"{Path(final.output_dir) / 'metrics.jsonl'}")
    return 0
