"""Fixtures shared by the training tests."""

import numpy as np
import pytest
from PIL import Image


@pytest.fixture(scope="session")
def make_image_folder(tmp_path_factory):
    """A factory: size -> a folder of four smooth size x size colour images (cached per size).

    Low-frequency colour fields: a tiny network can learn to upscale them in a few steps.
    """
    folders = {}

    def make(size: int):
        if size not in folders:
            folder = tmp_path_factory.mktemp(f"images{size}")
            rng = np.random.default_rng(0)
            y, x = np.mgrid[0:size, 0:size] / size
            for index in range(4):
                phase = rng.uniform(0, 2 * np.pi, size=3)
                channels = [0.5 + 0.4 * np.sin(6 * x + 4 * y * (c + 1) + phase[c])
                            for c in range(3)]
                image = (np.stack(channels, axis=-1) * 255).round().astype(np.uint8)
                Image.fromarray(image).save(folder / f"{index}.png")
            folders[size] = folder
        return folders[size]

    return make
