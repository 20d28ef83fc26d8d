"""CPU quotas for slow-box emulation: the pure parts always, a real cgroup where this host allows one."""

import os
import subprocess
import sys
import time

import pytest

from p2pft.testing.cpu_quota import CpuQuotaError, cpu_limit, cpu_quota, own_cpu_cgroup, quota_cpus, unavailable_reason

BUSY_LOOP = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.6:\n    pass\n"


def test_quota_arithmetic() -> None:
    assert quota_cpus(50_000, 100_000) == 0.5
    assert quota_cpus(-1, 100_000) is None
    assert quota_cpus(200_000, 100_000) == 2.0


def test_own_cgroup_is_a_path() -> None:
    assert own_cpu_cgroup().startswith("/")


@pytest.mark.skipif(bool(unavailable_reason()), reason=unavailable_reason() or "ok")
def test_a_half_cpu_quota_holds_a_busy_child_to_half_a_cpu() -> None:
    with cpu_quota(f"test-{os.getpid()}", 0.5) as quota:
        assert quota.path.is_dir()
        child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()\n" + BUSY_LOOP],
                                 stdin=subprocess.PIPE)
        quota.add(child.pid)
        assert child.pid in quota.pids()
        assert cpu_limit(child.pid) == 0.5
        started = time.monotonic()
        assert child.stdin is not None
        child.stdin.close()  # start burning CPU only once inside the cgroup
        assert child.wait(timeout=30) == 0
        wall = time.monotonic() - started
        # 0.6 s of CPU at <= 0.5 CPU cannot take less than ~1.2 s, however idle the host (a period's slack aside)
        assert wall >= 1.0
        assert quota.throttled_s() > 0
    assert not quota.path.exists()


@pytest.mark.skipif(bool(unavailable_reason()), reason=unavailable_reason() or "ok")
def test_bad_values_are_one_line_errors() -> None:
    with pytest.raises(CpuQuotaError, match="cpus must be > 0"), cpu_quota(f"bad-{os.getpid()}", 0):
        pass
    with pytest.raises(CpuQuotaError, match="bad cgroup name"), cpu_quota("a/b", 1.0):
        pass
