"""A first guess at a device's training speed, for a box with no measured history (pure, torch-free).

ROUGH by design: the numbers are relative speeds for fine-tuning a causal LM in bf16/fp16 (RTX 3090 = 1.0),
read off public dense tensor-core throughput and memory bandwidth, not measured here. They only have to be
good enough for the first round's shares: the workers measure real speeds within a few steps
(p2pft/train/speed.py) and the drift rule (replan.py) corrects the plan at the next checkpoint boundary.

Order of evidence: a known model name; else the SM count (x the 3090's speed per SM: right within a
generation, low for newer cards); else the memory size (a datacenter-sized card is probably a datacenter
card); CPUs by their usable cores. Plans never mix CPU and GPU ranks, so the CPU scale only needs to be
consistent among CPUs.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Hashable, Mapping
from dataclasses import dataclass

REFERENCE = "RTX 3090"
REFERENCE_SMS = 82
CPU_CORE_RELATIVE = 0.01  # one core against a 3090: rough, only CPU-to-CPU ratios are ever used

# (name pattern, relative speed). Longer, more specific names first: "3090 Ti" before "3090", "A100" is not
# "A10", "L40S" before "L40". Matched on the upper-cased name with vendor words removed; a space in a pattern
# matches any run of spaces or dashes.
GPU_TABLE: tuple[tuple[str, float], ...] = (
    ("H200", 5.5),
    ("GH200", 5.5),
    ("H100 PCIE", 4.0),
    ("H100 NVL", 4.5),
    ("H100", 5.0),
    ("H800", 5.0),
    ("A100", 2.2),
    ("A800", 2.2),
    ("L40S", 1.9),
    ("L40", 1.5),
    ("L4", 0.5),
    ("A40", 1.0),
    ("A30", 1.0),
    ("A10G", 0.55),
    ("A10", 0.6),
    ("V100", 0.8),
    ("T4", 0.25),
    ("RTX 6000 ADA", 1.9),
    ("RTX 5000 ADA", 1.4),
    ("RTX 4500 ADA", 1.0),
    ("RTX 4000 ADA", 0.7),
    ("RTX A6000", 1.05),
    ("RTX A5500", 0.95),
    ("RTX A5000", 0.85),
    ("RTX A4500", 0.75),
    ("RTX A4000", 0.6),
    ("QUADRO RTX 8000", 0.6),
    ("QUADRO RTX 6000", 0.6),
    ("TITAN RTX", 0.6),
    ("RTX 5090", 2.4),
    ("RTX 5080", 1.5),
    ("RTX 5070 TI", 1.2),
    ("RTX 4090", 1.7),
    ("RTX 4080 SUPER", 1.25),
    ("RTX 4080", 1.2),
    ("RTX 4070 TI SUPER", 1.0),
    ("RTX 4070 TI", 0.95),
    ("RTX 4070 SUPER", 0.85),
    ("RTX 4070", 0.75),
    ("RTX 4060 TI", 0.55),
    ("RTX 3090 TI", 1.1),
    ("RTX 3090", 1.0),
    ("RTX 3080 TI", 0.95),
    ("RTX 3080", 0.85),
    ("RTX 3070", 0.55),
    ("RTX 3060", 0.4),
    ("RTX 2080 TI", 0.55),
    ("RTX 2080 SUPER", 0.45),
    ("RTX 2080", 0.42),
    ("RTX 2070", 0.35),
    ("GTX 1080 TI", 0.25),  # no tensor cores: fp32 speed
)
_VENDOR_WORDS = re.compile(r"\b(NVIDIA|GEFORCE|TESLA)\b")


@dataclass(frozen=True)
class SpeedEstimate:
    relative: float  # against an RTX 3090 = 1.0
    basis: str  # why: "table: RTX 4090", "82 SMs", "80 GB of memory", "4 CPU cores", "unknown GPU"


def _pattern(key: str) -> re.Pattern[str]:
    body = r"[\s\-]*".join(re.escape(part) for part in key.split())
    return re.compile(rf"(?<![A-Z0-9]){body}(?![A-Z0-9])")


_TABLE = tuple((key, speed, _pattern(key)) for key, speed in GPU_TABLE)


def gpu_table_speed(name: str) -> tuple[str, float] | None:
    """The table's entry for an nvidia-smi name ("NVIDIA GeForce RTX 4090", "NVIDIA A100-SXM4-80GB"), or None."""
    text = _VENDOR_WORDS.sub(" ", name.upper())
    for key, speed, pattern in _TABLE:
        if pattern.search(text):
            return key, speed
    return None


def estimate_speed(kind: str, *, name: str = "", memory_total_mb: int = 0, sm_count: int | None = None,
                   cpu_cores: float = 0.0) -> SpeedEstimate:
    """A relative speed for one device (one rank) from what the inventory knows of it."""
    if kind == "cpu":
        cores = cpu_cores if cpu_cores > 0 else 1.0
        return SpeedEstimate(CPU_CORE_RELATIVE * cores, f"{cores:g} CPU cores")
    known = gpu_table_speed(name) if name else None
    if known is not None:
        return SpeedEstimate(known[1], f"table: {known[0]}")
    if sm_count is not None and sm_count > 0:
        return SpeedEstimate(sm_count / REFERENCE_SMS, f"{sm_count} SMs")
    if memory_total_mb >= 70 * 1024:
        return SpeedEstimate(2.2, f"{memory_total_mb // 1024} GB of memory: assumed A100 class")
    return SpeedEstimate(1.0, f"unknown GPU {name!r}: assumed {REFERENCE} class")


def estimate_device_speed(device: object) -> SpeedEstimate:
    """From a p2pft.hardware.inventory.Device (read by attribute, so this module needs no import of it)."""
    return estimate_speed(str(getattr(device, "kind", "cuda")), name=str(getattr(device, "name", "")),
                          memory_total_mb=int(getattr(device, "memory_total_mb", 0) or 0),
                          sm_count=getattr(device, "sm_count", None),
                          cpu_cores=float(getattr(device, "cpu_cores", 0) or 0))


def fill_unknown_speeds(measured: Mapping[Hashable, float | None],
                        estimates: Mapping[Hashable, float]) -> dict[Hashable, float]:
    """Speeds for every rank in `estimates`, in the units of `measured` (samples/s).

    Measured ranks keep their measurement. Unmeasured ones get their estimate times the median of
    measured / estimate over the measured ranks, so a new box joins in the units of the boxes already known
    (mixing raw relative numbers with samples/s would skew every share). With nothing measured, the relative
    estimates themselves: only ratios matter to the planner.
    """
    known = {k: float(v) for k, v in measured.items() if k in estimates and v is not None and v > 0}
    ratios = [known[k] / estimates[k] for k in known if estimates[k] > 0]
    scale = statistics.median(ratios) if ratios else 1.0
    return {k: known[k] if k in known else estimates[k] * scale for k in estimates}
