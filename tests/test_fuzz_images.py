"""Fuzz the image loader: mutated PNG/JPEG/GIF/BMP/TIFF/WebP files either load as a uint8
image or raise ImageError. Nothing else may escape (no Pillow exception, no warning).

Hypothesis drives the mutations (bit flips, overwritten, inserted and deleted bytes,
truncation, header fields set to extreme values) from small valid seed files. The run is
derandomised, so CI sees the same inputs every time and a failure reproduces; set
SRLIB_FUZZ_EXAMPLES to run more (the default, 2500, takes about 10-20 s on 2 cores).
"""

from __future__ import annotations

import io
import os
import time
import warnings
from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from srlib.errors import ImageError
from srlib.imageio import load_image

EXAMPLES = int(os.environ.get("SRLIB_FUZZ_EXAMPLES", "2500"))

# Counts from the last run (inputs, loaded, refused, seconds), for anyone who asks.
FUZZ_STATS: Counter = Counter()


def _encode(image: Image.Image, format_name: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format_name, **options)
    return buffer.getvalue()


def _seed_files() -> list[bytes]:
    """Small valid files covering the decoders and modes load_image handles."""
    rng = np.random.default_rng(7)
    rgb = Image.fromarray(rng.integers(0, 256, (12, 10, 3), dtype=np.uint8))
    grey = rgb.convert("L")
    rgba = rgb.convert("RGBA")
    rgba.putalpha(128)
    palette = rgb.quantize(colors=8)
    grey16 = Image.fromarray((rng.integers(0, 65536, (9, 7))).astype(np.uint16))
    exif = rgb.getexif()
    exif[0x0112] = 6  # EXIF orientation: rotate
    return [
        _encode(rgb, "PNG"),
        _encode(palette, "PNG", transparency=0),
        _encode(rgba, "PNG"),
        _encode(grey16, "PNG"),
        _encode(grey.convert("LA"), "PNG"),
        _encode(rgb, "JPEG", quality=80),
        _encode(rgb, "JPEG", quality=80, progressive=True, exif=exif),
        _encode(Image.new("CMYK", (8, 6), (10, 200, 30, 0)), "JPEG"),
        _encode(grey, "JPEG"),
        _encode(palette, "GIF", transparency=1),
        _encode(rgb, "BMP"),
        _encode(palette, "BMP"),
        _encode(rgb, "TIFF"),
        _encode(rgb, "TIFF", compression="tiff_lzw"),
        _encode(rgb, "WEBP", lossless=True),
    ]


SEEDS = _seed_files()
EXTREMES = (0x00, 0x01, 0x7F, 0x80, 0xFE, 0xFF)


@st.composite
def mutated_files(draw) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        operation = draw(st.sampled_from(["flip", "set", "header", "insert", "delete", "truncate"]))
        if not data:
            break
        position = draw(st.integers(0, len(data) - 1))
        if operation == "flip":
            data[position] ^= 1 << draw(st.integers(0, 7))
        elif operation == "set":
            data[position] = draw(st.integers(0, 255))
        elif operation == "header":  # sizes, bit depths and offsets live in the first bytes
            data[min(position, 63)] = draw(st.sampled_from(EXTREMES))
        elif operation == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=16))
        elif operation == "delete":
            del data[position : position + draw(st.integers(1, 16))]
        else:
            del data[position:]
    return bytes(data)


def test_mutated_files_load_or_raise_image_error(tmp_path):
    path = tmp_path / "fuzzed.png"  # the suffix is irrelevant: the content decides
    stats: Counter = Counter()

    # A lower pixel limit than the default keeps each decode cheap when a mutation
    # inflates the header's width and height; the limit path itself is exercised.
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(data=mutated_files(), grey=st.sampled_from(["rgb", "keep"]))
    def check(data: bytes, grey: str) -> None:
        path.write_bytes(data)
        stats["inputs"] += 1
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a warning escaping is a failure too
            try:
                image = load_image(path, grey=grey, max_pixels=2_000_000)
            except ImageError as error:
                assert str(path) in str(error) and "\n" not in str(error)
                stats["refused"] += 1
                return
        assert image.dtype == np.uint8
        assert image.ndim == 3 and image.shape[2] == 3 or grey == "keep" and image.ndim == 2
        assert image.flags.c_contiguous
        stats["loaded"] += 1

    start = time.perf_counter()
    check()
    seconds = time.perf_counter() - start
    FUZZ_STATS.clear()
    FUZZ_STATS.update(stats)
    FUZZ_STATS["seconds"] = round(seconds, 1)
    print(
        f"\nfuzz: {stats['inputs']} inputs in {seconds:.1f} s "
        f"({stats['loaded']} loaded, {stats['refused']} refused with ImageError)"
    )
    # Both outcomes must occur, or the mutations are not reaching the decoders.
    assert stats["loaded"] > 0 and stats["refused"] > 0
    assert stats["inputs"] >= min(EXAMPLES, 1000)


@pytest.mark.parametrize("index", range(len(SEEDS)))
def test_every_seed_file_loads(tmp_path, index):
    path = tmp_path / "seed"
    path.write_bytes(SEEDS[index])
    assert load_image(path).dtype == np.uint8
