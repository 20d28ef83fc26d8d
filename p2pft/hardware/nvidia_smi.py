"""Pure parsers of nvidia-smi's CSV output (no subprocess here; `inventory` runs the command).

Queries they expect (the argv lists below are what `inventory` runs):
  nvidia-smi --query-gpu=index,name,memory.total,memory.free,utilization.gpu,uuid --format=csv,noheader,nounits
  nvidia-smi --query-compute-apps=gpu_uuid,pid,used_memory --format=csv,noheader,nounits
Lines that do not parse are skipped and described in `problems` (one line each), so a half-broken driver
still yields the GPUs that did answer. "[N/A]" / "[Not Supported]" fields become None where a row stays
useful without them (utilization, a process's memory) and make the row a problem where they do not.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Generic, TypeVar

GPU_QUERY_ARGS: tuple[str, ...] = (
    "--query-gpu=index,name,memory.total,memory.free,utilization.gpu,uuid",
    "--format=csv,noheader,nounits",
)
APPS_QUERY_ARGS: tuple[str, ...] = (
    "--query-compute-apps=gpu_uuid,pid,used_memory",
    "--format=csv,noheader,nounits",
)
_NOT_AVAILABLE = {"[n/a]", "n/a", "[not supported]", "not supported", "[unknown error]", ""}
_NO_DEVICES = "no devices were found"
_NO_PROCESSES = "no running processes found"
T = TypeVar("T")
_CUDA_VERSION = re.compile(r"CUDA Version:\s*([0-9]+(?:\.[0-9]+)*)")


@dataclass(frozen=True)
class GpuRow:
    index: int
    name: str
    memory_total_mb: int
    memory_free_mb: int
    utilization_pct: int | None  # None: the board does not report it
    uuid: str


@dataclass(frozen=True)
class ComputeApp:
    gpu_uuid: str
    pid: int
    used_memory_mb: int | None  # None: not reported (e.g. inside some containers)


@dataclass(frozen=True)
class Parsed(Generic[T]):
    rows: list[T] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # one line per skipped line


def parse_gpu_query(text: str) -> Parsed[GpuRow]:
    """Parse `--query-gpu=index,name,memory.total,memory.free,utilization.gpu,uuid` CSV (noheader, nounits)."""
    result: Parsed[GpuRow] = Parsed()
    for number, line in _lines(text):
        if line.lower().startswith(_NO_DEVICES):
            continue
        # The name is the only free-text field: take fixed fields from both ends so a comma in it is harmless.
        head, sep, rest = line.partition(",")
        parts = rest.rsplit(",", 4) if sep else []
        if len(parts) != 5:
            result.problems.append(f"nvidia-smi gpu line {number}: expected 6 fields, got {line[:80]!r}")
            continue
        name, total, free, util, uuid = (part.strip() for part in parts)
        index = _int(head)
        memory_total = _int(total)
        memory_free = _int(free)
        if index is None or memory_total is None or memory_free is None or not name or not uuid:
            result.problems.append(f"nvidia-smi gpu line {number}: unreadable index/memory/name/uuid in {line[:80]!r}")
            continue
        result.rows.append(GpuRow(index, name, memory_total, memory_free, _int(util), uuid))
    return result


def parse_compute_apps(text: str) -> Parsed[ComputeApp]:
    """Parse `--query-compute-apps=gpu_uuid,pid,used_memory` CSV (noheader, nounits); empty text = no apps."""
    result: Parsed[ComputeApp] = Parsed()
    for number, line in _lines(text):
        lowered = line.lower()
        if lowered.startswith(_NO_PROCESSES) or lowered.startswith(_NO_DEVICES):
            continue
        parts = [part.strip() for part in line.split(",")]
        pid = _int(parts[1]) if len(parts) == 3 else None
        if len(parts) != 3 or not parts[0] or pid is None:
            result.problems.append(f"nvidia-smi compute-apps line {number}: expected uuid, pid, memory: {line[:80]!r}")
            continue
        result.rows.append(ComputeApp(parts[0], pid, _int(parts[2])))
    return result


def parse_cuda_version(banner: str) -> str:
    """The "CUDA Version: 12.4" of plain `nvidia-smi` output (the highest CUDA the driver supports), or ""."""
    match = _CUDA_VERSION.search(banner)
    return match.group(1) if match else ""


def _lines(text: str) -> list[tuple[int, str]]:
    return [(number, line.strip()) for number, line in enumerate(text.splitlines(), 1) if line.strip()]


def _int(text: str) -> int | None:
    text = text.strip()
    if text.lower() in _NOT_AVAILABLE:
        return None
    try:
        return int(text)
    except ValueError:
        try:
            return int(float(text))  # some drivers print "24564.0" style values
        except ValueError:
            return None
