from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from p2pft.launch.agent import AgentOutcome, classify_agent_exit
from p2pft.launch.round_spec import RdzvTimeouts, RoundLaunch, build_agent_command


def make_launch(tmp: Path = Path("/runs/job7"), **overrides: object) -> RoundLaunch:
    launch = RoundLaunch(
        job_id="job7", round=3, rdzv_host="10.0.0.5", rdzv_port=29400, nnodes=2, nproc_per_node=4,
        node_id="box-a", local_addr="10.0.0.7", run_dir=tmp / "r3", job_file=tmp / "job.json",
        plan_file=tmp / "r3" / "plan.json", checkpoint_dir=tmp / "ckpt", python="/venv/bin/python",
    )
    return replace(launch, **overrides)  # type: ignore[arg-type]


def option(argv: list[str], name: str) -> str:
    values = [arg.split("=", 1)[1] for arg in argv if arg.startswith(name + "=")]
    assert len(values) == 1, f"{name} appears {len(values)} times in {argv}"
    return values[0]


def test_agent_argv_pins_exact_membership_and_round_scoped_rendezvous() -> None:
    argv, _ = build_agent_command(make_launch())
    assert argv[:3] == ["/venv/bin/python", "-m", "torch.distributed.run"]
    assert option(argv, "--rdzv-backend") == "c10d"
    assert option(argv, "--rdzv-endpoint") == "10.0.0.5:29400"
    assert option(argv, "--rdzv-id") == "job7-r3"   # a round from a record older than the key


def test_the_rendezvous_id_is_the_rounds_random_key_never_derived_from_the_job() -> None:
    key = "0123456789abcdef" * 2
    argv, _ = build_agent_command(make_launch(rdzv_key=key))
    assert option(argv, "--rdzv-id") == f"p2pft-{key}"
    assert "job7" not in option(argv, "--rdzv-id")
    with pytest.raises(ValueError, match="rdzv_key"):
        build_agent_command(make_launch(rdzv_key="job7-r3"))
    assert option(argv, "--nnodes") == "2:2"
    assert option(argv, "--nproc-per-node") == "4"
    assert option(argv, "--max-restarts") == "0"
    assert option(argv, "--local-addr") == "10.0.0.7"


def test_rdzv_conf_is_bounded_and_never_hosts_the_store() -> None:
    argv, _ = build_agent_command(make_launch())
    conf = dict(item.split("=") for item in option(argv, "--rdzv-conf").split(","))
    assert conf == {
        "join_timeout": "60", "last_call_timeout": "1", "close_timeout": "10", "keep_alive_interval": "10",
        "keep_alive_max_attempt": "3", "read_timeout": "30", "is_host": "0",
    }


def test_worker_module_and_its_arguments_follow_torchrun_options() -> None:
    argv, _ = build_agent_command(make_launch(worker_module="tests.integration._echo_worker"))
    tail = argv[argv.index("-m", 3):]
    assert tail == [
        "-m", "tests.integration._echo_worker", "--job", "/runs/job7/job.json", "--plan", "/runs/job7/r3/plan.json",
        "--run-dir", "/runs/job7/r3", "--checkpoint-dir", "/runs/job7/ckpt",
    ]


def test_env_disables_store_sharing_and_names_the_node() -> None:
    _, env = build_agent_command(make_launch(env_extras={"EXTRA": "1", "P2PFT_NODE_ID": "spoofed"}))
    assert env["TORCH_DISABLE_SHARE_RDZV_TCP_STORE"] == "1"
    assert env["P2PFT_NODE_ID"] == "box-a"  # extras never override p2pft's own variables
    assert env["P2PFT_CHECKPOINT_DIR"] == "/runs/job7/ckpt"
    assert env["OMP_NUM_THREADS"] == "1"
    assert env["EXTRA"] == "1"
    assert "GLOO_SOCKET_IFNAME" not in env


def test_gloo_interface_is_set_only_when_asked() -> None:
    _, env = build_agent_command(make_launch(gloo_socket_ifname="eth0"))
    assert env["GLOO_SOCKET_IFNAME"] == "eth0"


def test_ipv6_endpoint_is_bracketed() -> None:
    argv, _ = build_agent_command(make_launch(rdzv_host="fd00::5"))
    assert option(argv, "--rdzv-endpoint") == "[fd00::5]:29400"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"job_id": "job 7"}, "job_id"),
        ({"node_id": ""}, "node_id"),
        ({"round": -1}, "round"),
        ({"rdzv_port": 0}, "rdzv_port"),
        ({"nnodes": 0}, "nnodes"),
        ({"nproc_per_node": 0}, "nproc_per_node"),
        ({"run_dir": Path("relative/run")}, "run_dir"),
        ({"timeouts": RdzvTimeouts(last_call_s=0)}, "last_call_timeout"),
        ({"local_addr": ""}, "local_addr"),
    ],
)
def test_bad_launch_is_one_line_error_naming_the_field(overrides: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=field) as error:
        build_agent_command(make_launch(**overrides))
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    ("returncode", "reported_stop", "outcome"),
    [
        (0, False, AgentOutcome.FINISHED),
        (0, True, AgentOutcome.FINISHED),
        (75, False, AgentOutcome.STOPPED_ON_REQUEST),
        (1, True, AgentOutcome.STOPPED_ON_REQUEST),  # torchrun reports a worker's 75 as its own exit 1
        (1, False, AgentOutcome.FAILED),
        (-9, True, AgentOutcome.FAILED),  # killed: whatever the worker said, this round did not end cleanly
    ],
)
def test_agent_exit_classification(returncode: int, reported_stop: bool, outcome: AgentOutcome) -> None:
    assert classify_agent_exit(returncode, worker_reported_stop=reported_stop) is outcome
