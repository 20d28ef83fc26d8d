"""Settings for every test: hypothesis without a per-example deadline (CI machines are shared and noisy: a slow
example is not a failure; the properties are what is checked)."""

from __future__ import annotations

from hypothesis import settings

settings.register_profile("p2pft", deadline=None)
settings.load_profile("p2pft")
