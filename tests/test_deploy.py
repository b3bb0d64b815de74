"""Static checks of the deployment artefacts under deploy/.

The Docker images are not built in the tests: there is no Docker engine where they run.
These checks are static. Every YAML file parses; the Kubernetes manifests, the compose
file and the CI examples say what deploy/README.md promises; both Dockerfiles are parsed
into their instructions and checked, including that everything they copy is in the
build context; and the copies of the configuration and of the shipped policies agree
with their originals, so neither can drift silently.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from gate.config import load_config

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "kubernetes"

GRPC_PORT = 50051
METRICS_PORT = 9464
GATE_UID = 10001
CONFIG_PATH = "/etc/gate/gate.yaml"


# ---------------------------------------------------------------- YAML


def _yaml_files() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())


def test_the_expected_files_are_there() -> None:
    expected = [
        "Dockerfile",
        "Dockerfile.cpu",
        "gate.yaml",
        "compose.yaml",
        "prometheus.yml",
        "README.md",
        "ci/github-actions.yml",
        "ci/gitlab-ci.yml",
        "kubernetes/kustomization.yaml",
    ]
    missing = [name for name in expected if not (DEPLOY / name).is_file()]
    assert not missing


@pytest.mark.parametrize("path", _yaml_files(), ids=lambda p: str(p.relative_to(DEPLOY)))
def test_every_yaml_file_parses(path: Path) -> None:
    documents = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]
    assert documents, f"{path} holds no YAML document"
    assert all(isinstance(d, dict) for d in documents)


def _load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


# ---------------------------------------------------------------- Kubernetes


def _manifests() -> dict[tuple[str, str], dict[str, Any]]:
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if doc is None:
                continue
            key = (doc["kind"], doc["metadata"]["name"])
            assert key not in found, f"{key} is defined twice"
            found[key] = doc
    return found


@pytest.fixture(scope="module")
def manifests() -> dict[tuple[str, str], dict[str, Any]]:
    return _manifests()


@pytest.fixture(scope="module")
def pod(manifests: dict[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = manifests[("Deployment", "gate")]["spec"]["template"]["spec"]
    return spec


@pytest.fixture(scope="module")
def container(pod: dict[str, Any]) -> dict[str, Any]:
    (gate,) = [c for c in pod["containers"] if c["name"] == "gate"]
    return gate


def test_every_namespaced_resource_is_in_the_gate_namespace(manifests: dict[tuple[str, str], dict[str, Any]]) -> None:
    assert ("Namespace", "gate") in manifests
    for (kind, name), doc in manifests.items():
        if kind != "Namespace":
            assert doc["metadata"].get("namespace") == "gate", f"{kind}/{name}"
    assert _load(K8S / "kustomization.yaml")["namespace"] == "gate"


def test_kustomization_lists_every_manifest_and_only_existing_files() -> None:
    resources = _load(K8S / "kustomization.yaml")["resources"]
    assert len(resources) == len(set(resources))
    assert all((K8S / r).is_file() for r in resources), resources
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(resources) == on_disk


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kustomize_renders_the_manifests() -> None:
    out = subprocess.run(["kubectl", "kustomize", str(K8S)], capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    kinds = sorted(d["kind"] for d in yaml.safe_load_all(out.stdout) if d)
    assert kinds == [
        "ConfigMap",
        "ConfigMap",
        "Deployment",
        "Namespace",
        "PersistentVolumeClaim",
        "PersistentVolumeClaim",
        "Service",
    ]


def test_deployment_is_one_replica_recreated(manifests: dict[tuple[str, str], dict[str, Any]]) -> None:
    spec = manifests[("Deployment", "gate")]["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"]["type"] == "Recreate"
    labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()


def test_deployment_runs_the_server_image(container: dict[str, Any]) -> None:
    assert container["image"] == "ghcr.io/example/gate:0.1.0"
    assert container["args"] == ["serve", "--config", CONFIG_PATH]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"grpc": GRPC_PORT, "metrics": METRICS_PORT}


def test_deployment_requests_one_gpu_and_bounds_cpu_and_memory(container: dict[str, Any], pod: dict[str, Any]) -> None:
    resources = container["resources"]
    assert str(resources["limits"]["nvidia.com/gpu"]) == "1"
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= resources[kind].keys(), kind
    assert pod["nodeSelector"], "no node selector for GPU nodes"
    assert any(t.get("key") == "nvidia.com/gpu" for t in pod["tolerations"])


@pytest.mark.parametrize("probe", ["readinessProbe", "livenessProbe", "startupProbe"])
def test_deployment_probes_are_native_grpc_health_checks(container: dict[str, Any], probe: str) -> None:
    assert container[probe]["grpc"]["port"] == GRPC_PORT
    assert "service" not in container[probe]["grpc"] or container[probe]["grpc"]["service"] == ""


def _mounts(pod: dict[str, Any], container: dict[str, Any]) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """Mount path -> (volumeMount, volume)."""
    volumes = {v["name"]: v for v in pod["volumes"]}
    return {m["mountPath"]: (m, volumes[m["name"]]) for m in container["volumeMounts"]}


def test_deployment_mounts_data_datasets_policies_and_config(pod: dict[str, Any], container: dict[str, Any]) -> None:
    mounts = _mounts(pod, container)
    config = load_config(DEPLOY / "gate.yaml")

    _, data = mounts[str(config.data_dir)]
    assert data["persistentVolumeClaim"]["claimName"] == "gate-data"

    (datasets_dir,) = config.datasets
    mount, datasets = mounts[str(datasets_dir)]
    assert datasets["persistentVolumeClaim"]["claimName"] == "gate-datasets"
    assert mount.get("readOnly") is True

    (policies_dir,) = config.policies
    mount, policies = mounts[str(policies_dir)]
    assert policies["configMap"]["name"] == "gate-policies"
    assert mount.get("readOnly") is True

    mount, conf = mounts[CONFIG_PATH]
    assert conf["configMap"]["name"] == "gate-config"
    assert mount["subPath"] == "gate.yaml"

    _, tmp = mounts["/tmp"]
    assert "emptyDir" in tmp


def test_deployment_runs_as_non_root_on_a_read_only_root(pod: dict[str, Any], container: dict[str, Any]) -> None:
    for context in (pod["securityContext"], container["securityContext"]):
        assert context["runAsNonRoot"] is True
        assert context["runAsUser"] == GATE_UID
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False


def test_deployment_has_no_service_links_and_prometheus_annotations(
    manifests: dict[tuple[str, str], dict[str, Any]], pod: dict[str, Any]
) -> None:
    # a Service named `gate` would otherwise put GATE_SERVICE_HOST, GATE_PORT... among
    # the GATE_* settings
    assert pod["enableServiceLinks"] is False
    annotations = manifests[("Deployment", "gate")]["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(METRICS_PORT)


def test_claims(manifests: dict[tuple[str, str], dict[str, Any]]) -> None:
    data = manifests[("PersistentVolumeClaim", "gate-data")]["spec"]
    assert data["accessModes"] == ["ReadWriteOnce"]
    assert data["resources"]["requests"]["storage"] == "50Gi"
    datasets = manifests[("PersistentVolumeClaim", "gate-datasets")]["spec"]
    assert set(datasets["accessModes"]) <= {"ReadOnlyMany", "ReadWriteOnce"}
    assert datasets["resources"]["requests"]["storage"] == "200Gi"


def test_service_exposes_grpc_and_metrics(manifests: dict[tuple[str, str], dict[str, Any]]) -> None:
    service = manifests[("Service", "gate")]["spec"]
    assert service.get("type", "ClusterIP") == "ClusterIP"
    ports = {p["name"]: p for p in service["ports"]}
    assert ports["grpc"]["port"] == GRPC_PORT and ports["grpc"]["appProtocol"] == "grpc"
    assert ports["metrics"]["port"] == METRICS_PORT
    pod_labels = manifests[("Deployment", "gate")]["spec"]["template"]["metadata"]["labels"]
    assert service["selector"].items() <= pod_labels.items()


def test_policies_configmap_holds_exactly_the_shipped_policies(
    manifests: dict[tuple[str, str], dict[str, Any]],
) -> None:
    shipped = {p.name: p.read_text(encoding="utf-8") for p in sorted((ROOT / "policies").glob("*.yaml"))}
    assert shipped
    assert manifests[("ConfigMap", "gate-policies")]["data"] == shipped


def test_config_configmap_matches_deploy_gate_yaml(manifests: dict[tuple[str, str], dict[str, Any]]) -> None:
    in_cluster = yaml.safe_load(manifests[("ConfigMap", "gate-config")]["data"]["gate.yaml"])
    assert in_cluster == _load(DEPLOY / "gate.yaml")


# ---------------------------------------------------------------- gate.yaml


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.startswith("GATE_"):
            monkeypatch.delenv(name)
    return monkeypatch


def test_container_config_is_valid(clean_environment: pytest.MonkeyPatch) -> None:
    config = load_config(DEPLOY / "gate.yaml")
    assert config.listen == f"0.0.0.0:{GRPC_PORT}"
    assert config.metrics_listen == f"0.0.0.0:{METRICS_PORT}"
    assert config.log_format == "json"
    assert config.data_dir == Path("/var/lib/gate")
    assert config.datasets == [Path("/data/datasets")]
    assert config.policies == [Path("/etc/gate/policies")]
    assert (config.max_concurrent_evaluations, config.max_queued_evaluations) == (2, 8)
    assert config.evaluation_timeout_s == 900
    assert config.default_provider == "auto"
    assert config.default_batch_size is None


# ---------------------------------------------------------------- Dockerfiles


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str
    line: int


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions with their continuation lines joined; comments and blank lines dropped
    (inside a continuation too, as Docker does)."""
    instructions: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not pending:
            start = number
        if line.endswith("\\"):
            pending.append(line[:-1].strip())
            continue
        pending.append(line)
        keyword, _, args = " ".join(pending).partition(" ")
        instructions.append(Instruction(keyword.upper(), args.strip(), start))
        pending = []
    assert not pending, f"line {start}: a continuation runs past the end of the file"
    return instructions


def stages(instructions: list[Instruction]) -> list[list[Instruction]]:
    out: list[list[Instruction]] = []
    for ins in instructions:
        if ins.keyword == "FROM":
            out.append([])
        assert out, f"line {ins.line}: {ins.keyword} before the first FROM"
        out[-1].append(ins)
    return out


def _flags_and_rest(args: str) -> tuple[dict[str, str], str]:
    flags: dict[str, str] = {}
    rest = args
    while rest.startswith("--"):
        flag, _, rest = rest.partition(" ")
        name, _, value = flag[2:].partition("=")
        flags[name] = value
        rest = rest.lstrip()
    return flags, rest


def _env(stage: list[Instruction]) -> dict[str, str]:
    env: dict[str, str] = {}
    for ins in stage:
        if ins.keyword == "ENV":
            for item in shlex.split(ins.args):
                key, sep, value = item.partition("=")
                assert sep, f"line {ins.line}: use ENV KEY=VALUE"
                env[key] = value
    return env


def _only(stage: list[Instruction], keyword: str) -> Instruction:
    found = [i for i in stage if i.keyword == keyword]
    assert found, f"no {keyword}"
    return found[-1]  # the last one is the one in force


DOCKERFILES = {
    "Dockerfile": re.compile(r"nvidia/cuda:13\.\d+(\.\d+)?-cudnn\d*-runtime-ubuntu24\.04"),
    "Dockerfile.cpu": re.compile(r"python:3\.12-slim(-\w+)?"),
}


@pytest.fixture(params=sorted(DOCKERFILES))
def dockerfile(request: pytest.FixtureRequest) -> tuple[str, list[list[Instruction]]]:
    name: str = request.param
    return name, stages(parse_dockerfile((DEPLOY / name).read_text(encoding="utf-8")))


def test_parser_joins_continuations_and_drops_comments() -> None:
    text = '# c\nFROM a AS b\nRUN x \\\n    # inner comment\n    && y\n\nCMD ["z"]\n'
    assert parse_dockerfile(text) == [
        Instruction("FROM", "a AS b", 2),
        Instruction("RUN", "x && y", 3),
        Instruction("CMD", '["z"]', 7),
    ]


def test_final_stage_base_image(dockerfile: tuple[str, list[list[Instruction]]]) -> None:
    name, parsed = dockerfile
    assert len(parsed) >= 2, "a builder stage and a runtime stage"
    base = parsed[-1][0].args.split()[0]
    assert DOCKERFILES[name].fullmatch(base), base
    if name == "Dockerfile":
        assert "cudnn" in base and "runtime" in base and base.startswith("nvidia/cuda:13")


def test_builder_builds_a_wheel_that_the_runtime_installs_in_a_venv(
    dockerfile: tuple[str, list[list[Instruction]]],
) -> None:
    name, parsed = dockerfile
    builder_names = {s[0].args.split()[-1] for s in parsed[:-1] if " AS " in s[0].args.upper()}
    assert builder_names
    assert any("pip wheel" in i.args for s in parsed[:-1] for i in s if i.keyword == "RUN")
    runs = [i.args for i in parsed[-1] if i.keyword == "RUN"]
    python = "python3.12" if name == "Dockerfile" else "python"
    assert any(f"{python} -m venv /opt/gate" in r and "/opt/gate/bin/pip install" in r for r in runs), runs
    # whatever the runtime takes from another stage comes from a stage defined earlier
    for ins in parsed[-1]:
        for source in re.findall(r"--(?:mount=[^ ]*,)?from=([\w.-]+)", ins.args):
            assert source in builder_names, f"line {ins.line}: unknown stage {source}"
    assert _env(parsed[-1])["PATH"].startswith("/opt/gate/bin:")


def test_runs_as_the_gate_user(dockerfile: tuple[str, list[list[Instruction]]]) -> None:
    _, parsed = dockerfile
    user = _only(parsed[-1], "USER").args.split(":")[0]
    assert user not in ("root", "0", "")
    assert user in ("gate", str(GATE_UID))
    assert any(f"--uid {GATE_UID}" in i.args for i in parsed[-1] if i.keyword == "RUN")


def test_entrypoint_cmd_and_layout(dockerfile: tuple[str, list[list[Instruction]]]) -> None:
    _, parsed = dockerfile
    final = parsed[-1]
    assert json.loads(_only(final, "ENTRYPOINT").args) == ["gate"]
    assert json.loads(_only(final, "CMD").args) == ["serve", "--config", CONFIG_PATH]
    assert _only(final, "WORKDIR").args == "/var/lib/gate"
    assert json.loads(_only(final, "VOLUME").args) == ["/var/lib/gate"]
    exposed = {p.split("/")[0] for i in final if i.keyword == "EXPOSE" for p in i.args.split()}
    assert {str(GRPC_PORT), str(METRICS_PORT)} <= exposed
    copies = {tuple(_flags_and_rest(i.args)[1].split()) for i in final if i.keyword == "COPY"}
    assert ("policies/", "/etc/gate/policies/") in copies
    assert ("deploy/gate.yaml", CONFIG_PATH) in copies


def test_healthcheck_asks_gate_health(dockerfile: tuple[str, list[list[Instruction]]]) -> None:
    _, parsed = dockerfile
    flags, rest = _flags_and_rest(_only(parsed[-1], "HEALTHCHECK").args)
    assert rest.startswith("CMD ")
    command = json.loads(rest[len("CMD ") :])
    assert command == ["gate", "health", "--server", f"127.0.0.1:{GRPC_PORT}"]
    assert "start-period" in flags


def test_environment_settings_are_valid(
    dockerfile: tuple[str, list[list[Instruction]]], clean_environment: pytest.MonkeyPatch
) -> None:
    name, parsed = dockerfile
    env = _env(parsed[-1])
    assert env["GATE_LOG_FORMAT"] == "json"
    settings = {k: v for k, v in env.items() if k.startswith("GATE_")}
    for key, value in settings.items():
        clean_environment.setenv(key, value)
    config = load_config(DEPLOY / "gate.yaml")  # raises on an unknown value
    assert config.log_format == "json"
    assert config.default_provider == ("cpu" if name == "Dockerfile.cpu" else "auto")


def _dockerignore_regex(pattern: str) -> re.Pattern[str]:
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern that matches the path or one of its parents wins."""
    parts = path.split("/")
    prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        regex = _dockerignore_regex(pattern.removeprefix("!").strip("/"))
        if any(regex.fullmatch(p) for p in prefixes):
            ignored = not negate
    return ignored


def test_dockerignore_matcher() -> None:
    patterns = ["*", "!gate/", "**/__pycache__"]
    assert _ignored(".venv/bin/python", patterns)
    assert not _ignored("gate/cli.py", patterns)
    assert _ignored("gate/__pycache__/cli.cpython-312.pyc", patterns)


def test_everything_copied_is_in_the_build_context(dockerfile: tuple[str, list[list[Instruction]]]) -> None:
    """The build context is the repository root, filtered by deploy/<Dockerfile>.dockerignore."""
    name, parsed = dockerfile
    ignore_file = DEPLOY / f"{name}.dockerignore"
    patterns = [
        line.strip()
        for line in ignore_file.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for heavy in (".git/HEAD", ".venv/pyvenv.cfg", "gate-data/audit.sqlite3", "tests/test_deploy.py"):
        assert _ignored(heavy, patterns), heavy
    for stage in parsed:
        for ins in stage:
            if ins.keyword not in ("COPY", "ADD"):
                continue
            flags, rest = _flags_and_rest(ins.args)
            if "from" in flags:
                continue
            *sources, _ = rest.split()
            for source in sources:
                path = ROOT / source
                assert path.exists(), f"{name} line {ins.line}: {source} is not in the repository"
                files = [path] if path.is_file() else [f for f in path.rglob("*") if f.is_file()]
                for f in files:
                    relative = f.relative_to(ROOT).as_posix()
                    if "__pycache__" not in relative:
                        assert not _ignored(relative, patterns), f"{name}: {relative} is left out of the context"


# ---------------------------------------------------------------- compose and Prometheus


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return _load(DEPLOY / "compose.yaml")


def _volumes(service: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """Container path -> (source, options)."""
    out = {}
    for spec in service["volumes"]:
        source, target, *options = spec.split(":")
        out[target] = (source, ",".join(options))
    return out


def test_compose_gate_reserves_an_nvidia_gpu(compose: dict[str, Any]) -> None:
    gate = compose["services"]["gate"]
    assert "profiles" not in gate
    (device,) = gate["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia"
    assert device["count"] == 1
    assert "gpu" in device["capabilities"]
    assert gate["build"]["dockerfile"] == "deploy/Dockerfile"


@pytest.mark.parametrize(("name", "dockerfile_name"), [("gate", "Dockerfile"), ("gate-cpu", "Dockerfile.cpu")])
def test_compose_services(compose: dict[str, Any], name: str, dockerfile_name: str) -> None:
    service = compose["services"][name]
    assert (DEPLOY / service["build"]["context"] / service["build"]["dockerfile"]).resolve() == (
        DEPLOY / dockerfile_name
    )
    health = service["healthcheck"]["test"]
    assert health[0] == "CMD" and health[1:4] == ["gate", "health", "--server"]
    published = {int(p.split(":")[-1]) for p in service["ports"]}
    assert published == {GRPC_PORT, METRICS_PORT}
    volumes = _volumes(service)
    assert volumes["/var/lib/gate"][0] in compose["volumes"]
    assert volumes["/data/datasets"] == ("./datasets", "ro")
    assert volumes["/etc/gate/policies"] == ("../policies", "ro")
    for source, _ in volumes.values():
        if source.startswith("."):
            assert (DEPLOY / source).exists(), source


def test_compose_profiles(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["gate-cpu"]["profiles"] == ["cpu"]
    assert "deploy" not in services["gate-cpu"]
    prometheus = services["prometheus"]
    assert prometheus["profiles"] == ["monitoring"]
    assert "./prometheus.yml:/etc/prometheus/prometheus.yml:ro" in prometheus["volumes"]


def test_prometheus_scrapes_gate_metrics() -> None:
    config = _load(DEPLOY / "prometheus.yml")
    targets = {t for job in config["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]}
    assert f"gate:{METRICS_PORT}" in targets


# ---------------------------------------------------------------- CI examples


def _steps_running(job: dict[str, Any], text: str) -> list[dict[str, Any]]:
    return [s for s in job.get("steps", []) if text in s.get("run", "")]


def test_github_workflow_gates_then_deploys() -> None:
    workflow = _load(DEPLOY / "ci" / "github-actions.yml")
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    assert "pull_request" in triggers
    jobs: dict[str, Any] = workflow["jobs"]
    gate_jobs = [name for name, job in jobs.items() if _steps_running(job, "gate check")]
    assert len(gate_jobs) == 1
    (gate_job,) = gate_jobs
    (check,) = _steps_running(jobs[gate_job], "gate check")
    command = check["run"]
    assert "--report-dir gate-report" in command
    assert "${{ vars.GATE_SERVER }}" in command
    assert "--label pipeline_id=${{ github.run_id }}" in command
    assert "--label git_sha=${{ github.sha }}" in command
    steps = jobs[gate_job]["steps"]
    assert _steps_running(jobs[gate_job], "make model")
    uploads = [s for s in steps if s.get("uses", "").startswith("actions/upload-artifact@")]
    assert any(s["with"]["path"].rstrip("/") == "gate-report" and s.get("if") == "always()" for s in uploads)
    (junit,) = [s for s in steps if "junit" in s.get("uses", "")]
    assert junit["with"]["report_paths"] == "gate-report/junit.xml"
    assert junit.get("if") == "always()"
    deploy = jobs["deploy"]
    needs = deploy["needs"] if isinstance(deploy["needs"], list) else [deploy["needs"]]
    assert gate_job in needs
    assert not jobs[gate_job].get("continue-on-error")


def test_gitlab_pipeline_gates_then_deploys() -> None:
    pipeline = _load(DEPLOY / "ci" / "gitlab-ci.yml")
    stages_order: list[str] = pipeline["stages"]
    assert stages_order.index("train") < stages_order.index("gate") < stages_order.index("deploy")
    gate = pipeline["gate"]
    assert gate["stage"] == "gate"
    command = " ".join(gate["script"])
    assert "gate check" in command and "--report-dir gate-report" in command
    assert not gate.get("allow_failure", False)
    artifacts = gate["artifacts"]
    assert artifacts["when"] == "always"
    assert "gate-report/" in artifacts["paths"]
    assert artifacts["reports"]["junit"] == "gate-report/junit.xml"
    assert artifacts["expose_as"]
    deploy = pipeline["deploy"]
    assert stages_order.index(deploy["stage"]) > stages_order.index("gate")
    needed = {n if isinstance(n, str) else n["job"] for n in deploy.get("needs", ["gate"])}
    assert "gate" in needed


# ---------------------------------------------------------------- Kubernetes: replicas

REPLICAS = DEPLOY / "kubernetes-replicas"
ADAPTER_VALUES = "prometheus-adapter-values.yaml"  # Helm values, not a manifest
_CLUSTER_SCOPED = {"Namespace"}


def _pointer(path: str) -> list[str]:
    assert path.startswith("/"), path
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _json_patch(doc: dict[str, Any], ops: list[dict[str, Any]]) -> None:
    """RFC 6902 add, replace, remove and test: the operations the overlay uses."""
    for op in ops:
        *parents, last = _pointer(op["path"])
        node: Any = doc
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        kind = op["op"]
        if isinstance(node, list):
            index = len(node) if last == "-" else int(last)
            if kind == "add":
                node.insert(index, op["value"])
            elif kind == "replace":
                node[index] = op["value"]
            elif kind == "remove":
                del node[index]
            elif kind == "test":
                assert node[index] == op["value"], op
            else:
                raise AssertionError(f"unsupported operation {op}")
        elif kind in ("add", "replace"):
            assert kind == "add" or last in node, f"replace of a missing {op['path']}"
            node[last] = op["value"]
        elif kind == "remove":
            del node[last]
        elif kind == "test":
            assert node[last] == op["value"], op
        else:
            raise AssertionError(f"unsupported operation {op}")


def _matches(doc: dict[str, Any], target: dict[str, Any]) -> bool:
    group = doc["apiVersion"].rpartition("/")[0]
    return (
        doc["kind"] == target["kind"]
        and doc["metadata"]["name"] == target["name"]
        and target.get("group", group) == group
    )


def render(directory: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """What ``kubectl kustomize`` makes of the kustomizations here: their resources
    (directories recursively), JSON 6902 patches, ``$patch: delete`` and the namespace."""
    kustomization = _load(directory / "kustomization.yaml")
    docs: dict[tuple[str, str], dict[str, Any]] = {}
    for resource in kustomization["resources"]:
        path = (directory / resource).resolve()
        found = (
            list(render(path).values())
            if path.is_dir()
            else [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]
        )
        for doc in found:
            key = (doc["kind"], doc["metadata"]["name"])
            assert key not in docs, f"{key} is defined twice"
            docs[key] = doc
    for patch in kustomization.get("patches", []):
        body = yaml.safe_load(patch["patch"]) if "patch" in patch else _load(directory / patch["path"])
        if isinstance(body, list):
            (key,) = [k for k, d in docs.items() if _matches(d, patch["target"])]
            _json_patch(docs[key], body)
        else:
            assert body.pop("$patch") == "delete", "only deleting patches are used"
            del docs[(body["kind"], body["metadata"]["name"])]
    if "namespace" in kustomization:
        for (kind, _), doc in docs.items():
            if kind not in _CLUSTER_SCOPED:
                doc["metadata"]["namespace"] = kustomization["namespace"]
    return docs


@pytest.fixture(scope="module")
def replicated() -> dict[tuple[str, str], dict[str, Any]]:
    return render(REPLICAS)


@pytest.fixture(scope="module")
def replicated_pod(replicated: dict[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = replicated[("Deployment", "gate")]["spec"]["template"]["spec"]
    return spec


@pytest.fixture(scope="module")
def replicated_container(replicated_pod: dict[str, Any]) -> dict[str, Any]:
    (gate,) = [c for c in replicated_pod["containers"] if c["name"] == "gate"]
    return gate


def _container_env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def test_the_renderer_renders_the_base_as_it_is(manifests: dict[tuple[str, str], dict[str, Any]]) -> None:
    assert render(K8S) == manifests


def test_replicas_overlay_lists_every_manifest() -> None:
    kustomization = _load(REPLICAS / "kustomization.yaml")
    assert kustomization["namespace"] == "gate"
    resources = kustomization["resources"]
    assert resources[0] == "../kubernetes" and len(resources) == len(set(resources))
    on_disk = {p.name for p in REPLICAS.glob("*.yaml")} - {"kustomization.yaml", ADAPTER_VALUES}
    assert set(resources[1:]) == on_disk


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kustomize_renders_the_replicas_as_the_tests_read_them(
    replicated: dict[tuple[str, str], dict[str, Any]],
) -> None:
    out = subprocess.run(
        ["kubectl", "kustomize", str(REPLICAS)], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr
    rendered = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(out.stdout) if d}
    assert rendered == replicated


def test_replicas_deployment_runs_several_pods_rolled_one_by_one(
    replicated: dict[tuple[str, str], dict[str, Any]],
) -> None:
    spec = replicated[("Deployment", "gate")]["spec"]
    assert spec["replicas"] >= 2
    assert spec["strategy"]["type"] == "RollingUpdate"
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    (spread,) = spec["template"]["spec"]["topologySpreadConstraints"]
    assert spread["labelSelector"]["matchLabels"] == spec["selector"]["matchLabels"]


def test_replicas_share_only_what_many_pods_may_mount(
    replicated: dict[tuple[str, str], dict[str, Any]],
    replicated_pod: dict[str, Any],
    replicated_container: dict[str, Any],
) -> None:
    mounts = _mounts(replicated_pod, replicated_container)
    claims = {name for kind, name in replicated if kind == "PersistentVolumeClaim"}
    assert "gate-data" not in claims  # the single-pod claim is gone
    for path, (_, volume) in mounts.items():
        if "persistentVolumeClaim" in volume:
            claim = volume["persistentVolumeClaim"]["claimName"]
            assert claim in claims, f"{path}: claim {claim} is not in the manifests"
            modes = replicated[("PersistentVolumeClaim", claim)]["spec"]["accessModes"]
            assert "ReadWriteOnce" not in modes and "ReadWriteMany" in modes, f"{claim}: {modes}"
        for kind, key in (("ConfigMap", "configMap"), ("Secret", "secret")):
            if key in volume:
                name = volume[key].get("name") or volume[key].get("secretName")
                assert (kind, name) in replicated, f"{path}: {kind} {name} is not in the manifests"
    data = load_config(DEPLOY / "gate.yaml").data_dir
    assert "emptyDir" in mounts[str(data)][1]  # caches only now: each pod its own


def test_replicas_configuration_comes_from_the_environment(
    replicated: dict[tuple[str, str], dict[str, Any]],
    replicated_pod: dict[str, Any],
    replicated_container: dict[str, Any],
    clean_environment: pytest.MonkeyPatch,
) -> None:
    from gate.store import parse_target

    pod_name = "gate-6d5f8b7c9-x2kqz"
    env = _container_env(replicated_container)
    assert set(env) == {"GATE_STORE", "GATE_REPLICA_ID", "GATE_MODELS_DIR", "GATE_SIGNING_KEY"}
    for name, entry in env.items():
        if "value" in entry:
            value = entry["value"]
        elif "secretKeyRef" in entry["valueFrom"]:
            ref = entry["valueFrom"]["secretKeyRef"]
            secret = replicated[("Secret", ref["name"])]  # the Secret referenced exists...
            value = secret["stringData"][ref["key"]]  # ...with that key
        else:
            assert entry["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
            value = pod_name
        clean_environment.setenv(name, value)
    config = load_config(DEPLOY / "gate.yaml")  # every GATE_* variable is a setting gate knows
    assert parse_target(config.store_target)[0] == "postgresql"
    assert config.replica == pod_name  # each pod claims its own name in the audit log
    mounts = _mounts(replicated_pod, replicated_container)
    assert mounts[str(config.model_dir)][1]["persistentVolumeClaim"]["claimName"] == "gate-models"
    signing_dir = str(config.signing_key_file.parent)
    mount, volume = mounts[signing_dir]
    assert mount.get("readOnly") is True and volume["secret"]["secretName"] == "gate-signing-key"
    assert config.signing_key_file.name in replicated[("Secret", "gate-signing-key")]["stringData"]


def test_replicas_pod_disruption_budget(replicated: dict[tuple[str, str], dict[str, Any]]) -> None:
    deployment = replicated[("Deployment", "gate")]["spec"]
    pdb = replicated[("PodDisruptionBudget", "gate")]
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["spec"]["selector"]["matchLabels"] == deployment["selector"]["matchLabels"]
    assert deployment["selector"]["matchLabels"].items() <= deployment["template"]["metadata"]["labels"].items()
    hpa = replicated[("HorizontalPodAutoscaler", "gate")]["spec"]
    if "maxUnavailable" in pdb["spec"]:
        assert 1 <= pdb["spec"]["maxUnavailable"] < hpa["minReplicas"]
    else:
        assert 1 <= pdb["spec"]["minAvailable"] < hpa["minReplicas"]


def _gauges() -> dict[str, str]:
    """The gauges gate/server/metrics.py defines: name -> help."""
    source = (ROOT / "gate" / "server" / "metrics.py").read_text(encoding="utf-8")
    return dict(re.findall(r'Gauge\(\s*"(\w+)",\s*"([^"]*)"', source))


def test_replicas_autoscaler_scales_the_deployment_on_the_queue_depth(
    replicated: dict[tuple[str, str], dict[str, Any]], replicated_container: dict[str, Any]
) -> None:
    from gate.server.metrics import ServerMetrics

    hpa = replicated[("HorizontalPodAutoscaler", "gate")]
    assert hpa["apiVersion"] == "autoscaling/v2"
    spec = hpa["spec"]
    deployment = replicated[("Deployment", "gate")]
    assert spec["scaleTargetRef"] == {
        "apiVersion": deployment["apiVersion"],
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    assert 2 <= spec["minReplicas"] <= deployment["spec"]["replicas"] < spec["maxReplicas"]
    (metric,) = spec["metrics"]
    assert metric["type"] == "Pods" and metric["pods"]["target"]["type"] == "AverageValue"
    name = metric["pods"]["metric"]["name"]
    assert name in _gauges() and "waiting" in _gauges()[name]
    # the gauge really is the admission queue's depth, as a server exports it
    metrics = ServerMetrics(running=lambda: 1, waiting=lambda: 3, store_bytes=lambda: 0)
    assert metrics.registry.get_sample_value(name) == 3
    # prometheus-adapter serves it under that name, per pod, from the series gate exports
    (rule,) = _load(REPLICAS / ADAPTER_VALUES)["rules"]["custom"]
    assert rule["seriesQuery"].startswith(f"{name}{{") and rule["name"]["as"] == name
    assert rule["resources"]["overrides"]["pod"] == {"resource": "pod"}
    # ...which Prometheus scrapes where the pod says
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    ports = {p["name"]: p["containerPort"] for p in replicated_container["ports"]}
    assert int(annotations["prometheus.io/port"]) == ports["metrics"]


def test_replicas_headless_service_for_client_side_balancing(
    replicated: dict[tuple[str, str], dict[str, Any]], replicated_container: dict[str, Any]
) -> None:
    service = replicated[("Service", "gate-headless")]["spec"]
    assert service["clusterIP"] == "None"
    labels = replicated[("Deployment", "gate")]["spec"]["template"]["metadata"]["labels"]
    assert service["selector"].items() <= labels.items()
    (port,) = service["ports"]
    container_ports = {p["name"]: p["containerPort"] for p in replicated_container["ports"]}
    assert port["port"] == container_ports[port["targetPort"]] == GRPC_PORT
    assert port["appProtocol"] == "grpc"
    guide = (DEPLOY / "README.md").read_text(encoding="utf-8")
    assert f"dns:///gate-headless.gate.svc.cluster.local:{GRPC_PORT}" in guide
    assert "--load-balancing round_robin" in guide


# ---------------------------------------------------------------- KubeRay (gate eval --engine ray)

RAY = DEPLOY / "ray"
RAY_IMAGE = "ghcr.io/example/gate:0.1.0-ray"


@pytest.fixture(scope="module")
def rayjob() -> dict[str, Any]:
    return _load(RAY / "rayjob.yaml")


def _ray_pods(rayjob: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Pod spec of the head and of each worker group, by name."""
    cluster = rayjob["spec"]["rayClusterSpec"]
    pods = {"head": cluster["headGroupSpec"]["template"]["spec"]}
    for group in cluster["workerGroupSpecs"]:
        pods[group["groupName"]] = group["template"]["spec"]
    return pods


def test_rayjob_runs_gate_eval_on_the_ray_engine(rayjob: dict[str, Any]) -> None:
    from gate.cli import build_parser

    assert (rayjob["apiVersion"], rayjob["kind"]) == ("ray.io/v1", "RayJob")
    assert rayjob["metadata"]["namespace"] == "gate"
    argv = shlex.split(rayjob["spec"]["entrypoint"])
    assert argv[0] == "gate"
    args = build_parser().parse_args(argv[1:])  # the command as gate's own CLI reads it
    assert (args.command, args.engine, args.ray_address) == ("eval", "ray", "auto")
    assert args.format == "json"
    assert (ROOT / "policies" / Path(args.policy).name).is_file()
    assert rayjob["spec"]["shutdownAfterJobFinishes"] is True
    assert rayjob["spec"]["backoffLimit"] == 0  # a verdict is not retried until it passes


def test_rayjob_cluster_is_a_cpu_only_head_and_one_gpu_per_worker(rayjob: dict[str, Any]) -> None:
    cluster = rayjob["spec"]["rayClusterSpec"]
    assert cluster["authOptions"]["mode"] == "token"
    assert cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"  # shards run on the workers only
    head = _ray_pods(rayjob)["head"]
    assert "nvidia.com/gpu" not in head["containers"][0]["resources"]["limits"]
    (group,) = cluster["workerGroupSpecs"]
    assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
    worker = group["template"]["spec"]
    (container,) = worker["containers"]
    for kind in ("requests", "limits"):
        assert str(container["resources"][kind]["nvidia.com/gpu"]) == "1"
        assert int(container["resources"][kind]["cpu"]) > 1  # CPUs beside the GPU actor decode
    assert worker["nodeSelector"] and any(t.get("key") == "nvidia.com/gpu" for t in worker["tolerations"])
    for name, pod in _ray_pods(rayjob).items():
        assert [c["image"] for c in pod["containers"]] == [RAY_IMAGE], name
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == GATE_UID


def test_rayjob_mounts_the_data_at_the_same_path_everywhere(rayjob: dict[str, Any]) -> None:
    args = shlex.split(rayjob["spec"]["entrypoint"])
    model, dataset, policy = (args[args.index(flag) + 1] for flag in ("--model", "--dataset", "--policy"))
    claims = {}
    for name, pod in _ray_pods(rayjob).items():
        mounts = _mounts(pod, pod["containers"][0])
        data = [(path, volume) for path, (_, volume) in mounts.items() if "persistentVolumeClaim" in volume]
        ((path, volume),) = data
        claims[name] = (path, volume["persistentVolumeClaim"]["claimName"])
        # the workers decode the images themselves, by the absolute paths the driver saw
        assert dataset.startswith(path + "/"), name
        assert mounts["/dev/shm"][1]["emptyDir"]["medium"] == "Memory", name  # Ray's object store
    assert len(set(claims.values())) == 1, claims
    head = _ray_pods(rayjob)["head"]
    head_mounts = _mounts(head, head["containers"][0])
    assert model.startswith(claims["head"][0] + "/")
    assert head_mounts[str(Path(policy).parent)][1]["configMap"]["name"] == "gate-policies"
    pvc = _load(RAY / "pvc.yaml")
    assert pvc["metadata"]["name"] == claims["head"][1]
    assert pvc["spec"]["accessModes"] == ["ReadOnlyMany"]
    kustomization = _load(RAY / "kustomization.yaml")
    assert kustomization["namespace"] == "gate"
    on_disk = {p.name for p in RAY.glob("*.yaml")} - {"kustomization.yaml"}
    assert sorted(kustomization["resources"]) == sorted(on_disk)


def test_ray_image_is_the_gate_image_plus_the_same_ray(
    rayjob: dict[str, Any], manifests: dict[tuple[str, str], dict[str, Any]]
) -> None:
    instructions = parse_dockerfile((RAY / "Dockerfile").read_text(encoding="utf-8"))
    args = {i.args.partition("=")[0]: i.args.partition("=")[2] for i in instructions if i.keyword == "ARG"}
    (base,) = [i.args for i in instructions if i.keyword == "FROM"]
    assert base == "${GATE_IMAGE}"
    server = manifests[("Deployment", "gate")]["spec"]["template"]["spec"]["containers"][0]["image"]
    assert args["GATE_IMAGE"] == server  # the CUDA image of deploy/Dockerfile
    assert f"{server}-ray" == RAY_IMAGE  # named like the CPU image, <tag>-cpu
    assert args["RAY_VERSION"] == rayjob["spec"]["rayClusterSpec"]["rayVersion"]
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    bounds = re.search(r'"ray\[data\]>=([\d.]+)(?:,<([\d.]+))?"', pyproject)
    assert bounds is not None
    pinned = tuple(map(int, args["RAY_VERSION"].split(".")))
    assert pinned >= tuple(map(int, bounds.group(1).split(".")))
    if bounds.group(2):
        assert pinned < tuple(map(int, bounds.group(2).split(".")))
    runs = [i.args for i in instructions if i.keyword == "RUN"]
    assert any("/opt/gate/bin/pip install" in r and "ray[default,data]==${RAY_VERSION}" in r for r in runs)
    assert [i.args for i in instructions if i.keyword == "USER"][-1].split(":")[0] == str(GATE_UID)
    assert not [i for i in instructions if i.keyword in ("COPY", "ADD")]  # nothing from the build context
    assert (RAY / "Dockerfile.dockerignore").read_text(encoding="utf-8").splitlines()[-1] == "*"
    assert f"docker build -f deploy/ray/Dockerfile -t {RAY_IMAGE} ." in (DEPLOY / "README.md").read_text("utf-8")
