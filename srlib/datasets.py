"""Where srlib's images come from: benchmark sets, DIV2K, the 291 training images and an
embedded default, found on disk or downloaded by name.

Sources:
- benchmark sets by name (Set5, Set14, BSD100, Urban100): `benchmark_dir`;
- DIV2K (800 train / 100 valid HR images): `div2k_dir`, `download_div2k`;
- the 291-image training set (T91 + BSD200) read from a folder: `train291_dirs`;
- an embedded default needing no network, the photographs inside scikit-image:
  `default_images`.

The data root is, in order: the `root` argument (`--root`/`--data` on the command
line), the environment variable SRLIB_DATA, then ~/.cache/srlib. Downloads land in
`<root>/benchmarks/<set>/` and `<root>/DIV2K/DIV2K_<split>_HR/`.

The fetching itself (resumable, verified downloads and safe, atomic extraction) is
`srlib.download`'s; this module knows what to fetch: addresses, sizes, checksums, layouts.
"""

from __future__ import annotations

import argparse
import os
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from urllib.parse import urlparse

from srlib.download import (
    COMPLETE_MARKER,
    download_file,
    extract_archive,
    is_complete,
    require_free_space,
)
from srlib.errors import DownloadError, UsageError
from srlib.imageio import list_images

ENV_DATA_ROOT = "SRLIB_DATA"
DEFAULT_DATA_ROOT = Path("~/.cache/srlib")
# The project's shared data folder next to the repository (CI keeps Set5, Set14 and the
# 291 training images there); searched after the data root when it exists.
SHARED_DIR = Path(__file__).resolve().parents[2] / "shared"


@dataclass(frozen=True)
class Archive:
    """A file to download, with what is known about it (None: not known, not checked)."""

    url: str
    size: int | None
    sha256: str | None


# DIV2K (Agustsson & Timofte, NTIRE 2017), from its official address. Sizes and SHA-256
# as recorded in TensorFlow Datasets' tensorflow_datasets/url_checksums/div2k.txt for
# these exact URLs; the train archive's values also match the Git LFS pointer of the
# Hugging Face mirror goodfellowliu/DIV2K. Not re-measured here (no network); the
# image names 0001-0800.png / 0801-0900.png and the zip's own CRC-32s are checked too.
DIV2K_ARCHIVES = {
    "train": Archive(
        "https://data.vision.ee.ethz.ch/cvl/DIV2K/DIV2K_train_HR.zip",
        3_530_603_713,
        "9d0b9c463f6e35b6c62cc6a930ee2224f670b34c1df841a57670f9acf0f6c335",
    ),
    "valid": Archive(
        "https://data.vision.ee.ethz.ch/cvl/DIV2K/DIV2K_valid_HR.zip",
        448_993_893,
        "20dd31fd84d777bc1cf5d6b7654a3f569c0aec74458ae094122ad1d0489900fc",
    ),
}
DIV2K_NUMBERS = {"train": range(1, 801), "valid": range(801, 901)}

# The benchmark archive EDSR (Lim et al., CVPRW 2017) publishes and most SR code links
# to: HR images plus MATLAB bicubic LR images of Set5, Set14, B100 and Urban100. Its
# authors publish no checksum; size and SHA-256 are those another SR project recorded
# after downloading it (found by code search, one witness, not re-measured here). Only
# the HR folders are extracted, and each set's image count is checked.
BENCHMARK_ARCHIVE = Archive(
    "https://cv.snu.ac.kr/research/EDSR/benchmark.tar",
    250_112_000,
    "80c21c333bbf6ceb5308b7243761f8284478274413a97b96f1d63e9045fd93e8",
)
# set -> (folder inside benchmark.tar, number of HR images)
BENCHMARK_LAYOUT = {
    "Set5": ("benchmark/Set5/HR", 5),
    "Set14": ("benchmark/Set14/HR", 14),
    "BSD100": ("benchmark/B100/HR", 100),
    "Urban100": ("benchmark/Urban100/HR", 100),
}
# Other names the same sets go by in other layouts (EDSR calls BSD100 "B100").
BENCHMARK_ALIASES = {"BSD100": ("BSD100", "B100", "BSDS100")}

# Natural colour photographs shipped inside scikit-image's wheel (skimage/data), so they
# need no download. Left out: greyscale images, synthetic ones (color.png, logo.png,
# chessboard), microscopy (ihc.png), retina.jpg, the mostly black hubble_deep_field.jpg
# and motorcycle_right.png (a near copy of motorcycle_left.png).
DEFAULT_IMAGE_NAMES = (
    "astronaut.png",  # 512 x 512
    "chelsea.png",  # 451 x 300
    "coffee.png",  # 600 x 400
    "rocket.jpg",  # 640 x 427
    "motorcycle_left.png",  # 741 x 500
)


# ---------------------------------------------------------------------------------------
# Finding data
# ---------------------------------------------------------------------------------------


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The data root: `root` if given, else $SRLIB_DATA, else ~/.cache/srlib."""
    if root is not None:
        return Path(root).expanduser()
    return Path(os.environ.get(ENV_DATA_ROOT) or DEFAULT_DATA_ROOT).expanduser()


def _looked(places: Iterable[Path]) -> str:
    return ", ".join(str(p) for p in places)


def benchmark_dir(name: str, root: str | os.PathLike | None = None) -> Path:
    """The folder of HR images of a benchmark set.

    Search order: with `root` given, `<root>/<name>` then `<root>/benchmarks/<name>`
    only; otherwise `<data root>/benchmarks/<name>` then `../shared/benchmarks/<name>`
    next to the repository. A folder holding no images directly but an `HR/` subfolder
    (EDSR's layout) is accepted too, and BSD100 is also found as B100 or BSDS100.

    Args:
        name: Set5, Set14, BSD100, Urban100 (any case), or any folder name under root.
        root: a data folder; None searches the data root and the shared folder.

    Returns:
        The folder holding the images.

    Raises:
        UsageError: not found; the message lists where it looked and how to download.
    """
    canonical = {key.lower(): key for key in BENCHMARK_LAYOUT}.get(name.lower(), name)
    aliases = BENCHMARK_ALIASES.get(canonical, (canonical,))
    if root is not None:
        bases = [Path(root).expanduser(), Path(root).expanduser() / "benchmarks"]
    else:
        bases = [data_root() / "benchmarks", SHARED_DIR / "benchmarks"]
    looked = []
    for base in bases:
        for alias in aliases:
            for folder in (base / alias, base / alias / "HR"):
                looked.append(folder)
                if folder.is_dir() and list_images(folder):
                    return folder
    hint = (
        f"; download it with `srlib download benchmarks --sets {canonical}`"
        if canonical in BENCHMARK_LAYOUT
        else ""
    )
    raise UsageError(f"benchmark set {name!r} not found (looked in {_looked(looked)}){hint}")


def div2k_dir(root: str | os.PathLike | None, split: str) -> Path:
    """The folder of DIV2K HR images for a split ("train": 800 images, "valid": 100).

    Looks for `DIV2K_<split>_HR/` under `<data root>/DIV2K/`, then under the data root.

    Raises:
        UsageError: unknown split, not found, or a folder srlib did not extract holding
            the wrong number of images (a partial copy must not pass for DIV2K).
    """
    if split not in DIV2K_NUMBERS:
        raise UsageError(f"unknown DIV2K split {split!r}; choose from {sorted(DIV2K_NUMBERS)}")
    name, expected = f"DIV2K_{split}_HR", len(DIV2K_NUMBERS[split])
    base = data_root(root)
    candidates = [base / "DIV2K" / name, base / name]
    for folder in candidates:
        if folder.is_dir():
            count = len(list_images(folder))
            if not is_complete(folder) and count != expected:
                raise UsageError(
                    f"{folder}: holds {count} images where DIV2K {split} has {expected}; "
                    f"it looks incomplete: run `srlib download div2k --root {base}`"
                )
            return folder
    raise UsageError(
        f"DIV2K {split} not found (looked in {_looked(candidates)}); download it with "
        f"`srlib download div2k --root {base}` (about 4 GB)"
    )


def train291_dirs(root: str | os.PathLike | None = None) -> list[Path]:
    """The T91 and BSD200 folders that make the 291-image training set.

    Looks for `T91/` and `BSD200/` in `root` or `root/train` when given, otherwise in
    `<data root>/train` and then `../shared/train` next to the repository.

    Raises:
        UsageError: no place holds both folders with images.
    """
    if root is not None:
        bases = [Path(root).expanduser(), Path(root).expanduser() / "train"]
    else:
        bases = [data_root() / "train", SHARED_DIR / "train"]
    for base in bases:
        folders = [base / "T91", base / "BSD200"]
        if all(folder.is_dir() and list_images(folder) for folder in folders):
            return folders
    raise UsageError(
        f"the 291-image training set (T91/ and BSD200/) was not found in {_looked(bases)}; "
        "put both folders in one of them or pass its parent folder"
    )


def default_images() -> list[Path]:
    """The embedded default data: natural photographs inside scikit-image's package.

    Returns:
        Paths of `DEFAULT_IMAGE_NAMES` in the installed skimage/data folder (found
        without importing scikit-image).

    Raises:
        UsageError: scikit-image is not installed or a file is missing from it.
    """
    spec = find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise UsageError("scikit-image is not installed; `pip install scikit-image`")
    folder = Path(next(iter(spec.submodule_search_locations))) / "data"
    paths = [folder / name for name in DEFAULT_IMAGE_NAMES]
    for path in paths:
        if not path.is_file():
            raise UsageError(f"{path}: missing from scikit-image's data; reinstall scikit-image")
    return paths


# ---------------------------------------------------------------------------------------
# The data sets
# ---------------------------------------------------------------------------------------


def _archive_path(folder: Path, entry: Archive) -> Path:
    return folder / Path(urlparse(entry.url).path).name


def _fetch_archive(folder: Path, entry: Archive, progress: bool) -> Path:
    """Download one archive into `folder` after checking there is room for it unpacked."""
    path = _archive_path(folder, entry)
    if entry.size is not None and not path.exists():
        part = path.with_name(path.name + ".part")
        have = part.stat().st_size if part.exists() else 0
        # The archive and its extracted copy (PNGs do not compress further).
        require_free_space(folder, 2 * entry.size - have)
    return download_file(entry.url, path, sha256=entry.sha256, size=entry.size, progress=progress)


def _warn_if_partial(folder: Path) -> None:
    if folder.exists() and not is_complete(folder):
        warnings.warn(f"{folder}: incomplete (no {COMPLETE_MARKER} marker); extracting it again")


def download_div2k(
    root: str | os.PathLike | None = None,
    splits: Iterable[str] = ("train", "valid"),
    *,
    progress: bool = True,
    keep_archives: bool = False,
    archives: dict[str, Archive] | None = None,
) -> dict[str, Path]:
    """Download and extract DIV2K's HR images into `<root>/DIV2K/DIV2K_<split>_HR/`.

    A split whose folder is already complete is skipped; a partial folder is redone.
    After extraction the file names must be exactly 0001.png-0800.png (train) or
    0801.png-0900.png (valid). Needs about 7 GB free for train, 0.9 GB for valid.

    Args:
        root: data root (see `data_root`).
        splits: any of "train", "valid".
        progress: show progress bars.
        keep_archives: keep the zip files after extraction.
        archives: split -> Archive, to use another mirror (default `DIV2K_ARCHIVES`).

    Returns:
        {split: folder}.
    """
    archives = DIV2K_ARCHIVES if archives is None else archives
    base = data_root(root) / "DIV2K"
    folders = {}
    for split in splits:
        if split not in DIV2K_NUMBERS or split not in archives:
            raise UsageError(f"unknown DIV2K split {split!r}; choose from {sorted(DIV2K_NUMBERS)}")
        name = f"DIV2K_{split}_HR"
        target = base / name
        if not is_complete(target):
            _warn_if_partial(target)
            entry = archives[split]
            zip_path = _fetch_archive(base, entry, progress)
            expected = {f"{number:04d}.png" for number in DIV2K_NUMBERS[split]}

            def verify(folder: Path, expected=expected, zip_path=zip_path) -> None:
                found = {path.name for path in folder.iterdir()}
                if found != expected:
                    missing, extra = sorted(expected - found), sorted(found - expected)
                    raise DownloadError(
                        f"{zip_path}: not the DIV2K layout ({len(missing)} expected images "
                        f"missing, e.g. {missing[:2]}; {len(extra)} unexpected, e.g. {extra[:2]})"
                    )

            extract_archive(zip_path, target, subdir=name, verify=verify, sha256=entry.sha256)
            if not keep_archives:
                zip_path.unlink()
        folders[split] = target
    return folders


def download_benchmarks(
    root: str | os.PathLike | None = None,
    sets: Iterable[str] | None = None,
    *,
    progress: bool = True,
    keep_archive: bool = False,
    archive: Archive = BENCHMARK_ARCHIVE,
) -> dict[str, Path]:
    """Download the benchmark archive once and extract the HR images of each set into
    `<root>/benchmarks/<set>/` (skipping sets already complete).

    Args:
        root: data root (see `data_root`).
        sets: names from Set5, Set14, BSD100, Urban100 (any case); None: all four.
        progress: show a progress bar.
        keep_archive: keep benchmark.tar after extraction.
        archive: the archive to fetch (default `BENCHMARK_ARCHIVE`, EDSR's layout).

    Returns:
        {set: folder}.
    """
    by_lower = {name.lower(): name for name in BENCHMARK_LAYOUT}
    names = []
    for name in sets or BENCHMARK_LAYOUT:
        if name.lower() not in by_lower:
            raise UsageError(
                f"unknown benchmark set {name!r}; choose from {list(BENCHMARK_LAYOUT)}"
            )
        names.append(by_lower[name.lower()])
    base = data_root(root) / "benchmarks"
    folders = {name: base / name for name in names}
    todo = [name for name in names if not is_complete(folders[name])]
    if not todo:
        return folders
    tar_path = _fetch_archive(base, archive, progress)
    for name in todo:
        _warn_if_partial(folders[name])
        inner, count = BENCHMARK_LAYOUT[name]

        def verify(folder: Path, name=name, count=count) -> None:
            found = len(list_images(folder))
            if found != count:
                raise DownloadError(f"{tar_path}: {name} has {found} images, {count} expected")

        extract_archive(tar_path, folders[name], subdir=inner, verify=verify, sha256=archive.sha256)
    if not keep_archive:
        tar_path.unlink()
    return folders


# ---------------------------------------------------------------------------------------
# srlib download
# ---------------------------------------------------------------------------------------


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Arguments of `srlib download {benchmarks,div2k}`."""
    parser.add_argument("what", choices=("benchmarks", "div2k"), help="what to download")
    parser.add_argument(
        "--root",
        type=Path,
        default=None,
        help=f"data root (default: ${ENV_DATA_ROOT}, else {DEFAULT_DATA_ROOT})",
    )
    parser.add_argument(
        "--sets",
        nargs="+",
        metavar="SET",
        help=f"benchmark sets (default: {' '.join(BENCHMARK_LAYOUT)})",
    )
    parser.add_argument(
        "--splits",
        nargs="+",
        choices=sorted(DIV2K_NUMBERS),
        help="DIV2K splits (default: train valid; train is 3.5 GB)",
    )
    parser.add_argument("--keep-archives", action="store_true", help="keep the downloaded archives")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Download what `args.what` names; print where each folder is."""
    progress = not args.no_progress
    if args.what == "benchmarks":
        if args.splits:
            raise UsageError("--splits belongs to `srlib download div2k`")
        folders = download_benchmarks(
            args.root, args.sets, progress=progress, keep_archive=args.keep_archives
        )
    else:
        if args.sets:
            raise UsageError("--sets belongs to `srlib download benchmarks`")
        folders = download_div2k(
            args.root,
            args.splits or ("train", "valid"),
            progress=progress,
            keep_archives=args.keep_archives,
        )
    for name, folder in folders.items():
        print(f"{name}: {folder} ({len(list_images(folder))} images)")
    return 0
