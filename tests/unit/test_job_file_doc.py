"""docs/job-file.md's migration table says, for every key p2pft knows, what the code does with it."""

from __future__ import annotations

import re
from pathlib import Path

from p2pft.config.job import ElasticConfig, JobSpec
from p2pft.config.llamafactory_keys import IGNORED_KEYS, UNSUPPORTED_KEYS

DOC = Path(__file__).resolve().parents[2] / "docs" / "job-file.md"


def migration_rows() -> dict[str, tuple[str, str]]:
    text = DOC.read_text(encoding="utf-8")
    section = text[text.index("## LLaMA-Factory migration table"):text.index("### dataset_info.json")]
    rows: dict[str, tuple[str, str]] = {}
    for match in re.finditer(r"^\| `([a-z0-9_]+)` \| ([^|]+) \| (.*) \|$", section, flags=re.MULTILINE):
        key, status, notes = match.groups()
        assert key not in rows, f"{key} listed twice"
        rows[key] = (status.strip(), notes.strip())
    return rows


def test_every_key_has_one_row_with_the_status_the_code_gives_it() -> None:
    rows = migration_rows()
    fields = set(JobSpec.model_fields) - {"p2pft"}
    assert set(rows) == fields | set(IGNORED_KEYS) | set(UNSUPPORTED_KEYS)
    for key in fields:
        assert rows[key][0] in ("honoured", "honoured differently"), key
        if rows[key][0] == "honoured differently":
            assert rows[key][1], f"{key}: say how it differs"
    for key, reason in IGNORED_KEYS.items():
        assert rows[key] == ("ignored (a warning)", reason)
    for key, reason in UNSUPPORTED_KEYS.items():
        assert rows[key] == ("refused", reason)


def test_the_p2pft_section_lists_its_keys() -> None:
    text = DOC.read_text(encoding="utf-8")
    section = text[text.index("## The `p2pft:` section"):text.index("## Paths")]
    assert {key for key in ElasticConfig.model_fields if f"| `{key}` |" in section} == set(ElasticConfig.model_fields)
