"""Image decoding and preprocessing: one image file to one model input tensor.

Everything here works on a single image; batching and caching live in
:mod:`gate.datasets.dataset`. Errors are :class:`~gate.errors.DatasetError` and name
the file by the display name the caller passes (its path relative to the dataset).
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from gate.datasets.spec import Preprocess
from gate.errors import DatasetError

# Pillow is imported by the functions that decode: a set of tensors never loads it
if TYPE_CHECKING:
    from PIL import Image

#: File extensions (lower case) an ImageFolder class folder may contain.
IMAGE_EXTENSIONS: frozenset[str] = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"})

#: Modes of integer samples wider than 8 bits.
_WIDE_INTEGER_MODES = frozenset({"I", "I;16", "I;16L", "I;16B", "I;16N"})
#: Modes with an alpha channel (a transparent colour key is in ``info`` instead).
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
_ORIENTATION = 0x0112  # the EXIF orientation tag
#: Orientations that turn the image a quarter turn, swapping width and height.
_QUARTER_TURNS = frozenset({5, 6, 7, 8})

#: ``preprocess.interpolation`` to the name of its ``PIL.Image.Resampling`` member.
_RESAMPLING: dict[str, str] = {"bilinear": "BILINEAR", "bicubic": "BICUBIC", "nearest": "NEAREST", "lanczos": "LANCZOS"}


def _pair(value: int | tuple[int, int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else value


def resized_size(size_hw: tuple[int, int], resize: int | tuple[int, int]) -> tuple[int, int]:
    """(height, width) after ``resize``.

    An int sets the shorter side and scales the other one to keep the aspect ratio
    (``round(other * size / shorter)``, at least 1); a pair is the exact (h, w).
    """
    if not isinstance(resize, int):
        return resize
    h, w = size_hw
    if h <= w:
        return resize, max(1, round(w * resize / h))
    return max(1, round(h * resize / w)), resize


def output_size(size_hw: tuple[int, int], preprocess: Preprocess, name: str) -> tuple[int, int]:
    """(height, width) of an image of ``size_hw`` after resize and crop.

    Raises :class:`DatasetError` naming ``name`` when the crop is larger than the
    (resized) image.
    """
    h, w = size_hw
    if preprocess.resize is not None:
        h, w = resized_size((h, w), preprocess.resize)
    if preprocess.crop is not None:
        h, w = _check_crop((h, w), preprocess.crop, name)
    return h, w


def _check_crop(size_hw: tuple[int, int], crop: int | tuple[int, int], name: str) -> tuple[int, int]:
    """The crop as (h, w); a crop larger than the image is a :class:`DatasetError`."""
    h, w = size_hw
    ch, cw = _pair(crop)
    if ch > h or cw > w:
        raise DatasetError(
            f"image {name}: crop {ch}x{cw} (HxW) is larger than the image, which is "
            f"{h}x{w} (HxW) after any resize; use a larger preprocess.resize or a smaller "
            "preprocess.crop"
        )
    return ch, cw


def sample_shape(size_hw: tuple[int, int], preprocess: Preprocess) -> tuple[int, int, int]:
    """Shape of the tensor for an output image size, in ``preprocess.layout``."""
    h, w = size_hw
    c = preprocess.num_channels
    return (c, h, w) if preprocess.layout == "NCHW" else (h, w, c)


def probe_size(data: bytes, name: str, *, exif_transpose: bool = False) -> tuple[int, int]:
    """(height, width) from the image header, without decoding the pixels; with
    ``exif_transpose``, the size once the EXIF orientation is applied.

    Raises :class:`DatasetError` naming ``name`` when the bytes are not an image that
    Pillow can identify.
    """
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            w, h = im.size
            if exif_transpose and im.getexif().get(_ORIENTATION, 1) in _QUARTER_TURNS:
                w, h = h, w
    except Exception as exc:  # Pillow raises many unrelated types for bad input.
        raise DatasetError(f"cannot read image {name}: {_reason(exc)}") from exc
    return h, w


def decode(data: bytes, preprocess: Preprocess, name: str) -> Image.Image:
    """Decode image bytes fully and convert them to ``preprocess.channels``.

    ``load()`` runs here so that a truncated or corrupt file fails now, with its name,
    rather than somewhere inside the pipeline. BGR images are returned as RGB; the
    channel axis is reversed later, on the array. The conversions to 8 bits are
    documented in ``docs/datasets.md``: 16-bit samples keep their high byte, float
    samples are 0..1 intensities, transparency follows ``preprocess.alpha``.
    """
    from PIL import Image, ImageOps

    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            oriented = ImageOps.exif_transpose(im) if preprocess.exif_transpose else im
            return _convert(oriented, preprocess, name)
    except DatasetError:
        raise
    except Exception as exc:  # Pillow raises many unrelated types for bad input.
        raise DatasetError(f"cannot read image {name}: {_reason(exc)}") from exc


def _convert(im: Image.Image, preprocess: Preprocess, name: str) -> Image.Image:
    """An image of any mode as ``L`` or ``RGB`` 8-bit pixels."""
    if im.mode in _WIDE_INTEGER_MODES:
        im = _from_wide_integers(im, name)
    elif im.mode == "F":
        im = _from_floats(im, name)
    if im.mode in _ALPHA_MODES or "transparency" in im.info:
        im = _flatten_alpha(im, preprocess, name)
    # convert() on an image already in the mode is an exact copy, which keeps 8-bit
    # greyscale pixel values intact.
    return im.convert("L" if preprocess.channels == "L" else "RGB")


def _from_wide_integers(im: Image.Image, name: str) -> Image.Image:
    """16-bit samples to 8 bits by their high byte (v // 256), the rule Pillow itself
    applies to 16-bit colour PNGs, so 60·257 reads as 60 rather than clipping to 255."""
    from PIL import Image

    values = np.asarray(im)
    low, high = int(values.min()), int(values.max())
    if low < 0 or high > 65535:
        raise DatasetError(
            f"image {name} holds {im.mode!r} pixels from {low} to {high}; gate reads integer images of more"
            " than 8 bits as 16-bit (0..65535): convert it to 8 or 16 bits"
        )
    return Image.fromarray((values.astype(np.uint32) >> 8).astype(np.uint8))


def _from_floats(im: Image.Image, name: str) -> Image.Image:
    """Floating-point samples, read as intensities in 0..1, to 8 bits (round(v·255))."""
    from PIL import Image

    values = np.asarray(im, dtype=np.float64)
    if not np.isfinite(values).all():
        raise DatasetError(f"image {name} holds NaN or infinite pixel values")
    low, high = float(values.min()), float(values.max())
    if low < 0.0 or high > 1.0:
        raise DatasetError(
            f"image {name} holds floating-point pixels from {low:g} to {high:g}; gate reads float images as"
            " intensities in 0..1: rescale it, or store the set as an .npz of tensors"
        )
    return Image.fromarray(np.rint(values * 255.0).astype(np.uint8))


def _flatten_alpha(im: Image.Image, preprocess: Preprocess, name: str) -> Image.Image:
    """An image with an alpha channel or a transparent colour, as RGB by ``preprocess.alpha``."""
    from PIL import Image

    rgba = im.convert("RGBA")
    low, _ = rgba.getchannel("A").getextrema()
    if preprocess.alpha == "drop" or low == 255:
        return rgba.convert("RGB")
    if preprocess.alpha == "refuse":
        raise DatasetError(
            f"image {name} has transparent pixels and the dataset spec has preprocess.alpha: refuse;"
            " set it to black or white (composite over that colour) or drop (keep the colour under them)"
        )
    background = Image.new("RGBA", rgba.size, (0, 0, 0, 255) if preprocess.alpha == "black" else (255,) * 4)
    return Image.alpha_composite(background, rgba).convert("RGB")


def to_pixels(image: Image.Image, preprocess: Preprocess, name: str) -> npt.NDArray[np.uint8]:
    """Resize and crop a decoded image (mode RGB or L): its 8-bit pixels, (H, W, C).

    This is the compact form the tensor cache stores; :func:`normalise` turns a batch of
    it into model input.
    """
    from PIL import Image

    if preprocess.resize is not None:
        w, h = image.size
        new_h, new_w = resized_size((h, w), preprocess.resize)
        if (new_h, new_w) != (h, w):
            image = image.resize((new_w, new_h), Image.Resampling[_RESAMPLING[preprocess.interpolation]])
    if preprocess.crop is not None:
        w, h = image.size
        ch, cw = _check_crop((h, w), preprocess.crop, name)
        left, top = (w - cw) // 2, (h - ch) // 2
        image = image.crop((left, top, left + cw, top + ch))
    arr: npt.NDArray[np.uint8] = np.asarray(image, dtype=np.uint8)
    if arr.ndim == 2:
        arr = arr[:, :, np.newaxis]
    return arr


def normalise(
    pixels: npt.NDArray[np.uint8], preprocess: Preprocess, out: npt.NDArray[np.float32] | None = None
) -> npt.NDArray[np.float32]:
    """A batch of 8-bit pixels (B, H, W, C) to model input: channel order, then
    ``(pixel / scale - mean) / std`` per channel, in the requested layout.

    The pixels are widened straight into a contiguous array of the final layout, then
    scaled in place: the same float32 operations in the same order for every element,
    whatever the batch, so cached and freshly decoded images give identical tensors.
    The loops release the GIL, so this overlaps with inference on another thread.
    ``out``, when given, receives the result (e.g. a slice of a larger batch).
    """
    if preprocess.channels == "BGR":
        pixels = pixels[..., ::-1]
    channels = pixels.shape[-1]
    nchw = preprocess.layout == "NCHW"
    source = pixels.transpose(0, 3, 1, 2) if nchw else pixels
    if out is None:
        out = np.empty(source.shape, dtype=np.float32)
    np.copyto(out, source, casting="unsafe")
    out /= np.float32(preprocess.scale)
    per_channel = (1, channels, 1, 1) if nchw else (1, 1, 1, channels)
    mean = np.broadcast_to(np.asarray(preprocess.mean, dtype=np.float32), (channels,)).reshape(per_channel)
    std = np.broadcast_to(np.asarray(preprocess.std, dtype=np.float32), (channels,)).reshape(per_channel)
    # identity mean/std (the defaults) are skipped: the same result, two fewer passes
    if np.any(mean != 0):
        out -= mean
    if np.any(std != 1):
        out /= std
    return out


def to_tensor(image: Image.Image, preprocess: Preprocess, name: str) -> npt.NDArray[np.float32]:
    """Resize, crop, normalise and lay out a decoded image (mode RGB or L)."""
    tensor: npt.NDArray[np.float32] = normalise(to_pixels(image, preprocess, name)[np.newaxis], preprocess)[0]
    return tensor


def load_pixels(data: bytes, preprocess: Preprocess, name: str) -> npt.NDArray[np.uint8]:
    """Image bytes to one sample's 8-bit pixels after resize and crop, (H, W, C)."""
    return to_pixels(decode(data, preprocess, name), preprocess, name)


def load_tensor(data: bytes, preprocess: Preprocess, name: str) -> npt.NDArray[np.float32]:
    """Image bytes to the model input tensor for one sample."""
    return to_tensor(decode(data, preprocess, name), preprocess, name)


def _reason(exc: BaseException) -> str:
    from PIL import UnidentifiedImageError

    if isinstance(exc, UnidentifiedImageError):
        # Its message names the in-memory buffer, which tells the reader nothing.
        return "not an image in a format Pillow can read"
    text = str(exc).strip()
    kind = type(exc).__name__
    return f"{kind}: {text}" if text else kind


def describe_shape(shape: tuple[int, ...], preprocess: Preprocess) -> str:
    """Image size (HxW) of a sample tensor shape, for error messages."""
    h, w = (shape[1], shape[2]) if preprocess.layout == "NCHW" else (shape[0], shape[1])
    return f"{h}x{w} (HxW)"
