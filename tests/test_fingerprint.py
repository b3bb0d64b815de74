"""Tests for gate.leakage: the perceptual hash, fingerprint files, directory and
dataset hashing, the near-duplicate index, and the leakage scenario of the acceptance
criteria (5% resized, re-encoded copies of training images are found; a clean set is
clean).

Images are generated deterministically: smooth "natural-ish" scenes (gradients, random
ellipses, blurred noise) from seeded generators, and scikit-learn's bundled digits.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import os
import shutil
import struct
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from gate.datasets import load_dataset
from gate.errors import DatasetError, UserError
from gate.leakage import (
    Fingerprints,
    NearDuplicateIndex,
    NearMatches,
    find_leaks,
    fingerprint_command,
    fingerprint_directory,
    hash_dataset,
    hash_file,
    load_fingerprints,
    phash,
    phash_many,
    save_fingerprints,
)
from gate.leakage import index as hamming_index

# --------------------------------------------------------------------------- images


def scene(seed: int, h: int = 96, w: int = 128) -> npt.NDArray[np.uint8]:
    """A deterministic RGB scene: a colour gradient, 3-8 filled ellipses and blurred noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.empty((h, w, 3), dtype=np.float32)
    for c in range(3):
        img[..., c] = rng.uniform(0, 255) + rng.uniform(-150, 150) * xx / w + rng.uniform(-150, 150) * yy / h
    for _ in range(int(rng.integers(3, 9))):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        ry, rx = rng.uniform(h / 12, h / 3), rng.uniform(w / 12, w / 3)
        img[((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1] = rng.uniform(0, 255, 3)
    noise = rng.normal(0, 40, (max(2, h // 16), max(2, w // 16), 3)).astype(np.float32)
    for c in range(3):
        img[..., c] += np.asarray(Image.fromarray(noise[..., c], "F").resize((w, h), Image.Resampling.BICUBIC))
    pixels: npt.NDArray[np.uint8] = np.clip(img, 0, 255).astype(np.uint8)
    return pixels


def resized(pixels: npt.NDArray[np.uint8], factor: float) -> npt.NDArray[np.uint8]:
    h, w = pixels.shape[:2]
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    return np.asarray(Image.fromarray(pixels).resize(size, Image.Resampling.BICUBIC))


def jpeg_bytes(pixels: npt.NDArray[np.uint8], quality: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def decoded(data: bytes) -> npt.NDArray[np.uint8]:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


def copy_of(pixels: npt.NDArray[np.uint8], factor: float, quality: int) -> npt.NDArray[np.uint8]:
    """A resized copy, re-encoded as JPEG, as the decoder sees it."""
    return decoded(jpeg_bytes(resized(pixels, factor), quality))


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def digits(count: int) -> tuple[list[npt.NDArray[np.uint8]], npt.NDArray[np.int64]]:
    """scikit-learn's 8x8 digits scaled to 0..255 and upscaled to 64x64."""
    from sklearn.datasets import load_digits

    data = load_digits()
    out = []
    for img in data.images[:count]:
        small = np.round(img * 255 / 16).astype(np.uint8)
        out.append(np.asarray(Image.fromarray(small).resize((64, 64), Image.Resampling.NEAREST)))
    return out, data.target[:count].astype(np.int64)


VARIANTS = [(0.5, 70), (0.5, 90), (1.7, 70), (1.7, 90), (0.75, 80), (1.0, 75)]


# ----------------------------------------------------------------------------- hash


def test_hash_is_deterministic_64_bit_and_batched_alike() -> None:
    images = [scene(s) for s in range(6)] + [scene(7, 40, 30)[:, :, 0]]
    single = [phash(p) for p in images]
    assert single == [phash(p) for p in images]
    assert all(0 <= h < 2**64 for h in single)
    batch = phash_many(images)
    assert batch.dtype == np.uint64
    assert batch.tolist() == single
    assert phash_many([]).shape == (0,)
    # a stacked array works like a sequence of images
    stack = np.stack([scene(s) for s in range(3)])
    assert phash_many(stack).tolist() == [phash(p) for p in stack]


def test_ac_bits_split_at_the_median() -> None:
    """63 AC bits against their median: exactly 31 are set when no two coefficients tie."""
    for seed in range(20):
        h = phash(scene(seed))
        assert (h & ((1 << 63) - 1)).bit_count() == 31


def test_dc_bit_is_the_top_bit_and_means_bright() -> None:
    # a flat image has no AC energy: no AC bit is above the median (zero)
    assert phash(np.full((20, 30), 200, dtype=np.uint8)) == 1 << 63
    assert phash(np.full((20, 30), 50, dtype=np.uint8)) == 0


@pytest.mark.parametrize(("u", "v"), [(0, 3), (2, 0), (5, 7), (7, 1)])
def test_coefficient_u_v_is_bit_63_minus_8u_plus_v(u: int, v: int) -> None:
    """A cosine of frequency (u, v) makes F[u, v] the largest coefficient (bit set) or,
    inverted, the smallest (bit clear)."""
    n = 32
    y = np.cos(np.pi * (2 * np.arange(n) + 1) * u / (2 * n))
    x = np.cos(np.pi * (2 * np.arange(n) + 1) * v / (2 * n))
    pattern = np.outer(y, x)
    bit = 1 << (63 - (8 * u + v))
    assert phash(np.round(128 + 100 * pattern).astype(np.uint8)) & bit
    assert not phash(np.round(128 - 100 * pattern).astype(np.uint8)) & bit


def test_grey_uses_pillow_luma_and_ignores_alpha() -> None:
    rgb = scene(3)
    luma = np.asarray(Image.fromarray(rgb).convert("L"))
    assert phash(rgb) == phash(luma) == phash(luma[:, :, np.newaxis])
    rgba = np.concatenate([rgb, np.random.default_rng(0).integers(0, 256, (*rgb.shape[:2], 1), dtype=np.uint8)], 2)
    assert phash(rgba) == phash(rgb)
    assert phash(np.stack([luma, rgb[:, :, 0]], axis=2)) == phash(luma)  # LA: alpha ignored


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((8, 8), dtype=np.float32),
        np.zeros((8, 8), dtype=np.uint16),
        np.zeros((2, 8, 8, 3), dtype=np.uint8),
        np.zeros((8, 8, 5), dtype=np.uint8),
        np.zeros((0, 8), dtype=np.uint8),
        np.zeros(8, dtype=np.uint8),
    ],
)
def test_non_images_are_refused(bad: npt.NDArray[np.generic]) -> None:
    with pytest.raises(ValueError):
        phash(bad)  # type: ignore[arg-type]


def test_hash_file_decodes_like_the_evaluation(tmp_path: Path) -> None:
    rgb = scene(11)
    png = tmp_path / "a.png"
    Image.fromarray(rgb).save(png)
    assert hash_file(png) == phash(rgb)
    jpg = tmp_path / "b.jpg"
    jpg.write_bytes(jpeg_bytes(rgb, 85))
    assert hash_file(jpg) == phash(decoded(jpg.read_bytes()))
    grey = tmp_path / "c.png"
    Image.fromarray(rgb[:, :, 1]).save(grey)
    assert hash_file(grey) == phash(rgb[:, :, 1])
    palette = tmp_path / "d.gif"
    Image.fromarray(rgb).convert("P").save(palette)
    with Image.open(palette) as im:
        assert hash_file(palette) == phash(np.asarray(im.convert("RGB")))


def test_hash_file_names_an_unreadable_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(jpeg_bytes(scene(1), 90)[:300])
    with pytest.raises(DatasetError, match=r"cat/broken\.jpg"):
        hash_file(broken, "cat/broken.jpg")
    with pytest.raises(DatasetError, match=r"missing\.png"):
        hash_file(tmp_path / "missing.png")
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(DatasetError, match=r"text\.png: not an image"):
        hash_file(tmp_path / "text.png", "text.png")


# -------------------------------------------------------------------- robustness


def test_resized_and_reencoded_copies_stay_close_and_other_scenes_far() -> None:
    """Copies at 0.5x-1.7x, JPEG quality 70-90: within 8 bits (in practice 0-4);
    different scenes: never within 12 bits, about 32 on average."""
    originals = [scene(seed, 120, 160) for seed in range(40)]
    hashes = [phash(p) for p in originals]
    same = [hamming(h, phash(copy_of(p, f, q))) for p, h in zip(originals, hashes, strict=True) for f, q in VARIANTS]
    different = [hamming(a, b) for a, b in itertools.combinations(hashes, 2)]
    assert max(same) <= 8
    assert np.mean(same) < 2
    assert min(different) > 12
    assert 28 < np.mean(different) < 36


def test_digits_copies_stay_close() -> None:
    """Upscaled 8x8 digits: copies stay within 4 bits. Different digits are mostly far
    apart, but two hand-written digits of a class can be genuinely alike at 8x8."""
    images, labels = digits(150)
    hashes = [phash(p) for p in images]
    same = [hamming(h, phash(copy_of(p, f, q))) for p, h in zip(images, hashes, strict=True) for f, q in VARIANTS]
    pairs = list(itertools.combinations(range(len(images)), 2))
    different = np.array([hamming(hashes[i], hashes[j]) for i, j in pairs])
    other_class = np.array([labels[i] != labels[j] for i, j in pairs])
    assert max(same) <= 4
    assert np.mean(different <= 8) < 0.002
    assert different[other_class].min() > 8


# ------------------------------------------------------------------------ file format


def fingerprints_of(n: int, seed: int = 0) -> Fingerprints:
    rng = np.random.default_rng(seed)
    hashes = rng.integers(0, 2**64, n, dtype=np.uint64, endpoint=False)
    return Fingerprints(hashes=hashes, paths=tuple(f"class{i % 3}/img{i:03d}.jpg" for i in range(n)))


def test_file_round_trip_by_path_and_by_bytes(tmp_path: Path) -> None:
    original = Fingerprints(
        hashes=np.array([0, 2**64 - 1, 12345], dtype=np.uint64), paths=("a/1.png", "b/ü 2.jpg", "c.png"), skipped=2
    )
    path = tmp_path / "train.fp"
    save_fingerprints(original, path)
    data = path.read_bytes()
    for loaded in (load_fingerprints(path), load_fingerprints(data), load_fingerprints(str(path))):
        assert loaded.hashes.tolist() == [0, 2**64 - 1, 12345]
        assert loaded.paths == original.paths
        assert loaded.skipped == 2
        assert loaded.sha256 == original.sha256
        assert loaded.to_bytes() == data
    # the identifier is the SHA-256 of everything before the trailing digest, which is it
    assert original.sha256 == hashlib.sha256(data[:-32]).hexdigest() == data[-32:].hex()
    assert data.startswith(b"gate.fingerprint/v1\n")
    (hlen,) = struct.unpack_from("<I", data, 20)
    header = json.loads(data[24 : 24 + hlen])
    assert header == {"algorithm": "gate.phash", "algorithm_version": 1, "count": 3, "paths_bytes": 25, "skipped": 2}
    assert np.frombuffer(data, "<u8", 3, 24 + hlen).tolist() == [0, 2**64 - 1, 12345]
    assert not list(tmp_path.glob(".*"))  # no temporary file left behind


def test_identifier_depends_on_content_only() -> None:
    a, b = fingerprints_of(10), fingerprints_of(10)
    assert a.sha256 == b.sha256
    assert fingerprints_of(10, seed=1).sha256 != a.sha256
    renamed = Fingerprints(hashes=a.hashes, paths=(*a.paths[:-1], "other.jpg"))
    assert renamed.sha256 != a.sha256
    assert Fingerprints(hashes=a.hashes, paths=a.paths, skipped=1).sha256 != a.sha256


def test_fingerprints_refuse_inconsistent_content() -> None:
    with pytest.raises(ValueError, match="2 path"):
        Fingerprints(hashes=np.zeros(3, dtype=np.uint64), paths=("a", "b"))
    with pytest.raises(ValueError, match="twice"):
        Fingerprints(hashes=np.zeros(2, dtype=np.uint64), paths=("a", "a"))
    with pytest.raises(ValueError, match="empty"):
        Fingerprints(hashes=np.zeros(1, dtype=np.uint64), paths=("",))
    with pytest.raises(ValueError, match="uint64"):
        Fingerprints(hashes=np.zeros(1, dtype=np.int64), paths=("a",))
    with pytest.raises(ValueError, match="skipped"):
        Fingerprints(hashes=np.zeros(1, dtype=np.uint64), paths=("a",), skipped=-1)
    fingerprints = fingerprints_of(3)
    with pytest.raises(ValueError):
        fingerprints.hashes[0] = 1  # read-only


def resigned(header: dict[str, object], hashes: bytes, paths: bytes, magic: bytes = b"gate.fingerprint/v1\n") -> bytes:
    """A file with a valid digest around any header and content."""
    head = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    body = magic + struct.pack("<I", len(head)) + head + hashes + paths
    return body + hashlib.sha256(body).digest()


GOOD_HEADER = {"algorithm": "gate.phash", "algorithm_version": 1, "count": 2, "paths_bytes": 4, "skipped": 0}
TWO_HASHES = struct.pack("<2Q", 1, 2)


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"", "not a gate fingerprint file"),
        (b"PK\x03\x04 a zip", "not a gate fingerprint file"),
        (b"gate.fingerprint/v2\n" + bytes(60), r"unsupported schema 'gate.fingerprint/v2'"),
        (b"gate.fingerprint/v1\n\x10\x00", "truncated"),
        (b"gate.fingerprint/v1\n" + struct.pack("<I", 9999) + bytes(40), "header length 9999"),
        (resigned(GOOD_HEADER, TWO_HASHES, b"a\0b\0")[:-1], "truncated"),
        (resigned(GOOD_HEADER, TWO_HASHES, b"a\0b\0") + b"\0", "trailing bytes"),
        (resigned({**GOOD_HEADER, "count": 3}, TWO_HASHES, b"a\0b\0"), "truncated"),
        (resigned({**GOOD_HEADER, "algorithm": "dhash"}, TWO_HASHES, b"a\0b\0"), "'dhash' version 1"),
        (resigned({**GOOD_HEADER, "algorithm_version": 2}, TWO_HASHES, b"a\0b\0"), "'gate.phash' version 2"),
        (resigned({**GOOD_HEADER, "extra": 1}, TWO_HASHES, b"a\0b\0"), r"unknown \['extra'\]"),
        (resigned({k: v for k, v in GOOD_HEADER.items() if k != "skipped"}, TWO_HASHES, b"a\0b\0"), "lacks"),
        (resigned({**GOOD_HEADER, "count": -1}, TWO_HASHES, b"a\0b\0"), "'count' must be"),
        (resigned({**GOOD_HEADER, "count": True}, TWO_HASHES, b"a\0b\0"), "'count' must be"),
        (resigned(GOOD_HEADER, TWO_HASHES, b"a\0a\0"), "'a' appears twice"),
        (resigned(GOOD_HEADER, TWO_HASHES, b"ab\0\0"), "empty"),
        (resigned(GOOD_HEADER, TWO_HASHES, b"a\0bc"), "NUL-terminated"),
        (resigned({**GOOD_HEADER, "paths_bytes": 6}, TWO_HASHES, b"a\0b\0c\0"), "3 path"),
        (resigned(GOOD_HEADER, TWO_HASHES, b"\xff\0b\0"), "not UTF-8"),
    ],
)
def test_bad_files_are_refused_with_the_reason(data: bytes, problem: str) -> None:
    with pytest.raises(DatasetError, match=problem) as info:
        load_fingerprints(data, name="train.fp")
    assert "fingerprint file train.fp" in str(info.value)


def test_the_resigning_helper_makes_valid_files() -> None:
    """The corrupt files above differ from a valid one only where they say."""
    loaded = load_fingerprints(resigned(GOOD_HEADER, TWO_HASHES, b"a\0b\0"))
    assert loaded.hashes.tolist() == [1, 2] and loaded.paths == ("a", "b")


def test_every_truncation_and_every_flipped_byte_is_refused() -> None:
    data = fingerprints_of(4).to_bytes()
    for cut in range(len(data)):
        with pytest.raises(DatasetError):
            load_fingerprints(data[:cut])
    for i in range(len(data)):
        damaged = bytearray(data)
        damaged[i] ^= 0x20
        with pytest.raises(DatasetError):
            load_fingerprints(bytes(damaged))


def test_load_and_save_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"cannot read fingerprint file .*nowhere\.fp"):
        load_fingerprints(tmp_path / "nowhere.fp")
    with pytest.raises(UserError, match=r"cannot write fingerprint file .*missing"):
        save_fingerprints(fingerprints_of(2), tmp_path / "missing" / "train.fp")


def test_save_is_whole_or_nothing(tmp_path: Path) -> None:
    """A failed write leaves neither a partial file nor its temporary file behind, and a
    successful one replaces the old file whole, readable by its owner only."""
    target = tmp_path / "train.fp"
    save_fingerprints(fingerprints_of(3), target)
    (tmp_path / "taken.fp").mkdir()  # a rename cannot replace a directory
    with pytest.raises(UserError, match=r"cannot write fingerprint file .*taken\.fp"):
        save_fingerprints(fingerprints_of(2), tmp_path / "taken.fp")
    with pytest.raises(UserError, match=r"cannot write fingerprint file .*train\.fp/x\.fp: Not a directory"):
        save_fingerprints(fingerprints_of(2), target / "x.fp")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken.fp", "train.fp"]
    save_fingerprints(fingerprints_of(5), target)
    assert load_fingerprints(target).sha256 == fingerprints_of(5).sha256
    assert target.stat().st_mode & 0o777 == 0o600


# ------------------------------------------------------------------------ directories


def write_png(path: Path, pixels: npt.NDArray[np.uint8]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


def write_jpeg(path: Path, pixels: npt.NDArray[np.uint8], quality: int = 90) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(jpeg_bytes(pixels, quality))
    return path


def small_tree(root: Path) -> list[str]:
    """An ImageFolder-like tree with nesting, mixed formats, hidden and non-image files."""
    write_png(root / "dog" / "b.png", scene(1, 40, 50))
    write_jpeg(root / "dog" / "a.JPG", scene(2, 50, 40))
    write_png(root / "cat" / "deep" / "er" / "c.png", scene(3, 30, 30)[:, :, 0])
    write_jpeg(root / "cat" / "z.jpeg", scene(4, 64, 48))
    write_png(root / "loose.png", scene(5, 20, 20))
    write_png(root / ".hidden" / "x.png", scene(6, 20, 20))
    write_png(root / "cat" / ".y.png", scene(7, 20, 20))
    (root / "cat" / "labels.csv").write_text("path,label\n")
    return ["cat/deep/er/c.png", "cat/z.jpeg", "dog/a.JPG", "dog/b.png", "loose.png"]


def test_directory_is_hashed_in_sorted_path_order(tmp_path: Path) -> None:
    expected = small_tree(tmp_path / "train")
    result = fingerprint_directory(tmp_path / "train", workers=1)
    assert result.paths == tuple(expected)
    assert result.hashes.tolist() == [hash_file(tmp_path / "train" / p) for p in expected]
    assert result.skipped == 0
    parallel = fingerprint_directory(tmp_path / "train", workers=4)
    assert parallel.sha256 == result.sha256


def test_many_files_hash_alike_on_one_or_several_threads(tmp_path: Path) -> None:
    for i in range(70):  # more than one task's worth of files
        write_png(tmp_path / f"c{i % 2}" / f"{i:03d}.png", scene(100 + i, 16, 16))
    one = fingerprint_directory(tmp_path, workers=1)
    three = fingerprint_directory(tmp_path, workers=3)
    assert len(one) == 70 and one.sha256 == three.sha256
    assert one.paths == tuple(sorted(one.paths))


def test_an_unreadable_image_fails_closed_or_is_counted(tmp_path: Path) -> None:
    for i in range(40):
        write_png(tmp_path / "cls" / f"{i:02d}.png", scene(200 + i, 16, 16))
    (tmp_path / "cls" / "17.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    (tmp_path / "cls" / "33.png").write_bytes(b"")
    with pytest.raises(DatasetError, match=r"cls/17\.png"):
        fingerprint_directory(tmp_path, workers=2)
    lenient = fingerprint_directory(tmp_path, workers=2, skip_unreadable=True)
    assert lenient.skipped == 2 and len(lenient) == 38
    assert "cls/17.png" not in lenient.paths and "cls/18.png" in lenient.paths


def test_directories_without_images_are_refused(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not found"):
        fingerprint_directory(tmp_path / "absent")
    (tmp_path / "file.png").write_bytes(b"")
    with pytest.raises(DatasetError, match="is not a directory"):
        fingerprint_directory(tmp_path / "file.png")
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "notes.txt").write_text("no images")
    with pytest.raises(DatasetError, match="holds no image files"):
        fingerprint_directory(tmp_path / "empty")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.png").write_bytes(b"junk")
    with pytest.raises(DatasetError, match="none of its 1 image"):
        fingerprint_directory(tmp_path / "bad", skip_unreadable=True)
    with pytest.raises(ValueError, match="workers"):
        fingerprint_directory(tmp_path, workers=0)


def test_directory_link_cycles_are_refused(tmp_path: Path) -> None:
    write_png(tmp_path / "t" / "a" / "x.png", scene(1, 16, 16))
    os.symlink(tmp_path / "t", tmp_path / "t" / "a" / "loop")
    with pytest.raises(DatasetError, match="reached twice"):
        fingerprint_directory(tmp_path / "t")


def test_links_inside_the_training_directory_are_followed_and_links_out_refused(tmp_path: Path) -> None:
    """The link policy of ImageFolder datasets: a fingerprint covers only what the
    training directory holds."""
    write_png(tmp_path / "t" / "a" / "x.png", scene(1, 16, 16))
    os.symlink(tmp_path / "t" / "a" / "x.png", tmp_path / "t" / "a" / "y.png")
    inside = fingerprint_directory(tmp_path / "t")
    assert inside.paths == ("a/x.png", "a/y.png") and inside.hashes[0] == inside.hashes[1]
    write_png(tmp_path / "elsewhere" / "z.png", scene(2, 16, 16))
    os.symlink(tmp_path / "elsewhere", tmp_path / "t" / "b")
    with pytest.raises(DatasetError, match=r"'b' is a symbolic link to .*elsewhere, outside"):
        fingerprint_directory(tmp_path / "t")
    os.unlink(tmp_path / "t" / "b")
    os.symlink(tmp_path / "elsewhere" / "z.png", tmp_path / "t" / "a" / "z.png")
    with pytest.raises(DatasetError, match=r"'a/z\.png' is a symbolic link to .*z\.png, outside"):
        fingerprint_directory(tmp_path / "t")


def test_a_broken_link_is_an_unreadable_image(tmp_path: Path) -> None:
    write_png(tmp_path / "t" / "a" / "x.png", scene(1, 16, 16))
    os.symlink(tmp_path / "t" / "a" / "gone.png", tmp_path / "t" / "a" / "w.png")
    os.symlink(tmp_path / "t" / "a" / "gone.txt", tmp_path / "t" / "a" / "notes.txt")
    with pytest.raises(DatasetError, match=r"cannot read image a/w\.png .*broken link"):
        fingerprint_directory(tmp_path / "t")
    lenient = fingerprint_directory(tmp_path / "t", skip_unreadable=True)
    assert lenient.paths == ("a/x.png",) and lenient.skipped == 1


def test_fingerprint_command_writes_the_file(tmp_path: Path) -> None:
    small_tree(tmp_path / "train")
    result = fingerprint_command(tmp_path / "train", tmp_path / "train.fp", None)
    loaded = load_fingerprints(tmp_path / "train.fp")
    assert loaded.sha256 == result.sha256 and loaded.paths == result.paths
    (tmp_path / "train" / "dog" / "b.png").write_bytes(b"")
    with pytest.raises(DatasetError, match=r"dog/b\.png"):
        fingerprint_command(tmp_path / "train", tmp_path / "again.fp", 2)
    assert not (tmp_path / "again.fp").exists()


# ------------------------------------------------------------------------------ search


def popcount_swar(x: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """Set bits of each uint64 by the classic shift-and-mask reduction (independent of
    the module's popcount)."""
    x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
    x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
    x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return (x * np.uint64(0x0101010101010101)) >> np.uint64(56)


def reference(held: npt.NDArray[np.uint64], train: npt.NDArray[np.uint64], radius: int) -> list[tuple[int, int, int]]:
    """Brute force: the nearest training hash of every held-out hash, the lowest index
    among equally near ones."""
    out = []
    for start in range(0, len(held), 256):
        d = popcount_swar(held[start : start + 256, np.newaxis] ^ train[np.newaxis, :])
        nearest = d.argmin(axis=1)
        for k, j in enumerate(nearest.tolist()):
            if d[k, j] <= radius:
                out.append((start + k, j, int(d[k, j])))
    return out


def as_rows(matches: NearMatches) -> list[tuple[int, int, int]]:
    return list(
        zip(matches.held_out_index.tolist(), matches.train_index.tolist(), matches.distance.tolist(), strict=True)
    )


def random_hashes(rng: np.random.Generator, n: int) -> npt.NDArray[np.uint64]:
    return rng.integers(0, 2**64, n, dtype=np.uint64, endpoint=False)


def planted(
    rng: np.random.Generator, train: npt.NDArray[np.uint64], n: int, every: int, max_flip: int
) -> npt.NDArray[np.uint64]:
    """Random held-out hashes, every ``every``-th a training hash with 0..max_flip bits flipped."""
    held = random_hashes(rng, n)
    for i in range(0, n, every):
        flips = rng.choice(64, int(rng.integers(0, max_flip + 1)), replace=False)
        held[i] = train[rng.integers(len(train))] ^ np.uint64(sum(1 << int(b) for b in flips))
    return held


@pytest.mark.parametrize(
    ("n_train", "radii"),
    [
        (150, [0, 1, 2, 4, 8, 12, 20]),  # brute force, and binary search on wide substrings
        (2000, [0, 2, 3, 4, 6, 8, 10]),  # padded tables of narrow substrings
        (12000, [4, 8, 12]),  # radius > 0 within substrings
    ],
)
def test_index_equals_brute_force(n_train: int, radii: list[int]) -> None:
    rng = np.random.default_rng(n_train)
    train = random_hashes(rng, n_train)
    train[5] = train[3]  # equal training hashes: the lower index wins
    held = planted(rng, train, 600, 4, 14)
    held[1] = train[3]
    index = NearDuplicateIndex(train)
    for radius in radii:
        expected = reference(held, train, radius)
        assert as_rows(index.query(held, radius)) == expected, radius
        if radius >= 8:
            assert len(expected) > 50  # the comparison is not vacuous


def test_plans_cover_every_search_path() -> None:
    """The cases above go through brute force, binary search, and padded tables with
    radius 0 and 1 (a guard that the parametrisation keeps testing all of them)."""
    assert hamming_index._plan(150, 8) is None
    assert any(not hamming_index._table_ok(p.bits, 150) for p in hamming_index._plan(150, 2) or ())
    assert any(hamming_index._table_ok(p.bits, 2000) and p.radius == 0 for p in hamming_index._plan(2000, 4) or ())
    assert any(hamming_index._table_ok(p.bits, 12000) and p.radius >= 1 for p in hamming_index._plan(12000, 12) or ())


def test_long_runs_spill_over_and_stay_exact() -> None:
    """Hashes sharing a substring overflow the padded rows (clustered real data)."""
    rng = np.random.default_rng(7)
    train = random_hashes(rng, 3000)
    train[:1200] = (train[:1200] & ~np.uint64(0xFFFFFF)) | np.uint64(0xABCDEF)  # one long run per low part
    held = planted(rng, train, 600, 3, 8)
    held[::7] = (held[::7] & ~np.uint64(0xFFFFFF)) | np.uint64(0xABCDEF)
    index = NearDuplicateIndex(train)
    for radius in (3, 4, 8):
        assert as_rows(index.query(held, radius)) == reference(held, train, radius)


@settings(max_examples=150, deadline=None, database=None)
@given(
    train=st.lists(st.integers(0, 2**64 - 1), max_size=60),
    held=st.lists(st.integers(0, 2**64 - 1), max_size=40),
    radius=st.integers(0, 64),
    near=st.lists(st.tuples(st.integers(0, 59), st.integers(0, 2**64 - 1), st.integers(0, 8)), max_size=10),
)
def test_index_equals_brute_force_on_any_small_set(
    train: list[int], held: list[int], radius: int, near: list[tuple[int, int, int]]
) -> None:
    if train:  # held-out hashes close to training ones, so that radii matter
        for i, noise, flips in near:
            held.append(train[i % len(train)] ^ (noise & ((1 << flips) - 1)))
    t = np.array(train, dtype=np.uint64)
    h = np.array(held, dtype=np.uint64)
    assert as_rows(NearDuplicateIndex(t).query(h, radius)) == (reference(h, t, radius) if train else [])


def test_index_refuses_bad_arguments() -> None:
    index = NearDuplicateIndex(np.zeros(3, dtype=np.uint64))
    for radius in (-1, 65, 2.0, True):
        with pytest.raises(ValueError, match="max_hamming"):
            index.query(np.zeros(1, dtype=np.uint64), radius)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="uint64"):
        index.query(np.zeros(1, dtype=np.int64), 3)
    for bad in ([-1], [2**64], [1.5], [True]):
        with pytest.raises(ValueError, match="unsigned"):
            index.query(bad, 3)
    assert len(index.query([], 3)) == 0
    assert as_rows(NearDuplicateIndex([]).query([1, 2], 64)) == []
    assert as_rows(index.query([2**64 - 1], 64)) == [(0, 0, 64)]


def test_popcount_fallback_agrees() -> None:
    x = random_hashes(np.random.default_rng(3), 5000).reshape(50, 100)
    x[0, :3] = [0, 2**64 - 1, 1 << 63]
    expected = np.unpackbits(x.view(np.uint8).reshape(50, 100, 8), axis=-1).sum(axis=-1)
    assert np.array_equal(popcount_swar(x), expected)
    assert np.array_equal(hamming_index._popcount_bytes(x), expected)
    assert np.array_equal(hamming_index._popcount(x), expected)


# ------------------------------------------------------------------------------ leaks


def test_find_leaks_reports_counts_and_the_closest_examples() -> None:
    rng = np.random.default_rng(5)
    train = fingerprints_of(500)
    held = random_hashes(rng, 400)
    copies = {10: (3, 0), 50: (7, 2), 51: (7, 5), 300: (499, 1), 399: (0, 9)}  # held index: (train index, flips)
    for i, (t, flips) in copies.items():
        held[i] = train.hashes[t] ^ np.uint64((1 << flips) - 1)
    ids = [f"heldout/{i}.png" for i in range(400)]
    report = find_leaks(held, train, 6, held_out_ids=ids, max_examples=3)
    assert report.leaked == 4 and report.rate == 4 / 400
    assert (report.held_out_count, report.train_count, report.train_sha256) == (400, 500, train.sha256)
    assert [(e.held_out_index, e.train_index, e.distance) for e in report.examples] == [
        (10, 3, 0),
        (300, 499, 1),
        (50, 7, 2),
    ]
    assert report.examples[0].train_path == train.paths[3]
    assert report.examples[0].held_out_id == "heldout/10.png"
    assert report.matches.held_out_index.tolist() == [10, 50, 51, 300]
    assert json.loads(json.dumps(report.to_dict()))["examples"][1]["train_path"] == train.paths[499]
    wider = find_leaks(held, train, 9)
    assert wider.leaked == 5 and len(wider.examples) == 5 and wider.examples[-1].held_out_id is None


def test_find_leaks_refuses_bad_arguments() -> None:
    train = fingerprints_of(5)
    with pytest.raises(ValueError, match="empty"):
        find_leaks(np.empty(0, dtype=np.uint64), train, 4)
    with pytest.raises(ValueError, match="held_out_ids"):
        find_leaks(np.zeros(2, dtype=np.uint64), train, 4, held_out_ids=["a"])
    with pytest.raises(ValueError, match="max_examples"):
        find_leaks(np.zeros(2, dtype=np.uint64), train, 4, max_examples=-1)


# ----------------------------------------------------------------- datasets, acceptance

SPEC = {"preprocess": {"resize": 48, "crop": 48}}


def write_spec(root: Path, name: str) -> Path:
    spec = root / f"{name}.yaml"
    spec.write_text(yaml.safe_dump({"name": name, "source": name, **SPEC}))
    return spec


@pytest.fixture(scope="module")
def training(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[npt.NDArray[np.uint8]]]:
    """200 training scenes in an ImageFolder of 4 classes, PNG and JPEG, several sizes."""
    root = tmp_path_factory.mktemp("train")
    scenes = []
    for i in range(200):
        pixels = scene(1000 + i, 72 + 8 * (i % 4), 96 + 8 * (i % 3))
        scenes.append(pixels)
        if i % 2:
            write_png(root / f"class{i % 4}" / f"{i:03d}.png", pixels)
        else:
            write_jpeg(root / f"class{i % 4}" / f"{i:03d}.jpg", pixels, 92)
    return root, scenes


def heldout(
    root: Path, name: str, copies: dict[int, tuple[int, float, int]], train_scenes: list[npt.NDArray[np.uint8]]
) -> Path:
    """200 held-out images; ``copies[i] = (training scene, resize factor, JPEG quality)``
    makes image i a copy, the rest are fresh scenes."""
    folder = root / name
    for i in range(200):
        path = folder / f"label{i % 3}" / f"{i:03d}.jpg"
        if i in copies:
            t, factor, quality = copies[i]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(jpeg_bytes(resized(train_scenes[t], factor), quality))
        else:
            write_jpeg(path, scene(5000 + i, 64 + 8 * (i % 5), 96), 85)
    return write_spec(root, name)


def test_acceptance_five_percent_copies_are_caught_and_a_clean_set_passes(
    tmp_path: Path, training: tuple[Path, list[npt.NDArray[np.uint8]]]
) -> None:
    train_dir, train_scenes = training
    fingerprint_command(train_dir, tmp_path / "train.fp", 2)
    train = load_fingerprints((tmp_path / "train.fp").read_bytes(), name="train.fp")
    assert len(train) == 200

    rng = np.random.default_rng(42)
    leaked_at = sorted(rng.choice(200, 10, replace=False).tolist())
    factors = [0.5, 0.6, 0.75, 1.3, 1.7]
    copies = {
        i: (int(t), factors[k % 5], 70 + 5 * (k % 5))
        for k, (i, t) in enumerate(zip(leaked_at, rng.choice(200, 10, replace=False), strict=True))
    }
    dataset = load_dataset(heldout(tmp_path, "leaky", copies, train_scenes))
    # samples are in class-folder order: sample k is image number int(stem)
    number = [int(Path(sid).stem) for sid in dataset.sample_ids]
    leaked_samples = [k for k, i in enumerate(number) if i in copies]
    held_out = hash_dataset(dataset)
    clean = load_dataset(heldout(tmp_path, "clean", {}, train_scenes))
    clean_hashes = hash_dataset(clean, workers=1)
    by_scene = {int(Path(p).stem): p for p in train.paths}
    for max_hamming in (8, 10):
        report = find_leaks(held_out, train, max_hamming, held_out_ids=dataset.sample_ids)
        assert report.leaked == 10 and report.rate == 0.05
        assert report.matches.held_out_index.tolist() == leaked_samples
        assert {e.held_out_index: e.train_path for e in report.examples} == {
            k: by_scene[copies[number[k]][0]] for k in leaked_samples
        }
        assert {e.held_out_id for e in report.examples} == {dataset.sample_ids[k] for k in leaked_samples}
        assert max(e.distance for e in report.examples) <= 4

        clean_report = find_leaks(clean_hashes, train, max_hamming)
        assert clean_report.leaked == 0 and clean_report.examples == ()


def test_dataset_files_are_hashed_as_stored_and_checked(tmp_path: Path) -> None:
    for i in range(6):
        write_png(tmp_path / "set" / f"c{i % 2}" / f"{i}.png", scene(i, 60 + 4 * i, 80))
    spec = write_spec(tmp_path, "set")
    dataset = load_dataset(spec)
    hashes = hash_dataset(dataset)
    assert hashes.tolist() == [hash_file(tmp_path / "set" / sid) for sid in dataset.sample_ids]
    write_png(tmp_path / "set" / dataset.sample_ids[4], scene(99, 60, 80))
    with pytest.raises(DatasetError, match="changed after the dataset was loaded"):
        hash_dataset(dataset)


def test_npz_tensors_are_hashed_as_images(tmp_path: Path) -> None:
    pixels = np.stack([scene(s, 32, 32) for s in range(5)])
    hashes = [phash(p) for p in pixels]
    labels = np.arange(5) % 2
    cases: dict[str, npt.NDArray[np.generic]] = {
        "nhwc_uint8": pixels,
        "nchw_unit": pixels.transpose(0, 3, 1, 2).astype(np.float32) / 255,
        "grey_0_255": pixels[..., 0].astype(np.float64),
    }
    for name, x in cases.items():
        np.savez(tmp_path / f"{name}.npz", x=x, y=labels)
        got = hash_dataset(load_dataset(tmp_path / f"{name}.npz")).tolist()
        want = hashes if name != "grey_0_255" else [phash(p[..., 0]) for p in pixels]
        assert got == want, name
    # normalised tensors keep their 63 AC bits (an affine map of the pixels)
    normalised = (pixels.transpose(0, 3, 1, 2).astype(np.float32) / 255 - 0.45) / 0.226
    np.savez(tmp_path / "norm.npz", x=normalised, y=labels)
    got = hash_dataset(load_dataset(tmp_path / "norm.npz"))
    grey_hashes = [phash(np.asarray(Image.fromarray(p).convert("L"))) for p in pixels]
    assert all(hamming(int(g), h) <= 3 for g, h in zip(got, grey_hashes, strict=True))
    np.savez(tmp_path / "flat.npz", x=np.zeros((5, 64), dtype=np.float32), y=labels)
    with pytest.raises(DatasetError, match=r"not images"):
        hash_dataset(load_dataset(tmp_path / "flat.npz"))


def test_a_copied_training_folder_is_all_leaks(tmp_path: Path) -> None:
    """The degenerate case: the held-out set is the training set (distance 0 throughout)."""
    small_tree(tmp_path / "train")
    shutil.rmtree(tmp_path / "train" / ".hidden")
    (tmp_path / "train" / "loose.png").unlink()
    (tmp_path / "train" / "cat" / "labels.csv").unlink()
    (tmp_path / "train" / "cat" / ".y.png").unlink()
    train = fingerprint_directory(tmp_path / "train")
    dataset = load_dataset(write_spec(tmp_path, "train"))
    report = find_leaks(hash_dataset(dataset), train, 0, held_out_ids=dataset.sample_ids)
    assert report.leaked == len(dataset) == 4
    assert all(e.held_out_id == e.train_path and e.distance == 0 for e in report.examples)
