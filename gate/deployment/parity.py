"""Provider parity: the same samples through two runs, compared sample by sample.

Two forms: the candidate on the CPU and on the CUDA execution provider (their kernels
differ, and so, near a tie, can the predicted class), or the candidate against a
reference model on one provider (an FP16 or quantized model against the FP32 model it was
converted from). Both runs see each batch in turn, so only one batch of scores of each is
held at a time. What is compared: the predicted class (how many samples change it) and
every class's probability (the largest absolute difference), probabilities read as
:func:`gate.predictions.probabilities` reads them.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from gate.datasets.input_cast import cast_for_model
from gate.deployment.evidence import ParityRun
from gate.engines.base import ModelInput
from gate.errors import ModelError, RequestError
from gate.inference import LoadedModel, auto_batch_size, check_compatible, cuda_runs, load_model
from gate.predictions import probabilities
from gate.providers import CPU, CUDA, Provider

if TYPE_CHECKING:
    from gate.datasets import Dataset

#: How many disagreeing samples a parity result lists.
PARITY_EXAMPLES = 10


def compare_providers(model: ModelInput, ds: Dataset) -> ParityRun:
    """The candidate on CPU vs on CUDA; unavailable (with the reason) where CUDA cannot run."""
    if not cuda_runs():
        return ParityRun(
            CPU,
            CUDA,
            0,
            0,
            0.0,
            unavailable=(
                "inconclusive: the CUDA execution provider cannot run on this machine (no GPU, or"
                " onnxruntime-gpu's CUDA libraries missing), so CPU and CUDA answers cannot be compared;"
                " run this check where a GPU is, or compare with a reference model (`reference:`)"
            ),
        )
    cpu = _load(model, "cpu", ds)
    gpu = _load(model, "cuda", ds)
    return _compare(cpu, gpu, ds, (CPU, CUDA))


def compare_reference(model: ModelInput, reference: ModelInput, ds: Dataset, *, provider: Provider) -> ParityRun:
    """The candidate against ``reference`` (e.g. its FP32 source), both on ``provider``;
    a reference with the candidate's own bytes (a copy, a link) is refused: a model always
    agrees with itself, so such a comparison would pass whatever the candidate is."""
    if reference.sha256 == model.sha256:
        raise RequestError(
            f"reference model {reference.source} is the candidate itself (the same SHA-256, {model.sha256}):"
            " a model compared with itself always agrees; give the model the candidate was converted from"
        )
    mine = _load(model, provider, ds)
    try:
        theirs = _load(reference, provider, ds)
    except ModelError as e:  # said of the reference, not of the candidate
        e.message = f"reference model {reference.source}: {e.message}"
        raise
    run = _compare(mine, theirs, ds, (f"candidate ({mine.provider})", f"reference {reference.source}"))
    return replace(run, reference_sha256=reference.sha256)


def _load(model: ModelInput, provider: Provider, ds: Dataset) -> LoadedModel:
    loaded = load_model(model.data, provider=provider, source=model.source, sha256=model.sha256)
    check_compatible(loaded, ds.classes, ds.sample_shape)
    return loaded


def _scores(model: LoadedModel, x: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
    """One batch's probabilities; a fixed-batch model gets its batch, padded with zeros."""
    fixed, n = model.fixed_batch, len(x)
    feed = cast_for_model(x, model.input_dtype)
    parts = []
    for start in range(0, n, fixed or max(n, 1)):
        part = feed[start : start + fixed] if fixed else feed
        real = len(part)
        if fixed and real < fixed:
            part = np.concatenate([part, np.zeros((fixed - real, *part.shape[1:]), dtype=part.dtype)])
        try:
            (y,) = model.session.run([model.output_name], {model.input_name: part})
        except Exception as e:
            raise ModelError(f"model {model.source} failed during the parity run: {e}") from e
        parts.append(np.asarray(y)[:real])
    y = np.concatenate(parts)
    if y.ndim != 2 or not np.isfinite(y).all():
        raise ModelError(f"model {model.source} gave scores of shape {list(y.shape)} or non-finite scores")
    return probabilities(y)


def _compare(left: LoadedModel, right: LoadedModel, ds: Dataset, names: tuple[str, str]) -> ParityRun:
    size = left.fixed_batch or auto_batch_size(ds.sample_shape)
    changed, largest, done = 0, 0.0, 0
    examples: list[dict[str, Any]] = []
    for batch in ds.batches(size):
        a, b = _scores(left, batch), _scores(right, batch)
        if a.shape != b.shape:
            raise ModelError(f"the two runs give scores of shapes {list(a.shape)} and {list(b.shape)}")
        pa, pb = a.argmax(axis=1), b.argmax(axis=1)
        differ = np.flatnonzero(pa != pb)
        changed += len(differ)
        largest = max(largest, float(np.abs(a - b).max(initial=0.0)))
        for i in differ[: PARITY_EXAMPLES - len(examples)]:
            examples.append(
                {
                    "sample": ds.sample_ids[done + int(i)],
                    names[0]: ds.classes[int(pa[i])],
                    names[1]: ds.classes[int(pb[i])],
                }
            )
        done += len(batch)
    return ParityRun(names[0], names[1], done, changed, round(largest, 9), examples)
