"""Small habits of the two commands, as real processes: versions, global flags anywhere, a closed pipe."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from p2pft import __version__
from tests.daemon_harness import BIN


def _exe(name: str, module: str) -> list[str]:
    exe = BIN / name
    return [str(exe)] if exe.exists() else [sys.executable, "-m", module]


def test_both_commands_print_their_version() -> None:
    for name, module in (("p2pftd", "p2pft.daemon.main"), ("p2pft", "p2pft.cli.main")):
        done = subprocess.run([*_exe(name, module), "--version"], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0 and done.stdout.strip() == f"{name} {__version__}", done


def test_global_flags_after_the_sub_command(tmp_path: Path) -> None:
    empty = tmp_path / "nowhere"
    for argv in (["--state-dir", str(empty), "status"], ["status", "--state-dir", str(empty)]):
        done = subprocess.run([*_exe("p2pft", "p2pft.cli.main"), *argv], capture_output=True, text=True, timeout=60)
        assert done.returncode == 1 and f"no cluster credentials in {empty}/tls" in done.stderr, done.stderr


def test_a_reader_that_left_is_no_traceback() -> None:
    """`p2pft ... | head`: the reader is gone before the output is flushed (what `head` does to a long output)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        # Block-buffered stdout, as a user has it: the write then happens when the output is flushed at the end.
        env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
        done = subprocess.run([*_exe("p2pft", "p2pft.cli.main"), "install-service", "--dry-run"], stdout=write_end,
                              stderr=subprocess.PIPE, text=True, timeout=60, env=env)
    finally:
        os.close(write_end)
    assert done.stderr == "" and done.returncode == 141, done.stderr
