"""The built site, opened in a real headless browser (Debian's chromium).

Needs the site built first (`SRBOOK_QUICK=1 bash scripts/build_book.sh`) and chromium
(`apt-get install -y chromium`); skips with the reason otherwise. The browser is driven over
the Chrome DevTools protocol with `websocket-client` (installed with Jupyter). For every page
of `_toc.yml`: it loads, its images are present and decoded (naturalWidth > 0), chapters show
executed output, no code block overflows the column at 1280 px (long lines wrap, see
`book/_static/srbook.css`), no figure is stretched past its own pixels, and a screenshot is kept
under `_build/screenshots/` as a test artifact.
"""

from __future__ import annotations

import base64
import itertools
import json
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "_build"
HTML = BUILD / "html"
SCREENSHOTS = BUILD / "screenshots"
BUILD_COMMAND = "SRBOOK_QUICK=1 bash scripts/build_book.sh"
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
WIDTH = 1280  # CSS pixels: the desktop layout, sidebar and table of contents shown


def toc_pages() -> list[str]:
    """Every document of _toc.yml (root first), as paths without suffix."""
    import yaml

    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    pages = [toc["root"]]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                pages.append(entry["file"])
            walk(entry.get("chapters"))
            walk(entry.get("sections"))

    for part in toc.get("parts", []):
        walk(part.get("chapters"))
    walk(toc.get("chapters"))
    return pages


def chapter_pages() -> list[str]:
    return [page for page in toc_pages() if page.startswith("notebooks/")]


class Browser:
    """Headless chromium and one page, spoken to over the DevTools protocol."""

    def __init__(self, executable: str, profile: Path):
        import websocket

        self.process = subprocess.Popen(
            [executable, "--headless=new", "--no-sandbox", "--disable-gpu",
             "--disable-dev-shm-usage", "--hide-scrollbars", f"--window-size={WIDTH},1600",
             "--remote-debugging-port=0", f"--user-data-dir={profile}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().strip()):
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.close()
                raise RuntimeError(f"{executable} did not open its DevTools port")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as answer:
            targets = [t for t in json.load(answer) if t["type"] == "page"]
        self.socket = websocket.create_connection(targets[0]["webSocketDebuggerUrl"], timeout=60)
        self.ids = itertools.count(1)
        self.events: list[dict] = []
        self.call("Page.enable")
        self.call("Runtime.enable")

    def call(self, method: str, **params) -> dict:
        message_id = next(self.ids)
        self.socket.send(json.dumps({"id": message_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv())
            if message.get("id") == message_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]
            self.events.append(message)

    def open(self, url: str, timeout: float = 60) -> None:
        self.events.clear()
        self.call("Page.navigate", url=url)
        deadline = time.monotonic() + timeout
        while not any(e.get("method") == "Page.loadEventFired" for e in self.events):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not finish loading in {timeout} s")
            self.events.append(json.loads(self.socket.recv()))

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, awaitPromise=True,
                           returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self, path: Path, scale: float = 0.5) -> None:
        """The whole page, not only the window, at `scale` (figures included)."""
        height = self.call("Page.getLayoutMetrics")["cssContentSize"]["height"]
        # A window as tall as the page: capturing beyond a smaller one misplaces the content.
        self.call("Emulation.setDeviceMetricsOverride", width=WIDTH,
                  height=min(int(height), 30000), deviceScaleFactor=scale, mobile=False)
        try:
            data = self.call("Page.captureScreenshot", format="png")["data"]
        finally:
            self.call("Emulation.clearDeviceMetricsOverride")
        path.write_bytes(base64.b64decode(data))

    def close(self) -> None:
        if getattr(self, "socket", None) is not None:
            self.socket.close()
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


# Waits for every image to finish (load or error), then describes the page.
PAGE_REPORT = r"""
(async () => {
  const images = Array.from(document.images);
  await Promise.all(images.map(img => img.complete ? null :
      new Promise(done => { img.onload = done; img.onerror = done; })));
  return {
    title: document.title,
    heading: (document.querySelector("main h1, article h1, h1") || {}).textContent || "",
    images: images.map(img => ({src: img.getAttribute("src"), complete: img.complete,
                                width: img.naturalWidth})),
    outputImages: document.querySelectorAll(".cell_output img").length,
    outputs: document.querySelectorAll(".cell_output").length,
    errors: document.querySelectorAll(".cell_output .traceback, .output.error").length,
    width: window.innerWidth,
    // Code blocks (cell inputs and outputs, code in the prose) that would need a horizontal
    // scroll bar: long lines cut off at the column's edge.
    overflowing: Array.from(document.querySelectorAll("div.highlight pre, div.cell_output pre"))
        .filter(pre => pre.scrollWidth > pre.clientWidth + 1)
        .map(pre => `${pre.scrollWidth} > ${pre.clientWidth} px: ` +
                    pre.textContent.trim().split("\n")[0].slice(0, 80)),
    // Figures shown wider than their own pixels: upscaled, hence blurry.
    upscaled: Array.from(document.querySelectorAll(".cell_output img, main img"))
        .filter(img => img.naturalWidth > 0 && img.width > img.naturalWidth * 1.01)
        .map(img => `${img.getAttribute("src")}: ${img.width} px shown, ${img.naturalWidth} px`),
    remote: Array.from(document.querySelectorAll("script[src], link[href][rel=stylesheet]"))
        .map(e => e.getAttribute("src") || e.getAttribute("href"))
        .filter(url => /^(https?:)?\/\//.test(url)),
  };
})()
"""


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not (HTML / "index.html").is_file():
        pytest.skip(f"no built site in {HTML}: build it with `{BUILD_COMMAND}`")
    executable = next((shutil.which(name) for name in BROWSERS if shutil.which(name)), None)
    if executable is None:
        pytest.skip("no chromium on PATH (Debian: apt-get install -y chromium)")
    pytest.importorskip("websocket", reason="websocket-client (a Jupyter dependency) missing")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    session = Browser(executable, tmp_path_factory.mktemp("chromium-profile"))
    yield session
    session.close()


@pytest.mark.parametrize("page", toc_pages())
def test_page_loads_with_every_image(browser, page):
    path = HTML / f"{page}.html"
    assert path.is_file(), f"{path} missing from the built site"
    browser.open(path.as_uri())
    report = browser.evaluate(PAGE_REPORT)
    browser.screenshot(SCREENSHOTS / f"{page.replace('/', '_')}.png")
    assert report["heading"].strip(), f"{page}: no heading rendered"
    broken = [image["src"] for image in report["images"]
              if not image["complete"] or image["width"] == 0]
    assert not broken, f"{page}: images that did not load: {broken}"
    # The site is read offline too: nothing it needs may come from the network.
    assert not report["remote"], f"{page}: scripts or styles from the network: {report['remote']}"
    assert report["width"] == WIDTH, f"{page}: measured at {report['width']} px, not {WIDTH}"
    assert not report["overflowing"], (f"{page}: code blocks wider than the column at {WIDTH} px "
                                       f"(book/_static/srbook.css): {report['overflowing']}")
    assert not report["upscaled"], f"{page}: figures stretched past their pixels: {report['upscaled']}"
    if page in chapter_pages():
        assert report["outputs"] > 0, f"{page}: no executed cell output on the page"
        assert report["outputImages"] > 0, f"{page}: no figure in the executed outputs"
        assert report["errors"] == 0, f"{page}: error output on the page"


def test_every_chapter_really_executed():
    try:
        from srlib.tools.notebook import check_executed
    except ImportError:  # before srlib's tooling moved to srlib.tools
        from srlib.notebook import check_executed

    executed = BUILD / "jupyter_execute"
    if not executed.is_dir():
        pytest.skip(f"no executed notebooks in {executed}: build with `{BUILD_COMMAND}`")
    problems = []
    for page in chapter_pages():
        notebook = executed / f"{page}.ipynb"
        problems += check_executed(notebook) if notebook.is_file() else [f"{notebook} missing"]
    assert not problems, "\n".join(problems)
