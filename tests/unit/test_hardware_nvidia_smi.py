"""nvidia-smi parsing and the CPU fallback, on recorded-style outputs (no GPU needed)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from p2pft.hardware.inventory import (
    Device,
    cuda_version,
    device_summary,
    devices_from_queries,
    foreign_processes,
    inventory,
    parse_cpu_model,
)
from p2pft.hardware.nvidia_smi import parse_compute_apps, parse_cuda_version, parse_gpu_query

ONE_3090 = "0, NVIDIA GeForce RTX 3090, 24576, 24161, 0, GPU-5a1c3f0e-8d2b-4c7a-9e61-2f4b8c9d0a17\n"
MIXED_4090_A6000 = (
    "0, NVIDIA GeForce RTX 4090, 24564, 23008, 7, GPU-0b7e2a44-91c3-6f15-d2aa-7c3e5f10b9e2\n"
    "1, NVIDIA RTX A6000, 49140, 48650, [N/A], GPU-c4d2e8f1-3a6b-11ee-8c90-0242ac120002\n"
)
FOREIGN_BOX_GPUS = "0, NVIDIA GeForce RTX 4090, 24564, 9612, 93, GPU-0b7e2a44-91c3-6f15-d2aa-7c3e5f10b9e2\n"
FOREIGN_BOX_APPS = (
    "GPU-0b7e2a44-91c3-6f15-d2aa-7c3e5f10b9e2, 48211, 13840\nGPU-0b7e2a44-91c3-6f15-d2aa-7c3e5f10b9e2, 50112, [N/A]\n"
)
GARBAGE = (
    "0, NVIDIA GeForce RTX 3090, 24576, 24161, 0, GPU-5a1c3f0e-8d2b-4c7a-9e61-2f4b8c9d0a17\n"
    "1, NVIDIA GeForce RTX 3090, 245\n"  # output cut off mid-line
    "Unable to determine the device handle for GPU0000:02:00.0: Unknown Error\n"
    "x, NVIDIA GeForce RTX 3090, 24576, 24161, 0, GPU-1\n"
)
NO_DEVICES = "No devices were found\n"


def test_single_rtx_3090() -> None:
    parsed = parse_gpu_query(ONE_3090)
    assert parsed.problems == []
    (row,) = parsed.rows
    assert (row.index, row.name, row.memory_total_mb, row.memory_free_mb, row.utilization_pct) == (
        0,
        "NVIDIA GeForce RTX 3090",
        24576,
        24161,
        0,
    )
    assert row.uuid.startswith("GPU-5a1c3f0e")
    assert device_summary(devices_from_queries(ONE_3090, "")) == "RTX 3090 24GB"


def test_mixed_4090_and_a6000_with_unreported_utilisation() -> None:
    devices = devices_from_queries(MIXED_4090_A6000, "")
    assert [(d.index, d.name, d.memory_total_mb) for d in devices] == [
        (0, "NVIDIA GeForce RTX 4090", 24564),
        (1, "NVIDIA RTX A6000", 49140),
    ]
    assert devices[1].utilization_pct is None
    assert all(d.kind == "cuda" and d.processes == () for d in devices)
    assert device_summary(devices) == "RTX 4090 24GB + RTX A6000 48GB"


def test_identical_gpus_are_counted_in_the_summary() -> None:
    two = ONE_3090 + ONE_3090.replace("0, ", "1, ", 1).replace("GPU-5a1c", "GPU-6b2d")
    assert device_summary(devices_from_queries(two, "")) == "2x RTX 3090 24GB"


def test_foreign_process_is_attached_to_its_gpu() -> None:
    apps = parse_compute_apps(FOREIGN_BOX_APPS)
    assert apps.problems == []
    assert [(a.pid, a.used_memory_mb) for a in apps.rows] == [(48211, 13840), (50112, None)]
    (gpu,) = devices_from_queries(FOREIGN_BOX_GPUS, FOREIGN_BOX_APPS)
    assert gpu.processes == (48211, 50112)
    assert gpu.utilization_pct == 93
    assert foreign_processes(gpu, own_pids=[50112]) == (48211,)


def test_garbage_and_partial_output_keeps_the_good_rows_and_names_the_bad_lines() -> None:
    parsed = parse_gpu_query(GARBAGE)
    assert [row.index for row in parsed.rows] == [0]
    assert len(parsed.problems) == 3
    assert parsed.problems[0].startswith("nvidia-smi gpu line 2:")
    assert all("\n" not in problem for problem in parsed.problems)
    assert parse_compute_apps("GPU-1, notapid, 10\n\n").problems[0].startswith("nvidia-smi compute-apps line 1")


def test_no_devices_found_is_an_empty_answer_not_a_problem() -> None:
    assert parse_gpu_query(NO_DEVICES).rows == []
    assert parse_gpu_query(NO_DEVICES).problems == []
    assert parse_compute_apps("No running processes found\n").rows == []
    assert parse_compute_apps("").rows == []


def test_comma_in_a_gpu_name_does_not_shift_the_fields() -> None:
    (row,) = parse_gpu_query("3, Weird, Name GPU, 8192, 100, 1, GPU-x\n").rows
    assert (row.index, row.name, row.memory_total_mb, row.uuid) == (3, "Weird, Name GPU", 8192, "GPU-x")


def _fake_nvidia_smi(tmp_path: Path, gpu_out: str, apps_out: str, exit_code: int = 0) -> str:
    """A stand-in executable that answers the two queries like the real binary would."""
    (tmp_path / "gpus.txt").write_text(gpu_out)
    (tmp_path / "apps.txt").write_text(apps_out)
    script = tmp_path / "nvidia-smi"
    script.write_text(
        "#!/bin/sh\n"
        f'case "$1" in --query-gpu=*) cat {tmp_path}/gpus.txt;; *) cat {tmp_path}/apps.txt;; esac\n'
        f"exit {exit_code}\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


def test_inventory_runs_nvidia_smi_and_joins_the_queries(tmp_path: Path) -> None:
    binary = _fake_nvidia_smi(tmp_path, FOREIGN_BOX_GPUS, FOREIGN_BOX_APPS)
    (gpu,) = inventory(nvidia_smi=binary)
    assert gpu.kind == "cuda" and gpu.processes == (48211, 50112)


@pytest.mark.parametrize(
    ("gpu_out", "exit_code"),
    [(NO_DEVICES, 6), ("total garbage\n", 0)],
    ids=["no-devices-exit-6", "garbage"],
)
def test_inventory_falls_back_to_the_cpu(tmp_path: Path, gpu_out: str, exit_code: int) -> None:
    binary = _fake_nvidia_smi(tmp_path, gpu_out, "", exit_code)
    (cpu,) = inventory(nvidia_smi=binary)
    assert cpu.kind == "cpu"
    assert cpu.cpu_cores == os.cpu_count()
    assert cpu.memory_total_mb > 0 and 0 < cpu.memory_free_mb <= cpu.memory_total_mb
    assert device_summary([cpu]) == f"cpu:{os.cpu_count()}x"


def test_inventory_times_out_a_hung_nvidia_smi(tmp_path: Path) -> None:
    script = tmp_path / "nvidia-smi"
    script.write_text("#!/bin/sh\nexec sleep 30\n")
    script.chmod(0o755)
    (device,) = inventory(nvidia_smi=str(script), timeout_s=0.3)
    assert device.kind == "cpu"


def test_inventory_without_nvidia_smi_is_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    assert [d.kind for d in inventory()] == ["cpu"]


def test_cpu_model_name_from_cpuinfo() -> None:
    x86 = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel\t\t: 49\nmodel name\t: AMD EPYC   7B12 64-Core\n"
    assert parse_cpu_model(x86) == "AMD EPYC 7B12 64-Core"
    assert parse_cpu_model("Hardware\t: BCM2835\n") == "BCM2835"
    assert parse_cpu_model("") == "cpu"


def test_summary_of_nothing_and_a_long_list_stays_short() -> None:
    assert device_summary([]) == "none"
    many = [Device("cuda", i, f"NVIDIA Model {i} " + "X" * 30, 8192, 8192, 0, ()) for i in range(10)]
    assert len(device_summary(many)) <= 200


def test_hardware_package_does_not_import_torch() -> None:
    import subprocess
    import sys

    code = "import sys, p2pft.hardware, p2pft.discovery.txt; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


BANNER = """Sun Nov 29 17:20:01 2026
+-----------------------------------------------------------------------------------------+
| NVIDIA-SMI 550.54.14              Driver Version: 550.54.14      CUDA Version: 12.4     |
|-----------------------------------------+------------------------+----------------------+
"""


def test_cuda_version_from_the_banner(tmp_path: Path) -> None:
    assert parse_cuda_version(BANNER) == "12.4"
    assert parse_cuda_version("CUDA Version: N/A") == "" and parse_cuda_version(NO_DEVICES) == ""
    script = tmp_path / "nvidia-smi"
    script.write_text(f"#!/bin/sh\ncat <<'EOF'\n{BANNER}EOF\n")
    script.chmod(0o755)
    assert cuda_version(nvidia_smi=str(script)) == "12.4"
    assert cuda_version(nvidia_smi=str(tmp_path / "missing")) == ""
