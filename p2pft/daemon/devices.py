"""This box's devices for heartbeats and status, from p2pft.hardware's inventory (torch-free).

Falls back to one CPU entry from psutil when the hardware module is not available in this build.
"""

from __future__ import annotations

import logging
import os

from p2pft.membership.state import DeviceInfo
from p2pft.rpc.convert import device_from_inventory

log = logging.getLogger("p2pft.devices")


def read_devices() -> tuple[DeviceInfo, ...]:
    """Blocking (may run nvidia-smi): call it through asyncio.to_thread."""
    try:
        from p2pft.hardware import inventory  # type: ignore[attr-defined]
    except ImportError:
        return (_cpu_fallback(),)
    try:
        return tuple(device_from_inventory(d) for d in inventory())
    except Exception as exc:  # a broken driver must not stop the daemon
        log.warning("hardware inventory failed (%s: %s); reporting the CPU only", type(exc).__name__, exc)
        return (_cpu_fallback(),)


def cuda_version() -> str:
    """The CUDA version the hardware inventory reports, '' when none (or not reported)."""
    try:
        from p2pft.hardware import inventory as hardware
    except ImportError:
        return ""
    getter = getattr(hardware, "cuda_version", None)
    if getter is None:
        return ""
    try:
        return str(getter() or "")
    except Exception:
        return ""


def _cpu_fallback() -> DeviceInfo:
    import psutil

    memory = psutil.virtual_memory()
    return DeviceInfo(kind="cpu", index=0, name=f"cpu:{os.cpu_count() or 1}x",
                      memory_total_mb=memory.total // 2**20, memory_free_mb=memory.available // 2**20,
                      utilization_pct=float(psutil.cpu_percent(interval=None)))


def summary(devices: tuple[DeviceInfo, ...]) -> str:
    """Short text for mDNS TXT 'dev', e.g. 'RTX 4090 24GB' or '2x A100 80GB' or 'cpu:2x'."""
    gpus = [d for d in devices if d.kind == "cuda"]
    if not gpus:
        cpus = [d for d in devices if d.kind == "cpu"]
        return cpus[0].name if cpus else "cpu"
    first = gpus[0]
    label = f"{first.name} {round(first.memory_total_mb / 1024)}GB"
    return label if len(gpus) == 1 else f"{len(gpus)}x {label}"
