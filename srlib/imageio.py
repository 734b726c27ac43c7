"""Reading and writing images: every file srlib touches goes through `load_image`.

Whatever the file holds (palette, grey, alpha, CMYK, 16 bits, EXIF rotation), a caller
gets one thing back: a uint8 array (H, W, 3) in RGB order, or `ImageError` with a
one-line message that names the file and the problem. Nothing else escapes: Pillow
raises a long, open list of exceptions on malformed files (OSError, ValueError,
SyntaxError, struct.error, EOFError, ...), and the CLI must never show a traceback.

Behaviour for each kind of input (tests/test_imageio.py checks every row):

| input | result |
|---|---|
| RGB PNG/JPEG/BMP/TIFF/WebP/GIF | returned as is |
| grey (L, 1-bit) | replicated to 3 channels; (H, W) with `grey="keep"` |
| 16-bit grey (I;16, I) | scaled to 8 bits with rounding, round(v / 257) |
| 16-bit RGB PNG | Pillow keeps the high byte (v >> 8): at most 1 level below round(v / 257) |
| palette (P), with or without transparency | expanded to RGB; transparency as alpha below |
| RGBA, LA, PA, palette transparency | composited on white (see `BACKGROUND`) |
| CMYK JPEG (Adobe inverted or not) | converted to RGB by Pillow, no ICC colour management |
| EXIF orientation 2-8 | applied (`ImageOps.exif_transpose`), so arrays are upright |
| multi-frame GIF/TIFF | first frame |
| 32-bit float (F) | refused: no defined 8-bit range |
| zero-byte, truncated, corrupt, text named .png | refused: `ImageError` naming the file |
| more than `max_pixels` pixels | refused from the header, before any decoding |
| missing file, a folder, unreadable (permissions) | refused: `ImageError` naming the path |

Too small for a training patch or a scale: `require_min_size` raises, and `load_images`
skips such files with a warning that names them.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from srlib.errors import ImageError, UsageError

# Refuse images above 100 megapixels before decoding them: a 100-byte PNG can claim
# 50,000 x 50,000 pixels and make the decoder allocate 7.5 GB (a "decompression
# bomb"). 100 Mpx is 12x the largest DIV2K image (2040 x 1848 ~ 3.8 Mpx); raise it
# per call with `max_pixels`. Pillow's own hard stop (2 x Image.MAX_IMAGE_PIXELS,
# about 179 Mpx by default) also applies and is reported the same way.
MAX_PIXELS: int = 100_000_000

# What `list_images` collects from a folder (compared case-insensitively).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")

# Formats Pillow may try. Naming them keeps exotic decoders (EPS would start
# Ghostscript) away from files that merely carry an image suffix. "JPEG" also opens
# the multi-picture JPEGs (MPO) many cameras write; GIF is read although
# `list_images` does not collect it.
PILLOW_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP")

# Transparent pixels are composited on white, the page colour images are shown on in
# viewers and browsers; the RGB values stored under alpha = 0 are arbitrary (often
# black) and must not leak into training data.
BACKGROUND = 255


def load_image(
    path: str | os.PathLike, *, grey: str = "rgb", max_pixels: int = MAX_PIXELS
) -> np.ndarray:
    """Read an image file as 8-bit RGB, upright, alpha composited on white.

    Args:
        path: an image file (PNG, JPEG, BMP, GIF, TIFF, WebP; the content decides, not
            the suffix).
        grey: "rgb" (default) replicates a single-channel image to 3 channels; "keep"
            returns it as (H, W), so evaluation can score a grey image (Set14
            bridge.png) on its own values.
        max_pixels: refuse images with more pixels than this (decompression-bomb
            guard), checked from the header before decoding.

    Returns:
        np.ndarray uint8, (H, W, 3) RGB in [0, 255]; (H, W) for a single-channel image
        when grey="keep".

    Raises:
        ImageError: the file is missing, empty, truncated, corrupt, not an image, too
            large or in an unsupported mode; the message is one line naming the file.
    """
    if grey not in ("rgb", "keep"):
        raise ValueError(f"grey must be 'rgb' or 'keep', not {grey!r}")
    path = Path(path)
    if not path.exists():
        raise ImageError(f"{path}: no such file")
    if path.is_dir():
        raise ImageError(f"{path}: is a folder, not an image file")
    if path.stat().st_size == 0:
        raise ImageError(f"{path}: empty file (0 bytes)")

    # Pillow warns about things it recovers from (corrupt EXIF, big text chunks) and
    # about large images (DecompressionBombWarning, which our own limit replaces).
    # They do not change the pixels, so they are silenced here, not left to callers.
    format_name = "image"  # the format Pillow recognised, for messages
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with Image.open(path, formats=PILLOW_FORMATS) as image:
                format_name = image.format or format_name
                width, height = image.size
                if width * height > max_pixels:
                    raise ImageError(
                        f"{path}: {width}x{height} = {width * height:,} pixels is above the "
                        f"limit of {max_pixels:,} (decompression-bomb guard); "
                        "pass a larger max_pixels if the file is trusted"
                    )
                # Image.open only parsed the header; load() decodes every byte, so a
                # truncated or corrupt file fails here and not later in a worker.
                image.load()
                return _to_array(image, path, grey)
        except ImageError:
            raise
        except Image.DecompressionBombError as error:
            raise ImageError(
                f"{path}: image too large, refused before decoding ({error})"
            ) from None
        except UnidentifiedImageError:
            raise ImageError(
                f"{path}: not an image (its content is none of {', '.join(PILLOW_FORMATS)})"
            ) from None
        # Why catch everything: Pillow's decoders raise OSError, ValueError,
        # SyntaxError, struct.error, EOFError, IndexError, MemoryError, ... on
        # malformed input, and the set changes between versions. At this boundary
        # each of them means the same thing to a user: this file cannot be read.
        except Exception as error:  # noqa: BLE001
            raise ImageError(f"{path}: {_describe(error, format_name)}") from None


def _describe(error: Exception, format_name: str) -> str:
    """One line for a decoding failure: truncated, or corrupt with Pillow's reason."""
    text = " ".join(str(error).split()) or type(error).__name__
    if isinstance(error, OSError) and error.errno is not None:
        # A file-system error (permission, I/O), not a decoding one: Pillow's decoders
        # raise OSError without an errno.
        return f"cannot read the file ({error.strerror or text})"
    if "truncated" in text.lower() or isinstance(error, EOFError):
        return f"truncated {format_name}, cannot decode ({text})"
    if isinstance(error, MemoryError):
        return f"not enough memory to decode this {format_name}"
    return f"corrupt {format_name}, cannot decode ({type(error).__name__}: {text})"


def _to_array(image: Image.Image, path: Path, grey: str) -> np.ndarray:
    """Decoded Pillow image -> uint8 (H, W, 3), or (H, W) when grey="keep"."""
    image = ImageOps.exif_transpose(image)  # no-op without an EXIF orientation tag
    mode = image.mode
    if mode == "P" or mode == "PA":
        # A palette can carry transparency (a tRNS chunk, GIF transparency index).
        has_alpha = mode == "PA" or "transparency" in image.info
        image = image.convert("RGBA" if has_alpha else "RGB")
        mode = image.mode
    if mode == "1":
        image, mode = image.convert("L"), "L"

    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16-bit grey (PNG/TIFF). Image.convert("L") would clip at 255, not scale.
        values = np.asarray(image).astype(np.int64)  # (H, W)
        values = np.clip(values, 0, 65535)
        # round(v * 255 / 65535) = round(v / 257), in integers.
        array = ((values * 255 + 32767) // 65535).astype(np.uint8)
    elif mode == "L":
        array = np.asarray(image, dtype=np.uint8)  # (H, W)
    elif mode == "LA":
        array = _composite(np.asarray(image, dtype=np.uint8))  # (H, W, 2) -> (H, W)
    elif mode in ("RGBA", "RGBa"):
        if mode == "RGBa":  # premultiplied alpha: undo it before compositing
            image = image.convert("RGBA")
        array = _composite(np.asarray(image, dtype=np.uint8))  # (H, W, 4) -> (H, W, 3)
    elif mode == "RGB":
        array = np.asarray(image, dtype=np.uint8)  # (H, W, 3)
    elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        array = np.asarray(image.convert("RGB"), dtype=np.uint8)  # (H, W, 3)
    elif mode == "F":
        raise ImageError(f"{path}: 32-bit floating-point image, no defined 8-bit range")
    else:
        raise ImageError(f"{path}: unsupported image mode {mode!r}")

    if array.ndim == 2 and grey == "rgb":
        array = np.repeat(array[:, :, None], 3, axis=2)  # (H, W) -> (H, W, 3)
    # Arrays over Pillow's buffer are read-only; callers (and torch.from_numpy) expect to own
    # what they get, so copy when needed.
    return array if array.flags.writeable and array.flags.c_contiguous else array.copy()


def _composite(array: np.ndarray) -> np.ndarray:
    """(H, W, C + 1) uint8 with alpha last -> (H, W, C) on `BACKGROUND`, rounded."""
    colour = array[..., :-1].astype(np.uint32)
    alpha = array[..., -1:].astype(np.uint32)
    out = (colour * alpha + BACKGROUND * (255 - alpha) + 127) // 255
    out = out.astype(np.uint8)
    return out[..., 0] if out.shape[-1] == 1 else out


def require_min_size(
    path: str | os.PathLike, image: np.ndarray, min_hw: int | tuple[int, int], what: str
) -> None:
    """Raise if an image is smaller than a training patch or than a scale needs.

    Args:
        path: the file the image came from (named in the message).
        image: (H, W) or (H, W, C) array.
        min_hw: the smallest allowed height and width, one int for both or (h, w).
        what: what needs that size, for the message, e.g. "96x96 training patch" or
            "scale x4".

    Raises:
        ImageError: f"{path}: 40x30 is smaller than the 96x96 training patch (needs at
            least 96x96)".
    """
    min_h, min_w = (min_hw, min_hw) if isinstance(min_hw, int) else min_hw
    height, width = image.shape[:2]
    if height < min_h or width < min_w:
        raise ImageError(
            f"{path}: {width}x{height} is smaller than the {what} (needs at least {min_w}x{min_h})"
        )


def load_images(
    paths: Iterable[str | os.PathLike],
    *,
    min_size: int | tuple[int, int] = 0,
    skip_bad: bool = True,
    grey: str = "rgb",
    max_pixels: int = MAX_PIXELS,
) -> list[tuple[Path, np.ndarray]]:
    """Load many images, skipping (with a warning) those that cannot be used.

    Args:
        paths: image files.
        min_size: smallest usable height and width (an int or (h, w)), e.g. the HR
            training patch; 0 accepts any size.
        skip_bad: True warns (`warnings.warn`, naming the file and the reason) and goes
            on; False raises the first `ImageError`.
        grey, max_pixels: as for `load_image`.

    Returns:
        [(path, uint8 array (H, W, 3) or (H, W))], in the order given.

    Raises:
        ImageError: no paths, or none of them usable (the message names the first
            problem), or any problem when skip_bad=False.
    """
    paths = [Path(p) for p in paths]
    if not paths:
        raise ImageError("no image files given")
    images, problems = [], []
    for path in paths:
        try:
            image = load_image(path, grey=grey, max_pixels=max_pixels)
            if min_size:
                require_min_size(path, image, min_size, "minimum size")
        except ImageError as error:
            if not skip_bad:
                raise
            warnings.warn(f"skipping {error}", stacklevel=2)
            problems.append(str(error))
            continue
        images.append((path, image))
    if not images:
        raise ImageError(
            f"{paths[0].parent}: none of the {len(paths)} images is usable "
            f"(first problem: {problems[0]})"
        )
    return images


def list_images(folder: str | os.PathLike) -> list[Path]:
    """The image files directly inside a folder, sorted by name.

    Args:
        folder: a folder; not searched recursively.

    Returns:
        Sorted paths whose suffix is in `IMAGE_SUFFIXES` (any case). Hidden files
        (".name") are skipped: macOS copies leave "._name.png" metadata files that
        carry an image suffix but are not images.

    Raises:
        UsageError: the folder does not exist or is not a folder.
    """
    folder = Path(folder)
    if not folder.is_dir():
        problem = "is not a folder" if folder.exists() else "no such folder"
        raise UsageError(f"{folder}: {problem}")
    return sorted(
        p
        for p in folder.iterdir()
        if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and p.is_file()
    )


def save_image(path: str | os.PathLike, image: np.ndarray | torch.Tensor) -> Path:
    """Write an image atomically: a temporary file beside `path`, then a rename.

    Args:
        path: destination; the suffix picks the format (.png, .jpg, ...).
        image: uint8 np.ndarray (H, W, 3) or (H, W), or a float torch.Tensor (3, H, W),
            (1, H, W) or (1, 3, H, W) in [0, 1] (converted by `to_uint8`).

    Returns:
        The path written.

    Raises:
        UsageError: the parent folder is missing or the suffix is not an image format.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise UsageError(f"{path.parent}: folder does not exist (cannot write {path.name})")
    format_name = Image.registered_extensions().get(path.suffix.lower())
    if format_name is None:
        raise UsageError(f"{path}: unknown image suffix {path.suffix!r}")
    if isinstance(image, torch.Tensor):
        image = to_uint8(image)
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise ValueError(f"expected uint8 (H, W) or (H, W, 3), got {image.dtype} {image.shape}")
    # A crash mid-write leaves only a hidden temporary file, never a truncated image
    # under the real name.
    handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        Image.fromarray(image).save(temp_name, format=format_name)
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    return path


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8 image -> float tensor in [0, 1].

    Args:
        image: uint8 (H, W, C) or (H, W).

    Returns:
        float32 torch.Tensor (C, H, W), or (1, H, W) for a 2-D input, in [0, 1].
    """
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {image.dtype}")
    if image.ndim == 2:
        image = image[:, :, None]  # (H, W) -> (H, W, 1)
    tensor = torch.from_numpy(np.ascontiguousarray(image))
    return tensor.permute(2, 0, 1).float().div_(255.0)  # (H, W, C) -> (C, H, W)


def to_uint8(tensor: torch.Tensor) -> np.ndarray:
    """Float tensor in [0, 1] -> uint8 image, as MATLAB's im2uint8 does it.

    Values are clamped to [0, 1] and rounded half up (floor(255 x + 0.5)), the same as
    MATLAB's round-half-away-from-zero for non-negative values; NumPy's and PyTorch's
    round-half-to-even would shift some pixels by one level and the published PSNRs
    with them. NaN becomes 0.

    Args:
        tensor: (C, H, W) or (1, C, H, W) float, C = 1 or 3, nominal range [0, 1].

    Returns:
        np.ndarray uint8 (H, W, 3), or (H, W) when C = 1.
    """
    if tensor.ndim == 4 and tensor.shape[0] == 1:
        tensor = tensor[0]  # (1, C, H, W) -> (C, H, W)
    if tensor.ndim != 3 or tensor.shape[0] not in (1, 3):
        raise ValueError(
            f"expected (C, H, W) or (1, C, H, W) with C = 1 or 3, got {tuple(tensor.shape)}"
        )
    tensor = torch.nan_to_num(tensor.detach().float().cpu(), nan=0.0).clamp_(0.0, 1.0)
    levels = torch.floor(tensor * 255.0 + 0.5).to(torch.uint8)  # (C, H, W)
    array = levels.permute(1, 2, 0).numpy()  # (C, H, W) -> (H, W, C)
    return np.ascontiguousarray(array[:, :, 0] if array.shape[2] == 1 else array)
