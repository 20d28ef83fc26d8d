"""The layering the jobs core relies on, checked on the source (every import, lazy ones included):
- the daemon side never imports the training stack (p2pft.train: torch), nor config/ (read by both sides);
- nothing but the daemon itself, the CLI and the demo imports p2pft.daemon."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "p2pft"
DAEMON_SIDE = ("jobs", "daemon", "membership", "network", "transfer", "planning", "formats", "rpc", "launch",
               "discovery", "security", "hardware", "config")
MAY_IMPORT_DAEMON = ("daemon", "cli", "demo")


def imports_of(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def modules(package: str) -> list[Path]:
    return sorted((PACKAGE / package).rglob("*.py"))


@pytest.mark.parametrize("package", DAEMON_SIDE)
def test_the_daemon_side_does_not_import_the_training_stack(package: str) -> None:
    offenders = {str(p.relative_to(PACKAGE)): sorted(m for m in imports_of(p) if m.startswith("p2pft.train"))
                 for p in modules(package)}
    assert not {k: v for k, v in offenders.items() if v}


def test_only_the_daemon_cli_and_demo_import_the_daemon_package() -> None:
    offenders = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        top = path.relative_to(PACKAGE).parts[0]
        if top in MAY_IMPORT_DAEMON:
            continue
        bad = sorted(m for m in imports_of(path) if m.startswith("p2pft.daemon"))
        if bad:
            offenders[str(path.relative_to(PACKAGE))] = bad
    assert not offenders
