"""The independent implementations the tests compare gate with are installed by the dev
extra: a test that compares with one skips itself without it, so a missing oracle must
fail here rather than pass silently as skips."""

from __future__ import annotations

import importlib

import pytest


@pytest.mark.parametrize(
    "module",
    ["statsmodels.stats.multitest", "cleanlab.filter", "sklearn.metrics", "pandas", "polars", "duckdb", "scipy.stats"],
)
def test_the_dev_extra_installs_every_oracle(module: str) -> None:
    importlib.import_module(module)
