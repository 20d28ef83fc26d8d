"""Where `p2pft init` takes a join token from: a file, stdin, the environment, or argv with a warning."""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import pytest

from p2pft.cli.init import TOKEN_ENV, parse_duration, read_token
from p2pft.cli.main import CliError


def _args(token: str | None = None, token_file: str | None = None) -> argparse.Namespace:
    return argparse.Namespace(token=token, token_file=token_file)


def test_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    path = tmp_path / "token"
    path.write_text("  from-file\n")
    assert read_token(_args(token_file=str(path))) == "from-file"
    monkeypatch.setattr("sys.stdin", io.StringIO("from-stdin\n"))
    assert read_token(_args(token="-")) == "from-stdin"
    assert capsys.readouterr().err == ""
    assert read_token(_args(token="from-argv")) == "from-argv"
    err = capsys.readouterr().err
    assert "shell history" in err and "--token-file" in err and err.count("\n") == 1
    assert read_token(_args()) is None   # no token anywhere: a new cluster
    monkeypatch.setenv(TOKEN_ENV, "from-env")
    assert read_token(_args()) == "from-env"


def test_mistakes_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(CliError, match="not both"):
        read_token(_args(token="-", token_file="x"))
    with pytest.raises(CliError, match=r"--token-file .*missing"):
        read_token(_args(token_file=str(tmp_path / "missing")))
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(CliError, match="empty"):
        read_token(_args(token_file=str(tmp_path / "empty")))


def test_durations() -> None:
    assert parse_duration("90m") == 5400 and parse_duration("24h") == 86400 and parse_duration("7d") == 604800
    assert parse_duration("30") == 30
    for bad in ("", "1w", "h", "-1h"):
        with pytest.raises(CliError, match="--ttl"):
            parse_duration(bad)
