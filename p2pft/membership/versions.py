"""What software a node runs, and whether two nodes can work together.

Versions are read from package metadata, never by importing torch (the daemon must stay light and must not
load CUDA). Compatibility rule: the p2pft wire protocol version must be equal; everything else (p2pft, python,
torch, cuda) is shown to the user but does not exclude a node (a job checks what it needs when it is placed).
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from importlib import metadata

from p2pft import PROTOCOL_VERSION, __version__


@dataclass(frozen=True)
class VersionInfo:
    p2pft: str
    protocol: int
    python: str
    torch: str = ""   # empty when torch is not installed
    cuda: str = ""    # empty on CPU-only boxes


def _dist_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return ""


def local_versions(cuda: str = "") -> VersionInfo:
    return VersionInfo(
        p2pft=_dist_version("p2pft") or __version__,
        protocol=PROTOCOL_VERSION,
        python=platform.python_version(),
        torch=_dist_version("torch"),
        cuda=cuda,
    )


def incompatibility(ours: VersionInfo, theirs: VersionInfo | None) -> str:
    """Why a peer cannot take part in jobs with us, as one line; "" when it can."""
    if theirs is None:
        return "sent no versions (not a p2pft daemon of this release line)"
    if theirs.protocol != ours.protocol:
        return f"protocol {theirs.protocol} != ours {ours.protocol}: run the same p2pft release on both boxes"
    return ""
