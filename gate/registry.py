"""The registered held-out datasets and policies (addressed by name) that a server
serves.

The content-addressed model store moved to :mod:`gate.store.models` (the store package
holds what the server keeps: the audit log and the models); its names are still
importable from here.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from gate.datasets import Dataset, load_dataset
from gate.errors import DatasetError, NotFoundError, PolicyError, RequestError
from gate.policy import Policy, load_policy
from gate.store.models import SHA256_RE, STALE_UPLOAD_S, ModelStore, StoredModel

__all__ = ["SHA256_RE", "STALE_UPLOAD_S", "ModelStore", "Registry", "StoredModel"]


def _spec_files(paths: Iterable[Path], suffixes: tuple[str, ...]) -> Iterator[Path]:
    for p in paths:
        if p.is_dir():
            yield from sorted(f for f in p.iterdir() if f.suffix in suffixes and not f.name.startswith("."))
        else:
            yield p


class Registry:
    """The registered held-out datasets and policies, loaded once at start-up."""

    def __init__(
        self, datasets: dict[str, Dataset], policies: dict[str, Policy], paths: dict[str, Path] | None = None
    ) -> None:
        self.datasets = datasets
        self.policies = policies
        self.paths = paths or {}  # dataset name -> the file it was loaded from

    @classmethod
    def load(
        cls, dataset_paths: Iterable[Path], policy_paths: Iterable[Path], *, digest_cache: Path | None = None
    ) -> Registry:
        """Load every dataset spec and policy; any problem (a bad file, a duplicate name)
        stops the load with one error listing them all: a gate does not serve half its
        configuration."""
        problems: list[str] = []
        datasets: dict[str, Dataset] = {}
        paths: dict[str, Path] = {}
        for path in _spec_files(dataset_paths, (".yaml", ".yml")):
            try:
                ds = load_dataset(path, digest_cache=digest_cache)
            except DatasetError as e:
                problems.append(f"dataset {path}: {e.message}")
                continue
            if ds.name in datasets:
                problems.append(
                    f"dataset {path}: the name '{ds.name}' is already taken by {datasets[ds.name].source_path}"
                )
            datasets[ds.name] = ds
            paths[ds.name] = path
        policies: dict[str, Policy] = {}
        for path in _spec_files(policy_paths, (".yaml", ".yml")):
            try:
                policy = load_policy(path)
            except PolicyError as e:
                problems.append(e.message)
                continue
            if policy.name in policies:
                problems.append(
                    f"policy {path}: the name '{policy.name}' is already taken by {policies[policy.name].source}"
                )
            policies[policy.name] = policy
        if not datasets:
            problems.append("no dataset is registered")
        if not policies:
            problems.append("no policy is registered")
        if problems:
            raise RequestError(
                "the server's datasets and policies did not load:\n" + "\n".join(f"  - {p}" for p in problems)
            )
        return cls(datasets, policies, paths)

    def describe(self) -> str:
        """What is registered, for the log: ``2 datasets (a, b) and 1 policies (p)``."""
        return (
            f"{len(self.datasets)} datasets ({', '.join(sorted(self.datasets))})"
            f" and {len(self.policies)} policies ({', '.join(sorted(self.policies))})"
        )

    def dataset(self, name: str) -> Dataset:
        try:
            return self.datasets[name]
        except KeyError:
            raise NotFoundError(
                f"unknown dataset '{name}'; this server has: {', '.join(sorted(self.datasets))}"
            ) from None

    def policy(self, name: str) -> Policy:
        try:
            return self.policies[name]
        except KeyError:
            raise NotFoundError(
                f"unknown policy '{name}'; this server has: {', '.join(sorted(self.policies))}"
            ) from None
