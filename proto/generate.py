"""Generate the Python gRPC stubs in gate/_proto/ from proto/ (run: python proto/generate.py).

The stubs are committed; tests/test_proto.py regenerates them into a temporary
directory and fails when the committed ones differ. grpcio-tools is pinned in
pyproject.toml so the output is reproducible.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ["gate/v1/gate.proto"]


def generate(out: Path) -> list[Path]:
    """Write the stubs under ``out`` (e.g. gate/_proto) and return the files written."""
    out.mkdir(parents=True, exist_ok=True)
    include = str(Path(protoc.__file__).parent / "_proto")
    for proto in PROTOS:
        code = protoc.main(
            [
                "protoc",
                f"-I{ROOT / 'proto'}",
                f"-I{include}",
                f"--python_out={out}",
                f"--pyi_out={out}",
                f"--grpc_python_out={out}",
                str(ROOT / "proto" / proto),
            ]
        )
        if code != 0:
            raise SystemExit(f"protoc failed on {proto} (exit {code})")
    written = sorted(p for p in out.rglob("*") if p.suffix in (".py", ".pyi"))
    for path in written:
        # the generated modules import each other as top-level `gate.v1`; inside this
        # package they live at `gate._proto.gate.v1`
        text = re.sub(r"^from gate\.v1 import", "from gate._proto.gate.v1 import", path.read_text(), flags=re.M)
        path.write_text(text)
    packages = {out} | {parent for p in written for parent in p.parents if out in parent.parents}
    for pkg in sorted(packages):
        init = pkg / "__init__.py"
        if not init.exists():
            init.write_text('"""Generated from proto/ by proto/generate.py; do not edit."""\n')
    return written


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "gate" / "_proto"
    for f in generate(target):
        print(f.relative_to(target))
