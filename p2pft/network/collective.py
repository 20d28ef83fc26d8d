"""The environment that puts the workers' collectives (gloo, NCCL) on the interface the other members reach.

Without it gloo binds to the address the hostname resolves to (127.0.1.1 on stock Ubuntu), so every other box
dials its own loopback. The user's own variables win: a box where GLOO_SOCKET_IFNAME or NCCL_SOCKET_IFNAME is
already set keeps it, unless the daemon's `collective_interface` setting names one.
"""

from __future__ import annotations

from collections.abc import Mapping

from p2pft.network.routes import LocalChoice

INTERFACE_VARIABLES = ("GLOO_SOCKET_IFNAME", "NCCL_SOCKET_IFNAME")


def collective_env(choice: LocalChoice, user_env: Mapping[str, str]) -> dict[str, str]:
    """Variables to add for the round's workers (none that the user set, none without a known interface)."""
    if not choice.interface:
        return {}
    wanted = {
        "GLOO_SOCKET_IFNAME": choice.interface,
        # "=" makes NCCL match the name exactly (its default is a prefix match: "eth" also takes eth1).
        "NCCL_SOCKET_IFNAME": f"={choice.interface}",
    }
    if choice.how == "setting":
        return wanted
    return {key: value for key, value in wanted.items() if not user_env.get(key)}
