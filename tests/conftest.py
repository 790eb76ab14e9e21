"""Shared test configuration. Every async test runs in virtual time (aioresilience.testing
plugin, enabled in pyproject's addopts)."""

from __future__ import annotations

import os

from hypothesis import settings

# CI runs the same examples every time (a failure there is reproducible from the log);
# local runs explore new ones.
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("dev", print_blob=True)
settings.load_profile("ci" if os.environ.get("CI") else "dev")
