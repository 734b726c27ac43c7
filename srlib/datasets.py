"""Where srlib's images come from, and how they are fetched without ever leaving a
half-downloaded file or half-extracted folder that looks complete.

Sources:
- benchmark sets by name (Set5, Set14, BSD100, Urban100): `benchmark_dir`;
- DIV2K (800 train / 100 valid HR images): `div2k_dir`, `download_div2k`;
- the 291-image training set (T91 + BSD200) read from a folder: `train291_dirs`;
- an embedded default needing no network, the photographs inside scikit-image:
  `default_images`.

The data root is, in order: the `root` argument (`--root`/`--data` on the command
line), the environment variable SRLIB_DATA, then ~/.cache/srlib. Downloads land in
`<root>/benchmarks/<set>/` and `<root>/DIV2K/DIV2K_<split>_HR/`.

Downloads (`download_file`) resume from `<file>.part` with HTTP Range requests and are
checked for size and SHA-256 before the rename that makes them visible. Archives
(`extract_archive`) are unpacked into a hidden temporary folder beside the target,
checked, marked with a `.complete` file written last, and only then renamed into place;
members with absolute paths, `..`, links leaving the archive or device files are refused.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import http.client
import lzma
import os
import posixpath
import re
import shutil
import stat
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

from tqdm.auto import tqdm

from srlib.errors import DownloadError, UsageError
from srlib.imageio import list_images

ENV_DATA_ROOT = "SRLIB_DATA"
DEFAULT_DATA_ROOT = Path("~/.cache/srlib")
# The project's shared data folder next to the repository (CI keeps Set5, Set14 and the
# 291 training images there); searched after the data root when it exists.
SHARED_DIR = Path(__file__).resolve().parents[2] / "shared"
COMPLETE_MARKER = ".complete"  # written last into a folder srlib extracted
CHUNK_BYTES = 1 << 20


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


def is_complete(folder: str | os.PathLike) -> bool:
    """Whether `folder` was fully extracted by srlib (its `.complete` marker exists)."""
    return (Path(folder) / COMPLETE_MARKER).is_file()


# ---------------------------------------------------------------------------------------
# Downloading
# ---------------------------------------------------------------------------------------


def download_file(
    url: str,
    dest: str | os.PathLike,
    *,
    sha256: str | None = None,
    size: int | None = None,
    progress: bool = True,
    timeout: float = 60.0,
) -> Path:
    """Download `url` to `dest`, resumably, and verify it before it appears.

    Bytes go to `<dest>.part`; an existing `.part` is resumed with an HTTP Range request
    (a server that ignores Range gets a clean restart). The size and SHA-256, when
    given, are checked before `.part` is renamed to `dest`. An existing `dest` that
    passes the checks is kept without any request.

    Args:
        url: http(s) address.
        dest: final path of the file.
        sha256: expected hex digest, or None to skip that check.
        size: expected size in bytes, or None to trust the server's Content-Length.
        progress: show a tqdm bar (only shown on a terminal or in a notebook).
        timeout: seconds without data before the transfer counts as interrupted.

    Returns:
        `dest`.

    Raises:
        DownloadError: HTTP error, no connection, an interrupted or short transfer (the
            `.part` file is kept: rerun to resume), a size the server reports that
            differs from `size`, or a checksum mismatch (the `.part` file is deleted).
    """
    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    if dest.exists():
        if _file_matches(dest, size, sha256):
            return dest
        dest.unlink()  # an old file that fails the checks is fetched again
    dest.parent.mkdir(parents=True, exist_ok=True)
    if part.exists() and size is not None and part.stat().st_size > size:
        part.unlink()  # longer than the real file: cannot be a prefix of it
    # Two attempts: the second starts from zero when the server refuses to resume.
    for _ in range(2):
        offset = part.stat().st_size if part.exists() else 0
        if size is not None and offset == size:
            break
        if not _fetch(url, part, offset, size, progress, timeout):
            break
        part.unlink(missing_ok=True)
    else:
        raise DownloadError(f"{url}: the server refused to resume or restart the transfer")

    got = part.stat().st_size
    if size is not None and got != size:
        if got < size:
            raise DownloadError(
                f"{url}: transfer ended early ({got:,} of {size:,} bytes); "
                f"{part} is kept: rerun to resume"
            )
        part.unlink()
        raise DownloadError(f"{url}: got {got:,} bytes, expected {size:,}; the file was deleted")
    if sha256 is not None:
        digest = _sha256(part)
        if digest != sha256.lower():
            part.unlink()
            raise DownloadError(
                f"{dest.name}: SHA-256 mismatch for {url} (got {digest}, expected "
                f"{sha256.lower()}); the corrupt download was deleted, rerun to fetch it again"
            )
    os.replace(part, dest)
    return dest


def _fetch(
    url: str, part: Path, offset: int, size: int | None, progress: bool, timeout: float
) -> bool:
    """Append the bytes after `offset` to `part`; True when the caller must restart."""
    headers = {"User-Agent": "srlib"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        response = urllib.request.urlopen(
            urllib.request.Request(url, headers=headers), timeout=timeout
        )
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:
            # Nothing after `offset`: whole if the file has exactly `offset` bytes.
            return _content_range(error.headers.get("Content-Range", ""))[1] != offset
        raise DownloadError(f"{url}: HTTP {error.code} {error.reason}") from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise DownloadError(f"{url}: cannot connect ({reason})") from None

    with response:
        if response.status == 206:
            start, total = _content_range(response.headers.get("Content-Range", ""))
            if start != offset:
                return True
            mode = "ab"
        else:  # 200: no Range sent, or the server ignored it: start over
            offset, mode = 0, "wb"
            length = response.headers.get("Content-Length", "")
            total = int(length) if length.isdigit() else None
        if size is not None and total is not None and total != size:
            raise DownloadError(
                f"{url}: the server offers {total:,} bytes, {size:,} expected; "
                "the file has changed upstream or the address is wrong"
            )
        expected = size if size is not None else total
        received = offset
        bar = tqdm(
            total=expected,
            initial=offset,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=part.name.removesuffix(".part"),
            disable=not (progress and _interactive()),
        )
        try:
            with open(part, mode) as file, bar:
                while chunk := response.read(CHUNK_BYTES):
                    file.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
        except (OSError, http.client.HTTPException) as error:
            raise DownloadError(
                f"{url}: transfer interrupted after {received:,} bytes ({error}); "
                f"{part} is kept: rerun to resume"
            ) from None
    if expected is not None and received < expected:
        raise DownloadError(
            f"{url}: transfer ended early ({received:,} of {expected:,} bytes); "
            f"{part} is kept: rerun to resume"
        )
    return False


def _interactive() -> bool:
    """A terminal or a Jupyter kernel: where a progress bar can redraw itself."""
    return sys.stderr.isatty() or "ipykernel" in sys.modules


def _content_range(header: str) -> tuple[int | None, int | None]:
    """'bytes 100-199/1000' -> (100, 1000); 'bytes */1000' -> (None, 1000)."""
    match = re.fullmatch(r"\s*bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)\s*", header)
    if not match:
        return None, None
    start, total = match.groups()
    return (int(start) if start else None), (int(total) if total != "*" else None)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _file_matches(path: Path, size: int | None, sha256: str | None) -> bool:
    if size is not None and path.stat().st_size != size:
        return False
    return sha256 is None or _sha256(path) == sha256.lower()


def _require_free_space(folder: Path, needed: int) -> None:
    """Fail before a long download rather than at 95 % with a full disk."""
    existing = folder
    while not existing.exists():
        existing = existing.parent
    free = shutil.disk_usage(existing).free
    if free < needed:
        raise DownloadError(
            f"{folder}: about {needed / 1e9:.1f} GB needed, only {free / 1e9:.1f} GB free"
        )


# ---------------------------------------------------------------------------------------
# Extracting
# ---------------------------------------------------------------------------------------


def extract_archive(
    archive: str | os.PathLike,
    target: str | os.PathLike,
    *,
    subdir: str | None = None,
    verify: Callable[[Path], None] | None = None,
    sha256: str | None = None,
) -> Path:
    """Extract a zip or tar (.tar, .tar.gz, .tar.bz2, .tar.xz) so `target` appears whole
    or not at all.

    Every member is checked first: an absolute path, a `..` component, a link that
    leaves the archive or a device file refuses the whole archive. Files are written
    into a hidden temporary folder beside `target`, `verify` runs on it, the
    `.complete` marker is written last, and a rename puts it in place (replacing an
    existing, possibly partial `target`). Links inside the archive are skipped with a
    warning: srlib's data sets hold none.

    Args:
        archive: the archive file.
        target: the folder to create.
        subdir: extract only the members under this folder of the archive, with that
            prefix removed (e.g. "DIV2K_train_HR").
        verify: called with the temporary folder; raises DownloadError if the content
            is not what was expected.
        sha256: the archive's digest for the marker, if already known (else computed).

    Returns:
        `target`.

    Raises:
        DownloadError: unsafe member, corrupt or truncated archive (CRC, end of data),
            nothing under `subdir`, failed `verify`, or a write error.
    """
    archive, target = Path(archive), Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{target.name}.tmp-"
    for stale in target.parent.glob(prefix + "*"):  # left by an earlier crash
        _remove(stale)
    temp = Path(tempfile.mkdtemp(dir=target.parent, prefix=prefix))
    try:
        try:
            count = _extract_members(archive, temp, subdir)
        except (
            zipfile.BadZipFile,
            tarfile.TarError,
            EOFError,
            zlib.error,
            gzip.BadGzipFile,
            lzma.LZMAError,
        ) as error:
            raise DownloadError(f"{archive}: corrupt or truncated archive ({error})") from None
        if count == 0:
            where = f"under '{subdir}/'" if subdir else "at all"
            raise DownloadError(f"{archive}: holds no files {where}")
        if verify is not None:
            verify(temp)
        (temp / COMPLETE_MARKER).write_text(
            f"{archive.name} sha256={sha256 or _sha256(archive)} files={count}\n"
        )
        if target.exists() or target.is_symlink():
            old = Path(f"{temp}-old")  # keeps the prefix, so a crash here is cleaned later
            os.rename(target, old)
            os.rename(temp, target)
            _remove(old)
        else:
            os.rename(temp, target)
    except OSError as error:
        _remove(temp)
        raise DownloadError(f"{archive}: extraction into {target} failed ({error})") from None
    except BaseException:
        _remove(temp)
        raise
    return target


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _member_path(archive: Path, name: str) -> PurePosixPath:
    """A member name as a safe relative path, or DownloadError."""
    text = name.replace("\\", "/")  # zips made on Windows may use backslashes
    if text.startswith("/") or re.match(r"[A-Za-z]:", text):
        raise DownloadError(f"{archive}: member {name!r} has an absolute path; refusing to extract")
    parts = [part for part in text.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise DownloadError(f"{archive}: member {name!r} climbs out with '..'; refusing to extract")
    return PurePosixPath(*parts)


def _check_link(archive: Path, member: PurePosixPath, link: str, hard: bool) -> None:
    """Refuse a link whose target leaves the archive (hard links name archive paths)."""
    if link.startswith("/") or re.match(r"[A-Za-z]:", link):
        raise DownloadError(f"{archive}: link {str(member)!r} -> {link!r} is absolute; refusing")
    base = "" if hard else posixpath.dirname(str(member))
    resolved = posixpath.normpath(posixpath.join(base, link))
    if resolved == ".." or resolved.startswith("../"):
        raise DownloadError(
            f"{archive}: link {str(member)!r} -> {link!r} leaves the archive; refusing"
        )
    warnings.warn(f"{archive}: link {str(member)!r} skipped (srlib extracts regular files only)")


def _strip(path: PurePosixPath, subdir: PurePosixPath | None) -> PurePosixPath | None:
    """`path` relative to `subdir`, or None when it lies outside it (or is `subdir`)."""
    if subdir is None:
        return path if path.parts else None
    if path.parts[: len(subdir.parts)] != subdir.parts or len(path.parts) == len(subdir.parts):
        return None
    return PurePosixPath(*path.parts[len(subdir.parts) :])


def _extract_members(archive: Path, dest: Path, subdir: str | None) -> int:
    """Check every member, then write the files under `subdir` into `dest`; the count."""
    inner = _member_path(archive, subdir) if subdir else None
    # Tar first: is_zipfile only looks for a zip directory near the end, which a tar
    # whose last member is a zip also has.
    try:
        is_tar = tarfile.is_tarfile(archive)
    except OSError:
        is_tar = False
    if is_tar:
        return _extract_tar(archive, dest, inner)
    if zipfile.is_zipfile(archive):
        return _extract_zip(archive, dest, inner)
    raise DownloadError(f"{archive}: not a readable zip or tar archive (truncated or corrupt?)")


def _extract_zip(archive: Path, dest: Path, inner: PurePosixPath | None) -> int:
    with zipfile.ZipFile(archive) as bundle:
        members = bundle.infolist()
        wanted = []
        for info in members:
            path = _member_path(archive, info.filename)
            if stat.S_ISLNK(info.external_attr >> 16):
                _check_link(archive, path, bundle.read(info).decode("utf-8", "replace"), hard=False)
                continue
            relative = _strip(path, inner)
            if relative is not None and not info.is_dir():
                wanted.append((info, relative))
        _require_free_space(dest, sum(info.file_size for info, _ in wanted))
        for info, relative in wanted:
            out = dest.joinpath(*relative.parts)
            out.parent.mkdir(parents=True, exist_ok=True)
            # Reading to the end makes zipfile compare the member's CRC-32.
            with bundle.open(info) as source, open(out, "wb") as target:
                shutil.copyfileobj(source, target, CHUNK_BYTES)
    return len(wanted)


def _extract_tar(archive: Path, dest: Path, inner: PurePosixPath | None) -> int:
    with tarfile.open(archive, "r:*") as bundle:
        wanted = []
        for info in bundle.getmembers():  # reads the whole archive: truncation shows here
            path = _member_path(archive, info.name)
            if info.issym() or info.islnk():
                _check_link(archive, path, info.linkname, hard=info.islnk())
                continue
            if not (info.isfile() or info.isdir()):
                raise DownloadError(
                    f"{archive}: member {info.name!r} is a device file or FIFO; refusing to extract"
                )
            relative = _strip(path, inner)
            if relative is not None and info.isfile():
                wanted.append((info, relative))
        # tarfile reads a cut header as the end of the archive, silently. A whole tar
        # ends with zero blocks; anything else where they belong means truncation.
        bundle.fileobj.seek(bundle.offset)
        end = bundle.fileobj.read(512)
        if len(end) < 512 or end.count(0) != 512:
            raise DownloadError(f"{archive}: truncated archive (no end-of-archive marker)")
        _require_free_space(dest, sum(info.size for info, _ in wanted))
        for info, relative in wanted:
            out = dest.joinpath(*relative.parts)
            out.parent.mkdir(parents=True, exist_ok=True)
            source = bundle.extractfile(info)
            with source, open(out, "wb") as target:
                shutil.copyfileobj(source, target, CHUNK_BYTES)
                written = target.tell()
            # A tar cut inside its last member can read short without an error.
            if written != info.size:
                raise DownloadError(
                    f"{archive}: truncated archive ({info.name!r} has {written:,} of "
                    f"{info.size:,} bytes)"
                )
    return len(wanted)


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
        _require_free_space(folder, 2 * entry.size - have)
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
