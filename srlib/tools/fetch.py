"""Fetching and unpacking files so that nothing half-done ever looks complete.

`fetch` downloads with pooch (checksum checked before the file appears; a file already there
that passes it is kept without a request). `download_file` is srlib's own downloader, kept
only because pooch cannot resume: it writes `<file>.part`, resumes with HTTP Range requests
after an interruption, and checks size and SHA-256 before the rename that makes the file
visible (DIV2K's 3.5 GB zip needs it).

`extract_archive` unpacks a zip or tar; pooch's unpackers are not used because they extract
in place and (on Python < 3.12) without refusing members with absolute paths, `..`, links
leaving the archive or device files, which refuse the whole archive here. `build_folder`
builds any folder hidden beside its target, marks it with a `.complete` file written last
(`is_complete`) and only then renames it into place.

This module knows nothing about particular data sets: `srlib.tools.download` says what to
fetch (addresses, sizes, checksums, layouts) and calls these functions.
"""

from __future__ import annotations

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
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

from tqdm.auto import tqdm

from srlib.data import COMPLETE_MARKER
from srlib.errors import DownloadError

CHUNK_BYTES = 1 << 20


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
