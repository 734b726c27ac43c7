"""Reading and writing images: every file srlib touches goes through `load_image`.

Whatever the file holds (palette, grey, alpha, CMYK, 16 bits, EXIF rotation, frames), a caller gets
uint8 (H, W, 3) RGB, upright, transparency on white; or one `ImageError` naming file and problem.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from srlib.errors import ImageError, UsageError
from srlib.files import atomic_write

# Decompression-bomb guard (a 100-byte PNG can claim 50,000^2 pixels): 12x DIV2K's largest image.
MAX_PIXELS: int = 100_000_000

# What `list_images` collects from a folder (compared case-insensitively).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")

# The decoders Pillow may try (JPEG covers MPO), so an image suffix never starts EPS's Ghostscript.
PILLOW_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP")

# Transparency goes on white, as viewers show it; the RGB under alpha = 0 is arbitrary (black).
BACKGROUND = 255


def load_image(path: str | os.PathLike, *, grey: str = "rgb",
               max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Read an image file as uint8 (H, W, 3) RGB in [0, 255], upright, alpha composited on white.

    Args:
        path: a PNG, JPEG, BMP, GIF, TIFF or WebP file (the content decides, not the suffix).
        grey: "rgb" replicates one channel to 3; "keep" returns a single-channel image as (H, W),
            so a grey benchmark image (Set14 bridge.png) is scored on its own values.
        max_pixels: refuse larger images, from the header, before decoding.

    Raises:
        ImageError: missing, empty, corrupt, not an image, too large, unsupported mode.
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

    # Pillow's warnings (corrupt EXIF, DecompressionBombWarning) leave the pixels as they are.
    format_name = "image"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with Image.open(path, formats=PILLOW_FORMATS) as image:
                format_name = image.format or format_name
                width, height = image.size
                if width * height > max_pixels:
                    raise ImageError(f"{path}: {width}x{height} = {width * height:,} pixels is "
                                     f"above the limit of {max_pixels:,} (decompression-bomb "
                                     "guard); pass a larger max_pixels if the file is trusted")
                image.load()  # decode every byte now, so a bad file fails here, not in a worker
                return _to_array(image, path, grey)
        except ImageError:
            raise
        # Pillow's decoders raise many types, varying by version; each means: cannot read this file.
        except Exception as error:  # noqa: BLE001
            raise ImageError(f"{path}: {_describe(error, format_name)}") from None


def _describe(error: Exception, format_name: str) -> str:
    """One line for why Pillow failed: too large, not an image, unreadable, truncated, corrupt."""
    if isinstance(error, Image.DecompressionBombError):
        return f"image too large, refused before decoding ({error})"
    if isinstance(error, UnidentifiedImageError):
        return f"not an image (its content is none of {', '.join(PILLOW_FORMATS)})"
    text = " ".join(str(error).split()) or type(error).__name__
    if isinstance(error, OSError) and error.errno is not None:  # decoders give no errno
        return f"cannot read the file ({error.strerror or text})"
    if "truncated" in text.lower() or isinstance(error, EOFError):
        return f"truncated {format_name}, cannot decode ({text})"
    if isinstance(error, MemoryError):
        return f"not enough memory to decode this {format_name}"
    return f"corrupt {format_name}, cannot decode ({type(error).__name__}: {text})"


def _to_array(image: Image.Image, path: Path, grey: str) -> np.ndarray:
    """Decoded Pillow image -> uint8 (H, W, 3), or (H, W) when grey="keep"."""
    image = ImageOps.exif_transpose(image)
    if image.mode in ("P", "PA"):  # a palette can carry transparency (tRNS, GIF index)
        has_alpha = image.mode == "PA" or "transparency" in image.info
        image = image.convert("RGBA" if has_alpha else "RGB")
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # Image.convert("L") would clip at 255; round(v * 255 / 65535) = round(v / 257).
        values = np.clip(np.asarray(image).astype(np.int64), 0, 65535)  # (H, W)
        array = ((values * 255 + 32767) // 65535).astype(np.uint8)
    elif mode in ("1", "L"):
        array = np.array(image.convert("L"))  # (H, W)
    elif mode in ("RGB", "CMYK", "YCbCr", "LAB", "HSV"):  # 16-bit RGB PNG: Pillow kept v >> 8
        array = np.array(image.convert("RGB"))  # (H, W, 3)
    elif mode in ("LA", "RGBA", "RGBa"):  # RGBa: premultiplied, undone by convert
        values = np.asarray(image.convert("LA" if mode == "LA" else "RGBA")).astype(np.uint32)
        colour, alpha = values[..., :-1], values[..., -1:]  # (H, W, C), (H, W, 1)
        array = ((colour * alpha + BACKGROUND * (255 - alpha) + 127) // 255).astype(np.uint8)
        array = np.ascontiguousarray(array[..., 0]) if mode == "LA" else array  # -> (H, W)
    elif mode == "F":
        raise ImageError(f"{path}: 32-bit floating-point image, no defined 8-bit range")
    else:
        raise ImageError(f"{path}: unsupported image mode {mode!r}")
    if array.ndim == 2 and grey == "rgb":
        array = np.repeat(array[:, :, None], 3, axis=2)  # (H, W) -> (H, W, 3)
    return array


def require_min_size(path: str | os.PathLike, image: np.ndarray,
                     min_hw: int | tuple[int, int], what: str) -> None:
    """Raise `ImageError` if `image` is below `min_hw` (int or (h, w)), the size `what` needs."""
    min_h, min_w = (min_hw, min_hw) if isinstance(min_hw, int) else min_hw
    height, width = image.shape[:2]
    if height < min_h or width < min_w:
        raise ImageError(f"{path}: {width}x{height} is smaller than the {what} "
                         f"(needs at least {min_w}x{min_h})")


def load_images(paths: Iterable[str | os.PathLike], *, min_size: int | tuple[int, int] = 0,
                skip_bad: bool = True, grey: str = "rgb",
                max_pixels: int = MAX_PIXELS) -> list[tuple[Path, np.ndarray]]:
    """[(path, image)] in the order given, skipping with a warning the files that cannot be used.

    Args:
        min_size: smallest usable height and width (an int or (h, w)); 0 accepts any size.
        skip_bad: False raises the first `ImageError` instead of warning.
        grey, max_pixels: as for `load_image`.

    Raises:
        ImageError: no paths, none usable, or any problem when skip_bad=False.
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
        raise ImageError(f"{paths[0].parent}: none of the {len(paths)} images is usable "
                         f"(first problem: {problems[0]})")
    return images


def list_images(folder: str | os.PathLike) -> list[Path]:
    """The image files directly inside a folder (not recursive), sorted by name.

    Hidden files (macOS's "._name.png") are skipped; `UsageError` if `folder` is not a folder.
    """
    folder = Path(folder)
    if not folder.is_dir():
        problem = "is not a folder" if folder.exists() else "no such folder"
        raise UsageError(f"{folder}: {problem}")
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES
                  and not p.name.startswith(".") and p.is_file())


def save_image(path: str | os.PathLike, image: np.ndarray | torch.Tensor) -> Path:
    """Write `image` to `path` atomically, in the format its suffix names; returns `path`.

    Args:
        image: uint8 (H, W, 3) or (H, W) array, or a float tensor in [0, 1] for `to_uint8`.

    Raises:
        UsageError: the parent folder is missing or the suffix is not an image format.
        ImageError: the file cannot be written (says why; an older file there is kept).
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise UsageError(f"{path.parent}: folder does not exist (cannot write {path.name})")
    format_name = Image.registered_extensions().get(path.suffix.lower())
    if format_name is None:
        raise UsageError(f"{path}: unknown image suffix {path.suffix!r}")
    image = to_uint8(image) if isinstance(image, torch.Tensor) else np.asarray(image)
    if image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise ValueError(f"expected uint8 (H, W) or (H, W, 3), got {image.dtype} {image.shape}")
    encoded = io.BytesIO()
    Image.fromarray(image).save(encoded, format=format_name)
    return atomic_write(path, encoded.getbuffer(), error=ImageError)


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, C) or (H, W) image -> float32 (C, H, W) or (1, H, W) tensor in [0, 1]."""
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {image.dtype}")
    image = image[:, :, None] if image.ndim == 2 else image  # (H, W) -> (H, W, 1)
    tensor = torch.from_numpy(np.ascontiguousarray(image))
    return tensor.permute(2, 0, 1).float().div_(255.0)  # (H, W, C) -> (C, H, W)


def to_uint8(tensor: torch.Tensor) -> np.ndarray:
    """Float (C, H, W) or (1, C, H, W) tensor, C = 1 or 3 -> uint8 (H, W, 3) or (H, W).

    As MATLAB's im2uint8: clamp to [0, 1], round half up, floor(255 x + 0.5); round-half-to-even
    would move some pixels one level, and published PSNRs with them. NaN becomes 0.
    """
    tensor = tensor[0] if tensor.ndim == 4 and tensor.shape[0] == 1 else tensor  # -> (C, H, W)
    if tensor.ndim != 3 or tensor.shape[0] not in (1, 3):
        raise ValueError("expected (C, H, W) or (1, C, H, W) with C = 1 or 3, "
                         f"got {tuple(tensor.shape)}")
    tensor = torch.nan_to_num(tensor.detach().float().cpu(), nan=0.0).clamp_(0.0, 1.0)
    levels = torch.floor(tensor * 255.0 + 0.5).to(torch.uint8)  # (C, H, W)
    array = levels.permute(1, 2, 0).numpy()  # (C, H, W) -> (H, W, C)
    return np.ascontiguousarray(array[:, :, 0] if array.shape[2] == 1 else array)
