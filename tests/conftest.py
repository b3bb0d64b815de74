"""Shared fixtures: real ONNX models and .npz sets built on the fly, and a check of
whether the CUDA execution provider really runs on this machine."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from gate.client import GateClient
from gate.config import load_config
from gate.inference import cuda_runs
from gate.server import GateServer, create_server
from tests.models import predictions_for
from tests.pg import postgres_database, postgres_server  # noqa: F401  (fixtures: a private PostgreSQL server)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if cuda_runs():
        return
    skip = pytest.mark.skip(reason="the CUDA execution provider cannot run on this machine")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """`gate eval` caches under $GATE_CACHE_DIR: give every test its own."""
    monkeypatch.setenv("GATE_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))


PETS = ["cat", "dog", "rabbit"]
TUTORIAL = [[50, 2, 3], [4, 45, 1], [2, 3, 40]]


@dataclass
class Served:
    """A real gate server on a free loopback port, with its files."""

    server: GateServer
    address: str
    root: Path

    def client(self, timeout: float | None = 60) -> GateClient:
        return GateClient(self.address, timeout=timeout)


def write_pets(root: Path, *, repeat: int = 1, name: str = "pets") -> Path:
    """The tutorial's cat/dog/rabbit set (x = the class the lookup model will predict),
    ``repeat`` times over, as an .npz with a dataset spec; returns the spec."""
    x, y = predictions_for([[c * repeat for c in row] for row in TUTORIAL])
    (root / "sets").mkdir(parents=True, exist_ok=True)
    np.savez(root / "sets" / f"{name}.npz", x=x, y=y, classes=np.array(PETS))
    spec = root / "datasets" / f"{name}.yaml"
    spec.parent.mkdir(parents=True, exist_ok=True)
    spec.write_text(f"name: {name}\ndescription: the tutorial's confusion matrix\nsource: ../sets/{name}.npz\n")
    return spec


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Served]]:
    """Start servers from a configuration file written with the given settings."""
    started: list[GateServer] = []

    def start(**settings: Any) -> Served:
        root = tmp_path / f"server{len(started)}"
        root.mkdir()
        write_pets(root)
        write_pets(root, repeat=20, name="pets-large")
        # long enough (tens of seconds with the slow model) for tests that act on a running one
        write_pets(root, repeat=200, name="pets-huge")
        config = {
            "listen": "127.0.0.1:0",
            "data_dir": "data",
            "datasets": ["datasets"],
            "policies": [str(ROOT / "policies")],
            **settings,
        }
        (root / "gate.yaml").write_text(yaml.safe_dump(config))
        server, port = create_server(load_config(root / "gate.yaml"))
        started.append(server)
        return Served(server, f"127.0.0.1:{port}", root)

    yield start
    for server in started:
        server.stop(grace=None)
