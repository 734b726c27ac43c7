"""Where srlib finds its images (`srlib.data`'s finders) and the patches it cuts from them."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import srlib
from srlib.data import (
    COMPLETE_MARKER,
    DEFAULT_IMAGE_NAMES,
    ENV_DATA_ROOT,
    PatchSampler,
    benchmark_dir,
    data_root,
    default_images,
    div2k_dir,
    hr_paths,
    train291_dirs,
)
from srlib.errors import UsageError
from srlib.resize import degrade


def make_images(folder: Path, count: int = 2, size: int = 8) -> Path:
    """`count` small PNGs in `folder` (created)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for index in range(count):
        pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{index}.png")
    return folder


@pytest.fixture(autouse=True)
def no_user_data(monkeypatch, tmp_path):
    """No $SRLIB_DATA, and a home whose ~/.cache/srlib is empty: only what a test sets counts."""
    monkeypatch.delenv(ENV_DATA_ROOT, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


# ---------------------------------------------------------------------- data_root


def test_data_root_is_the_argument_then_the_environment_then_the_cache(monkeypatch, tmp_path):
    assert data_root() == tmp_path / "home" / ".cache" / "srlib"
    monkeypatch.setenv(ENV_DATA_ROOT, str(tmp_path / "env"))
    assert data_root() == tmp_path / "env"
    assert data_root(tmp_path / "argument") == tmp_path / "argument"  # over $SRLIB_DATA
    assert data_root("~/mine") == tmp_path / "home" / "mine"  # ~ expanded
    monkeypatch.setenv(ENV_DATA_ROOT, "")  # set but empty: as if unset
    assert data_root() == tmp_path / "home" / ".cache" / "srlib"


# ---------------------------------------------------------------------- benchmark_dir


@pytest.mark.parametrize("name, layout", [
    ("Set5", "Set5"),
    ("Set5", "benchmarks/Set5"),
    ("set5", "benchmarks/Set5/HR"),  # EDSR's layout; the name in any case
    ("Set14", "Set14/HR"),
    ("BSD100", "B100"),  # EDSR's name for BSD100
    ("bsd100", "benchmarks/BSDS100/HR"),
    ("Urban100", "benchmarks/Urban100"),
])
def test_benchmark_dir_finds_each_layout(tmp_path, name, layout):
    folder = make_images(tmp_path / "data" / layout)
    assert benchmark_dir(name, tmp_path / "data") == folder


def test_benchmark_dir_prefers_the_root_and_skips_folders_without_images(monkeypatch, tmp_path):
    root = tmp_path / "data"
    (root / "Set5").mkdir(parents=True)  # empty: not the set
    nested = make_images(root / "benchmarks" / "Set5")
    monkeypatch.setenv(ENV_DATA_ROOT, str(root))  # root None: the data root
    assert benchmark_dir("Set5") == nested
    top = make_images(root / "Set5")
    assert benchmark_dir("Set5") == top


def test_benchmark_dir_not_found_names_the_places_and_the_download(tmp_path):
    root = tmp_path / "data"
    with pytest.raises(UsageError) as error:
        benchmark_dir("Set5", root)
    message = str(error.value)
    for place in ("Set5", "Set5/HR", "benchmarks/Set5", "benchmarks/Set5/HR"):
        assert str(root / place) in message
    assert "srlib download benchmarks" in message and ENV_DATA_ROOT in message
    with pytest.raises(UsageError) as error:
        benchmark_dir("BSD100", root)
    for alias in ("BSD100", "B100", "BSDS100"):
        assert str(root / "benchmarks" / alias) in str(error.value)
    # Not a known set: no download can help, so none is suggested.
    with pytest.raises(UsageError, match="'Mine' not found") as error:
        benchmark_dir("Mine", root)
    assert "srlib download" not in str(error.value)


# ---------------------------------------------------------------------- div2k_dir


def test_div2k_dir_refuses_an_incomplete_folder_unless_marked_complete(tmp_path):
    folder = make_images(tmp_path / "DIV2K" / "DIV2K_valid_HR", count=3)
    with pytest.raises(UsageError, match="holds 3 images where DIV2K valid has 100") as error:
        div2k_dir(tmp_path, "valid")
    assert "srlib download div2k" in str(error.value)
    (folder / COMPLETE_MARKER).touch()  # what `srlib download` writes last
    assert div2k_dir(tmp_path, "valid") == folder


def test_div2k_dir_not_found_and_unknown_split(tmp_path):
    with pytest.raises(UsageError) as error:
        div2k_dir(tmp_path, "train")
    message = str(error.value)
    assert str(tmp_path / "DIV2K" / "DIV2K_train_HR") in message
    assert str(tmp_path / "DIV2K_train_HR") in message
    assert "srlib download div2k" in message
    with pytest.raises(UsageError, match="unknown DIV2K split 'test'"):
        div2k_dir(tmp_path, "test")


# ---------------------------------------------------------------------- train291_dirs


def test_train291_dirs_in_the_train_folder(monkeypatch, tmp_path):
    train = tmp_path / "data" / "train"
    folders = [make_images(train / "T91"), make_images(train / "BSD200")]
    assert train291_dirs(tmp_path / "data") == folders
    monkeypatch.setenv(ENV_DATA_ROOT, str(tmp_path / "data"))
    assert train291_dirs() == folders


def test_train291_dirs_not_found_names_the_download(tmp_path):
    make_images(tmp_path / "train" / "T91")  # BSD200 missing: not the 291 images
    with pytest.raises(UsageError) as error:
        train291_dirs(tmp_path)
    message = str(error.value)
    assert str(tmp_path / "train") in message and "srlib download train291" in message


# ---------------------------------------------------------------------- hr_paths, default_images


def test_hr_paths_of_a_folder_and_of_a_missing_one(tmp_path):
    folder = make_images(tmp_path / "mine", count=3)
    (folder / "notes.txt").write_text("not an image")
    assert hr_paths(str(folder)) == [folder / f"{index}.png" for index in range(3)]
    with pytest.raises(UsageError, match="no such data folder"):
        hr_paths(str(tmp_path / "missing"))


def test_hr_paths_of_the_named_sources(tmp_path):
    train = tmp_path / "train"
    make_images(train / "T91", count=2)
    make_images(train / "BSD200", count=1)
    assert len(hr_paths("train291", tmp_path)) == 3
    valid = make_images(tmp_path / "DIV2K" / "DIV2K_valid_HR", count=2)
    (valid / COMPLETE_MARKER).touch()
    assert hr_paths("div2k-valid", tmp_path) == [valid / "0.png", valid / "1.png"]


def test_default_images_are_five_files_inside_scikit_image():
    paths = default_images()
    assert [path.name for path in paths] == list(DEFAULT_IMAGE_NAMES) and len(paths) == 5
    assert all(path.is_file() for path in paths)
    assert hr_paths("default") == paths


# ---------------------------------------------------------------------- no project folders


def test_srlib_never_looks_in_a_shared_folder_beside_its_source(tmp_path):
    # A copy of the package with a `shared/benchmarks/Set5` beside it and in the working
    # folder's parent (the project's own layout): with an empty data root, Set5 is not found.
    checkout = tmp_path / "checkout"
    shutil.copytree(Path(srlib.__file__).parent, checkout / "srlib",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for shared in (checkout / "shared", tmp_path / "shared"):
        make_images(shared / "benchmarks" / "Set5")
    empty = tmp_path / "empty"
    empty.mkdir()
    code = ("import srlib, srlib.data as d\n"
            f"assert srlib.__file__.startswith({str(checkout)!r}), srlib.__file__\n"
            "for root in (None, d.data_root()):\n"
            "    try:\n"
            "        print('found', d.benchmark_dir('Set5', root))\n"
            "    except d.UsageError:\n"
            "        print('not found')\n")
    for variable in (ENV_DATA_ROOT, "HOME"):  # an empty $SRLIB_DATA, or the default cache
        env = {**os.environ, "PYTHONPATH": str(checkout), variable: str(empty)}
        if variable == "HOME":
            env.pop(ENV_DATA_ROOT, None)
        result = subprocess.run([sys.executable, "-c", code], cwd=checkout, env=env,
                                capture_output=True, text=True, timeout=120, check=False)
        assert result.returncode == 0, result.stderr
        assert result.stdout.split("\n")[:2] == ["not found", "not found"], result.stdout


# ---------------------------------------------------------------------- PatchSampler


def uint8_images(count: int, height: int, width: int, seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=generator)
            for _ in range(count)]


def test_patch_sampler_shapes_and_targets():
    sampler = PatchSampler(uint8_images(3, 40, 56), patch_size=6, scales=(4, 2),
                           generator=torch.Generator().manual_seed(0))
    lr, targets = sampler.sample(5)
    assert lr.shape == (5, 3, 6, 6) and lr.dtype == torch.float32
    assert sorted(targets) == [2, 4]
    assert targets[2].shape == (5, 3, 12, 12) and targets[4].shape == (5, 3, 24, 24)
    for tensor in (lr, *targets.values()):
        assert 0 <= tensor.min() and tensor.max() <= 1
        assert torch.equal(tensor * 255, (tensor * 255).round())  # on the 8-bit grid
    # Every target is the same HR crop, MATLAB-bicubic downscaled to its scale.
    assert torch.equal(targets[2], degrade(targets[4], 2))
    assert torch.equal(lr, degrade(targets[4], 4))


def test_patch_sampler_without_augmentation_crops_the_image():
    (image,) = uint8_images(1, 16, 16)
    sampler = PatchSampler([image], patch_size=8, scales=(2,), augment=False)
    _, targets = sampler.sample(2)
    assert torch.equal(targets[2][0], image.float() / 255)  # a 16x16 crop of a 16x16 image


def test_patch_sampler_is_reproducible_from_its_generator():
    images = uint8_images(4, 48, 48)

    def draw(seed):
        sampler = PatchSampler(images, patch_size=8, scales=(2,),
                               generator=torch.Generator().manual_seed(seed))
        return [sampler.sample(3) for _ in range(2)]

    first, again, other = draw(7), draw(7), draw(8)
    for (lr_a, targets_a), (lr_b, targets_b) in zip(first, again):
        assert torch.equal(lr_a, lr_b) and torch.equal(targets_a[2], targets_b[2])
    assert not torch.equal(first[0][0], other[0][0])
    assert not torch.equal(first[0][0], first[1][0])  # the stream moves on between batches


def test_patch_sampler_refuses_images_smaller_than_the_hr_patch():
    with pytest.raises(UsageError, match=r"images \[1\] are smaller than the 32px HR patch"):
        PatchSampler(uint8_images(1, 40, 40) + uint8_images(1, 40, 31), patch_size=8,
                     scales=(2, 4))
