"""The robustness suite on the Ray engine: corruption runs inside its sharded map (the
view's per-sample reader in the decode stage), and the verdict is the local engine's."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="the ray extra (gate[ray]) is not installed")

from gate.evaluation import evaluate  # noqa: E402
from gate.verdict import Decision  # noqa: E402
from tests.test_robustness_rule import intensity_model, write_image_set, write_policy  # noqa: E402


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """A local Ray cluster of 2 CPUs, stopped after this module's tests."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    try:
        yield str(ray.get_runtime_context().gcs_address)
    finally:
        ray.shutdown()


def test_the_ray_engine_gives_the_local_verdict(cluster: str, tmp_path: Path) -> None:
    grey = write_image_set(tmp_path)
    policy = write_policy(tmp_path / "p.yaml", corruptions=["gaussian_noise", "motion_blur"], severities=[1, 3])
    model = intensity_model(whole_image=False)
    local = evaluate(model, grey, policy, provider="cpu")
    sharded = evaluate(model, grey, policy, provider="cpu", engine="ray", ray_address=cluster)
    assert local.decision is sharded.decision is Decision.FAIL, sharded.error
    assert sharded.rules[0].to_dict() == local.rules[0].to_dict()
    assert sharded.metrics["robustness"] == local.metrics["robustness"]
