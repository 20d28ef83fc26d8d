"""Disk used by a finished 3-box job's state dirs (issue 10): runs `p2pft demo` (three real daemons; a crash,
a drain and a join), then measures each box's state dir by kind (blobs, checkpoints, dataset/model copies,
round outputs, the rest). The demo stops its daemons seconds after the job ends, which may cut a box's
end-of-job cleanup short; a box does it on its next start (the periodic pass). So the measure is taken twice:
as the daemons left it, and after the same cleanup and blob collection run on each state dir (nothing else).

Usage: .venv/bin/python bench/finished_job_disk.py [--workdir DIR]   (DIR of an earlier demo: no new run)
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from p2pft.jobs.job_cleanup import JobCleanup
from p2pft.jobs.manager import JobsManager
from p2pft.jobs.model import JobRecord, record_from_json
from p2pft.transfer import BlobStore

MIB = 1024 * 1024


@dataclass
class StateDir:
    """The fields of a manager the cleanup reads."""

    state_dir: Path
    store: BlobStore
    node_id: str
    records: dict[str, JobRecord]
    reports: dict[tuple[str, int], Any] = field(default_factory=dict)


def size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def by_kind(state: Path) -> dict[str, int]:
    jobs = list((state / "jobs").glob("*"))
    kinds = {
        "blobs": size(state / "blobs"),
        "checkpoints": sum(size(j / "checkpoints") for j in jobs),
        "dataset+model copies": sum(size(j / "data") + size(j / "model") for j in jobs),
        "round outputs": sum(size(o) for j in jobs for o in j.glob("rounds/*/output")),
    }
    kinds["rest"] = size(state) - sum(kinds.values())
    return kinds


def clean(state: Path) -> None:
    node_id = (state / "node_id").read_text().strip()
    records = {r.job_id: r for r in (record_from_json(f.read_text()) for f in (state / "jobs").glob("*/record.json"))}
    manager = StateDir(state, BlobStore.for_state_dir(state), node_id, records)
    cleanup = JobCleanup(cast(JobsManager, manager))
    for job_id in records:
        asyncio.run(cleanup.after_end(job_id))
    cleanup.collector.grace_s = 0.0   # as the periodic pass ten minutes later
    asyncio.run(cleanup.collector.collect())


def show(title: str, boxes: list[Path]) -> None:
    print(title)
    for state in boxes:
        kinds = by_kind(state)
        parts = ", ".join(f"{k} {v / MIB:.1f}" for k, v in kinds.items())
        print(f"  {state.name}: {sum(kinds.values()) / MIB:.1f} MiB ({parts})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="p2pft-disk-"))
    if args.workdir is None:
        started = time.monotonic()
        subprocess.run([sys.executable, "-m", "p2pft.cli.main", "demo", "--workdir", str(workdir)], check=True,
                       stdout=subprocess.DEVNULL)
        print(f"demo finished in {time.monotonic() - started:.0f} s; work dir {workdir}")
    boxes = sorted(p for p in (workdir / "boxes").iterdir() if p.is_dir())
    show("as the daemons left them (MiB):", boxes)
    for state in boxes:
        clean(state)
    show("after each box's end-of-job cleanup and blob collection (MiB):", boxes)
    print(f"outputs: {size(workdir / 'output') / MIB:.1f} MiB in {workdir / 'output'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
