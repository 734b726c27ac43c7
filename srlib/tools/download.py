"""`srlib download NAME`: fetch the benchmark sets, DIV2K or the 291 training images into the
data root (`srlib.data.data_root`), so that nothing half-done ever looks complete.

What each data set is (addresses, sizes, SHA-256, archive layouts) is written here; where the
data lands and how it is found is `srlib.data`'s; how files are fetched, checked, unpacked and
put in place is `srlib.tools.fetch`'s. The benchmark archive and the 291 images are fetched
with pooch; DIV2K's 3.5 GB train zip with srlib's resumable downloader. Every folder is built
hidden beside its target, checked, marked with a `.complete` file written last, then renamed
into place.

The 291-image set (T91 + BSD200, as VDSR and LapSRN train) comes file by file from GitHub,
`jiny2001/dcscn-super-resolution` at a fixed commit: BSD200's PNGs are checked by their
SHA-256; T91 is published there as BMP, whose file checksums were not recorded, so each is
checked by the SHA-256 of its decoded RGB pixels and stored as a lossless PNG. The table
`train291.tsv` beside this module was made from the project's shared copy (whose README
records the source) with

    python -m srlib.tools.download ../shared/train > srlib/tools/train291.tsv
"""

from __future__ import annotations

import csv
import hashlib
import os
import shutil
import sys
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

from srlib.data import BENCHMARK_SETS, COMPLETE_MARKER, DIV2K_COUNTS, data_root
from srlib.errors import DownloadError, UsageError
from srlib.imageio import list_images
from srlib.tools.fetch import (
    build_folder,
    download_file,
    extract_archive,
    fetch,
    is_complete,
    require_free_space,
)

CHUNK_BYTES = 1 << 20
DATASETS = ("benchmarks", "div2k", "train291")


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
DIV2K_FIRST = {"train": 1, "valid": 801}  # DIV2K numbers its images across the splits

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
BENCHMARK_FOLDERS = {  # set -> its HR folder inside benchmark.tar
    "Set5": "benchmark/Set5/HR",
    "Set14": "benchmark/Set14/HR",
    "BSD100": "benchmark/B100/HR",
    "Urban100": "benchmark/Urban100/HR",
}

# The 291 images: jiny2001/dcscn-super-resolution at this commit (see the module docstring).
TRAIN291_BASE_URL = ("https://raw.githubusercontent.com/jiny2001/dcscn-super-resolution/"
                     "d382bc30d41c94ac72f8cb148d61cc4864b3b380/data/")
TRAIN291_SOURCES = {"T91": "yang91/{stem}.bmp", "BSD200": "bsd200/{stem}.png"}
TRAIN291_TABLE = Path(__file__).with_name("train291.tsv")
TRAIN291_COLUMNS = ("path", "url", "bytes", "sha256", "width", "height", "pixels_sha256")


@dataclass(frozen=True)
class RemoteImage:
    """One image of a set fetched file by file; None: not known, not checked.

    `path` is where it goes under `<root>/train` (always a PNG); `pixels_sha256` is the
    SHA-256 of its decoded RGB pixels (H, W, 3) uint8 in row order, for files whose bytes
    are converted on the way (BMP -> PNG).
    """

    path: str
    url: str
    size: int | None
    sha256: str | None
    width: int | None = None
    height: int | None = None
    pixels_sha256: str | None = None


def train291_files(table: str | os.PathLike = TRAIN291_TABLE) -> list[RemoteImage]:
    """The 291 images' addresses and checksums, read from `train291.tsv`."""
    with open(table, newline="") as file:
        rows = list(csv.DictReader(file, delimiter="\t"))

    def number(text: str) -> int | None:
        return int(text) if text else None

    return [RemoteImage(row["path"], row["url"], number(row["bytes"]), row["sha256"] or None,
                        number(row["width"]), number(row["height"]),
                        row["pixels_sha256"] or None) for row in rows]


def pixels_sha256(path: str | os.PathLike) -> tuple[str, int, int]:
    """(SHA-256 of the decoded RGB pixels, width, height) of an image file."""
    import numpy as np
    from PIL import Image

    with Image.open(path) as image:
        pixels = np.asarray(image.convert("RGB"))  # (H, W, 3) uint8
    return hashlib.sha256(pixels.tobytes()).hexdigest(), pixels.shape[1], pixels.shape[0]


def make_train291_table(shared: str | os.PathLike) -> str:
    """`train291.tsv` as text, from a copy of the set with its manifest.tsv and SHA256SUMS."""
    shared = Path(shared)
    sums = {}
    for line in (shared / "SHA256SUMS").read_text().splitlines():
        if line.strip():
            digest, path = line.split(None, 1)
            sums[path.strip()] = digest
    with open(shared / "manifest.tsv", newline="") as file:
        manifest = list(csv.DictReader(file, delimiter="\t"))
    lines = ["\t".join(TRAIN291_COLUMNS)]
    for row in manifest:
        folder, name = row["path"].split("/")
        url = TRAIN291_BASE_URL + TRAIN291_SOURCES[folder].format(stem=Path(name).stem)
        if url.endswith(".png"):  # the original bytes
            fields = [row["bytes"], sums[row["path"]], "", "", ""]
        else:  # converted: only the pixels are known
            digest, width, height = pixels_sha256(shared / row["path"])
            fields = ["", "", str(width), str(height), digest]
        lines.append("\t".join([row["path"], url, *fields]))
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------
# The data sets
# ---------------------------------------------------------------------------------------


def _warn_if_partial(folder: Path) -> None:
    if folder.exists() and not is_complete(folder):
        warnings.warn(f"{folder}: incomplete (no {COMPLETE_MARKER} marker); building it again")


def _check_room(folder: Path, entry: Archive) -> None:
    """Room for the archive (less what a `.part` already holds) and its extracted copy."""
    path = folder / Path(urlparse(entry.url).path).name
    if entry.size is not None and not path.exists():
        part = path.with_name(path.name + ".part")
        have = part.stat().st_size if part.exists() else 0
        require_free_space(folder, 2 * entry.size - have)  # PNGs do not compress further


def download_div2k(
    root: str | os.PathLike | None = None,
    splits: Iterable[str] = ("train", "valid"),
    *,
    progress: bool = True,
    keep_archives: bool = False,
    archives: dict[str, Archive] | None = None,
) -> dict[str, Path]:
    """Download and extract DIV2K's HR images into `<root>/DIV2K/DIV2K_<split>_HR/`.

    A split whose folder is already complete is skipped; a partial folder is redone; an
    interrupted download resumes. After extraction the file names must be exactly
    0001.png-0800.png (train) or 0801.png-0900.png (valid). Needs about 7 GB free for
    train, 0.9 GB for valid.

    Args:
        root: data root (see `srlib.data.data_root`).
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
        if split not in DIV2K_COUNTS or split not in archives:
            raise UsageError(f"unknown DIV2K split {split!r}; choose from {sorted(DIV2K_COUNTS)}")
        name = f"DIV2K_{split}_HR"
        target = base / name
        if not is_complete(target):
            _warn_if_partial(target)
            entry = archives[split]
            _check_room(base, entry)
            zip_path = download_file(entry.url, base / Path(urlparse(entry.url).path).name,
                                     sha256=entry.sha256, size=entry.size, progress=progress)
            first = DIV2K_FIRST[split]
            expected = {f"{n:04d}.png" for n in range(first, first + DIV2K_COUNTS[split])}

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
        root: data root (see `srlib.data.data_root`).
        sets: names from Set5, Set14, BSD100, Urban100 (any case); None: all four.
        progress: show a progress bar.
        keep_archive: keep benchmark.tar after extraction.
        archive: the archive to fetch (default `BENCHMARK_ARCHIVE`, EDSR's layout).

    Returns:
        {set: folder}.
    """
    by_lower = {name.lower(): name for name in BENCHMARK_FOLDERS}
    names = []
    for name in sets or BENCHMARK_FOLDERS:
        if name.lower() not in by_lower:
            raise UsageError(f"unknown benchmark set {name!r}; choose from {list(BENCHMARK_FOLDERS)}")
        names.append(by_lower[name.lower()])
    base = data_root(root) / "benchmarks"
    folders = {name: base / name for name in names}
    todo = [name for name in names if not is_complete(folders[name])]
    if not todo:
        return folders
    _check_room(base, archive)
    tar_path = fetch(archive.url, base, sha256=archive.sha256, progress=progress)
    for name in todo:
        _warn_if_partial(folders[name])
        count = BENCHMARK_SETS[name]

        def verify(folder: Path, name=name, count=count) -> None:
            found = len(list_images(folder))
            if found != count:
                raise DownloadError(f"{tar_path}: {name} has {found} images, {count} expected")

        extract_archive(tar_path, folders[name], subdir=BENCHMARK_FOLDERS[name], verify=verify,
                        sha256=archive.sha256)
    if not keep_archive:
        tar_path.unlink()
    return folders


def download_train291(
    root: str | os.PathLike | None = None,
    *,
    progress: bool = True,
    files: list[RemoteImage] | None = None,
) -> dict[str, Path]:
    """Download the 291-image training set into `<root>/train/T91/` and `<root>/train/BSD200/`.

    Each file is checked (SHA-256 of its bytes, or of its decoded pixels for T91's BMPs,
    which are stored as PNG) before its folder appears. Files fetched before an
    interruption are kept in `<root>/train/.<set>.download/` and not fetched again.

    Args:
        root: data root (see `srlib.data.data_root`).
        progress: progress bars (one per file) on a terminal.
        files: the images to fetch (default `train291_files()`; tests pass a small table).

    Returns:
        {"T91": folder, "BSD200": folder}.

    Raises:
        DownloadError: a file cannot be fetched or fails its check (the bad file is
            deleted, the others are kept: rerun to continue).
    """
    files = train291_files() if files is None else files
    base = data_root(root) / "train"
    groups: dict[str, list[RemoteImage]] = {}
    for entry in files:
        groups.setdefault(PurePosixPath(entry.path).parts[0], []).append(entry)
    folders = {}
    for name, entries in groups.items():
        target = folders[name] = base / name
        if is_complete(target):
            continue
        _warn_if_partial(target)
        cache = base / f".{name}.download"

        def fill(temp: Path, entries=entries, cache=cache) -> int:
            for entry in entries:
                raw = fetch(entry.url, cache, sha256=entry.sha256, progress=progress)
                out = temp / PurePosixPath(entry.path).name
                if entry.pixels_sha256 is None:
                    shutil.copyfile(raw, out)
                else:
                    _convert_checked(raw, out, entry)
            return len(entries)

        build_folder(target, fill, f"{TRAIN291_BASE_URL} ({len(entries)} files)")
        shutil.rmtree(cache, ignore_errors=True)
    return folders


def _convert_checked(raw: Path, out: Path, entry: RemoteImage) -> None:
    """Check a converted image's pixels against the table, then store it as PNG."""
    from PIL import Image

    try:
        digest, width, height = pixels_sha256(raw)
    except OSError as error:
        raw.unlink()
        raise DownloadError(f"{raw}: not a readable image ({error}); deleted, rerun to fetch it "
                            "again") from None
    if digest != entry.pixels_sha256 or (width, height) != (entry.width, entry.height):
        raw.unlink()
        raise DownloadError(f"{raw.name}: pixel SHA-256 mismatch for {entry.url} (got {digest}, "
                            f"{width}x{height}; expected {entry.pixels_sha256}, "
                            f"{entry.width}x{entry.height}); deleted, rerun to fetch it again")
    with Image.open(raw) as image:
        image.convert("RGB").save(out, format="PNG", optimize=True)


if __name__ == "__main__":
    # python -m srlib.tools.download SHARED_TRAIN_FOLDER > srlib/tools/train291.tsv
    if len(sys.argv) != 2:
        sys.exit("usage: python -m srlib.tools.download SHARED_TRAIN_FOLDER > train291.tsv")
    sys.stdout.write(make_train291_table(sys.argv[1]))
