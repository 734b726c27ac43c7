"""`srlib download NAME`: fetch the benchmark sets, DIV2K or the 291 training images into the
data root (`srlib.data.data_root`), so that nothing half-done ever looks complete.

What each data set is (addresses, sizes, SHA-256, archive layouts) is written here; where the
data lands and how it is found is `srlib.data`'s. The benchmark archive and the 291 images are
fetched with pooch (checksum checked before the file appears, files kept as a cache across
interrupted runs). DIV2K's 3.5 GB train zip goes through `download_file`, srlib's own
downloader, because pooch cannot resume a transfer (it resumes with HTTP Range requests).

Archives are unpacked by `extract_archive`, not by pooch's unpackers: pooch extracts in place
and (on Python < 3.12) without refusing members with absolute paths, `..`, links leaving the
archive or device files, which refuse the whole archive here. Every folder is built hidden
beside its target, checked, marked with a `.complete` file written last, then renamed into
place.

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
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

from tqdm.auto import tqdm

from srlib.data import BENCHMARK_SETS, COMPLETE_MARKER, DIV2K_COUNTS, data_root
from srlib.errors import DownloadError, UsageError
from srlib.imageio import list_images

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


def is_complete(folder: str | os.PathLike) -> bool:
    """Whether `folder` was fully built by srlib (its `.complete` marker exists)."""
    return (Path(folder) / COMPLETE_MARKER).is_file()


# ---------------------------------------------------------------------------------------
# Downloading
# ---------------------------------------------------------------------------------------


def fetch(url: str, folder: str | os.PathLike, *, sha256: str | None = None,
          name: str | None = None, progress: bool = True) -> Path:
    """Download `url` into `folder` with pooch, unless a file that passes the check is there.

    Args:
        url: http(s) address.
        folder: where the file goes (created if needed).
        sha256: expected hex digest (checked before the file appears), or None.
        name: file name (default: the last part of the URL's path).
        progress: a progress bar on a terminal or in a notebook.

    Raises:
        DownloadError: HTTP error, no connection, or a checksum mismatch (nothing is kept).
    """
    import pooch
    import requests

    name = name or Path(urlparse(url).path).name
    pooch.get_logger().setLevel("WARNING")  # one line per file is too many for 291 files
    try:
        return Path(pooch.retrieve(url, f"sha256:{sha256}" if sha256 else None, fname=name,
                                   path=folder, progressbar=progress and _interactive()))
    except requests.HTTPError as error:
        status = error.response.status_code if error.response is not None else "error"
        raise DownloadError(f"{url}: HTTP {status}") from None
    except requests.RequestException as error:
        raise DownloadError(f"{url}: cannot download ({type(error).__name__})") from None
    except ValueError as error:  # pooch's checksum mismatch
        if "hash" not in str(error).lower():
            raise
        raise DownloadError(f"{name}: SHA-256 mismatch for {url} (expected {sha256}); "
                            "nothing was kept, rerun to fetch it again") from None


# srlib's own downloader, kept only because pooch cannot resume (DIV2K's 3.5 GB zip needs it).
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


def require_free_space(folder: Path, needed: int) -> None:
    """Fail before a long download rather than at 95 % with a full disk.

    Args:
        folder: where the bytes will go (it may not exist yet: its nearest existing
            ancestor's file system is measured).
        needed: bytes about to be written.

    Raises:
        DownloadError: the file system has less than `needed` bytes free.
    """
    existing = folder
    while not existing.exists():
        existing = existing.parent
    free = shutil.disk_usage(existing).free
    if free < needed:
        raise DownloadError(
            f"{folder}: about {needed / 1e9:.1f} GB needed, only {free / 1e9:.1f} GB free"
        )


# ---------------------------------------------------------------------------------------
# Extracting and placing
# ---------------------------------------------------------------------------------------


def build_folder(target: str | os.PathLike, fill: Callable[[Path], int], source: str) -> Path:
    """Make `target` appear whole or not at all.

    `fill` writes the content into a hidden temporary folder beside `target` and returns
    the number of files; the `.complete` marker (naming `source`) is written last and a
    rename puts the folder in place, replacing an existing, possibly partial `target`.

    Raises:
        DownloadError: `fill` failed (nothing is left behind), or a write error.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{target.name}.tmp-"
    for stale in target.parent.glob(prefix + "*"):  # left by an earlier crash
        _remove(stale)
    temp = Path(tempfile.mkdtemp(dir=target.parent, prefix=prefix))
    try:
        count = fill(temp)
        (temp / COMPLETE_MARKER).write_text(f"{source} files={count}\n")
        if target.exists() or target.is_symlink():
            old = Path(f"{temp}-old")  # keeps the prefix, so a crash here is cleaned later
            os.rename(target, old)
            os.rename(temp, target)
            _remove(old)
        else:
            os.rename(temp, target)
    except OSError as error:
        _remove(temp)
        raise DownloadError(f"{source}: writing {target} failed ({error})") from None
    except BaseException:
        _remove(temp)
        raise
    return target


def extract_archive(
    archive: str | os.PathLike,
    target: str | os.PathLike,
    *,
    subdir: str | None = None,
    verify: Callable[[Path], None] | None = None,
    sha256: str | None = None,
) -> Path:
    """Extract a zip or tar (.tar, .tar.gz, .tar.bz2, .tar.xz) so `target` appears whole
    or not at all (`build_folder`).

    Every member is checked first: an absolute path, a `..` component, a link that
    leaves the archive or a device file refuses the whole archive. Links inside the
    archive are skipped with a warning: srlib's data sets hold none.

    Args:
        archive: the archive file.
        target: the folder to create.
        subdir: extract only the members under this folder of the archive, with that
            prefix removed (e.g. "DIV2K_train_HR").
        verify: called with the temporary folder; raises DownloadError if the content
            is not what was expected.
        sha256: the archive's digest for the marker, if already known (else computed).

    Raises:
        DownloadError: unsafe member, corrupt or truncated archive (CRC, end of data),
            nothing under `subdir`, failed `verify`, or a write error.
    """
    archive = Path(archive)

    def fill(temp: Path) -> int:
        try:
            count = _extract_members(archive, temp, subdir)
        except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error,
                gzip.BadGzipFile, lzma.LZMAError) as error:
            raise DownloadError(f"{archive}: corrupt or truncated archive ({error})") from None
        if count == 0:
            where = f"under '{subdir}/'" if subdir else "at all"
            raise DownloadError(f"{archive}: holds no files {where}")
        if verify is not None:
            verify(temp)
        return count

    return build_folder(target, fill, f"{archive.name} sha256={sha256 or _sha256(archive)}")


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
        require_free_space(dest, sum(info.file_size for info, _ in wanted))
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
        require_free_space(dest, sum(info.size for info, _ in wanted))
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
