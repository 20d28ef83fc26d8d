"""This box's compute devices: NVIDIA GPUs through nvidia-smi, else one CPU device. Never imports torch
(the daemon must stay light; a CUDA context would also pin GPU memory).

`inventory()` runs nvidia-smi with a timeout when it is on PATH; a missing binary, a hang, a non-zero exit
("No devices were found") or output with no readable GPU all fall back to the CPU device, so discovery can
always announce something. `device_summary()` makes the short string announced in the mDNS TXT `dev` key.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from p2pft.hardware.nvidia_smi import (
    APPS_QUERY_ARGS,
    GPU_QUERY_ARGS,
    parse_compute_apps,
    parse_cuda_version,
    parse_gpu_query,
)

log = logging.getLogger(__name__)
MIB = 1024 * 1024
MAX_SUMMARY_CHARS = 200  # fits a TXT entry with room to spare


@dataclass(frozen=True)
class Device:
    kind: Literal["cuda", "cpu"]
    index: int
    name: str
    memory_total_mb: int  # MiB; 0 when the driver does not report it
    memory_free_mb: int
    utilization_pct: int | None  # None when not reported
    processes: tuple[int, ...]  # pids using this GPU (compute apps), ours and foreign ones alike
    cpu_cores: int = 0  # logical cores for kind="cpu"; 0 for GPUs
    uuid: str = ""


def inventory(*, nvidia_smi: str | None = None, timeout_s: float = 5.0) -> list[Device]:
    """GPUs from nvidia-smi (path given, or found on PATH), or the CPU fallback: never empty, never raises."""
    binary = nvidia_smi or shutil.which("nvidia-smi")
    if binary:
        gpus = gpu_inventory(binary, timeout_s=timeout_s)
        if gpus:
            return gpus
    return [cpu_device()]


def gpu_inventory(binary: str, *, timeout_s: float = 5.0) -> list[Device]:
    """Run nvidia-smi's two queries and join them by GPU uuid; [] when it fails or finds no GPU."""
    gpu_text = _run([binary, *GPU_QUERY_ARGS], timeout_s)
    if gpu_text is None:
        return []
    gpus = parse_gpu_query(gpu_text)
    for problem in gpus.problems:
        log.warning("%s", problem)
    apps_text = _run([binary, *APPS_QUERY_ARGS], timeout_s) if gpus.rows else None
    return devices_from_queries(gpu_text, apps_text or "")


def devices_from_queries(gpu_text: str, apps_text: str) -> list[Device]:
    """Pure join of the two nvidia-smi outputs into Devices (sorted by index)."""
    apps = parse_compute_apps(apps_text).rows
    devices = []
    for row in sorted(parse_gpu_query(gpu_text).rows, key=lambda r: r.index):
        pids = tuple(sorted({app.pid for app in apps if app.gpu_uuid == row.uuid}))
        devices.append(
            Device(
                kind="cuda",
                index=row.index,
                name=row.name,
                memory_total_mb=row.memory_total_mb,
                memory_free_mb=row.memory_free_mb,
                utilization_pct=row.utilization_pct,
                processes=pids,
                uuid=row.uuid,
            )
        )
    return devices


def cuda_version(*, nvidia_smi: str | None = None, timeout_s: float = 5.0) -> str:
    """The CUDA version the NVIDIA driver supports (plain `nvidia-smi` banner), "" without a usable driver."""
    binary = nvidia_smi or shutil.which("nvidia-smi")
    banner = _run([binary], timeout_s) if binary else None
    return parse_cuda_version(banner or "")


def cpu_device() -> Device:
    """The fallback device: the CPU model name, RAM from psutil, logical cores, load as a utilisation."""
    import psutil  # imported here: only the fallback path needs it

    memory = psutil.virtual_memory()
    cores = os.cpu_count() or 1
    try:
        load_pct = int(min(100.0, os.getloadavg()[0] / cores * 100))
    except OSError:
        load_pct = None
    return Device(
        kind="cpu",
        index=0,
        name=cpu_model_name(),
        memory_total_mb=memory.total // MIB,
        memory_free_mb=memory.available // MIB,
        utilization_pct=load_pct,
        processes=(),
        cpu_cores=cores,
    )


def cpu_model_name(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return "cpu"
    return parse_cpu_model(text)


def parse_cpu_model(cpuinfo_text: str) -> str:
    """The first "model name" (x86) / "Model" / "Hardware" (ARM) line of /proc/cpuinfo, or "cpu"."""
    for wanted in ("model name", "model", "hardware"):
        for line in cpuinfo_text.splitlines():
            key, sep, value = line.partition(":")
            if sep and key.strip().lower() == wanted and value.strip():
                return " ".join(value.split())
    return "cpu"


def short_gpu_name(name: str) -> str:
    """Shorten: "NVIDIA GeForce RTX 4090" -> "RTX 4090"; "NVIDIA RTX A6000" -> "RTX A6000"."""
    words = [word for word in name.split() if word not in ("NVIDIA", "GeForce")]
    return " ".join(words) or name


def device_summary(devices: Sequence[Device]) -> str:
    """Short text for the TXT `dev` key: "RTX 4090 24GB", "2x RTX 4090 24GB + RTX A6000 48GB", "cpu:2x"."""
    if not devices:
        return "none"
    labels: Counter[str] = Counter()
    for device in devices:
        if device.kind == "cpu":
            labels[f"cpu:{device.cpu_cores or 1}x"] += 1
        else:
            labels[f"{short_gpu_name(device.name)} {round(device.memory_total_mb / 1024)}GB"] += 1
    parts = [label if count == 1 else f"{count}x {label}" for label, count in labels.items()]
    summary = " + ".join(parts)
    return summary if len(summary) <= MAX_SUMMARY_CHARS else summary[: MAX_SUMMARY_CHARS - 3] + "..."


def foreign_processes(device: Device, own_pids: Sequence[int]) -> tuple[int, ...]:
    """Pids on this device that are not ours (DESIGN item 13: the box's owner is using the GPU)."""
    own = set(own_pids)
    return tuple(pid for pid in device.processes if pid not in own)


def _run(argv: list[str], timeout_s: float) -> str | None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("nvidia-smi unusable (%s); using the CPU", exc)
        return None
    if done.returncode != 0:
        log.info("nvidia-smi exit %s: %s", done.returncode, (done.stdout + done.stderr).strip()[:200])
        return None
    return done.stdout
