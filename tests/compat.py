"""LLaMA-Factory's own example YAML and demo datasets (`../shared/compat/llamafactory`, beside the project in CI).

A clone of the project alone has no such folder: tests that need it skip, saying so, instead of failing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

COMPAT_DIR = (Path(__file__).resolve().parents[1].parent / "shared" / "compat" / "llamafactory").resolve()
needs_compat = pytest.mark.skipif(
    not (COMPAT_DIR / "dataset_info.json").is_file(),
    reason=f"LLaMA-Factory compatibility files not found at {COMPAT_DIR} (CI puts them beside the project)")
