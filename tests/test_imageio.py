"""Every image case srlib's loader promises to handle (see srlib/imageio.py's module docstring)."""

from __future__ import annotations

import io
import struct
import subprocess
import sys
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from srlib.errors import ImageError, UsageError
from srlib.imageio import (
    BACKGROUND,
    MAX_PIXELS,
    list_images,
    load_image,
    load_images,
    require_min_size,
    save_image,
    to_tensor,
    to_uint8,
)

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def random_rgb(height: int = 24, width: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def handmade_png(width: int, height: int, bit_depth: int, colour_type: int, rows: bytes) -> bytes:
    """A PNG written byte by byte, for what Pillow cannot write (16-bit RGB, huge headers)."""
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(rows))
        + png_chunk(b"IEND", b"")
    )


def assert_one_line_naming(error: pytest.ExceptionInfo, path: Path, *words: str) -> None:
    message = str(error.value)
    assert "\n" not in message
    assert str(path) in message
    for word in words:
        assert word in message.lower(), message


# ---------------------------------------------------------------------------------------
# Converted correctly
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".png", ".bmp", ".tif", ".webp"])
def test_lossless_rgb_formats_round_trip_exactly(tmp_path, suffix):
    image = random_rgb()
    path = tmp_path / f"rgb{suffix}"
    Image.fromarray(image).save(path, **({"lossless": True} if suffix == ".webp" else {}))
    out = load_image(path)
    assert out.dtype == np.uint8 and out.shape == (24, 32, 3)
    np.testing.assert_array_equal(out, image)


def test_jpeg_loads_as_rgb_close_to_source(tmp_path):
    image = np.full((16, 16, 3), (200, 60, 30), np.uint8)
    Image.fromarray(image).save(tmp_path / "a.jpg", quality=95)
    out = load_image(tmp_path / "a.jpg")
    assert out.shape == (16, 16, 3)
    assert np.abs(out.astype(int) - image).max() <= 3


def test_grey_is_replicated_or_kept(tmp_path):
    grey = random_rgb()[:, :, 0]
    Image.fromarray(grey, mode="L").save(tmp_path / "g.png")
    rgb = load_image(tmp_path / "g.png")
    assert rgb.shape == (24, 32, 3)
    for channel in range(3):
        np.testing.assert_array_equal(rgb[:, :, channel], grey)
    kept = load_image(tmp_path / "g.png", grey="keep")
    assert kept.shape == (24, 32)
    np.testing.assert_array_equal(kept, grey)


def test_grey_keep_leaves_colour_images_alone(tmp_path):
    Image.fromarray(random_rgb()).save(tmp_path / "c.png")
    assert load_image(tmp_path / "c.png", grey="keep").shape == (24, 32, 3)


def test_one_bit_image_becomes_0_or_255(tmp_path):
    bits = random_rgb()[:, :, 0] > 127
    Image.fromarray(bits).save(tmp_path / "b.png")
    out = load_image(tmp_path / "b.png", grey="keep")
    np.testing.assert_array_equal(out, np.where(bits, 255, 0))


def test_16_bit_grey_png_is_scaled_with_rounding(tmp_path):
    # Every 16-bit value once (as a 256 x 256 image): the 8-bit result must be
    # round(v / 257), the nearest level, never the clipped value Image.convert gives.
    values = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    Image.fromarray(values).save(tmp_path / "g16.png")
    with Image.open(tmp_path / "g16.png") as reopened:
        assert reopened.mode in ("I;16", "I")  # really stored and read as 16 bits
    out = load_image(tmp_path / "g16.png", grey="keep")
    np.testing.assert_array_equal(out, np.round(values / 257.0).astype(np.uint8))
    assert load_image(tmp_path / "g16.png").shape == (256, 256, 3)


def test_16_bit_rgb_png_keeps_the_high_byte(tmp_path):
    # Pillow reads 16-bit RGB PNGs straight into 8-bit RGB by keeping the high byte;
    # srlib documents that (at most one level below rounding) instead of writing its
    # own PNG decoder. Pillow cannot write such a file, so it is written by hand.
    values = np.array(
        [[[0, 32767, 65535], [257, 256, 255], [0x80FF, 0x7F80, 1000]]], dtype=">u2"
    )  # (1, 3, 3)
    rows = b"".join(b"\x00" + row.tobytes() for row in values)  # filter type 0 per row
    path = tmp_path / "rgb16.png"
    path.write_bytes(handmade_png(3, 1, 16, 2, rows))
    out = load_image(path)
    np.testing.assert_array_equal(out, (values.astype(np.int64) >> 8).astype(np.uint8))
    rounded = np.round(values / 257.0)
    assert np.all((rounded - out >= 0) & (rounded - out <= 1))


def test_palette_image_is_expanded(tmp_path):
    image = random_rgb()
    palette_image = Image.fromarray(image).quantize(colors=16)
    palette_image.save(tmp_path / "p.png")
    expected = np.asarray(palette_image.convert("RGB"))
    np.testing.assert_array_equal(load_image(tmp_path / "p.png"), expected)


def test_palette_transparency_is_composited_on_white(tmp_path):
    palette_image = Image.new("P", (4, 2), 0)
    palette_image.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    palette_image.putpixel((1, 0), 1)
    palette_image.info["transparency"] = 0  # index 0 fully transparent
    palette_image.save(tmp_path / "pt.png", transparency=0)
    out = load_image(tmp_path / "pt.png")
    np.testing.assert_array_equal(out[0, 0], [BACKGROUND] * 3)
    np.testing.assert_array_equal(out[0, 1], [200, 100, 50])


def test_transparent_gif_is_composited_on_white(tmp_path):
    palette_image = Image.new("P", (3, 3), 1)
    palette_image.putpalette([0, 0, 0, 0, 128, 255] + [0] * 762)
    palette_image.putpixel((0, 0), 0)
    palette_image.save(tmp_path / "t.gif", transparency=0)
    out = load_image(tmp_path / "t.gif")
    np.testing.assert_array_equal(out[0, 0], [255, 255, 255])
    np.testing.assert_array_equal(out[1, 1], [0, 128, 255])


def test_rgba_is_composited_on_white_with_rounding(tmp_path):
    rgba = np.array([[[200, 100, 0, 128], [1, 2, 3, 255], [9, 9, 9, 0]]], np.uint8)
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "a.png")
    out = load_image(tmp_path / "a.png")
    alpha = 128
    expected_first = [(c * alpha + 255 * (255 - alpha) + 127) // 255 for c in (200, 100, 0)]
    np.testing.assert_array_equal(out[0, 0], expected_first)
    np.testing.assert_array_equal(out[0, 1], [1, 2, 3])  # opaque: unchanged
    np.testing.assert_array_equal(out[0, 2], [255, 255, 255])  # transparent: background


def test_grey_with_alpha_is_composited_and_can_stay_grey(tmp_path):
    la = np.array([[[100, 255], [100, 0], [0, 51]]], np.uint8)
    Image.fromarray(la, mode="LA").save(tmp_path / "la.png")
    kept = load_image(tmp_path / "la.png", grey="keep")
    assert kept.shape == (1, 3)
    np.testing.assert_array_equal(kept[0], [100, 255, (0 * 51 + 255 * 204 + 127) // 255])
    assert load_image(tmp_path / "la.png").shape == (1, 3, 3)


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    # Pure cyan (C = 100 %) is RGB (0, 255, 255); Pillow writes an Adobe CMYK JPEG.
    Image.new("CMYK", (16, 16), (255, 0, 0, 0)).save(tmp_path / "cmyk.jpg", quality=95)
    with Image.open(tmp_path / "cmyk.jpg") as reopened:
        assert reopened.mode == "CMYK"
    out = load_image(tmp_path / "cmyk.jpg")
    assert out.shape == (16, 16, 3)
    assert np.abs(out[8, 8].astype(int) - [0, 255, 255]).max() <= 3


def with_orientation(image: Image.Image, orientation: int) -> Image.Exif:
    exif = image.getexif()
    exif[0x0112] = orientation  # the EXIF Orientation tag
    return exif


def test_exif_orientation_is_applied_exactly(tmp_path):
    # Orientation 6: the stored pixels must be turned 90 degrees clockwise to display.
    stored = random_rgb(4, 6)
    image = Image.fromarray(stored)
    image.save(tmp_path / "o6.png", exif=with_orientation(image, 6))
    out = load_image(tmp_path / "o6.png")
    np.testing.assert_array_equal(out, np.rot90(stored, k=-1))


@pytest.mark.parametrize(
    ("orientation", "shape"), [(1, (8, 12, 3)), (3, (8, 12, 3)), (8, (12, 8, 3))]
)
def test_exif_orientation_in_jpeg(tmp_path, orientation, shape):
    image = Image.new("RGB", (12, 8), (0, 0, 0))
    image.paste((255, 255, 255), (0, 0, 6, 4))  # white top-left quarter as stored
    image.save(tmp_path / "o.jpg", exif=with_orientation(image, orientation), quality=95)
    out = load_image(tmp_path / "o.jpg")
    assert out.shape == shape
    if orientation == 3:  # 180 degrees: the white quarter moves to the bottom right
        assert out[6, 10].mean() > 200 and out[1, 1].mean() < 50


def test_animated_gif_gives_its_first_frame(tmp_path):
    frames = [Image.new("RGB", (5, 4), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    out = load_image(tmp_path / "anim.gif")
    np.testing.assert_array_equal(out[0, 0], [255, 0, 0])


def test_set14_bridge_stays_grey_with_keep():
    bridge = SHARED / "benchmarks" / "Set14" / "bridge.png"
    if not bridge.exists():
        pytest.skip(f"{bridge} not present")
    assert load_image(bridge, grey="keep").shape == (512, 512)
    assert load_image(bridge).shape == (512, 512, 3)


# ---------------------------------------------------------------------------------------
# Refused with a one-line ImageError naming the file
# ---------------------------------------------------------------------------------------


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    with pytest.raises(ImageError) as error:
        load_image(path)
    assert_one_line_naming(error, path, "empty")


def test_text_file_named_png(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("this is not an image\n")
    with pytest.raises(ImageError) as error:
        load_image(path)
    assert_one_line_naming(error, path, "not an image")


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_truncated_file(tmp_path, suffix):
    full = tmp_path / f"full{suffix}"
    Image.fromarray(random_rgb(64, 64)).save(full)
    data = full.read_bytes()
    path = tmp_path / f"truncated{suffix}"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError) as error:
        load_image(path)
    assert_one_line_naming(error, path, "truncated")


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_corrupt_file(tmp_path, suffix):
    full = tmp_path / f"full{suffix}"
    Image.fromarray(random_rgb(64, 64)).save(full)
    data = bytearray(full.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = b"\xff" * 64
    path = tmp_path / f"corrupt{suffix}"
    path.write_bytes(bytes(data))
    with pytest.raises(ImageError) as error:
        load_image(path)
    assert_one_line_naming(error, path)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(ImageError) as error:
        load_image(tmp_path / "nope.png")
    assert_one_line_naming(error, tmp_path / "nope.png", "no such file")
    with pytest.raises(ImageError) as error:
        load_image(tmp_path)
    assert_one_line_naming(error, tmp_path, "folder")


def test_unreadable_file_is_not_called_corrupt(tmp_path, monkeypatch):
    path = tmp_path / "locked.png"
    Image.fromarray(random_rgb()).save(path)

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Image, "open", refuse)  # root ignores chmod, so simulate it
    with pytest.raises(ImageError) as error:
        load_image(path)
    assert_one_line_naming(error, path, "cannot read the file (permission denied)")


def test_float_tiff_is_refused(tmp_path):
    Image.fromarray(np.ones((4, 4), np.float32)).save(tmp_path / "f.tif")
    with pytest.raises(ImageError) as error:
        load_image(tmp_path / "f.tif")
    assert_one_line_naming(error, tmp_path / "f.tif", "floating-point")


@pytest.mark.parametrize(
    ("width", "height"),
    [
        (12_000, 10_000),  # 120 Mpx: above srlib's limit, below Pillow's hard stop (warns)
        (20_000, 20_000),  # 400 Mpx: above Pillow's hard stop (DecompressionBombError)
        (1, 2**31 - 1),  # absurd header
    ],
)
def test_decompression_bomb_is_refused_before_decoding(tmp_path, width, height):
    # A few dozen bytes claiming a huge grey image: refused from the header, with no
    # Pillow warning or exception escaping (warnings are errors here).
    path = tmp_path / "bomb.png"
    path.write_bytes(handmade_png(width, height, 8, 0, b"\x00" * 64))
    pillow_limit = Image.MAX_IMAGE_PIXELS
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ImageError) as error:
            load_image(path)
    assert_one_line_naming(
        error, path, "too large" if width * height > 2 * pillow_limit else "limit"
    )
    assert Image.MAX_IMAGE_PIXELS == pillow_limit  # never changed, not even for a moment


def test_max_pixels_is_a_per_call_limit(tmp_path):
    Image.fromarray(random_rgb(10, 10)).save(tmp_path / "small.png")
    with pytest.raises(ImageError) as error:
        load_image(tmp_path / "small.png", max_pixels=99)
    assert_one_line_naming(error, tmp_path / "small.png", "100 pixels", "99")
    assert load_image(tmp_path / "small.png", max_pixels=100).shape == (10, 10, 3)
    assert MAX_PIXELS == 100_000_000


def test_import_has_no_side_effects_on_pillow():
    code = (
        # torch is imported first: its own import adds warning filters.
        "import torch, numpy, PIL.Image as I, warnings; before = I.MAX_IMAGE_PIXELS; "
        "filters = list(warnings.filters); import srlib.imageio; "
        "assert I.MAX_IMAGE_PIXELS == before; assert warnings.filters == filters; "
        "from PIL import ImageFile; assert not ImageFile.LOAD_TRUNCATED_IMAGES"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------------------------------
# Too small: require_min_size and load_images
# ---------------------------------------------------------------------------------------


def test_require_min_size_names_file_and_sizes(tmp_path):
    image = np.zeros((30, 40, 3), np.uint8)
    require_min_size("a.png", image, 30, "patch")
    require_min_size("a.png", image, (30, 40), "patch")
    with pytest.raises(ImageError) as error:
        require_min_size(tmp_path / "a.png", image, 96, "96x96 training patch")
    assert_one_line_naming(error, tmp_path / "a.png", "40x30", "96x96 training patch")
    with pytest.raises(ImageError):
        require_min_size("a.png", image, (31, 10), "scale x4")


def test_load_images_skips_bad_and_small_files_with_warnings(tmp_path):
    good = tmp_path / "good.png"
    Image.fromarray(random_rgb(32, 32)).save(good)
    small = tmp_path / "small.png"
    Image.fromarray(random_rgb(8, 8)).save(small)
    broken = tmp_path / "broken.png"
    broken.write_text("not an image")
    with pytest.warns(UserWarning) as record:
        images = load_images([good, small, broken], min_size=16)
    assert [path for path, _ in images] == [good]
    messages = [str(w.message) for w in record]
    assert any(str(small) in m and "8x8" in m for m in messages)
    assert any(str(broken) in m for m in messages)


def test_load_images_raises_when_nothing_is_usable(tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"")
    with pytest.warns(UserWarning), pytest.raises(ImageError, match="none of the 1 images"):
        load_images([broken])
    with pytest.raises(ImageError, match="empty"):
        load_images([broken], skip_bad=False)
    with pytest.raises(ImageError, match="no image files"):
        load_images([])


# ---------------------------------------------------------------------------------------
# Folders, saving, tensors
# ---------------------------------------------------------------------------------------


def test_list_images_filters_sorts_and_skips_hidden(tmp_path):
    for name in ("b.PNG", "a.jpg", "c.tiff", "notes.txt", "._a.png", "d.gif"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "folder.png").mkdir()
    assert [p.name for p in list_images(tmp_path)] == ["a.jpg", "b.PNG", "c.tiff"]
    with pytest.raises(UsageError, match="no such folder"):
        list_images(tmp_path / "missing")
    with pytest.raises(UsageError, match="not a folder"):
        list_images(tmp_path / "a.jpg")


def test_save_image_round_trips_arrays_and_tensors(tmp_path):
    image = random_rgb()
    save_image(tmp_path / "a.png", image)
    np.testing.assert_array_equal(load_image(tmp_path / "a.png"), image)
    save_image(tmp_path / "t.png", to_tensor(image))
    np.testing.assert_array_equal(load_image(tmp_path / "t.png"), image)
    save_image(tmp_path / "b.png", to_tensor(image).unsqueeze(0))
    np.testing.assert_array_equal(load_image(tmp_path / "b.png"), image)
    save_image(tmp_path / "g.png", image[:, :, 0])
    np.testing.assert_array_equal(load_image(tmp_path / "g.png", grey="keep"), image[:, :, 0])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "b.png", "g.png", "t.png"]


def test_save_image_refuses_missing_folder_and_unknown_suffix(tmp_path):
    with pytest.raises(UsageError) as error:
        save_image(tmp_path / "missing" / "a.png", random_rgb())
    assert str(tmp_path / "missing") in str(error.value)
    with pytest.raises(UsageError, match="suffix"):
        save_image(tmp_path / "a.xyz", random_rgb())
    assert list(tmp_path.iterdir()) == []


def test_save_image_leaves_no_partial_file_when_writing_fails(tmp_path, monkeypatch):
    save_image(tmp_path / "a.png", random_rgb(seed=1))
    before = (tmp_path / "a.png").read_bytes()

    def failing_save(self, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        save_image(tmp_path / "a.png", random_rgb(seed=2))
    assert (tmp_path / "a.png").read_bytes() == before  # the old file is intact
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"]  # no temporary left


def test_save_image_full_disk_is_an_image_error_naming_the_file(tmp_path, monkeypatch):
    from srlib import files

    save_image(tmp_path / "a.png", random_rgb(seed=1))
    before = (tmp_path / "a.png").read_bytes()

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, "fsync", full)
    with pytest.raises(ImageError, match=r"a\.png: cannot write \(no space left on device\)"):
        save_image(tmp_path / "a.png", random_rgb(seed=2))
    assert (tmp_path / "a.png").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"]


def test_to_tensor_shapes_and_range():
    image = random_rgb()
    tensor = to_tensor(image)
    assert tensor.shape == (3, 24, 32) and tensor.dtype == torch.float32
    assert float(tensor.min()) >= 0 and float(tensor.max()) <= 1
    assert to_tensor(image[:, :, 0]).shape == (1, 24, 32)
    with pytest.raises(ValueError, match="uint8"):
        to_tensor(image.astype(np.float32))


def test_to_uint8_rounds_half_up_and_clamps():
    levels = np.arange(256, dtype=np.uint8).reshape(16, 16)
    image = np.stack([levels] * 3, axis=2)
    np.testing.assert_array_equal(to_uint8(to_tensor(image)), image)  # exact round trip
    # Half-way values go up (MATLAB), where round-half-to-even would give 0, 2, 2, 4.
    halves = torch.tensor([0.5, 1.5, 2.5, 3.5], dtype=torch.float64) / 255
    out = to_uint8(halves.reshape(1, 1, 4))
    np.testing.assert_array_equal(out[0], [1, 2, 3, 4])
    out = to_uint8(torch.tensor([-0.2, 1.3, float("nan"), float("inf")]).reshape(1, 1, 4))
    np.testing.assert_array_equal(out[0], [0, 255, 0, 255])
    assert to_uint8(torch.rand(1, 3, 5, 7)).shape == (5, 7, 3)
    with pytest.raises(ValueError):
        to_uint8(torch.rand(2, 5, 7))


def test_in_memory_png_bytes_are_not_accepted_only_paths(tmp_path):
    # load_image takes paths (the error names the file); a PNG written from bytes loads.
    buffer = io.BytesIO()
    Image.fromarray(random_rgb()).save(buffer, format="PNG")
    (tmp_path / "x.png").write_bytes(buffer.getvalue())
    assert load_image(str(tmp_path / "x.png")).shape == (24, 32, 3)
