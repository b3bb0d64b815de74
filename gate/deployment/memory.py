"""The memory one session of a model holds, measured in a process of its own.

A server process holds other sessions, caches and evaluations, so its own peak says
nothing about one model. The model is loaded in a fresh Python process instead: its
resident set after the imports is the floor, the peak is reset (Linux
``/proc/self/clear_refs``), the session is created and run a few times on one batch, and
the new peak less the floor is what the session cost. On CUDA the device memory the
process holds is read from ``nvidia-smi``. Run as ``python -m gate.deployment.memory
MODEL INPUT.npy PROVIDER`` it prints one JSON line.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from gate.deployment.evidence import MemoryUse
from gate.engines.base import ModelInput
from gate.errors import ModelError

MEGABYTE = 1_000_000
#: Runs of the model in the probe: the first allocates, later ones show what stays.
PROBE_RUNS = 3
#: Seconds the probe may take (loading a large model on a GPU included).
PROBE_TIMEOUT_S = 600.0


def _status_kb(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise OSError(f"/proc/self/status has no {key}")


def _gpu_mb() -> tuple[float | None, str | None]:
    """The device memory this process holds, from nvidia-smi, or why it is unknown."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None, "nvidia-smi is not on PATH"
    query = [smi, "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"]
    try:
        out = subprocess.run(query, capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError) as e:
        return None, f"nvidia-smi failed: {e}"
    for line in out.splitlines():
        pid, _, used = line.partition(",")
        if pid.strip() == str(os.getpid()):
            return float(used.strip()) * 1.048576, None  # MiB to MB
    return None, "nvidia-smi does not list this process (no permission to see its memory?)"


def _probe(model_path: str, input_path: str, provider: str) -> dict[str, Any]:
    """In the fresh process: the session's peak resident memory above the floor."""
    from gate.inference import load_model
    from gate.providers import CUDA

    x = np.load(input_path)
    floor = _status_kb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # the peak (VmHWM) starts again from here
    model = load_model(Path(model_path).read_bytes(), provider=provider, source=model_path)  # type: ignore[arg-type]
    from gate.datasets.input_cast import cast_for_model

    feed = {model.input_name: cast_for_model(x, model.input_dtype)}
    for _ in range(PROBE_RUNS):
        model.session.run([model.output_name], feed)
    peak = _status_kb("VmHWM")
    gpu, note = _gpu_mb() if model.provider == CUDA else (None, f"the session ran on {model.provider}")
    return {"rss_mb": (peak - floor) * 1024 / MEGABYTE, "gpu_mb": gpu, "gpu_note": note, "provider": model.provider}


def measure_memory(model: ModelInput, sample: npt.NDArray[Any], *, provider: str) -> MemoryUse:
    """One session of ``model`` run on the batch ``sample``, in a process of its own."""
    root = Path(__file__).resolve().parent.parent.parent  # where the gate package lives
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    with tempfile.TemporaryDirectory(prefix="gate-memory-") as tmp:
        model_path, input_path = Path(tmp) / "model.onnx", Path(tmp) / "input.npy"
        model_path.write_bytes(model.data)
        np.save(input_path, sample)
        command = [sys.executable, "-m", "gate.deployment.memory", str(model_path), str(input_path), provider]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=PROBE_TIMEOUT_S, env=env)
        except subprocess.TimeoutExpired as e:
            raise ModelError(f"model {model.source}: the memory probe took over {PROBE_TIMEOUT_S:g} s") from e
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise ModelError(f"model {model.source}: the memory probe failed (exit {done.returncode}): {tail}")
    found = json.loads(lines[-1])
    return MemoryUse(
        batch=len(sample),
        provider=found["provider"],
        rss_mb=round(found["rss_mb"], 3),
        gpu_mb=None if found["gpu_mb"] is None else round(found["gpu_mb"], 3),
        gpu_note=found["gpu_note"],
        size_mb=round(len(model.data) / MEGABYTE, 6),
    )


if __name__ == "__main__":
    try:
        print(json.dumps(_probe(sys.argv[1], sys.argv[2], sys.argv[3])))
    except Exception as e:
        print(f"{type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
