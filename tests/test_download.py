"""`srlib download`: the downloaders and the archive extractor (srlib.tools.fetch) and the
data sets (srlib.tools.download), against a local HTTP server.

No test reaches the internet: `server` is an http.server on 127.0.0.1 (port 0) serving
archives the tests build, with HTTP Range support and modes that cut a transfer short,
ignore Range, or answer with an error status.
"""

from __future__ import annotations

import hashlib
import io
import re
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from srlib.data import COMPLETE_MARKER, benchmark_dir, div2k_dir, train291_dirs
from srlib.errors import DownloadError, UsageError
from srlib.imageio import list_images
from srlib.tools import cli, download, fetch
from srlib.tools.download import (
    DIV2K_ARCHIVES,
    Archive,
    RemoteImage,
    download_benchmarks,
    download_div2k,
    download_train291,
    pixels_sha256,
    train291_files,
)
from srlib.tools.fetch import download_file, extract_archive, is_complete

SHARED = Path(__file__).resolve().parents[2] / "shared"


# ---------------------------------------------------------------------------------------
# A local HTTP server with Range support
# ---------------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        server = self.server
        name = self.path.lstrip("/")
        range_header = self.headers.get("Range")
        server.requests.append((name, range_header))
        if name not in server.files:
            self.send_error(404, "Not Found")
            return
        data = server.files[name]
        mode = server.modes.get(name, {})
        if "status" in mode:
            self.send_error(mode["status"])
            return
        start, status = 0, 200
        if range_header and not mode.get("ignore_range"):
            match = re.fullmatch(r"bytes=(\d+)-", range_header)
            start = int(match[1])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        body = data[start:]
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        cut = mode.pop("cut_at_once", None)  # promise the whole body, send part, hang up
        if cut is not None:
            self.wfile.write(body[: max(0, cut - start)])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)

    def log_message(self, *args):  # keep pytest's output clean
        pass


class LocalServer:
    def __init__(self):
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.files, self.httpd.modes, self.httpd.requests = {}, {}, []
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def add(self, name: str, data: bytes, **mode) -> str:
        self.httpd.files[name] = data
        self.httpd.modes[name] = mode
        return self.url(name)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"

    @property
    def requests(self) -> list:
        return self.httpd.requests

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    local = LocalServer()
    yield local
    local.close()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tiny_png(seed: int = 0) -> bytes:
    buffer = io.BytesIO()
    pixels = np.random.default_rng(seed).integers(0, 256, (4, 4, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def make_zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as bundle:
        for name, data in members.items():
            bundle.writestr(name, data)
    return buffer.getvalue()


def make_tar(members: dict[str, bytes], *, mode: str = "w", extra=()) -> bytes:
    """A tar of regular files plus `extra` TarInfo entries (links, devices)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as bundle:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            bundle.addfile(info, io.BytesIO(data))
        for info in extra:
            bundle.addfile(info)
    return buffer.getvalue()


def leftovers(folder: Path) -> list[str]:
    """Hidden temporary folders or .part files an operation left behind."""
    return sorted(p.name for p in folder.iterdir() if ".tmp-" in p.name or p.name.endswith(".part"))


# ---------------------------------------------------------------------------------------
# download_file
# ---------------------------------------------------------------------------------------

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB, every byte value


def test_download_verifies_and_renames(server, tmp_path):
    url = server.add("file.bin", PAYLOAD)
    dest = download_file(
        url, tmp_path / "file.bin", sha256=sha256(PAYLOAD), size=len(PAYLOAD), progress=False
    )
    assert dest.read_bytes() == PAYLOAD
    assert leftovers(tmp_path) == []


def test_interrupted_transfer_resumes_with_range(server, tmp_path):
    half = len(PAYLOAD) // 2 + 123
    url = server.add("file.bin", PAYLOAD, cut_at_once=half)
    dest = tmp_path / "file.bin"
    with pytest.raises(DownloadError) as error:
        download_file(url, dest, sha256=sha256(PAYLOAD), size=len(PAYLOAD), progress=False)
    message = str(error.value)
    assert url in message and "rerun to resume" in message and "\n" not in message
    assert not dest.exists()  # nothing that looks complete
    part = tmp_path / "file.bin.part"
    assert part.stat().st_size == half

    download_file(url, dest, sha256=sha256(PAYLOAD), size=len(PAYLOAD), progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert server.requests[-1] == ("file.bin", f"bytes={half}-")  # resumed, not restarted
    assert leftovers(tmp_path) == []


def test_short_transfer_without_known_size_is_caught_from_content_length(server, tmp_path):
    url = server.add("file.bin", PAYLOAD, cut_at_once=1000)
    with pytest.raises(DownloadError, match=r"1,000 of 1,048,576 bytes.*rerun to resume"):
        download_file(url, tmp_path / "file.bin", progress=False)
    download_file(url, tmp_path / "file.bin", progress=False)
    assert (tmp_path / "file.bin").read_bytes() == PAYLOAD


def test_server_ignoring_range_restarts_cleanly(server, tmp_path):
    url = server.add("file.bin", PAYLOAD, ignore_range=True)
    (tmp_path / "file.bin.part").write_bytes(b"stale bytes from another file")
    dest = download_file(
        url, tmp_path / "file.bin", sha256=sha256(PAYLOAD), size=len(PAYLOAD), progress=False
    )
    assert dest.read_bytes() == PAYLOAD


def test_part_file_that_is_already_whole_is_verified_without_download(server, tmp_path):
    url = server.add("file.bin", PAYLOAD)
    (tmp_path / "file.bin.part").write_bytes(PAYLOAD)
    download_file(
        url, tmp_path / "file.bin", sha256=sha256(PAYLOAD), size=len(PAYLOAD), progress=False
    )
    assert server.requests == []
    # Without a known size the server answers 416 to the Range request: whole too.
    (tmp_path / "b.bin.part").write_bytes(PAYLOAD)
    download_file(
        server.add("b.bin", PAYLOAD), tmp_path / "b.bin", sha256=sha256(PAYLOAD), progress=False
    )
    assert (tmp_path / "b.bin").read_bytes() == PAYLOAD


def test_checksum_mismatch_deletes_the_download(server, tmp_path):
    url = server.add("file.bin", PAYLOAD)
    with pytest.raises(DownloadError) as error:
        download_file(url, tmp_path / "file.bin", sha256="0" * 64, progress=False)
    assert "SHA-256 mismatch" in str(error.value) and url in str(error.value)
    assert list(tmp_path.iterdir()) == []


def test_resumed_part_file_with_wrong_bytes_fails_the_checksum_and_is_deleted(server, tmp_path):
    # A .part left by another file of the same name: resuming appends the right tail to the
    # wrong head, which only the checksum can notice.
    url = server.add("file.bin", PAYLOAD)
    (tmp_path / "file.bin.part").write_bytes(b"\xff" * 1000)
    with pytest.raises(DownloadError, match="SHA-256 mismatch") as error:
        download_file(
            url, tmp_path / "file.bin", sha256=sha256(PAYLOAD), size=len(PAYLOAD), progress=False
        )
    assert "\n" not in str(error.value)
    assert server.requests == [("file.bin", "bytes=1000-")]  # it did resume
    assert list(tmp_path.iterdir()) == []  # neither the file nor the bad .part is left
    download_file(
        url, tmp_path / "file.bin", sha256=sha256(PAYLOAD), size=len(PAYLOAD), progress=False
    )
    assert (tmp_path / "file.bin").read_bytes() == PAYLOAD


def test_truncated_file_on_the_server_is_refused_before_downloading(server, tmp_path):
    url = server.add("file.bin", PAYLOAD[:5000])  # a complete response of a cut file
    with pytest.raises(DownloadError, match="offers 5,000 bytes, 1,048,576 expected"):
        download_file(url, tmp_path / "file.bin", size=len(PAYLOAD), progress=False)
    assert not (tmp_path / "file.bin").exists()


def test_http_errors_name_the_url(server, tmp_path):
    with pytest.raises(DownloadError) as error:
        download_file(server.url("missing.zip"), tmp_path / "x", progress=False)
    assert "HTTP 404" in str(error.value) and server.url("missing.zip") in str(error.value)
    url = server.add("broken.zip", b"", status=503)
    with pytest.raises(DownloadError, match="HTTP 503"):
        download_file(url, tmp_path / "y", progress=False)
    assert list(tmp_path.iterdir()) == []


def test_connection_refused(tmp_path):
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(DownloadError, match="cannot connect"):
        download_file(
            f"http://127.0.0.1:{port}/x.zip", tmp_path / "x.zip", progress=False, timeout=5
        )


def test_existing_good_file_is_kept_and_bad_one_replaced(server, tmp_path):
    url = server.add("file.bin", PAYLOAD)
    dest = tmp_path / "file.bin"
    dest.write_bytes(PAYLOAD)
    download_file(url, dest, sha256=sha256(PAYLOAD), progress=False)
    assert server.requests == []
    dest.write_bytes(b"corrupted")
    download_file(url, dest, sha256=sha256(PAYLOAD), progress=False)
    assert dest.read_bytes() == PAYLOAD


def test_progress_bar_does_not_break_a_download(server, tmp_path):
    url = server.add("file.bin", PAYLOAD)
    download_file(url, tmp_path / "file.bin", progress=True)
    assert (tmp_path / "file.bin").read_bytes() == PAYLOAD


# ---------------------------------------------------------------------------------------
# extract_archive
# ---------------------------------------------------------------------------------------


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def assert_nothing_extracted(tmp_path: Path, target: Path) -> None:
    assert not target.exists()
    assert leftovers(target.parent) == []
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path.parent / "evil.txt").exists()


@pytest.mark.parametrize("kind", ["zip", "tar", "tar.gz"])
def test_extract_zip_and_tar_with_subdir(tmp_path, kind):
    members = {
        "top/sub/a.png": tiny_png(1),
        "top/sub/deeper/b.png": tiny_png(2),
        "top/other.txt": b"x",
    }
    data = (
        make_zip(members)
        if kind == "zip"
        else make_tar(members, mode="w:gz" if kind == "tar.gz" else "w")
    )
    archive = write(tmp_path / f"a.{kind}", data)
    target = extract_archive(archive, tmp_path / "out", subdir="top/sub")
    assert (target / "a.png").read_bytes() == tiny_png(1)
    assert (target / "deeper" / "b.png").read_bytes() == tiny_png(2)
    assert not (target / "other.txt").exists()
    assert is_complete(target)
    assert f"sha256={sha256(data)}" in (target / COMPLETE_MARKER).read_text()
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("member", "why"),
    [
        ("../evil.txt", "'..'"),
        ("ok/../../evil.txt", "'..'"),
        ("/tmp/evil.txt", "absolute"),
        ("C:/evil.txt", "absolute"),
    ],
)
@pytest.mark.parametrize("kind", ["zip", "tar"])
def test_members_escaping_the_target_are_refused(tmp_path, member, why, kind):
    members = {"good.png": tiny_png(), member: b"pwned"}
    archive = write(
        tmp_path / f"evil.{kind}", make_zip(members) if kind == "zip" else make_tar(members)
    )
    target = tmp_path / "sub" / "out"
    with pytest.raises(DownloadError, match=why) as error:
        extract_archive(archive, target)
    assert str(archive) in str(error.value)
    assert_nothing_extracted(tmp_path, target)


def link_info(name: str, target: str, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


@pytest.mark.parametrize(
    "link",
    [
        link_info("link", "/etc/passwd", tarfile.SYMTYPE),
        link_info("dir/link", "../../evil.txt", tarfile.SYMTYPE),
        link_info("hard", "../evil.txt", tarfile.LNKTYPE),
    ],
)
def test_links_leaving_the_archive_are_refused(tmp_path, link):
    archive = write(tmp_path / "links.tar", make_tar({"good.png": tiny_png()}, extra=[link]))
    with pytest.raises(DownloadError, match="link"):
        extract_archive(archive, tmp_path / "out")
    assert_nothing_extracted(tmp_path, tmp_path / "out")


def test_device_files_are_refused(tmp_path):
    device = tarfile.TarInfo("dev/null")
    device.type = tarfile.CHRTYPE
    archive = write(tmp_path / "dev.tar", make_tar({"good.png": tiny_png()}, extra=[device]))
    with pytest.raises(DownloadError, match="device file"):
        extract_archive(archive, tmp_path / "out")
    assert_nothing_extracted(tmp_path, tmp_path / "out")


def test_links_inside_the_archive_are_skipped_with_a_warning(tmp_path):
    link = link_info("alias.png", "good.png", tarfile.SYMTYPE)
    archive = write(tmp_path / "in.tar", make_tar({"good.png": tiny_png()}, extra=[link]))
    with pytest.warns(UserWarning, match="alias.png"):
        target = extract_archive(archive, tmp_path / "out")
    assert sorted(p.name for p in target.iterdir()) == [COMPLETE_MARKER, "good.png"]


# Cuts inside members, at a member boundary (two thirds of the tar: after its 20 members,
# before the end blocks) and a zip's last byte (in its central directory's end record).
# (A tar's last byte is record padding after the end marker: cutting it loses nothing.)
@pytest.mark.parametrize(
    ("kind", "keep"),
    [(kind, keep) for kind in ("zip", "tar", "tar.gz") for keep in (1 / 3, 1 / 2, 2 / 3)]
    + [("zip", -1)],
)
def test_truncated_archive_leaves_nothing(tmp_path, kind, keep):
    members = {f"img/{i:04d}.png": tiny_png(i) for i in range(20)}
    data = (
        make_zip(members)
        if kind == "zip"
        else make_tar(members, mode="w:gz" if kind == "tar.gz" else "w")
    )
    end = int(len(data) * keep) if keep > 0 else len(data) + keep
    archive = write(tmp_path / f"cut.{kind}", data[:end])
    with pytest.raises(DownloadError, match="truncated|corrupt") as error:
        extract_archive(archive, tmp_path / "out")
    assert str(archive) in str(error.value)
    assert_nothing_extracted(tmp_path, tmp_path / "out")


def test_corrupt_zip_member_fails_its_crc(tmp_path):
    data = bytearray(make_zip({"a.bin": bytes(range(256)) * 64}))
    # Stored deflate data starts after the 30-byte local header and the name.
    data[40] ^= 0xFF
    archive = write(tmp_path / "crc.zip", bytes(data))
    with pytest.raises(DownloadError, match="corrupt or truncated"):
        extract_archive(archive, tmp_path / "out")
    assert_nothing_extracted(tmp_path, tmp_path / "out")


def test_not_an_archive(tmp_path):
    archive = write(tmp_path / "x.zip", b"<html>rate limited</html>")
    with pytest.raises(DownloadError, match="not a readable zip or tar"):
        extract_archive(archive, tmp_path / "out")


def test_existing_partial_folder_is_replaced_and_stale_temp_removed(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "0001.png").write_bytes(b"half written")  # no marker: an interrupted copy
    stale = tmp_path / ".out.tmp-crashed"
    stale.mkdir()
    archive = write(
        tmp_path / "a.zip", make_zip({"d/0001.png": tiny_png(1), "d/0002.png": tiny_png(2)})
    )
    extract_archive(archive, target, subdir="d")
    assert (target / "0001.png").read_bytes() == tiny_png(1)
    assert is_complete(target)
    assert leftovers(tmp_path) == []


def test_failed_verify_keeps_the_old_folder_and_leaves_no_temp(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "keep.png").write_bytes(b"old")
    archive = write(tmp_path / "a.zip", make_zip({"x.png": tiny_png()}))

    def verify(folder: Path) -> None:
        raise DownloadError("content check failed")

    with pytest.raises(DownloadError, match="content check failed"):
        extract_archive(archive, target, verify=verify)
    assert (target / "keep.png").read_bytes() == b"old"
    assert leftovers(tmp_path) == []


def test_empty_subdir_is_an_error(tmp_path):
    archive = write(tmp_path / "a.zip", make_zip({"x/a.png": tiny_png()}))
    with pytest.raises(DownloadError, match="no files under 'y/'"):
        extract_archive(archive, tmp_path / "out", subdir="y")


def test_full_disk_is_reported_before_writing(tmp_path, monkeypatch):
    archive = write(tmp_path / "a.zip", make_zip({"x/a.png": tiny_png()}))
    monkeypatch.setattr(fetch.shutil, "disk_usage", lambda path: type("U", (), {"free": 10})())
    with pytest.raises(DownloadError, match="GB needed"):
        extract_archive(archive, tmp_path / "out")
    assert_nothing_extracted(tmp_path, tmp_path / "out")


# ---------------------------------------------------------------------------------------
# DIV2K and benchmarks end to end, from the local server
# ---------------------------------------------------------------------------------------


def div2k_valid_zip(numbers=range(801, 901)) -> bytes:
    png = tiny_png()
    return make_zip({f"DIV2K_valid_HR/{n:04d}.png": png for n in numbers})


def local_div2k(server: LocalServer, data: bytes, **mode) -> dict[str, Archive]:
    url = server.add("DIV2K_valid_HR.zip", data, **mode)
    return {"valid": Archive(url, len(data), sha256(data))}


def test_download_div2k_extracts_verified_layout(server, tmp_path):
    archives = local_div2k(server, div2k_valid_zip())
    folders = download_div2k(tmp_path, ["valid"], archives=archives, progress=False)
    folder = tmp_path / "DIV2K" / "DIV2K_valid_HR"
    assert folders == {"valid": folder}
    assert len(list_images(folder)) == 100 and is_complete(folder)
    assert not (tmp_path / "DIV2K" / "DIV2K_valid_HR.zip").exists()  # archive removed
    assert div2k_dir(tmp_path, "valid") == folder
    # A second call finds the complete folder and makes no request.
    count = len(server.requests)
    download_div2k(tmp_path, ["valid"], archives=archives, progress=False)
    assert len(server.requests) == count


def test_download_div2k_resumes_after_an_interruption(server, tmp_path):
    data = div2k_valid_zip()
    archives = local_div2k(server, data, cut_at_once=len(data) // 3)
    with pytest.raises(DownloadError, match="rerun to resume"):
        download_div2k(tmp_path, ["valid"], archives=archives, progress=False)
    assert not (tmp_path / "DIV2K" / "DIV2K_valid_HR").exists()
    download_div2k(tmp_path, ["valid"], archives=archives, progress=False)
    assert len(list_images(tmp_path / "DIV2K" / "DIV2K_valid_HR")) == 100
    assert server.requests[-1][1] == f"bytes={len(data) // 3}-"


def test_download_div2k_refuses_an_archive_with_missing_images(server, tmp_path):
    archives = local_div2k(server, div2k_valid_zip(range(801, 900)))  # 0900.png missing
    with pytest.raises(DownloadError, match=r"1 expected images missing, e\.g\. \['0900.png'\]"):
        download_div2k(tmp_path, ["valid"], archives=archives, progress=False)
    assert not (tmp_path / "DIV2K" / "DIV2K_valid_HR").exists()


def test_download_div2k_redoes_a_partial_folder(server, tmp_path):
    partial = tmp_path / "DIV2K" / "DIV2K_valid_HR"
    partial.mkdir(parents=True)
    (partial / "0801.png").write_bytes(tiny_png())
    with pytest.raises(UsageError, match="holds 1 images where DIV2K valid has 100"):
        div2k_dir(tmp_path, "valid")
    with pytest.warns(UserWarning, match="incomplete"):
        download_div2k(
            tmp_path, ["valid"], archives=local_div2k(server, div2k_valid_zip()), progress=False
        )
    assert len(list_images(partial)) == 100 and is_complete(partial)


def test_download_div2k_checks_free_space_first(server, tmp_path, monkeypatch):
    archives = local_div2k(server, div2k_valid_zip())
    monkeypatch.setattr(fetch.shutil, "disk_usage", lambda path: type("U", (), {"free": 100})())
    with pytest.raises(DownloadError, match="GB needed"):
        download_div2k(tmp_path, ["valid"], archives=archives, progress=False)
    assert server.requests == []


def edsr_like_tar(counts=None) -> bytes:
    counts = counts or {"Set5": 5, "Set14": 14, "B100": 100, "Urban100": 100}
    png = tiny_png()
    members = {}
    for folder, count in counts.items():
        for i in range(count):
            members[f"benchmark/{folder}/HR/img{i:03d}.png"] = png
            members[f"benchmark/{folder}/LR_bicubic/X2/img{i:03d}x2.png"] = png
    return make_tar(members)


def test_download_benchmarks_extracts_hr_folders(server, tmp_path):
    data = edsr_like_tar()
    archive = Archive(server.add("benchmark.tar", data), len(data), sha256(data))
    folders = download_benchmarks(tmp_path, ["set5", "BSD100"], archive=archive, progress=False)
    assert folders == {
        "Set5": tmp_path / "benchmarks" / "Set5",
        "BSD100": tmp_path / "benchmarks" / "BSD100",
    }
    assert len(list_images(folders["Set5"])) == 5 and len(list_images(folders["BSD100"])) == 100
    assert not (folders["Set5"] / "LR_bicubic").exists()
    assert benchmark_dir("bsd100", tmp_path) == folders["BSD100"]
    assert not (tmp_path / "benchmarks" / "benchmark.tar").exists()
    count = len(server.requests)
    download_benchmarks(tmp_path, ["Set5"], archive=archive, progress=False)
    assert len(server.requests) == count  # already complete: no download


def test_download_benchmarks_checks_counts_and_names(server, tmp_path):
    data = edsr_like_tar({"Set5": 4})
    archive = Archive(server.add("benchmark.tar", data), len(data), sha256(data))
    with pytest.raises(DownloadError, match="Set5 has 4 images, 5 expected"):
        download_benchmarks(tmp_path, ["Set5"], archive=archive, progress=False)
    assert not (tmp_path / "benchmarks" / "Set5").exists()
    with pytest.raises(UsageError, match="unknown benchmark set 'Set6'"):
        download_benchmarks(tmp_path, ["Set6"], archive=archive, progress=False)


def test_recorded_archive_facts_are_well_formed():
    for entry in (*DIV2K_ARCHIVES.values(), download.BENCHMARK_ARCHIVE):
        assert entry.url.startswith("https://")
        assert re.fullmatch(r"[0-9a-f]{64}", entry.sha256)
    assert DIV2K_ARCHIVES["train"].size == 3_530_603_713
    assert DIV2K_ARCHIVES["valid"].size == 448_993_893


# ---------------------------------------------------------------------------------------
# The 291 training images
# ---------------------------------------------------------------------------------------


def test_the_train291_table_lists_291_checked_images():
    files = train291_files()
    assert len(files) == 291
    t91 = [entry for entry in files if entry.path.startswith("T91/")]
    bsd200 = [entry for entry in files if entry.path.startswith("BSD200/")]
    assert len(t91) == 91 and len(bsd200) == 200
    assert all(entry.url.endswith(".bmp") and re.fullmatch(r"[0-9a-f]{64}", entry.pixels_sha256)
               and entry.sha256 is None for entry in t91)
    assert all(entry.url.endswith(".png") and re.fullmatch(r"[0-9a-f]{64}", entry.sha256)
               and entry.size > 0 for entry in bsd200)
    assert all("d382bc30d41c94ac72f8cb148d61cc4864b3b380" in entry.url for entry in files)


def test_the_train291_table_matches_the_shared_copy():
    if not (SHARED / "train" / "T91").is_dir():
        pytest.skip(f"{SHARED / 'train'} not present")
    for entry in train291_files()[::29]:  # a sample: every image would take a while
        path = SHARED / "train" / entry.path
        if entry.sha256:
            assert sha256(path.read_bytes()) == entry.sha256
        else:
            assert pixels_sha256(path) == (entry.pixels_sha256, entry.width, entry.height)


def bmp(seed: int) -> bytes:
    buffer = io.BytesIO()
    pixels = np.random.default_rng(seed).integers(0, 256, (5, 6, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(buffer, format="BMP")
    return buffer.getvalue()


def fake_train291(server: LocalServer, tmp_path: Path, **modes) -> list[RemoteImage]:
    """A three-file table: two T91 BMPs (checked by pixels) and one BSD200 PNG (by bytes)."""
    entries = []
    for index, name in enumerate(["t1", "t2"]):
        data = bmp(index)
        source = tmp_path / f"{name}.bmp"
        source.write_bytes(data)
        digest, width, height = pixels_sha256(source)
        url = server.add(f"yang91/{name}.bmp", data, **modes.get(name, {}))
        entries.append(RemoteImage(f"T91/{name}.png", url, None, None, width, height, digest))
    png = tiny_png(7)
    url = server.add("bsd200/100075.png", png, **modes.get("100075", {}))
    entries.append(RemoteImage("BSD200/100075.png", url, len(png), sha256(png)))
    return entries


def test_download_train291_checks_converts_and_places(server, tmp_path):
    files = fake_train291(server, tmp_path)
    folders = download_train291(tmp_path / "data", files=files, progress=False)
    train = tmp_path / "data" / "train"
    assert folders == {"T91": train / "T91", "BSD200": train / "BSD200"}
    assert sorted(p.name for p in list_images(train / "T91")) == ["t1.png", "t2.png"]
    assert Image.open(train / "T91" / "t1.png").format == "PNG"
    assert pixels_sha256(train / "T91" / "t1.png")[0] == files[0].pixels_sha256  # lossless
    assert (train / "BSD200" / "100075.png").read_bytes() == tiny_png(7)
    assert is_complete(train / "T91") and is_complete(train / "BSD200")
    assert sorted(p.name for p in train.iterdir()) == ["BSD200", "T91"]  # no cache left
    assert train291_dirs(tmp_path / "data") == [train / "T91", train / "BSD200"]
    count = len(server.requests)
    download_train291(tmp_path / "data", files=files, progress=False)
    assert len(server.requests) == count  # complete: nothing fetched again


def test_download_train291_refuses_wrong_pixels_and_wrong_bytes(server, tmp_path):
    files = fake_train291(server, tmp_path)
    wrong_pixels = [files[0], RemoteImage(**{**files[1].__dict__, "pixels_sha256": "0" * 64}),
                    files[2]]
    with pytest.raises(DownloadError, match="pixel SHA-256 mismatch") as error:
        download_train291(tmp_path / "a", files=wrong_pixels, progress=False)
    assert "\n" not in str(error.value)
    assert not (tmp_path / "a" / "train" / "T91").exists()
    wrong_bytes = [files[2].__class__(**{**files[2].__dict__, "sha256": "0" * 64})]
    with pytest.raises(DownloadError, match="SHA-256 mismatch"):
        download_train291(tmp_path / "b", files=wrong_bytes, progress=False)
    assert not (tmp_path / "b" / "train" / "BSD200").exists()


def test_download_train291_resumes_where_it_stopped(server, tmp_path):
    files = fake_train291(server, tmp_path, t2={"status": 503})
    with pytest.raises(DownloadError, match="HTTP 503"):
        download_train291(tmp_path, files=files, progress=False)
    assert not (tmp_path / "train" / "T91").exists()
    server.httpd.modes["yang91/t2.bmp"] = {}  # the server is back
    server.requests.clear()
    download_train291(tmp_path, files=files, progress=False)
    fetched = [name for name, _ in server.requests]
    assert "yang91/t1.bmp" not in fetched and "yang91/t2.bmp" in fetched  # t1 was kept
    assert len(list_images(tmp_path / "train" / "T91")) == 2


# ---------------------------------------------------------------------------------------
# srlib download
# ---------------------------------------------------------------------------------------


def test_cli_downloads_div2k(server, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(download, "DIV2K_ARCHIVES", local_div2k(server, div2k_valid_zip()))
    code = cli.main(["download", "div2k", "--root", str(tmp_path), "--splits", "valid",
                     "--no-progress"])
    assert code == 0
    out = capsys.readouterr().out
    assert "valid:" in out and "(100 images)" in out
    assert is_complete(tmp_path / "DIV2K" / "DIV2K_valid_HR")


def test_cli_downloads_benchmarks_and_train291(server, tmp_path, monkeypatch, capsys):
    data = edsr_like_tar()
    monkeypatch.setattr(download, "BENCHMARK_ARCHIVE",
                        Archive(server.add("benchmark.tar", data), len(data), sha256(data)))
    monkeypatch.setattr(download.download_benchmarks, "__kwdefaults__",
                        {**download.download_benchmarks.__kwdefaults__,
                         "archive": download.BENCHMARK_ARCHIVE})
    assert cli.main(["download", "benchmarks", "--root", str(tmp_path), "--sets", "Set5",
                     "--no-progress"]) == 0
    assert "Set5:" in capsys.readouterr().out
    files = fake_train291(server, tmp_path)
    monkeypatch.setattr(download, "train291_files", lambda: files)
    assert cli.main(["download", "train291", "--root", str(tmp_path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "T91:" in out and "(2 images)" in out and "BSD200:" in out


def test_cli_rejects_mixed_options(tmp_path, capsys):
    assert cli.main(["download", "div2k", "--root", str(tmp_path), "--sets", "Set5"]) == 2
    assert "--sets belongs to" in capsys.readouterr().err
    assert cli.main(["download", "train291", "--root", str(tmp_path), "--splits", "valid"]) == 2
    assert "--splits belongs to" in capsys.readouterr().err


def test_cli_failure_is_one_line_without_traceback(server, tmp_path, monkeypatch, capsys):
    data = div2k_valid_zip()
    bad = {"valid": Archive(server.add("v.zip", data), len(data), "0" * 64)}
    monkeypatch.setattr(download, "DIV2K_ARCHIVES", bad)
    argv = ["download", "div2k", "--root", str(tmp_path), "--splits", "valid", "--no-progress"]
    code = cli.main(argv)
    err = capsys.readouterr().err
    assert code == 1
    assert err.count("\n") == 1 and "SHA-256 mismatch" in err and "Traceback" not in err
