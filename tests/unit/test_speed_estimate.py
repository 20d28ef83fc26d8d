import pytest

from p2pft.hardware.inventory import Device
from p2pft.planning.speed_estimate import (
    estimate_device_speed,
    estimate_speed,
    fill_unknown_speeds,
    gpu_table_speed,
)


@pytest.mark.parametrize(("name", "key"), [
    ("NVIDIA GeForce RTX 3090", "RTX 3090"),
    ("NVIDIA GeForce RTX 3090 Ti", "RTX 3090 TI"),
    ("NVIDIA GeForce RTX 4090", "RTX 4090"),
    ("NVIDIA GeForce RTX 2080 Ti", "RTX 2080 TI"),
    ("NVIDIA RTX A6000", "RTX A6000"),
    ("NVIDIA RTX 6000 Ada Generation", "RTX 6000 ADA"),
    ("Quadro RTX 6000", "QUADRO RTX 6000"),
    ("NVIDIA A100-SXM4-80GB", "A100"),
    ("NVIDIA A100 80GB PCIe", "A100"),
    ("NVIDIA A10G", "A10G"),
    ("NVIDIA A10", "A10"),
    ("NVIDIA H100 80GB HBM3", "H100"),
    ("NVIDIA H100 PCIe", "H100 PCIE"),
    ("NVIDIA H200", "H200"),
    ("NVIDIA GH200 480GB", "GH200"),
    ("NVIDIA L40S", "L40S"),
    ("NVIDIA L40", "L40"),
    ("NVIDIA L4", "L4"),
    ("Tesla V100-SXM2-16GB", "V100"),
    ("Tesla T4", "T4"),
])
def test_nvidia_smi_names_find_their_row(name: str, key: str) -> None:
    found = gpu_table_speed(name)
    assert found is not None and found[0] == key


def test_the_table_orders_cards_the_way_everyone_knows_them() -> None:
    speed = {n: estimate_speed("cuda", name=n).relative for n in (
        "NVIDIA GeForce RTX 2080 Ti", "NVIDIA GeForce RTX 3090", "NVIDIA GeForce RTX 4090", "NVIDIA A100-SXM4-80GB",
        "NVIDIA H100 80GB HBM3", "NVIDIA H200")}
    ordered = list(speed.values())
    assert ordered == sorted(ordered)
    assert speed["NVIDIA GeForce RTX 3090"] == 1.0


def test_unknown_cards_fall_back_to_sm_count_then_memory_then_a_3090() -> None:
    assert estimate_speed("cuda", name="NVIDIA Future 9000", sm_count=164).relative == pytest.approx(2.0)
    by_memory = estimate_speed("cuda", name="NVIDIA Future 9000", memory_total_mb=81920)
    assert by_memory.relative == 2.2 and "80 GB" in by_memory.basis
    assert estimate_speed("cuda", name="NVIDIA Future 9000", memory_total_mb=16384).relative == 1.0


def test_cpus_scale_with_usable_cores() -> None:
    two, eight = estimate_speed("cpu", cpu_cores=2), estimate_speed("cpu", cpu_cores=8)
    assert eight.relative == pytest.approx(4 * two.relative)
    assert estimate_speed("cpu", cpu_cores=0.5).relative == pytest.approx(two.relative / 4)  # a CPU quota


def test_inventory_devices_are_read_as_they_are() -> None:
    gpu = Device("cuda", 0, "NVIDIA GeForce RTX 4090", 24564, 20000, 3, ())
    cpu = Device("cpu", 0, "AMD EPYC", 0, 0, None, (), cpu_cores=16)
    assert estimate_device_speed(gpu).basis == "table: RTX 4090"
    assert estimate_device_speed(cpu).basis == "16 CPU cores"


def test_unmeasured_ranks_join_in_the_units_of_the_measured_ones() -> None:
    estimates = {"a": 1.0, "b": 2.0, "new": 4.0}
    filled = fill_unknown_speeds({"a": 10.0, "b": 30.0, "new": None}, estimates)
    assert filled["a"] == 10.0 and filled["b"] == 30.0
    assert filled["new"] == pytest.approx(4.0 * 12.5)  # median of 10/1 and 30/2
    assert fill_unknown_speeds({}, estimates) == estimates
