"""The job store's accepting front between real boxes: three network namespaces on a bridge (tests.netns_util).

h1 runs `python -m p2pft.launch.store` as the coordinator runs it; the admitted box runs a torch TCPStore client
against h1's store port, the other one a plain connection (a torch client turned away is in
tests/integration/test_store_front.py; retrying it costs seconds). The front must let the admitted box through and
turn the other away at its real address, and follow a new round's admitted set without a restart.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from p2pft.launch.admission import write_admitted
from p2pft.launch.store import read_ready_file
from tests.netns_util import Host, netns_hosts  # noqa: F401  (pytest fixture)

# `make chaos`: tests/e2e/test_office_network.py keeps the path in `make test` (the front admits box-b's real
# bridge address, refuses nothing); tests/integration/test_store_front.py refuses a stranger's address.
pytestmark = [pytest.mark.slow, pytest.mark.netns, pytest.mark.chaos]

MEMBER = """
import sys
from datetime import timedelta
from torch.distributed import TCPStore
host, port, key = sys.argv[1], int(sys.argv[2]), sys.argv[3]
store = TCPStore(host, port, is_master=False, timeout=timedelta(seconds=10))
store.set(key, "yes")
print("stored", store.get(key).decode())
"""
STRANGER = """
import socket, sys
with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5) as sock:
    sock.settimeout(3)
    try:
        print("closed at once" if sock.recv(1) == b"" else "answered")
    except ConnectionResetError:
        print("closed at once")
    except TimeoutError:
        print("kept open")
"""


def run_clients(member: Host, stranger: Host, store_host: str, port: int, key: str) -> dict[str, str]:
    running = {h.name: h.popen([sys.executable, "-c", script, store_host, str(port), key], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
               for h, script in ((member, MEMBER), (stranger, STRANGER))}
    out = {}
    for name, process in running.items():
        stdout, _ = process.communicate(timeout=60)
        out[name] = stdout.strip().splitlines()[-1] if stdout.strip() else f"exit {process.returncode}"
    return out


def test_front_admits_the_round_members_real_addresses(netns_hosts: Callable[[int], list[Host]],  # noqa: F811
                                                        tmp_path: Path) -> None:
    h1, h2, h3 = netns_hosts(3)
    ready, admitted, log = tmp_path / "ready.json", tmp_path / "admitted.json", tmp_path / "store.log"
    write_admitted(admitted, round_number=1, hosts=[h2.ip])
    with log.open("w") as sink:
        h1.popen([sys.executable, "-m", "p2pft.launch.store", "--host", h1.ip, "--port", "0", "--ready-file",
                  str(ready), "--admitted-file", str(admitted)], stdout=sink, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while (found := read_ready_file(ready)) is None:
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)
    port = found[1]

    first = run_clients(h2, h3, h1.ip, port, "r1")
    assert first == {"h2": "stored yes", "h3": "closed at once"}, (first, log.read_text())

    write_admitted(admitted, round_number=2, hosts=[h3.ip])    # h3 joins, h2 leaves
    second = run_clients(h3, h2, h1.ip, port, "r2")
    assert second == {"h3": "stored yes", "h2": "closed at once"}, (second, log.read_text())

    text = log.read_text()
    assert f"refused a connection from {h3.ip}: not a member of round 1" in text, text
    assert f"refused a connection from {h2.ip}: not a member of round 2" in text, text
    assert text.count("refused a connection") == 2, text
