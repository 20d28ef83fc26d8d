"""p2pftd settings: flags > environment (P2PFT_*) > config file (YAML or TOML) > defaults.

A bad value anywhere is one line naming where it came from, the key, the value and what is allowed.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import socket
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import yaml

from p2pft import __version__
from p2pft.daemon.state_dir import default_state_dir
from p2pft.transfer.budget import DEFAULT_BLOB_BUDGET, BlobBudget, parse_budget

DEFAULT_PORT = 47341
DEFAULT_JOIN_PORT = 47340             # the join listener, on a box that holds the cluster CA key
DEFAULT_STORE_PORTS = (47342, 47391)   # the jobs' rendezvous stores (one per job this box coordinates, + standby)
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class SettingsError(ValueError):
    """One line: source, key, value, what is allowed."""


@dataclass(frozen=True)
class DaemonSettings:
    state_dir: Path
    listen: str = f"0.0.0.0:{DEFAULT_PORT}"
    name: str = ""
    peers: tuple[str, ...] = ()
    mdns: bool = True
    mdns_interfaces: tuple[str, ...] = ()       # empty: the box's LAN interfaces
    heartbeat_interval_s: float = 1.0
    lost_after_intervals: int = 3               # silent this many intervals -> lost
    log_level: str = "INFO"
    yield_when_busy: bool = False               # drain when a non-p2pft process uses this box's GPU
    warm_workers: bool = True                   # rounds fork agent + workers from a warm zygote (docs/warm-start.md)
    collective_interface: str = ""              # workers' gloo/NCCL interface; empty: the one that reaches the round
    store_ports: tuple[int, int] = DEFAULT_STORE_PORTS  # (0, 0): any free port
    join_listen: str = ""                       # empty: the listen host, port 47340 (0 when listen's port is 0)
    max_blob_bytes: int = 64 * 1024**3          # the largest blob a peer may push or this box fetch
    max_streams_per_peer: int = 16              # blob streams (Read/Push) one peer may hold open here at once
    blob_budget: BlobBudget = DEFAULT_BLOB_BUDGET  # how large <state-dir>/blobs may grow (default: half the disk)
    renew_before_days: float = 30.0             # renew this box's certificate when fewer days than this are left
    gpu_memory_headroom: float = 0.10           # share of each GPU's memory a round's memory bound leaves free
    config: Path | None = None

    @property
    def lost_after_s(self) -> float:
        return self.heartbeat_interval_s * self.lost_after_intervals

    @property
    def listen_host(self) -> str:
        return split_host_port(self.listen)[0]

    @property
    def listen_port(self) -> int:
        return split_host_port(self.listen)[1]

    @property
    def join_address(self) -> tuple[str, int]:
        """Where the join listener binds: `join_listen`, else the gRPC host with port 47340, or any free port
        when gRPC's port is 0 (test clusters and the demo run several daemons on one host)."""
        if self.join_listen:
            return split_host_port(self.join_listen)
        return self.listen_host, (0 if self.listen_port == 0 else DEFAULT_JOIN_PORT)


# Settings that SIGHUP may change on a running daemon; the rest need a restart.
RELOADABLE = ("peers", "heartbeat_interval_s", "lost_after_intervals", "log_level", "name", "yield_when_busy",
              "renew_before_days")


def split_host_port(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError("expected HOST:PORT, e.g. 0.0.0.0:47341 or 127.0.0.1:0")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not host:
        raise ValueError("HOST is empty; use 0.0.0.0 to listen on every interface")
    number = int(port)
    if not 0 <= number <= 65535:
        raise ValueError(f"port {number} is outside 0-65535")
    return host, number


def _host_port(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("expected a HOST:PORT string")
    split_host_port(value.strip())
    return value.strip()


def _peer_list(value: Any) -> tuple[str, ...]:
    items = value.replace(",", " ").split() if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        raise ValueError("expected a list of HOST:PORT")
    out = []
    for item in items:
        try:
            out.append(_host_port(item))
        except ValueError as exc:
            raise ValueError(f"peer {item!r}: {exc}") from None
    return tuple(out)


def _interfaces(value: Any) -> tuple[str, ...]:
    items = value.replace(",", " ").split() if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        raise ValueError("expected a list of interface names or IP addresses")
    for item in items:
        text = str(item)
        try:
            ipaddress.ip_address(text)
        except ValueError:
            if not text or len(text) > 15 or any(c.isspace() or c in "/:=," for c in text) or text[0].isdigit():
                raise ValueError(f"{text!r} is neither an IP address nor an interface name (e.g. eth0 or "
                                 "192.168.1.20)") from None
    return tuple(str(i) for i in items)


def _interface_name(value: Any) -> str:
    text = str(value).strip()
    if len(text) > 15 or any(c.isspace() or c in "/:=," for c in text):
        raise ValueError("expected a network interface name such as eth0 or enp3s0 (see `ip -br addr`), or empty")
    return text


def _port_range(value: Any) -> tuple[int, int]:
    if isinstance(value, list | tuple) and len(value) == 2:
        low, high = value
    else:
        text = str(value).strip()
        low, sep, high = text.partition("-")
        high = high if sep else low
    try:
        first, last = int(low), int(high)
    except (TypeError, ValueError):
        raise ValueError("expected LOW-HIGH, e.g. 47342-47391 (or 0 for any free port)") from None
    if (first, last) == (0, 0):
        return 0, 0
    if not 1024 <= first <= last <= 65535:
        raise ValueError("expected LOW-HIGH with 1024 <= LOW <= HIGH <= 65535 (or 0 for any free port)")
    return first, last


def _size_bytes(value: Any) -> int:
    """A byte count: an integer, or a number with K/M/G/T (binary units, e.g. 64G)."""
    text = str(value).strip().upper().removesuffix("IB").removesuffix("B")
    scale = 1
    if text and text[-1] in "KMGT":
        scale = 1024 ** ("KMGT".index(text[-1]) + 1)
        text = text[:-1]
    try:
        number = int(float(text) * scale)
    except ValueError:
        raise ValueError("expected a size such as 64G, 500M or a number of bytes") from None
    if number < 1024 * 1024:
        raise ValueError("expected at least 1M")
    return number


def _streams(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("expected a whole number 1..1024")
    number = int(value)
    if not 1 <= number <= 1024:
        raise ValueError("expected a whole number 1..1024")
    return number


def _renew_days(value: Any) -> float:
    """Days before expiry: at least 1 (a day to reach the CA box), below 300 (certificates last 365 days: a larger
    value would renew again at once)."""
    if isinstance(value, bool):
        raise ValueError("expected a number of days from 1 to 300")
    number = float(value)
    if not 1 <= number <= 300:
        raise ValueError("expected a number of days from 1 to 300")
    return number


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true/false (or 1/0)")


def _headroom(value: Any) -> float:
    """A share of the GPU's memory: 0.1 or 10%; at most 0.9 (the probe needs some memory to find anything)."""
    text = str(value).strip()
    try:
        number = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        number = -1.0
    if isinstance(value, bool) or not 0 <= number <= 0.9:
        raise ValueError("expected a share of the GPU's memory from 0 to 0.9 (or 0% to 90%)")
    return number


def _positive_float(value: Any) -> float:
    number = float(value)
    if not 0.05 <= number <= 60:
        raise ValueError("expected seconds between 0.05 and 60")
    return number


def _intervals(value: Any) -> int:
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise ValueError("expected a whole number >= 2")
    number = int(value)
    if number < 2:
        raise ValueError("expected a whole number >= 2 (1 would call a peer lost after one late heartbeat)")
    return number


def _level(value: Any) -> str:
    text = str(value).upper()
    if text not in LOG_LEVELS:
        raise ValueError(f"expected one of {', '.join(LOG_LEVELS)}")
    return text


def _name(value: Any) -> str:
    text = str(value).strip()
    if not text or len(text) > 63 or any(c.isspace() for c in text):
        raise ValueError("expected 1-63 characters without spaces")
    return text


def _path(value: Any) -> Path:
    if not isinstance(value, str | os.PathLike) or not str(value):
        raise ValueError("expected a directory path")
    return Path(value).expanduser().resolve()


PARSERS: dict[str, Callable[[Any], Any]] = {
    "state_dir": _path,
    "listen": _host_port,
    "name": _name,
    "peers": _peer_list,
    "mdns": _bool,
    "mdns_interfaces": _interfaces,
    "heartbeat_interval_s": _positive_float,
    "lost_after_intervals": _intervals,
    "log_level": _level,
    "yield_when_busy": _bool,
    "warm_workers": _bool,
    "collective_interface": _interface_name,
    "store_ports": _port_range,
    "join_listen": _host_port,
    "max_blob_bytes": _size_bytes,
    "max_streams_per_peer": _streams,
    "blob_budget": parse_budget,
    "renew_before_days": _renew_days,
    "gpu_memory_headroom": _headroom,
}
ENV_PREFIX = "P2PFT_"


def _apply_layer(values: dict[str, Any], layer: Mapping[str, Any], source: str) -> None:
    for key, raw in layer.items():
        parser = PARSERS.get(key)
        if parser is None:
            allowed = ", ".join(sorted(PARSERS))
            raise SettingsError(f"{source}: unknown setting {key!r}; known: {allowed}")
        try:
            values[key] = parser(raw)
        except (ValueError, TypeError) as exc:
            raise SettingsError(f"{source}: {key}={raw!r}: {exc}") from None


def read_config_file(path: Path) -> dict[str, Any]:
    """YAML (.yaml/.yml) or TOML (.toml); keys may use - or _."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise SettingsError(f"--config {path}: cannot read ({exc.strerror})") from None
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        kind = "TOML" if path.suffix == ".toml" else "YAML"
        raise SettingsError(f"--config {path}: not valid {kind}: {first}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SettingsError(f"--config {path}: expected a mapping of settings at the top level")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def env_layer(environ: Mapping[str, str]) -> dict[str, str]:
    return {key: environ[ENV_PREFIX + key.upper()] for key in PARSERS if ENV_PREFIX + key.upper() in environ}


def flag_layer(args: argparse.Namespace) -> dict[str, Any]:
    layer: dict[str, Any] = {}
    for key, attr in (("state_dir", "state_dir"), ("listen", "listen"), ("name", "name"),
                      ("heartbeat_interval_s", "heartbeat_interval"), ("log_level", "log_level")):
        if getattr(args, attr, None) is not None:
            layer[key] = getattr(args, attr)
    if args.peer:
        layer["peers"] = list(args.peer)
    if args.no_mdns:
        layer["mdns"] = False
    if args.mdns_interface:
        layer["mdns_interfaces"] = list(args.mdns_interface)
    if args.yield_when_busy:
        layer["yield_when_busy"] = True
    if args.no_warm_workers:
        layer["warm_workers"] = False
    if getattr(args, "collective_interface", None) is not None:
        layer["collective_interface"] = args.collective_interface
    if getattr(args, "store_ports", None) is not None:
        layer["store_ports"] = args.store_ports
    if getattr(args, "join_listen", None) is not None:
        layer["join_listen"] = args.join_listen
    if getattr(args, "blob_budget", None) is not None:
        layer["blob_budget"] = args.blob_budget
    if getattr(args, "renew_before_days", None) is not None:
        layer["renew_before_days"] = args.renew_before_days
    return layer


def build_arg_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="p2pftd", description="p2pft daemon: joins this box to the cluster.")
    p.add_argument("--version", action="version", version=f"p2pftd {__version__}")
    p.add_argument("--config", metavar="FILE", help="YAML or TOML settings file (env P2PFT_CONFIG)")
    p.add_argument("--state-dir", metavar="DIR", help="node id, credentials, jobs (env P2PFT_STATE_DIR)")
    p.add_argument("--listen", metavar="HOST:PORT", help=f"gRPC address (default 0.0.0.0:{DEFAULT_PORT}; port 0 = any)")
    p.add_argument("--name", help="human-readable name of this box (default: hostname)")
    p.add_argument("--peer", action="append", default=[], metavar="HOST:PORT", help="static peer (repeatable)")
    p.add_argument("--no-mdns", action="store_true", help="no mDNS discovery (static peers + gossip only)")
    p.add_argument("--mdns-interface", action="append", default=[], metavar="IFACE",
                   help="announce/browse mDNS only on this interface (name or IP; repeatable; default: the LAN "
                        "interfaces)")
    p.add_argument("--heartbeat-interval", type=str, metavar="SECONDS", help="default 1")
    p.add_argument("--log-level", metavar="LEVEL", help="DEBUG, INFO, WARNING, ERROR")
    p.add_argument("--yield-when-busy", action="store_true",
                   help="leave jobs (drain) while a non-p2pft process uses this box's GPU (env P2PFT_YIELD_WHEN_BUSY)")
    p.add_argument("--no-warm-workers", action="store_true",
                   help="start every round's workers cold instead of forking them from a warm zygote that holds "
                        "~400 MB while jobs run (env P2PFT_WARM_WORKERS=0)")
    p.add_argument("--collective-interface", metavar="NAME",
                   help="interface for the workers' gloo/NCCL traffic (default: the one whose address routes to "
                        "the round's other members; env P2PFT_COLLECTIVE_INTERFACE)")
    p.add_argument("--store-ports", metavar="LOW-HIGH",
                   help=f"TCP ports for the jobs' rendezvous stores (default {DEFAULT_STORE_PORTS[0]}-"
                        f"{DEFAULT_STORE_PORTS[1]}; 0 = any free port; env P2PFT_STORE_PORTS)")
    p.add_argument("--join-listen", metavar="HOST:PORT",
                   help="where boxes joining with a token reach this box, when it holds the cluster CA key "
                        "(default: the --listen host, port 47340; env P2PFT_JOIN_LISTEN)")
    p.add_argument("--blob-budget", metavar="SIZE",
                   help="the most disk the blob store (datasets, models, checkpoint copies, outputs shared "
                        "with peers) may use, e.g. 50GiB, or a share of the state dir's disk such as 40%% "
                        "(default 50%%); a push or fetch past it is refused (env P2PFT_BLOB_BUDGET)")
    p.add_argument("--renew-before-days", metavar="DAYS",
                   help="renew this box's certificate (1 year) over the mesh when fewer days are left (default 30; "
                        "env P2PFT_RENEW_BEFORE_DAYS)")
    return p


def load_settings(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> DaemonSettings:
    environ = os.environ if environ is None else environ
    config_arg = args.config or environ.get(ENV_PREFIX + "CONFIG")
    values: dict[str, Any] = {}
    config_path = Path(config_arg).expanduser().resolve() if config_arg else None
    if config_path is not None:
        _apply_layer(values, read_config_file(config_path), f"--config {config_path}")
    _apply_layer(values, env_layer(environ), "environment P2PFT_*")
    _apply_layer(values, flag_layer(args), "command line")
    values.setdefault("state_dir", default_state_dir())
    values.setdefault("name", socket.gethostname().split(".")[0][:63] or "p2pft")
    return DaemonSettings(config=config_path, **values)


def parse_settings(argv: Sequence[str] | None, environ: Mapping[str, str] | None = None) -> DaemonSettings:
    return load_settings(build_arg_parser().parse_args(argv), environ)


def reloaded(current: DaemonSettings, fresh: DaemonSettings) -> tuple[DaemonSettings, list[str]]:
    """Take the SIGHUP-safe fields from `fresh`; returns the new settings and the names that need a restart."""
    changes = {f: getattr(fresh, f) for f in RELOADABLE}
    restart_needed = [f.name for f in fields(current)
                      if f.name not in RELOADABLE and getattr(current, f.name) != getattr(fresh, f.name)]
    return replace(current, **changes), restart_needed
