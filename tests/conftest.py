"""Shared fixtures: real ONNX models and .npz sets built on the fly, and a check of
whether the CUDA execution provider really runs on this machine."""

from __future__ import annotations

import functools

import pytest

from gate.errors import ProviderError
from gate.inference import load_model
from tests.models import lookup_model


@functools.cache
def cuda_runs() -> bool:
    import onnxruntime

    onnxruntime.set_default_logger_severity(4)  # the probe's expected failure is not news
    try:
        load_model(lookup_model(2), provider="cuda")
    except ProviderError:
        return False
    return True


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if cuda_runs():
        return
    skip = pytest.mark.skip(reason="the CUDA execution provider cannot run on this machine")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
