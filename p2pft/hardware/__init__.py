"""Hardware inventory (nvidia-smi parsing, CPU fallback). Never imports torch."""

from p2pft.hardware.inventory import Device, cuda_version, device_summary, foreign_processes, inventory

__all__ = ["Device", "cuda_version", "device_summary", "foreign_processes", "inventory"]
