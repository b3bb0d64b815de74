"""Reading what a model file declares, for ``model_contract`` rules: its inputs and
outputs (name, element type, shape with symbolic dimensions), the opset of each domain it
imports, its size, its ``classes`` metadata, and what ``onnx.checker`` says of it with
``full_check`` (which also runs strict shape inference).

The file is parsed with onnx, never run: a contract can be checked without a dataset and
without an execution provider (``gate contract``).
"""

from __future__ import annotations

from typing import Any

from gate.deployment.evidence import Dim, ModelDescription, TensorSpec
from gate.errors import ModelError


def describe_model(data: bytes, source: str) -> ModelDescription:
    """The model's declared signature, opsets, size and metadata; ModelError when the
    bytes are not an ONNX model or onnx is not installed."""
    try:
        import onnx
    except ImportError as e:  # a core dependency; said plainly should an install lack it
        raise ModelError(f"checking the contract of model {source} needs the onnx package (pip install onnx)") from e
    try:
        model = onnx.load_model_from_string(data)
    except Exception as e:
        raise ModelError(f"model {source} is not a readable ONNX file: {_first_line(e)}") from e
    graph = model.graph
    # before IR 4, initializers were listed among the inputs as well: they are weights, not inputs
    weights = {t.name for t in graph.initializer}
    return ModelDescription(
        inputs=tuple(_tensor(v) for v in graph.input if v.name not in weights),
        outputs=tuple(_tensor(v) for v in graph.output),
        opsets={_domain(o.domain): int(o.version) for o in model.opset_import},
        size_bytes=len(data),
        metadata_classes=next((p.value for p in model.metadata_props if p.key == "classes"), None),
        checker_error=_checker_error(onnx, model),
    )


def _domain(name: str) -> str:
    """ "ai.onnx" and "" are both the default ONNX domain."""
    return "" if name == "ai.onnx" else name


def _tensor(value: Any) -> TensorSpec:
    """One graph input or output: a tensor's element type and shape, or its type in words."""
    kind = value.type.WhichOneof("value")
    if kind != "tensor_type":
        return TensorSpec(value.name, str(kind or "unknown"), None)
    tensor = value.type.tensor_type
    if not tensor.HasField("shape"):
        return TensorSpec(value.name, _dtype(tensor.elem_type), None)
    return TensorSpec(value.name, _dtype(tensor.elem_type), tuple(_dim(d) for d in tensor.shape.dim))


def _dim(dim: Any) -> Dim:
    if dim.HasField("dim_value"):
        return int(dim.dim_value)
    if dim.HasField("dim_param"):
        return str(dim.dim_param)
    return None


def _dtype(elem_type: int) -> str:
    """numpy's name for an ONNX element type (float32, uint8...), or ONNX's own name."""
    from onnx import TensorProto, helper

    try:
        import numpy as np

        return str(np.dtype(helper.tensor_dtype_to_np_dtype(elem_type)).name)
    except Exception:  # types numpy lacks (bfloat16, float8...)
        return str(TensorProto.DataType.Name(elem_type)).lower()


def _checker_error(onnx: Any, model: Any) -> str | None:
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as e:
        return _first_line(e)
    return None


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:500] if text else type(e).__name__
