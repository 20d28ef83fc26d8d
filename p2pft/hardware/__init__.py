"""Hardware inventory (nvidia-smi parsing, CPU fallback). Never imports torch."""

from p2pft.hardware.inventory import Device, device_summary, foreign_processes, inventory

__all__ = ["Device", "device_summary", "foreign_processes", "inventory"]
