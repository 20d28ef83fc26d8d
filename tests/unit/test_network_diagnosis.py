"""A failed round's agent log, explained in one sentence (p2pft.network.diagnosis), from torch/gloo's own
message formats, and the coordinator's choice of the report that says why."""

from __future__ import annotations

from p2pft.jobs.model import MemberReport
from p2pft.jobs.state import network_failure, root_cause
from p2pft.network.diagnosis import RoundAddresses, explain, find_unreachable

ROUND = RoundAddresses(store="10.0.0.1:47342", coordinator="box-a",
                       collective={"10.0.0.1": "box-a", "172.18.0.1": "box-b"},
                       daemon_hosts={"10.0.0.1": "box-a", "10.0.0.2": "box-b"})
STORE_TIMEOUT = ("torch.distributed.DistNetworkError: The client socket has timed out after 30000ms while trying "
                 "to connect to (10.0.0.1, 47342).")
GLOO_UNREACHABLE = ("RuntimeError: Gloo connectFullMesh failed with [../third_party/gloo/gloo/transport/tcp/"
                    "pair.cc:144] connect [172.18.0.1]:40311: Network is unreachable")
GLOO_LOOPBACK = "RuntimeError: [../third_party/gloo/gloo/transport/tcp/pair.cc:144] Connect timeout [127.0.1.1]:5123"


def test_store_unreachable_names_the_coordinator() -> None:
    text = explain("box-b", f"noise\n{STORE_TIMEOUT}\nmore noise", ROUND)
    assert text is not None
    assert text.startswith("box-b could not reach the job's rendezvous store 10.0.0.1:47342 on box-a (timed out)")
    assert "store_ports" in text


def test_collective_unreachable_names_its_owner() -> None:
    text = explain("box-a", GLOO_UNREACHABLE, ROUND)
    assert text is not None
    assert "box-a could not reach 172.18.0.1:40311 (box-b's workers: no route to that network)" in text
    assert "--collective-interface" in text


def test_loopback_from_a_hostname_is_called_out() -> None:
    text = explain("box-a", GLOO_LOOPBACK, ROUND)
    assert text is not None and "127.0.1.1:5123" in text and "hostname" in text


def test_first_failure_wins_and_clean_logs_explain_nothing() -> None:
    found = find_unreachable(f"{GLOO_UNREACHABLE}\n{STORE_TIMEOUT}")
    assert found is not None and found.host == "172.18.0.1"
    assert explain("box-a", "ValueError: invalid JSON at line 18", ROUND) is None
    assert "not every member joined" in (explain("box-a", "RendezvousTimeoutError: timed out", ROUND) or "")


def test_root_cause_prefers_the_box_that_could_not_connect() -> None:
    seen_it_go = MemberReport("j", "n1", 0, phase="exited", outcome="failed", cause="network",
                              detail="box-a: the other members did not join")
    could_not = MemberReport("j", "n2", 0, phase="exited", outcome="failed", cause="network",
                             detail="box-b could not reach 10.0.0.1:47342")
    plain = MemberReport("j", "n0", 0, phase="exited", outcome="failed", detail="agent exit 1")
    assert root_cause([plain, seen_it_go, could_not]) is could_not
    assert root_cause([plain]) is plain
    assert network_failure({"n2": could_not}) and not network_failure({"n0": plain})


GLOO_213 = ("RuntimeError: [enforce fail at /__w/pytorch/pytorch/third_party/gloo/gloo/transport/tcp/socket.cc:142] "
            "rv != -1. -1 vs -1. connect: Network is unreachable")


def test_gloo_without_an_address_names_the_member_with_no_route() -> None:
    from dataclasses import replace

    three = replace(ROUND, collective={"10.0.0.1": "box-a", "10.1.0.1": "box-b", "10.0.0.3": "box-c"},
                    own_address="10.0.0.1", no_route=frozenset({"10.1.0.1"}))
    text = explain("box-a", GLOO_213, three)
    assert text is not None
    assert text.startswith("box-a could not reach box-b's workers at 10.1.0.1 (no route from this box)"), text
    assert "box-c" not in text
    routed = explain("box-a", GLOO_213, replace(three, no_route=frozenset()))
    assert routed is not None and "box-b's workers at 10.1.0.1 or box-c's workers at 10.0.0.3" in routed


def test_a_store_waiting_for_clients_names_its_own_address() -> None:
    from dataclasses import replace

    log = ("p2pft worker: rank 0 of 2, workers' store 172.18.0.1:60099, gloo on docker0\n"
           "torch.distributed.DistStoreError: Timed out after 31 seconds waiting for clients. 1/2 clients joined.")
    text = explain("box-b", log, replace(ROUND, own_address="172.18.0.1"))
    assert text is not None
    assert text.startswith("box-a could not reach box-b's workers' store at 172.18.0.1:60099 (1 of 2 joined)"), text


def test_workers_store_unreachable_names_its_owner_and_no_route_is_never_transient() -> None:
    log = ("[W1201 socket.cpp:764] [c10d] The client socket has failed to connect to [::]:15236 (errno: 101 - "
           "Network is unreachable).\n[E1201 socket.cpp:818] [c10d] The client socket has failed to connect to any "
           "network address of (172.18.0.1, 60099).\n")
    from p2pft.network.diagnosis import never_transient

    text = explain("box-a", log, ROUND)
    assert text is not None and text.startswith("box-a could not reach box-b's workers' store 172.18.0.1:60099 (no "
                                                "route to that network)"), text
    found = find_unreachable(log)
    assert found is not None and never_transient(found)

    refused = find_unreachable("TCP client failed to connect/validate to host 10.0.0.1:5 - retrying: "
                               "connection refused")
    assert refused is not None and not never_transient(refused)


def test_a_member_turned_away_by_the_store_front_is_told_so() -> None:
    # torch 2.13's store client when the front closes a connection it does not admit (p2pft.launch.store_front).
    log = ("[W1202 09:13:52 TCPStore.cpp:125] [c10d] recvValue failed on SocketImpl(fd=7, "
           "addr=[::ffff:10.0.0.2]:52724, remote=[::ffff:10.0.0.1]:47342): Failed to recv, got 0 bytes. "
           "Connection was likely closed. Did the remote server shutdown or crash?\n"
           "[W1202 09:13:52 TCPStore.cpp:340] [c10d] TCP client failed to connect/validate to host 10.0.0.1:47342 - "
           "retrying (try=0, timeout=60000ms, delay=658ms): Failed to recv, got 0 bytes. Connection was likely "
           "closed. Did the remote server shutdown or crash?")
    text = explain("box-b", log, ROUND)
    assert text is not None
    assert text.startswith("box-b reached the job's rendezvous store 10.0.0.1:47342 on box-a but was turned away")
    assert "store.log" in text
    timed_out = explain("box-b", STORE_TIMEOUT, ROUND)
    assert timed_out is not None and "turned away" not in timed_out
