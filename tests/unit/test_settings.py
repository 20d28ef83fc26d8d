"""p2pftd settings: precedence flags > env > config file > defaults, and one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from p2pft.daemon.settings import DEFAULT_PORT, SettingsError, parse_settings, reloaded
from p2pft.daemon.state_dir import default_state_dir, resolve_state_dir


def test_defaults(tmp_path: Path) -> None:
    s = parse_settings([], {})
    assert s.state_dir == default_state_dir()
    assert s.listen == f"0.0.0.0:{DEFAULT_PORT}" and s.mdns and s.peers == () and s.mdns_interfaces == ()
    assert s.heartbeat_interval_s == 1.0 and s.lost_after_intervals == 3 and s.lost_after_s == 3.0
    assert s.name


def test_contract_flags(tmp_path: Path) -> None:
    s = parse_settings(["--state-dir", str(tmp_path), "--listen", "127.0.0.1:0", "--name", "box1",
                        "--peer", "10.0.0.2:47341", "--peer", "[::1]:5", "--no-mdns",
                        "--mdns-interface", "127.0.0.1", "--mdns-interface", "10.0.0.1"], {})
    assert s.state_dir == tmp_path.resolve() and s.listen_host == "127.0.0.1" and s.listen_port == 0
    assert s.name == "box1" and s.peers == ("10.0.0.2:47341", "[::1]:5") and not s.mdns
    assert s.mdns_interfaces == ("127.0.0.1", "10.0.0.1")


def test_network_settings(tmp_path: Path) -> None:
    defaults = parse_settings([], {})
    assert defaults.collective_interface == "" and defaults.store_ports == (47342, 47391)
    s = parse_settings(["--collective-interface", "enp3s0", "--store-ports", "50000-50009",
                        "--mdns-interface", "eth0", "--mdns-interface", "192.168.1.20"], {})
    assert s.collective_interface == "enp3s0" and s.store_ports == (50000, 50009)
    assert s.mdns_interfaces == ("eth0", "192.168.1.20")
    from_env = parse_settings([], {"P2PFT_COLLECTIVE_INTERFACE": "wlp2s0", "P2PFT_STORE_PORTS": "0"})
    assert from_env.collective_interface == "wlp2s0" and from_env.store_ports == (0, 0)


@pytest.mark.parametrize("suffix", [".yaml", ".toml"])
def test_precedence_flags_over_env_over_file(tmp_path: Path, suffix: str) -> None:
    cfg = tmp_path / f"p2pftd{suffix}"
    if suffix == ".yaml":
        cfg.write_text("name: from-file\nlisten: 127.0.0.1:1000\nheartbeat-interval-s: 0.5\npeers: [10.0.0.9:1]\n"
                       "mdns: false\n")
    else:
        cfg.write_text('name = "from-file"\nlisten = "127.0.0.1:1000"\nheartbeat_interval_s = 0.5\n'
                       'peers = ["10.0.0.9:1"]\nmdns = false\n')
    env = {"P2PFT_LISTEN": "127.0.0.1:2000", "P2PFT_NAME": "from-env", "P2PFT_MDNS": "1"}
    s = parse_settings(["--config", str(cfg), "--name", "from-flag"], env)
    assert s.name == "from-flag"              # flag beats env and file
    assert s.listen == "127.0.0.1:2000"        # env beats file
    assert s.heartbeat_interval_s == 0.5       # file beats default
    assert s.peers == ("10.0.0.9:1",) and s.mdns  # env P2PFT_MDNS=1 beats the file's false
    assert s.config == cfg.resolve()


def test_config_from_env_and_peers_list_in_env(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("log_level: debug\n")
    s = parse_settings([], {"P2PFT_CONFIG": str(cfg), "P2PFT_PEERS": "10.0.0.1:1, 10.0.0.2:2",
                            "P2PFT_STATE_DIR": str(tmp_path)})
    assert s.log_level == "DEBUG" and s.peers == ("10.0.0.1:1", "10.0.0.2:2") and s.state_dir == tmp_path.resolve()


@pytest.mark.parametrize(("argv", "env", "fragment"), [
    (["--listen", "nohost"], {}, "command line: listen='nohost': expected HOST:PORT"),
    (["--listen", "1.2.3.4:70000"], {}, "port 70000 is outside"),
    (["--listen", ":5"], {}, "HOST is empty"),
    (["--peer", "10.0.0.1"], {}, "peer '10.0.0.1'"),
    (["--mdns-interface", "10.0.0"], {}, "'10.0.0' is neither an IP address nor an interface name"),
    (["--collective-interface", "eth0:1"], {}, "expected a network interface name"),
    (["--store-ports", "80-90"], {}, "1024 <= LOW <= HIGH"),
    ([], {"P2PFT_STORE_PORTS": "5000-4000"}, "environment P2PFT_*: store_ports='5000-4000'"),
    (["--heartbeat-interval", "0"], {}, "heartbeat_interval_s='0': expected seconds between"),
    (["--heartbeat-interval", "abc"], {}, "heartbeat_interval_s='abc'"),
    (["--log-level", "LOUD"], {}, "expected one of DEBUG"),
    ([], {"P2PFT_MDNS": "maybe"}, "environment P2PFT_*: mdns='maybe': expected true/false"),
    ([], {"P2PFT_LOST_AFTER_INTERVALS": "1"}, "expected a whole number >= 2"),
    (["--name", "has space"], {}, "without spaces"),
])
def test_bad_values_are_one_line_errors(argv: list[str], env: dict[str, str], fragment: str) -> None:
    with pytest.raises(SettingsError) as err:
        parse_settings(argv, env)
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_bad_config_files(tmp_path: Path) -> None:
    unknown = tmp_path / "u.yaml"
    unknown.write_text("listen: 127.0.0.1:1\nheartbeat: 2\n")
    with pytest.raises(SettingsError, match="unknown setting 'heartbeat'; known:"):
        parse_settings(["--config", str(unknown)], {})
    broken = tmp_path / "b.toml"
    broken.write_text("name = \n")
    with pytest.raises(SettingsError, match="not valid TOML"):
        parse_settings(["--config", str(broken)], {})
    listy = tmp_path / "l.yaml"
    listy.write_text("- a\n- b\n")
    with pytest.raises(SettingsError, match="expected a mapping"):
        parse_settings(["--config", str(listy)], {})
    with pytest.raises(SettingsError, match="cannot read"):
        parse_settings(["--config", str(tmp_path / "missing.yaml")], {})


def test_sighup_reload_takes_only_safe_fields(tmp_path: Path) -> None:
    old = parse_settings(["--listen", "127.0.0.1:1", "--name", "a"], {})
    fresh = parse_settings(["--listen", "127.0.0.1:2", "--name", "b", "--peer", "10.0.0.1:1",
                            "--heartbeat-interval", "2"], {})
    new, restart = reloaded(old, fresh)
    assert new.name == "b" and new.peers == ("10.0.0.1:1",) and new.heartbeat_interval_s == 2.0
    assert new.listen == "127.0.0.1:1" and restart == ["listen"]


def test_state_dir_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("P2PFT_STATE_DIR", str(tmp_path / "env"))
    assert resolve_state_dir(None) == (tmp_path / "env").resolve()
    assert resolve_state_dir(str(tmp_path / "flag")) == (tmp_path / "flag").resolve()
    monkeypatch.delenv("P2PFT_STATE_DIR")
    assert resolve_state_dir(None) == default_state_dir()
