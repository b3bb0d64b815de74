"""Tests for gate.datasets: every source format, preprocessing numerics, errors, hashing.

All inputs are real files written to ``tmp_path`` (PNG/JPEG with Pillow, ``.npz`` with
numpy); randomness is seeded.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import yaml
from PIL import Image

from gate.datasets import Dataset, DatasetSpec, Preprocess, load_dataset
from gate.datasets.input_cast import cast_for_model
from gate.errors import DatasetError, UserError

RNG_SEED = 1234


def rng() -> np.random.Generator:
    return np.random.default_rng(RNG_SEED)


def write_image(path: Path, pixels: npt.NDArray[np.uint8], fmt: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format=fmt)
    return path


def rgb(h: int, w: int, seed: int = 0) -> npt.NDArray[np.uint8]:
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def image_folder(root: Path, counts: dict[str, int], h: int = 4, w: int = 6) -> Path:
    """root/<class>/<i>.png with distinct random RGB pixels per image."""
    seed = 0
    for name, n in counts.items():
        for i in range(n):
            write_image(root / name / f"{i}.png", rgb(h, w, seed))
            seed += 1
    return root


def write_spec(path: Path, **fields: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(fields), encoding="utf-8")
    return path


def only_image(tmp_path: Path, pixels: npt.NDArray[np.uint8], **preprocess: Any) -> npt.NDArray[Any]:
    """The single tensor a one-image dataset with ``preprocess`` gives the model."""
    write_image(tmp_path / "data" / "c" / "img.png", pixels)
    spec = write_spec(tmp_path / "spec.yaml", name="one", source="data", preprocess=preprocess)
    ds = load_dataset(spec)
    (batch,) = list(ds.batches(8))
    assert batch.shape == (1, *ds.sample_shape)
    assert batch.dtype == np.float32
    sample: npt.NDArray[Any] = batch[0]
    return sample


def error_of(path: Path | str) -> str:
    with pytest.raises(DatasetError) as info:
        ds = load_dataset(path)
        list(ds.batches(64))
    return str(info.value)


# ----------------------------------------------------------------------- sources


def test_image_folder_loads_sorted_classes_and_samples(tmp_path: Path) -> None:
    root = image_folder(tmp_path / "pets", {"dog": 2, "cat": 3})
    write_image(root / "cat" / "nested" / "a.JPG", rgb(4, 6, 99), fmt="JPEG")
    (root / ".hidden").mkdir()
    (root / ".hidden" / "notes.txt").write_text("ignored")
    (root / "cat" / ".DS_Store").write_bytes(b"ignored")

    ds = load_dataset(root)

    assert isinstance(ds, Dataset)
    assert ds.name == "pets"
    assert ds.source_path == root.resolve()
    assert ds.classes == ["cat", "dog"]
    assert ds.sample_ids == ["cat/0.png", "cat/1.png", "cat/2.png", "cat/nested/a.JPG", "dog/0.png", "dog/1.png"]
    assert ds.labels.dtype == np.int64
    assert ds.labels.tolist() == [0, 0, 0, 0, 1, 1]
    assert len(ds) == 6
    assert ds.sample_shape == (3, 4, 6)
    assert ds.metadata is None
    assert ds.spec.preprocess == Preprocess()
    assert ds.spec.classes is None
    assert len(ds.sha256) == 64 and int(ds.sha256, 16) >= 0


def test_spec_classes_fix_order_and_source_is_relative_to_spec(tmp_path: Path) -> None:
    image_folder(tmp_path / "data" / "pets", {"cat": 1, "dog": 2})
    spec = write_spec(
        tmp_path / "pets.yml", name="pets-heldout", source="data/pets", classes=["dog", "cat"], description="d"
    )

    ds = load_dataset(str(spec))

    assert ds.name == "pets-heldout"
    assert ds.spec.description == "d"
    assert ds.classes == ["dog", "cat"]
    assert ds.sample_ids == ["dog/0.png", "dog/1.png", "cat/0.png"]
    assert ds.labels.tolist() == [0, 0, 1]


def test_spec_with_absolute_source(tmp_path: Path) -> None:
    root = image_folder(tmp_path / "imgs", {"a": 1})
    spec = write_spec(tmp_path / "elsewhere" / "s.yaml", name="n", source=str(root))
    assert load_dataset(spec).source_path == root.resolve()


def test_npz_integer_labels_with_classes(tmp_path: Path) -> None:
    x = rng().normal(size=(5, 2, 3))
    np.savez(tmp_path / "digits.npz", x=x, y=np.array([0, 2, 1, 2, 0]), classes=np.array(["zero", "one", "two"]))

    ds = load_dataset(tmp_path / "digits.npz")

    assert ds.name == "digits"
    assert ds.classes == ["zero", "one", "two"]
    assert ds.labels.tolist() == [0, 2, 1, 2, 0]
    assert ds.sample_ids == [f"x[{i}]" for i in range(5)]
    assert ds.sample_shape == (2, 3)
    assert ds.metadata is None
    assert ds.spec.preprocess is None
    (batch,) = list(ds.batches(10))
    assert batch.dtype == np.float32  # float64 goes to the model as float32
    np.testing.assert_array_equal(batch, x.astype(np.float32))


def test_npz_string_labels_default_to_sorted_names(tmp_path: Path) -> None:
    x = np.arange(4 * 3, dtype=np.uint8).reshape(4, 3)
    np.savez(tmp_path / "d.npz", x=x, y=np.array(["dog", "cat", "emu", "cat"]))

    ds = load_dataset(tmp_path / "d.npz")

    assert ds.classes == ["cat", "dog", "emu"]
    assert ds.labels.tolist() == [1, 0, 2, 0]
    batch = np.concatenate(list(ds.batches(3)))
    assert batch.dtype == np.uint8  # integer tensors are handed over as they are
    np.testing.assert_array_equal(batch, x)


def test_npz_integer_labels_without_classes(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", x=np.zeros((3, 2), np.float32), y=np.array([3, 0, 1], dtype=np.uint8))
    ds = load_dataset(tmp_path / "d.npz")
    assert ds.classes == ["0", "1", "2", "3"]
    assert ds.labels.tolist() == [3, 0, 1]


def test_npz_spec_class_order_wins_and_labels_are_remapped(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", x=np.zeros((3, 2)), y=np.array([0, 1, 2]), classes=np.array(["a", "b", "c"]))
    spec = write_spec(tmp_path / "s.yaml", name="s", source="d.npz", classes=["c", "a", "b"])

    ds = load_dataset(spec)

    assert ds.classes == ["c", "a", "b"]
    assert ds.labels.tolist() == [1, 2, 0]
    assert [ds.classes[i] for i in ds.labels] == ["a", "b", "c"]


def test_npz_spec_classes_index_integer_labels(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", x=np.zeros((2, 2)), y=np.array([1, 0]))
    spec = write_spec(tmp_path / "s.yaml", name="s", source="d.npz", classes=["x", "y", "z"])
    ds = load_dataset(spec)
    assert ds.classes == ["x", "y", "z"]
    assert ds.labels.tolist() == [1, 0]


def test_csv_manifest_keeps_order_and_metadata(tmp_path: Path) -> None:
    image_folder(tmp_path / "imgs", {"cat": 2, "dog": 1})
    (tmp_path / "m.csv").write_text(
        "path,label,site,camera\nimgs/dog/0.png,dog,north,a\nimgs/cat/1.png,cat,south,b\n\n./imgs/cat/0.png,cat,north,c\n",
        encoding="utf-8",
    )

    ds = load_dataset(tmp_path / "m.csv")

    assert ds.name == "m"
    assert ds.source_path == (tmp_path / "m.csv").resolve()
    assert ds.classes == ["cat", "dog"]
    assert ds.sample_ids == ["imgs/dog/0.png", "imgs/cat/1.png", "imgs/cat/0.png"]
    assert ds.labels.tolist() == [1, 0, 0]
    assert ds.metadata == [
        {"site": "north", "camera": "a"},
        {"site": "south", "camera": "b"},
        {"site": "north", "camera": "c"},
    ]
    assert ds.sample_shape == (3, 4, 6)


def test_jsonl_manifest_with_spec_classes(tmp_path: Path) -> None:
    image_folder(tmp_path / "imgs", {"cat": 1, "dog": 1})
    lines = [
        json.dumps({"path": "imgs/cat/0.png", "label": "cat", "site": "n", "night": True, "n": 3}),
        "",
        json.dumps({"path": "imgs/dog/0.png", "label": "dog"}),
    ]
    (tmp_path / "m.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    spec = write_spec(tmp_path / "s.yaml", name="s", source="m.jsonl", classes=["dog", "cat", "emu"])

    ds = load_dataset(spec)

    assert ds.classes == ["dog", "cat", "emu"]
    assert ds.labels.tolist() == [1, 0]
    assert ds.sample_ids == ["imgs/cat/0.png", "imgs/dog/0.png"]
    assert ds.metadata == [{"site": "n", "night": "true", "n": "3"}, {}]


# ----------------------------------------------------------------- preprocessing


def test_no_preprocess_is_pixels_over_255_nchw(tmp_path: Path) -> None:
    pixels = rgb(3, 5)
    out = only_image(tmp_path, pixels)
    np.testing.assert_allclose(out, pixels.transpose(2, 0, 1) / 255.0, rtol=1e-6)


@pytest.mark.parametrize(
    ("size_hw", "resize", "expected_hw"),
    [
        ((10, 20), 5, (5, 10)),
        ((20, 10), 5, (10, 5)),
        ((3, 7), 2, (2, 5)),
        ((6, 6), 4, (4, 4)),
        ((6, 9), [4, 2], (4, 2)),
    ],
)
def test_resize_shorter_side_or_exact(
    tmp_path: Path, size_hw: tuple[int, int], resize: int | list[int], expected_hw: tuple[int, int]
) -> None:
    out = only_image(tmp_path, rgb(*size_hw), resize=resize)
    assert out.shape == (3, *expected_hw)


def test_resize_uses_the_interpolation(tmp_path: Path) -> None:
    pixels = rgb(8, 12)
    out = only_image(tmp_path, pixels, resize=4, interpolation="nearest", scale=1.0)
    expected = np.asarray(Image.fromarray(pixels).resize((6, 4), Image.Resampling.NEAREST), dtype=np.float32)
    np.testing.assert_array_equal(out, expected.transpose(2, 0, 1))


def test_centre_crop_takes_the_middle(tmp_path: Path) -> None:
    pixels = rgb(5, 8)
    out = only_image(tmp_path, pixels, crop=[2, 4], scale=1.0, layout="NHWC")
    # top = (5 - 2) // 2 = 1, left = (8 - 4) // 2 = 2
    np.testing.assert_array_equal(out, pixels[1:3, 2:6].astype(np.float32))
    square = only_image(tmp_path, pixels, crop=3, scale=1.0, layout="NHWC")
    np.testing.assert_array_equal(square, pixels[1:4, 2:5].astype(np.float32))


def test_resize_then_crop_shape(tmp_path: Path) -> None:
    root = image_folder(tmp_path / "d", {"a": 1}, h=30, w=40)
    spec = write_spec(tmp_path / "s.yaml", name="s", source="d", preprocess={"resize": 16, "crop": 12})
    ds = load_dataset(spec)
    assert ds.sample_shape == (3, 12, 12)
    assert next(ds.batches(1)).shape == (1, 3, 12, 12)
    assert root.exists()


def test_scale_mean_std_per_channel(tmp_path: Path) -> None:
    pixels = rgb(4, 4)
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    out = only_image(tmp_path, pixels, scale=255, mean=mean, std=std, layout="NHWC")
    expected = (pixels / 255.0 - np.array(mean)) / np.array(std)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    single = only_image(tmp_path, pixels, scale=2.0, mean=[10.0], std=[4.0], layout="NHWC")
    np.testing.assert_allclose(single, (pixels / 2.0 - 10.0) / 4.0, rtol=1e-6)


def test_bgr_reverses_channels_and_mean_follows_model_order(tmp_path: Path) -> None:
    pixels = rgb(3, 4)
    out = only_image(tmp_path, pixels, channels="BGR", scale=1.0, mean=[1.0, 2.0, 3.0])
    assert out.shape == (3, 3, 4)
    np.testing.assert_array_equal(out[0], pixels[:, :, 2] - 1.0)  # blue first
    np.testing.assert_array_equal(out[1], pixels[:, :, 1] - 2.0)
    np.testing.assert_array_equal(out[2], pixels[:, :, 0] - 3.0)


def test_nhwc_is_the_transpose_of_nchw(tmp_path: Path) -> None:
    pixels = rgb(3, 5)
    nchw = only_image(tmp_path, pixels, layout="NCHW")
    nhwc = only_image(tmp_path, pixels, layout="NHWC")
    assert nchw.shape == (3, 3, 5) and nhwc.shape == (3, 5, 3)
    np.testing.assert_array_equal(nchw, nhwc.transpose(2, 0, 1))


def test_greyscale_is_exact(tmp_path: Path) -> None:
    values = np.arange(256, dtype=np.uint8).reshape(16, 16)
    out = only_image(tmp_path, values, channels="L")
    assert out.shape == (1, 16, 16)
    np.testing.assert_array_equal(out[0], values.astype(np.float32) / np.float32(255.0))
    raw = only_image(tmp_path, values, channels="L", scale=1.0, layout="NHWC")
    np.testing.assert_array_equal(raw[:, :, 0], values.astype(np.float32))
    # 15 * v / 15 / 16 gives back v / 16 exactly, as the digits example relies on.
    steps = (np.arange(17, dtype=np.uint8) * 15).reshape(1, 17)
    digits = only_image(tmp_path, steps, channels="L", scale=15, std=[16.0])
    np.testing.assert_array_equal(digits[0], np.arange(17, dtype=np.float32).reshape(1, 17) / 16)


def test_rgb_source_to_greyscale_has_one_channel(tmp_path: Path) -> None:
    out = only_image(tmp_path, rgb(3, 4), channels="L", layout="NHWC")
    assert out.shape == (3, 4, 1)


# ------------------------------------------------------------------------ batches


def test_batches_cover_all_samples_in_order(tmp_path: Path) -> None:
    root = image_folder(tmp_path / "d", {"a": 4, "b": 6})
    ds = load_dataset(root)
    batches = list(ds.batches(4))
    assert [b.shape[0] for b in batches] == [4, 4, 2]
    assert all(b.shape[1:] == ds.sample_shape for b in batches)
    stacked = np.concatenate(batches)
    for i, sample_id in enumerate(ds.sample_ids):
        pixels = np.asarray(Image.open(root / sample_id).convert("RGB"), dtype=np.float32)
        np.testing.assert_allclose(stacked[i], pixels.transpose(2, 0, 1) / 255.0, rtol=1e-6)
    assert [b.shape[0] for b in ds.batches(10)] == [10]
    assert [b.shape[0] for b in ds.batches(100)] == [10]
    for first in ds.batches(3):  # stopping early is fine
        np.testing.assert_array_equal(first, stacked[:3])
        break


def test_npz_batches_and_invalid_batch_size(tmp_path: Path) -> None:
    x = np.arange(7 * 2, dtype=np.int32).reshape(7, 2)
    np.savez(tmp_path / "d.npz", x=x, y=np.zeros(7, dtype=np.int64))
    ds = load_dataset(tmp_path / "d.npz")
    batches = list(ds.batches(3))
    assert [len(b) for b in batches] == [3, 3, 1]
    np.testing.assert_array_equal(np.concatenate(batches), x)
    batches[0][:] = -1  # a batch is a copy; the dataset is unaffected
    np.testing.assert_array_equal(next(ds.batches(3)), x[:3])
    for bad in (0, -1, True):
        with pytest.raises(ValueError, match="batch_size"):
            ds.batches(bad)


def test_file_changed_after_load_is_refused(tmp_path: Path) -> None:
    root = image_folder(tmp_path / "d", {"a": 2})
    ds = load_dataset(root)
    write_image(root / "a" / "1.png", rgb(4, 6, seed=77))
    with pytest.raises(DatasetError, match=r"a/1\.png.*changed"):
        list(ds.batches(2))


# ------------------------------------------------------------------------- hashing


def test_sha256_ignores_location_and_name(tmp_path: Path) -> None:
    root = image_folder(tmp_path / "one" / "pets", {"cat": 2, "dog": 2})
    before = load_dataset(root).sha256
    moved = tmp_path / "two" / "deeper" / "renamed"
    shutil.copytree(root, moved)
    assert load_dataset(moved).sha256 == before
    spec_a = write_spec(tmp_path / "one" / "a.yaml", name="a", source="pets", description="x")
    spec_b = write_spec(tmp_path / "two" / "b.yaml", name="b", source="deeper/renamed")
    assert load_dataset(spec_a).sha256 == load_dataset(spec_b).sha256 == before

    np.savez(tmp_path / "first.npz", x=np.ones((2, 3)), y=np.array([0, 1]))
    shutil.copy(tmp_path / "first.npz", tmp_path / "two" / "second.npz")
    assert load_dataset(tmp_path / "first.npz").sha256 == load_dataset(tmp_path / "two" / "second.npz").sha256


def test_sha256_changes_with_bytes_labels_order_classes_and_preprocess(tmp_path: Path) -> None:
    root = image_folder(tmp_path / "imgs", {"cat": 2, "dog": 2})

    def manifest(rows: Sequence[str], name: str = "m.csv") -> Path:
        path = tmp_path / name
        path.write_text("path,label\n" + "\n".join(rows) + "\n", encoding="utf-8")
        return path

    rows = ["imgs/cat/0.png,cat", "imgs/cat/1.png,cat", "imgs/dog/0.png,dog", "imgs/dog/1.png,dog"]
    base = load_dataset(manifest(rows)).sha256
    assert load_dataset(manifest(rows, "other.csv")).sha256 == base
    relabelled = [*rows[:3], "imgs/dog/1.png,cat"]
    reordered = [rows[1], rows[0], *rows[2:]]
    hashes = {
        "label": load_dataset(manifest(relabelled, "l.csv")).sha256,
        "order": load_dataset(manifest(reordered, "o.csv")).sha256,
        "classes": load_dataset(
            write_spec(tmp_path / "c.yaml", name="c", source="m.csv", classes=["dog", "cat"])
        ).sha256,
        "preprocess": load_dataset(
            write_spec(tmp_path / "p.yaml", name="p", source="m.csv", preprocess={"mean": [0.5]})
        ).sha256,
        "layout": load_dataset(
            write_spec(tmp_path / "n.yaml", name="n", source="m.csv", preprocess={"layout": "NHWC"})
        ).sha256,
    }
    pixels = np.asarray(Image.open(root / "cat" / "0.png")).copy()
    pixels[0, 0, 0] ^= 1
    write_image(root / "cat" / "0.png", pixels)
    hashes["byte"] = load_dataset(manifest(rows)).sha256
    assert base not in hashes.values()
    assert len(set(hashes.values())) == len(hashes)


def test_sha256_default_preprocess_matches_explicit_defaults(tmp_path: Path) -> None:
    root = image_folder(tmp_path / "d", {"a": 1})
    explicit = write_spec(tmp_path / "s.yaml", name="s", source="d", preprocess={"channels": "RGB", "scale": 255})
    assert load_dataset(root).sha256 == load_dataset(explicit).sha256


def test_sha256_npz_changes_with_x_and_y(tmp_path: Path) -> None:
    x = rng().normal(size=(4, 3)).astype(np.float32)
    y = np.array([0, 1, 1, 0])
    np.savez(tmp_path / "a.npz", x=x, y=y)
    x2 = x.copy()
    x2[2, 1] += 1
    np.savez(tmp_path / "b.npz", x=x2, y=y)
    np.savez(tmp_path / "c.npz", x=x, y=np.array([0, 1, 0, 0]))
    np.savez(tmp_path / "d.npz", x=x, y=y, classes=np.array(["p", "q"]))
    hashes = [load_dataset(tmp_path / f"{n}.npz").sha256 for n in "abcd"]
    assert len(set(hashes)) == 4


# ------------------------------------------------------------------ spec errors


def test_missing_spec_names_it(tmp_path: Path) -> None:
    assert "nope.yaml" in error_of(tmp_path / "nope.yaml")


def test_invalid_spec_lists_every_problem(tmp_path: Path) -> None:
    image_folder(tmp_path / "d", {"a": 1})
    spec = write_spec(
        tmp_path / "bad.yaml",
        name="n",
        source="d",
        colour="red",
        classes=["a", "a"],
        preprocess={"resize": "big", "std": [0.0], "layout": "CHW", "scale": True, "mean": [1, 2]},
    )
    msg = error_of(spec)
    assert "bad.yaml" in msg
    for fragment in (
        "colour",
        "classes",
        "preprocess.resize",
        "preprocess.std.0",
        "preprocess.layout",
        "preprocess.scale",
    ):
        assert fragment in msg, fragment


def test_mean_length_must_match_channels(tmp_path: Path) -> None:
    image_folder(tmp_path / "d", {"a": 1})
    spec = write_spec(tmp_path / "s.yaml", name="n", source="d", preprocess={"channels": "L", "mean": [0.1, 0.2, 0.3]})
    msg = error_of(spec)
    assert "preprocess" in msg and "mean" in msg


@pytest.mark.parametrize("text", ["- just\n- a list\n", "name: [unclosed\n", ""])
def test_spec_not_a_mapping_or_not_yaml(tmp_path: Path, text: str) -> None:
    (tmp_path / "s.yaml").write_text(text, encoding="utf-8")
    assert "s.yaml" in error_of(tmp_path / "s.yaml")


def test_spec_source_missing_names_resolved_path(tmp_path: Path) -> None:
    spec = write_spec(tmp_path / "s.yaml", name="n", source="gone/data")
    assert str((tmp_path / "gone" / "data").resolve()) in error_of(spec)


def test_preprocess_with_npz_source_is_refused(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", x=np.zeros((2, 2)), y=np.array([0, 1]))
    spec = write_spec(tmp_path / "s.yaml", name="n", source="d.npz", preprocess={"scale": 1.0})
    msg = error_of(spec)
    assert "preprocess" in msg and "d.npz" in msg


def test_unsupported_and_missing_paths(tmp_path: Path) -> None:
    (tmp_path / "data.txt").write_text("x")
    assert "data.txt" in error_of(tmp_path / "data.txt")
    assert "absent.npz" in error_of(tmp_path / "absent.npz")


def test_dataset_error_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError):
        load_dataset(tmp_path / "absent")


def test_spec_models_reject_bad_values_directly() -> None:
    assert Preprocess(resize=[224, 200]).resize == (224, 200)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Preprocess(scale=0)
    with pytest.raises(ValueError):
        DatasetSpec(name="n", source="s", classes=[])
    with pytest.raises(ValueError):
        Preprocess(extra=1)  # type: ignore[call-arg]


# ------------------------------------------------------------------- npz errors


def npz_error(tmp_path: Path, **arrays: Any) -> str:
    np.savez(tmp_path / "bad.npz", **arrays)
    msg = error_of(tmp_path / "bad.npz")
    assert "bad.npz" in msg
    return msg


def test_npz_missing_arrays(tmp_path: Path) -> None:
    assert "'y'" in npz_error(tmp_path, x=np.zeros((2, 2)))


def test_npz_length_mismatch_and_empty(tmp_path: Path) -> None:
    assert "3 samples" in npz_error(tmp_path, x=np.zeros((3, 2)), y=np.array([0, 1]))
    assert "no samples" in npz_error(tmp_path, x=np.zeros((0, 2)), y=np.zeros(0, dtype=np.int64))


def test_npz_label_out_of_range_names_first_bad(tmp_path: Path) -> None:
    msg = npz_error(tmp_path, x=np.zeros((4, 2)), y=np.array([0, 1, 5, 7]), classes=np.array(["a", "b"]))
    assert "y[2] = 5" in msg
    assert "y[1] = -1" in npz_error(tmp_path, x=np.zeros((2, 2)), y=np.array([0, -1]))


def test_npz_huge_label_without_classes(tmp_path: Path) -> None:
    assert "y[1]" in npz_error(tmp_path, x=np.zeros((2, 2)), y=np.array([0, 10**9]))


def test_numeric_class_names_must_be_quoted(tmp_path: Path) -> None:
    image_folder(tmp_path / "d", {"0": 1, "1": 1})
    (tmp_path / "s.yaml").write_text("name: n\nsource: d\nclasses: [0, 1]\n", encoding="utf-8")
    msg = error_of(tmp_path / "s.yaml")
    assert "classes.0" in msg and "quote" in msg
    (tmp_path / "s.yaml").write_text('name: n\nsource: d\nclasses: ["1", "0"]\n', encoding="utf-8")
    assert load_dataset(tmp_path / "s.yaml").classes == ["1", "0"]


def test_npz_unknown_label_name(tmp_path: Path) -> None:
    msg = npz_error(tmp_path, x=np.zeros((3, 2)), y=np.array(["a", "b", "zebra"]), classes=np.array(["a", "b"]))
    assert "y[2]" in msg and "zebra" in msg


def test_npz_classes_disagree_with_spec(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", x=np.zeros((2, 2)), y=np.array([0, 1]), classes=np.array(["cat", "dog"]))
    spec = write_spec(tmp_path / "s.yaml", name="n", source="d.npz", classes=["cat", "emu"])
    msg = error_of(spec)
    assert "['cat', 'emu']" in msg and "['cat', 'dog']" in msg


def test_npz_non_numeric_x_and_float_labels(tmp_path: Path) -> None:
    assert "numeric" in npz_error(tmp_path, x=np.array([["a"], ["b"]]), y=np.array([0, 1]))
    assert "y must" in npz_error(tmp_path, x=np.zeros((2, 2)), y=np.array([0.0, 1.0]))


def test_npz_nan_names_first_bad_sample(tmp_path: Path) -> None:
    x = np.zeros((5, 2, 2), dtype=np.float32)
    x[3, 1, 0] = np.nan
    x[4, 0, 0] = np.inf
    assert "x[3]" in npz_error(tmp_path, x=x, y=np.zeros(5, dtype=np.int64))
    big = np.zeros((3, 2))
    big[1, 1] = 1e300  # finite in float64, infinite as float32
    assert "x[1]" in npz_error(tmp_path, x=big, y=np.zeros(3, dtype=np.int64))


def test_npz_object_arrays_are_not_unpickled(tmp_path: Path) -> None:
    x = np.empty(2, dtype=object)
    x[:] = [1, 2]
    npz_error(tmp_path, x=x, y=np.array([0, 1]))


def test_not_an_npz_file(tmp_path: Path) -> None:
    (tmp_path / "bad.npz").write_bytes(b"not a zip archive")
    assert "bad.npz" in error_of(tmp_path / "bad.npz")


# ----------------------------------------------------------- ImageFolder errors


def test_image_folder_other_extension_is_named(tmp_path: Path) -> None:
    root = image_folder(tmp_path / "d", {"a": 1, "b": 1})
    (root / "b" / "labels.txt").write_text("x")
    assert "b/labels.txt" in error_of(root)


def test_image_folder_empty_class_is_named(tmp_path: Path) -> None:
    root = image_folder(tmp_path / "d", {"a": 1})
    (root / "zebra").mkdir()
    (root / "zebra" / ".keep").write_text("")
    assert "zebra" in error_of(root)


def test_image_folder_file_outside_class_folders(tmp_path: Path) -> None:
    root = image_folder(tmp_path / "d", {"a": 1})
    write_image(root / "stray.png", rgb(4, 6))
    assert "stray.png" in error_of(root)


def test_image_folder_spec_class_without_folder_and_folder_without_class(tmp_path: Path) -> None:
    image_folder(tmp_path / "d", {"cat": 1, "dog": 1})
    missing = write_spec(tmp_path / "m.yaml", name="n", source="d", classes=["cat", "dog", "emu"])
    assert "emu" in error_of(missing)
    extra = write_spec(tmp_path / "e.yaml", name="n", source="d", classes=["cat"])
    assert "dog" in error_of(extra)


def test_truncated_image_is_named(tmp_path: Path) -> None:
    root = image_folder(tmp_path / "d", {"a": 2}, h=32, w=32)
    path = root / "a" / "1.png"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    msg = error_of(root)
    assert "a/1.png" in msg and "truncated" in msg.lower()


def test_not_an_image_is_named(tmp_path: Path) -> None:
    root = image_folder(tmp_path / "d", {"a": 1})
    (root / "a" / "fake.jpg").write_bytes(b"this is text, not a JPEG")
    assert "a/fake.jpg" in error_of(root)


def test_mixed_sizes_without_resize_suggest_it(tmp_path: Path) -> None:
    root = image_folder(tmp_path / "d", {"a": 2}, h=4, w=6)
    write_image(root / "a" / "9.png", rgb(5, 6))
    msg = error_of(root)
    assert "a/9.png" in msg and "5x6" in msg and "4x6" in msg and "preprocess.resize" in msg


def test_mixed_aspect_ratios_after_resize_need_a_crop(tmp_path: Path) -> None:
    root = image_folder(tmp_path / "d", {"a": 1}, h=4, w=6)
    write_image(root / "a" / "9.png", rgb(6, 6))
    spec = write_spec(tmp_path / "s.yaml", name="s", source="d", preprocess={"resize": 4})
    assert "a/9.png" in error_of(spec)
    ok = write_spec(tmp_path / "ok.yaml", name="s", source="d", preprocess={"resize": 4, "crop": 4})
    assert load_dataset(ok).sample_shape == (3, 4, 4)


def test_crop_larger_than_image_is_named(tmp_path: Path) -> None:
    image_folder(tmp_path / "d", {"a": 1}, h=4, w=6)
    spec = write_spec(tmp_path / "s.yaml", name="s", source="d", preprocess={"crop": 5})
    msg = error_of(spec)
    assert "a/0.png" in msg and "crop" in msg


# -------------------------------------------------------------- manifest errors


def manifest_error(tmp_path: Path, body: str, name: str = "m.csv") -> str:
    image_folder(tmp_path / "imgs", {"cat": 2, "dog": 1})
    (tmp_path / name).write_text(body, encoding="utf-8")
    msg = error_of(tmp_path / name)
    assert name in msg
    return msg


def test_manifest_absolute_path(tmp_path: Path) -> None:
    absolute = (tmp_path / "imgs" / "cat" / "0.png").as_posix()
    msg = manifest_error(tmp_path, f"path,label\nimgs/cat/1.png,cat\n{absolute},cat\n")
    assert "line 3" in msg and absolute in msg


def test_manifest_dotdot_escape(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    image_folder(tmp_path / "imgs", {"cat": 1})
    (tmp_path / "sub" / "m.csv").write_text("path,label\n../imgs/cat/0.png,cat\n", encoding="utf-8")
    msg = error_of(tmp_path / "sub" / "m.csv")
    assert "line 2" in msg and "../imgs/cat/0.png" in msg and "outside" in msg


def test_manifest_symlink_escape(tmp_path: Path) -> None:
    outside = write_image(tmp_path / "outside.png", rgb(4, 6))
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "link.png").symlink_to(outside)
    (tmp_path / "data" / "m.jsonl").write_text(json.dumps({"path": "link.png", "label": "x"}) + "\n")
    msg = error_of(tmp_path / "data" / "m.jsonl")
    assert "line 1" in msg and "link.png" in msg and "outside" in msg


def test_manifest_missing_file(tmp_path: Path) -> None:
    msg = manifest_error(tmp_path, "path,label\nimgs/cat/0.png,cat\nimgs/cat/ghost.png,cat\n")
    assert "imgs/cat/ghost.png" in msg and "line 3" in msg and "not found" in msg


def test_manifest_duplicate_names_both_lines(tmp_path: Path) -> None:
    msg = manifest_error(tmp_path, "path,label\nimgs/cat/0.png,cat\nimgs/dog/0.png,dog\nimgs/./cat/0.png,cat\n")
    assert "line 4" in msg and "line 2" in msg and "imgs/cat/0.png" in msg


def test_manifest_label_not_in_spec_classes(tmp_path: Path) -> None:
    image_folder(tmp_path / "imgs", {"cat": 1, "dog": 1})
    (tmp_path / "m.csv").write_text("path,label\nimgs/cat/0.png,cat\nimgs/dog/0.png,dgo\n", encoding="utf-8")
    spec = write_spec(tmp_path / "s.yaml", name="n", source="m.csv", classes=["cat", "dog"])
    msg = error_of(spec)
    assert "'dgo'" in msg and "line 3" in msg


def test_manifest_malformed_json_line(tmp_path: Path) -> None:
    body = json.dumps({"path": "imgs/cat/0.png", "label": "cat"}) + "\n\n{not json\n"
    msg = manifest_error(tmp_path, body, name="m.jsonl")
    assert "line 3" in msg and "JSON" in msg


def test_manifest_jsonl_label_must_be_a_string(tmp_path: Path) -> None:
    msg = manifest_error(tmp_path, json.dumps({"path": "imgs/cat/0.png", "label": 3}) + "\n", name="m.jsonl")
    assert "line 1" in msg and "label" in msg


def test_manifest_csv_structure(tmp_path: Path) -> None:
    assert "label" in manifest_error(tmp_path, "path,class\nimgs/cat/0.png,cat\n")
    assert "line 2" in manifest_error(tmp_path, "path,label\nimgs/cat/0.png,cat,extra\n")


def test_manifest_without_rows_is_empty(tmp_path: Path) -> None:
    assert "no samples" in manifest_error(tmp_path, "path,label\n")
    assert "no samples" in manifest_error(tmp_path, "\n\n", name="m.jsonl")


# ------------------------------------------------------ links, repeats and skipped files


def test_a_link_out_of_the_root_is_refused(tmp_path: Path) -> None:
    image_folder(tmp_path / "data", {"a": 2, "b": 2})
    write_image(tmp_path / "outside" / "x.png", rgb(4, 6, 99))
    (tmp_path / "data" / "a" / "x.png").symlink_to(tmp_path / "outside" / "x.png")
    message = error_of(tmp_path / "data")
    assert "'a/x.png' is a symbolic link to" in message and "outside the dataset directory" in message


def test_a_class_folder_linked_from_outside_is_refused(tmp_path: Path) -> None:
    image_folder(tmp_path / "data", {"a": 2})
    image_folder(tmp_path / "elsewhere", {"b": 2})
    (tmp_path / "data" / "b").symlink_to(tmp_path / "elsewhere" / "b", target_is_directory=True)
    assert "'b' is a symbolic link to" in error_of(tmp_path / "data")


def one_image_many_links(root: Path, links: int) -> Path:
    """Class ``a``: one image and ``links`` links to it; class ``b``: two distinct images."""
    image_folder(root, {"a": 1, "b": 2})
    for i in range(links):
        (root / "a" / f"link{i:02d}.png").symlink_to(root / "a" / "0.png")
    return root


def test_one_image_and_its_links_is_an_error_listing_them(tmp_path: Path) -> None:
    message = error_of(one_image_many_links(tmp_path / "data", 49))
    assert message.startswith("49 image file(s) repeat the bytes of another sample")
    assert "a/link00.png = a/0.png" in message and "and 39 more" in message
    assert "duplicates: count_once" in message


def test_count_once_keeps_the_first_and_lists_the_rest(tmp_path: Path) -> None:
    one_image_many_links(tmp_path / "data", 3)
    shutil.copy(tmp_path / "data" / "b" / "0.png", tmp_path / "data" / "b" / "copy.png")
    ds = load_dataset(write_spec(tmp_path / "spec.yaml", name="s", source="data", duplicates="count_once"))
    assert ds.sample_ids == ["a/0.png", "b/0.png", "b/1.png"] and ds.labels.tolist() == [0, 1, 1]
    assert [len(b) for b in ds.batches(8)] == [3]
    assert ds.verdict_fields() == {
        "skipped": {
            "duplicates": [
                "a/link00.png (same bytes as a/0.png)",
                "a/link01.png (same bytes as a/0.png)",
                "a/link02.png (same bytes as a/0.png)",
                "b/copy.png (same bytes as b/0.png)",
            ],
            "count": 4,
        }
    }
    # the same samples as a set without the repeats
    clean = tmp_path / "clean"
    image_folder(clean, {"a": 1, "b": 2})
    assert ds.sha256 == load_dataset(clean).sha256


@pytest.mark.parametrize("count_once", [False, True])
def test_the_same_bytes_under_two_labels_is_a_label_conflict(tmp_path: Path, count_once: bool) -> None:
    image_folder(tmp_path / "data", {"a": 2, "b": 2})
    shutil.copy(tmp_path / "data" / "a" / "1.png", tmp_path / "data" / "b" / "same.png")
    extra = {"duplicates": "count_once"} if count_once else {}
    message = error_of(write_spec(tmp_path / "spec.yaml", name="s", source="data", **extra))
    assert message.startswith("label conflict: a/1.png (label 'a') and b/same.png (label 'b') hold the same bytes")


def test_a_manifest_of_byte_identical_copies_is_an_error(tmp_path: Path) -> None:
    image_folder(tmp_path / "data", {"a": 2})
    shutil.copy(tmp_path / "data" / "a" / "0.png", tmp_path / "data" / "a" / "copy.png")
    (tmp_path / "data" / "list.csv").write_text("path,label\na/0.png,a\na/1.png,a\na/copy.png,a\n")
    assert "1 image file(s) repeat the bytes of another sample" in error_of(tmp_path / "data" / "list.csv")


def test_identical_npz_rows_are_samples(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", x=np.zeros((4, 2), np.float32), y=np.array([0, 0, 1, 1]))
    ds = load_dataset(tmp_path / "d.npz")
    assert len(ds) == 4 and ds.verdict_fields() == {}


def test_hidden_files_and_folders_are_skipped_and_listed(tmp_path: Path) -> None:
    image_folder(tmp_path / "data", {"a": 2, "b": 2})
    write_image(tmp_path / "data" / "a" / ".N.png", rgb(4, 6, 50))
    write_image(tmp_path / "data" / ".red" / "0.png", rgb(4, 6, 51))
    ds = load_dataset(tmp_path / "data")
    assert len(ds) == 4 and ds.classes == ["a", "b"]
    assert ds.verdict_fields() == {"skipped": {"hidden": [".red/", "a/.N.png"], "count": 2}}
    assert load_dataset(image_folder(tmp_path / "plain", {"a": 1})).verdict_fields() == {}


def test_the_skipped_list_is_capped_but_counted(tmp_path: Path) -> None:
    image_folder(tmp_path / "data", {"a": 1})
    for i in range(25):
        (tmp_path / "data" / "a" / f".{i:02d}.png").write_bytes(b"")
    skipped = load_dataset(tmp_path / "data").verdict_fields()["skipped"]
    assert skipped["count"] == 25 and len(skipped["hidden"]) == 20


# ------------------------------------------------------------------ class names


def test_a_manifest_label_with_a_trailing_space_names_label_file_and_line(tmp_path: Path) -> None:
    image_folder(tmp_path / "data", {"cat": 2})
    (tmp_path / "data" / "list.csv").write_text("path,label\ncat/0.png,cat\ncat/1.png,cat \n")
    message = error_of(tmp_path / "data" / "list.csv")
    assert "list.csv, line 3: label 'cat ': class name 'cat ' has leading or trailing whitespace" in message


def test_nfc_and_nfd_class_folders_are_refused_naming_both(tmp_path: Path) -> None:
    image_folder(tmp_path / "data", {"caf\u00e9": 1, "cafe\u0301": 1})
    message = error_of(tmp_path / "data")
    assert "class folders 'cafe\\u0301' and 'caf\\xe9' are the same class name" in message


def test_nfd_and_nfc_labels_are_one_class(tmp_path: Path) -> None:
    image_folder(tmp_path / "data", {"x": 3})
    rows = ["x/0.png,caf\u00e9", "x/1.png,cafe\u0301", "x/2.png,tea"]
    (tmp_path / "data" / "list.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    ds = load_dataset(tmp_path / "data" / "list.csv")
    assert ds.classes == ["caf\u00e9", "tea"] and ds.labels.tolist() == [0, 0, 1]
    spec = write_spec(tmp_path / "s.yaml", name="s", source="data/list.csv", classes=["cafe\u0301", "tea"])
    assert load_dataset(spec).classes == ["caf\u00e9", "tea"]


# ------------------------------------------------------------- pixel conventions


def grey_pixels_of(tmp_path: Path, values: npt.NDArray[Any], name: str) -> list[list[float]]:
    """The 0..255 pixel values gate reads from one greyscale image file holding ``values``."""
    path = tmp_path / "data" / "c" / name
    path.parent.mkdir(parents=True)
    Image.fromarray(values).save(path)
    ds = load_dataset(write_spec(tmp_path / "s.yaml", name="s", source="data", preprocess={"channels": "L"}))
    (batch,) = list(ds.batches(1))
    pixels: list[list[float]] = (batch[0, 0] * 255).round().tolist()
    return pixels


def test_16_bit_png_is_scaled_not_clipped(tmp_path: Path) -> None:
    values = np.array([[60 * 257, 65535], [0, 200 * 257 + 50]], np.uint16)
    assert grey_pixels_of(tmp_path, values, "img.png") == [[60, 255], [0, 200]]


def test_float_tiff_is_read_as_0_to_1_intensities(tmp_path: Path) -> None:
    values = np.array([[0.0, 0.5], [1.0, 0.25]], np.float32)
    assert grey_pixels_of(tmp_path, values, "img.tif") == [[0, 128], [255, 64]]


def test_float_tiff_outside_0_to_1_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"image c/img\.tif holds floating-point pixels from 0 to 200"):
        grey_pixels_of(tmp_path, np.array([[0.0, 200.0]], np.float32), "img.tif")


@pytest.mark.parametrize(
    ("alpha", "expected"), [("black", [0, 0, 0]), ("white", [255, 255, 255]), ("drop", [200, 10, 20])]
)
def test_transparent_pixels_follow_the_alpha_option(tmp_path: Path, alpha: str, expected: list[int]) -> None:
    rgba = np.zeros((1, 2, 4), np.uint8)
    rgba[..., :3] = (200, 10, 20)
    rgba[0, 1, 3] = 255  # the second pixel is opaque
    sample = only_image(tmp_path, rgba, alpha=alpha, layout="NHWC")
    assert (sample[0, 0] * 255).round().tolist() == expected
    assert (sample[0, 1] * 255).round().tolist() == [200, 10, 20]


def test_transparent_pixels_refused_on_request(tmp_path: Path) -> None:
    rgba = np.zeros((1, 2, 4), np.uint8)
    write_image(tmp_path / "data" / "c" / "img.png", rgba)
    spec = write_spec(tmp_path / "s.yaml", name="s", source="data", preprocess={"alpha": "refuse"})
    assert "image c/img.png has transparent pixels" in error_of(spec)


def exif_rotated_jpeg(path: Path) -> Path:
    """A 4x8 (HxW) JPEG, left half black and right half white, tagged orientation 6
    (display turned 90° clockwise: 8x4, black on top)."""
    pixels = np.zeros((4, 8), np.uint8)
    pixels[:, 4:] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format="JPEG", quality=100, exif=exif)
    return path


@pytest.mark.parametrize("transpose", [False, True])
def test_exif_orientation_is_a_spec_option(tmp_path: Path, transpose: bool) -> None:
    exif_rotated_jpeg(tmp_path / "data" / "c" / "img.jpg")
    preprocess = {"channels": "L", "exif_transpose": transpose}
    ds = load_dataset(write_spec(tmp_path / "s.yaml", name="s", source="data", preprocess=preprocess))
    (batch,) = list(ds.batches(1))
    image = batch[0, 0]
    if transpose:
        assert ds.sample_shape == (1, 8, 4)
        assert image[:4].mean() < 0.1 and image[4:].mean() > 0.9
    else:
        assert ds.sample_shape == (1, 4, 8)
        assert image[:, :4].mean() < 0.1 and image[:, 4:].mean() > 0.9


def test_new_options_at_their_defaults_keep_the_hash(tmp_path: Path) -> None:
    image_folder(tmp_path / "data", {"a": 1})
    plain = load_dataset(write_spec(tmp_path / "p.yaml", name="p", source="data")).sha256
    explicit = {"exif_transpose": False, "alpha": "black"}
    same = write_spec(tmp_path / "e.yaml", name="e", source="data", preprocess=explicit, duplicates="refuse")
    assert load_dataset(same).sha256 == plain
    white = write_spec(tmp_path / "w.yaml", name="w", source="data", preprocess={"alpha": "white"})
    assert load_dataset(white).sha256 != plain


# ------------------------------------------------------- conversion to the input dtype


def test_the_cast_to_an_integer_input_refuses_fractions_and_wrapping() -> None:
    with pytest.raises(DatasetError, match=r"input is uint8 but the samples hold fractional values \(e.g. 0.5\)"):
        cast_for_model(np.array([[0.5, 1.0]], np.float32), np.uint8)
    with pytest.raises(DatasetError, match=r"input is int8 \(-128..127\) but the samples hold 200"):
        cast_for_model(np.array([[200.0]], np.float32), np.int8)
    with pytest.raises(DatasetError, match=r"input is uint8 \(0..255\) but the samples hold -1"):
        cast_for_model(np.array([[-1]], np.int64), np.uint8)
    with pytest.raises(DatasetError, match="NaN or infinite"):
        cast_for_model(np.array([[np.nan]], np.float32), np.int32)
    exact = cast_for_model(np.array([[0.0, 255.0]], np.float32), np.uint8)
    assert exact.dtype == np.uint8 and exact.tolist() == [[0, 255]] and exact.flags.c_contiguous


def test_the_cast_to_a_narrower_float_refuses_overflow() -> None:
    with pytest.raises(DatasetError, match="input is float16, which cannot hold the sample value 70000"):
        cast_for_model(np.array([[70000.0]], np.float32), np.float16)
    assert cast_for_model(np.array([[1, 2]], np.uint8), np.float32).tolist() == [[1.0, 2.0]]
