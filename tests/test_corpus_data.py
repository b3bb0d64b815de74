"""Attacks on held-out sets: samples counted more than once, files from outside the set,
pixels decoded or converted wrongly, files left out without a word, class names that
look alike. Each case breaks the passing image set of ``tests/test_corpus.py`` one way
and pins the exact outcome of a real ``gate eval``; ``docs/bad-input-corpus.md`` lists
them under "Attacks: datasets and images".
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from tests.conftest import PETS
from tests.models import IR_VERSION, OPSET, linear_softmax_model
from tests.test_corpus import (
    IMAGES_PER_CLASS,
    Inputs,
    _gate_eval,
    baseline,
    good_rows,
    image_set,
    image_spec,
    manifest,
)

SHADES = (0, 113, 226)  # image_set's first shade per class


def _shade(c: int, i: int) -> int:
    return SHADES[c] + i


def _each_image(root: Path, write: Callable[[Path, int], None], suffix: str = ".png") -> None:
    """Rewrite every image of :func:`image_set` under ``root/imgs``: ``write(path, shade)``."""
    for c, name in enumerate(PETS):
        for i in range(IMAGES_PER_CLASS):
            (root / "imgs" / name / f"{i}.png").unlink()
            write(root / "imgs" / name / f"{i}{suffix}", _shade(c, i))


def _spec(inputs: Inputs, extra: str, source: str = "imgs") -> Path:
    spec = inputs.root / "imgs.yaml"
    spec.write_text(f"name: imgs\nsource: {source}\nclasses: [cat, dog, rabbit]\n{extra}")
    return spec


# ------------------------------------------------------------------------ counting


def _links_to_one_image(inputs: Inputs, extra: str = "preprocess: {channels: L}\n") -> Inputs:
    image_set(inputs.root)
    rabbit = inputs.root / "imgs" / "rabbit"
    for i in range(1, IMAGES_PER_CLASS):
        (rabbit / f"{i}.png").unlink()
        (rabbit / f"{i}.png").symlink_to(rabbit / "0.png")
    return inputs.images(_spec(inputs, extra))


def _file_link_out_of_root(inputs: Inputs) -> Inputs:
    image_set(inputs.root)
    (inputs.root / "outside").mkdir()
    Image.fromarray(np.zeros((2, 2), np.uint8)).save(inputs.root / "outside" / "x.png")
    (inputs.root / "imgs" / "cat" / "extra.png").symlink_to(inputs.root / "outside" / "x.png")
    return inputs.images(image_spec(inputs.root, "imgs"))


def _folder_link_out_of_root(inputs: Inputs) -> Inputs:
    image_set(inputs.root)
    shutil.move(inputs.root / "imgs" / "rabbit", inputs.root / "rabbit-elsewhere")
    (inputs.root / "imgs" / "rabbit").symlink_to(inputs.root / "rabbit-elsewhere", target_is_directory=True)
    return inputs.images(image_spec(inputs.root, "imgs"))


def _same_bytes_two_labels(inputs: Inputs) -> Inputs:
    image_set(inputs.root)
    shutil.copy(inputs.root / "imgs" / "cat" / "0.png", inputs.root / "imgs" / "dog" / "cat0.png")
    return inputs.images(image_spec(inputs.root, "imgs"))


def _manifest_byte_copy(inputs: Inputs) -> Inputs:
    spec = manifest(inputs.root, [*good_rows(), ("cat/copy.png", "cat")])
    shutil.copy(inputs.root / "imgs" / "cat" / "0.png", inputs.root / "imgs" / "cat" / "copy.png")
    return inputs.images(spec)


def _hidden_entries(inputs: Inputs) -> Inputs:
    image_set(inputs.root)
    Image.fromarray(np.full((2, 2), 255, np.uint8)).save(inputs.root / "imgs" / "cat" / ".N.png")
    (inputs.root / "imgs" / ".red").mkdir()
    Image.fromarray(np.full((2, 2), 255, np.uint8)).save(inputs.root / "imgs" / ".red" / "0.png")
    return inputs.images(image_spec(inputs.root, "imgs"))


# ------------------------------------------------------------------------- pixels


def _sixteen_bit(inputs: Inputs) -> Inputs:
    image_set(inputs.root)

    def write(path: Path, shade: int) -> None:
        Image.fromarray(np.full((2, 2), shade * 257, np.uint16)).save(path)

    _each_image(inputs.root, write)
    return inputs.images(image_spec(inputs.root, "imgs"))


def _float_tiff(inputs: Inputs, top: float) -> Inputs:
    image_set(inputs.root)

    def write(path: Path, shade: int) -> None:
        Image.fromarray(np.full((2, 2), shade * top / 255, np.float32)).save(path)

    _each_image(inputs.root, write, ".tif")
    return inputs.images(image_spec(inputs.root, "imgs"))


def _transparent_rabbits(inputs: Inputs, alpha: str = "") -> Inputs:
    """The rabbits' light shades stored under fully transparent pixels (mode LA)."""
    image_set(inputs.root)
    for i in range(IMAGES_PER_CLASS):
        pixels = np.zeros((2, 2, 2), np.uint8)
        pixels[..., 0] = _shade(2, i)
        Image.fromarray(pixels).save(inputs.root / "imgs" / "rabbit" / f"{i}.png")
    option = f", alpha: {alpha}" if alpha else ""
    return inputs.images(_spec(inputs, f"preprocess: {{channels: L{option}}}\n"))


def _sideways(inputs: Inputs, transpose: bool) -> Inputs:
    """Every image stored 4x1 (HxW) with EXIF orientation 6: upright it is 1x4, the shape
    the model takes."""
    image_set(inputs.root)
    exif = Image.Exif()
    exif[0x0112] = 6

    def write(path: Path, shade: int) -> None:
        Image.fromarray(np.full((4, 1), shade, np.uint8)).save(path, exif=exif)

    _each_image(inputs.root, write)
    inputs.images(_spec(inputs, f"preprocess: {{channels: L, exif_transpose: {str(transpose).lower()}}}\n"))
    weights = np.repeat(np.array([[-1.0, 0.0, 1.0]], np.float32), 4, axis=0)
    bias = np.array([1.0, 0.5, -3.0], np.float32)
    return inputs.put_model(linear_softmax_model(weights, bias, input_shape=["N", 1, 1, 4]))


# -------------------------------------------------------------------- input dtype


def integer_input_model(elem: int) -> bytes:
    """:func:`image_model` behind an integer input: x (N, 1, 2, 2) of ``elem``, cast to
    float and divided by 255 inside the model."""
    weights = np.repeat(np.array([[-1.0, 0.0, 1.0]], np.float32), 4, axis=0)
    init = [
        numpy_helper.from_array(np.array(255.0, np.float32), "k"),
        numpy_helper.from_array(weights, "W"),
        numpy_helper.from_array(np.array([[1.0, 0.5, -3.0]], np.float32), "b"),
    ]
    nodes = [
        helper.make_node("Cast", ["x"], ["xf"], to=TensorProto.FLOAT),
        helper.make_node("Div", ["xf", "k"], ["scaled"]),
        helper.make_node("Flatten", ["scaled"], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "W"], ["z"]),
        helper.make_node("Add", ["z", "b"], ["scores"]),
    ]
    graph = helper.make_graph(
        nodes,
        "integer-input",
        [helper.make_tensor_value_info("x", elem, ["N", 1, 2, 2])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", 3])],
        init,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _integer_input(inputs: Inputs, elem: int, preprocess: str) -> Inputs:
    image_set(inputs.root)
    inputs.images(_spec(inputs, f"preprocess: {{channels: L{preprocess}}}\n"))
    return inputs.put_model(integer_input_model(elem))


# --------------------------------------------------------------------- class names


def _label_with_trailing_space(inputs: Inputs) -> Inputs:
    return inputs.images(manifest(inputs.root, [("cat/0.png", "cat "), *good_rows()[1:]]))


def _nfc_and_nfd_folders(inputs: Inputs) -> Inputs:
    image_set(inputs.root)
    for i, name in enumerate(("caf\u00e9", "cafe\u0301")):
        (inputs.root / "imgs" / name).mkdir()
        Image.fromarray(np.full((2, 2), 10 + i, np.uint8)).save(inputs.root / "imgs" / name / "0.png")
    return inputs.images(_spec(inputs, "preprocess: {channels: L}\n"))


@dataclass(frozen=True)
class DataCase:
    """One attack: how the set is broken and what ``gate eval`` must answer.

    ``message`` is a fragment of ``error.message`` (formatted with ``root``) for ERROR;
    ``dataset`` holds fields the verdict's ``dataset`` block must have."""

    id: str
    breaks: Callable[[Inputs], Inputs]
    code: int
    verdict: str
    error: str = ""
    message: str = ""
    accuracy: float | None = None
    dataset: dict[str, Any] | None = None


REPEAT = "29 image file(s) repeat the bytes of another sample (links or copies)"
UINT8_ADVICE = "for an image dataset, set the spec's preprocess.scale to 1 with mean [0] and std [1]"

DATA_CASES = [
    DataCase(
        "data-one-image-many-links",
        _links_to_one_image,
        2,
        "ERROR",
        "DatasetError",
        REPEAT + ", so one image would count as several samples: rabbit/1.png = rabbit/0.png",
    ),
    DataCase(
        "data-one-image-many-links-counted-once",
        lambda i: _links_to_one_image(i, "preprocess: {channels: L}\nduplicates: count_once\n"),
        1,
        "FAIL",
        dataset={"samples": 61},
    ),
    DataCase(
        "data-file-link-out-of-root",
        _file_link_out_of_root,
        2,
        "ERROR",
        "DatasetError",
        "{root}/imgs: 'cat/extra.png' is a symbolic link to {root}/outside/x.png, outside the dataset directory",
    ),
    DataCase(
        "data-folder-link-out-of-root",
        _folder_link_out_of_root,
        2,
        "ERROR",
        "DatasetError",
        "{root}/imgs: 'rabbit' is a symbolic link to {root}/rabbit-elsewhere, outside the dataset directory",
    ),
    DataCase(
        "data-same-bytes-two-labels",
        _same_bytes_two_labels,
        2,
        "ERROR",
        "DatasetError",
        "label conflict: cat/0.png (label 'cat') and dog/cat0.png (label 'dog') hold the same bytes",
    ),
    DataCase(
        "data-manifest-byte-copy",
        _manifest_byte_copy,
        2,
        "ERROR",
        "DatasetError",
        "1 image file(s) repeat the bytes of another sample (links or copies), so one image would count as"
        " several samples: cat/copy.png = cat/0.png",
    ),
    DataCase(
        "data-hidden-entries-listed",
        _hidden_entries,
        0,
        "PASS",
        accuracy=1.0,
        dataset={"samples": 90, "skipped": {"hidden": [".red/", "cat/.N.png"], "count": 2}},
    ),
    DataCase("data-png-16-bit", _sixteen_bit, 0, "PASS", accuracy=1.0),
    DataCase("data-float-tiff", lambda i: _float_tiff(i, 1.0), 0, "PASS", accuracy=1.0),
    DataCase(
        "data-float-tiff-0-to-255",
        lambda i: _float_tiff(i, 255.0),
        2,
        "ERROR",
        "DatasetError",
        "image cat/10.tif holds floating-point pixels from 10 to 10; gate reads float images as intensities in 0..1",
    ),
    DataCase("data-transparent-pixels", _transparent_rabbits, 1, "FAIL", accuracy=2 / 3),
    DataCase(
        "data-transparent-pixels-refused",
        lambda i: _transparent_rabbits(i, "refuse"),
        2,
        "ERROR",
        "DatasetError",
        "image rabbit/0.png has transparent pixels and the dataset spec has preprocess.alpha: refuse",
    ),
    DataCase("data-exif-orientation-applied", lambda i: _sideways(i, True), 0, "PASS", accuracy=1.0),
    DataCase(
        "data-exif-orientation-default",
        lambda i: _sideways(i, False),
        2,
        "ERROR",
        "ModelError",
        "expects shape ['N', 1, 1, 4]; the dataset's samples have shape [1, 4, 1]",
    ),
    DataCase(
        "data-uint8-input-default-scale",
        lambda i: _integer_input(i, TensorProto.UINT8, ""),
        2,
        "ERROR",
        "DatasetError",
        "the model's input is uint8 but the samples hold fractional values (e.g. 0.00392157), which the"
        " conversion would truncate; " + UINT8_ADVICE,
    ),
    DataCase(
        "data-uint8-input-scale-1",
        lambda i: _integer_input(i, TensorProto.UINT8, ", scale: 1"),
        0,
        "PASS",
        accuracy=1.0,
    ),
    DataCase(
        "data-uint8-input-mean-below-zero",
        lambda i: _integer_input(i, TensorProto.UINT8, ", scale: 1, mean: [128]"),
        2,
        "ERROR",
        "DatasetError",
        "the model's input is uint8 (0..255) but the samples hold -128, which the conversion would wrap round",
    ),
    DataCase(
        "data-int8-input-out-of-range",
        lambda i: _integer_input(i, TensorProto.INT8, ", scale: 1"),
        2,
        "ERROR",
        "DatasetError",
        "the model's input is int8 (-128..127) but the samples hold 255, which the conversion would wrap round",
    ),
    DataCase(
        "data-manifest-label-trailing-space",
        _label_with_trailing_space,
        2,
        "ERROR",
        "DatasetError",
        "manifest {root}/imgs/list.csv, line 2: label 'cat ': class name 'cat ' has leading or trailing whitespace",
    ),
    DataCase(
        "data-class-folders-nfc-nfd",
        _nfc_and_nfd_folders,
        2,
        "ERROR",
        "DatasetError",
        "{root}/imgs: class folders 'cafe\\u0301' and 'caf\\xe9' are the same class name written two ways",
    ),
]


@pytest.mark.parametrize("case", DATA_CASES, ids=[c.id for c in DATA_CASES])
def test_gate_eval_answers_each_dataset_attack_exactly(
    case: DataCase, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inputs = case.breaks(baseline(tmp_path))
    code, verdict = _gate_eval(capsys, inputs)
    assert (code, verdict["verdict"]) == (case.code, case.verdict), verdict.get("error")
    if case.verdict == "ERROR":
        assert verdict["error"]["type"] == case.error
        assert case.message.format(root=tmp_path) in verdict["error"]["message"]
    else:
        assert verdict["error"] is None
    if case.accuracy is not None:
        assert verdict["metrics"]["accuracy"] == pytest.approx(case.accuracy)
    for key, value in (case.dataset or {}).items():
        assert verdict["dataset"][key] == value
    if case.verdict != "ERROR" and case.dataset is None:
        assert "skipped" not in verdict["dataset"]


def doc_expectations() -> dict[str, tuple[str, ...]]:
    """Each case of this module: the fragments its row in the doc must hold."""
    return {c.id: (f"{c.code} {c.verdict}", c.error) if c.error else (f"{c.code} {c.verdict}",) for c in DATA_CASES}
