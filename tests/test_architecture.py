"""The shape of the code, enforced: short functions, modules of a readable size, and
imports that run one way (see docs/architecture.md).

* no function in ``gate/`` longer than 80 lines, no module over 700 lines (generated
  code in ``gate/_proto`` aside);
* ``gate.metrics``, ``gate.policy`` and ``gate.verdict`` import neither grpc nor
  onnxruntime, and the client imports nothing from ``gate.server`` (checked on the import
  graph of the package's own modules, transitively, and in a fresh interpreter).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "gate"
MAX_FUNCTION_LINES = 80
MAX_MODULE_LINES = 700


def _sources() -> Iterator[Path]:
    for path in sorted(PACKAGE.rglob("*.py")):
        if "_proto" not in path.relative_to(PACKAGE).parts:
            yield path


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth of its code (lazy imports count too)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    me = _module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def _graph() -> dict[str, set[str]]:
    return {_module_name(p): _imports(p) for p in _sources()}


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    """The modules ``start`` imports, transitively (third-party names included, not followed)."""
    seen: set[str] = set()
    todo = [start]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for target in graph.get(name, ()):
            # `from gate.x import y` names y, which may be a module or an attribute of gate.x
            todo.append(target if target in graph else target.rpartition(".")[0] or target)
            if target in graph or not target.startswith("gate"):
                seen.add(target)
    return seen


def test_no_function_longer_than_80_lines() -> None:
    long = []
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {lines} lines")
    assert not long, "\n".join(long)


def test_no_module_over_700_lines() -> None:
    big = [
        f"{p.relative_to(ROOT)}: {n} lines"
        for p in _sources()
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    ]
    assert not big, "\n".join(big)


@pytest.mark.parametrize("module", ["gate.metrics", "gate.policy", "gate.verdict", "gate.stats"])
def test_judgment_modules_import_neither_grpc_nor_onnxruntime(module: str) -> None:
    reached = _reachable(_graph(), module)
    bad = sorted(m for m in reached if m.split(".")[0] in ("grpc", "onnxruntime", "onnx", "ray"))
    assert not bad, f"{module} reaches {bad}"


def test_client_imports_nothing_from_the_server() -> None:
    reached = _reachable(_graph(), "gate.client")
    assert not sorted(m for m in reached if m == "gate.server" or m.startswith("gate.server."))


def test_import_graph_sees_lazy_imports() -> None:
    """The checks above are only as good as the graph: it must see an import inside a function."""
    graph = _graph()
    assert "gate.server" in _reachable(graph, "gate.demo")


@pytest.mark.parametrize("module", ["gate.metrics", "gate.policy", "gate.verdict"])
def test_fresh_interpreter_imports_neither_grpc_nor_onnxruntime(module: str) -> None:
    code = f"import sys, {module}; print(sorted(m for m in ('grpc', 'onnxruntime') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"
