"""The chapters open as notebooks in JupyterLab, in a real headless browser.

Starts `jupyter lab` in the repository root as the README's set-up leaves it (no extra
settings: only the user settings and workspaces are moved to a temporary folder, so that
nobody's own JupyterLab settings decide the outcome, and autosave is off, so that the chapter
file is never rewritten), drives Debian's chromium (`/usr/bin/chromium`) with Playwright, opens
`notebooks/01_data.md` by a double-click in the file browser, checks that it opens as a
notebook (jupytext's "Jupytext Notebook" viewer, not the text editor) with MyST rendered,
runs its first code cell in the `python3` kernel, and saves a screenshot to
`_build/screenshots/jupyterlab_01_data.png`.

Skips with the reason when chromium or the `playwright` package is missing (Playwright's own
browser download is never used).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOT = ROOT / "_build" / "screenshots" / "jupyterlab_01_data.png"
CHAPTER = "01_data.md"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-dev-shm-usage"]
SERVER_START_S = 60     # JupyterLab answering on its port
OPEN_S = 60             # the chapter shown as notebook cells
KERNEL_RUN_S = 90       # kernel start plus the imports cell (torch, srlib) on a busy CPU


def chromium() -> str | None:
    for candidate in ("/usr/bin/chromium", shutil.which("chromium"),
                      shutil.which("chromium-browser")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def jupyter_lab(tmp_path_factory):
    """A JupyterLab server in the repository root: (base URL, token)."""
    tmp = tmp_path_factory.mktemp("jupyterlab")
    user_settings = tmp / "user-settings"
    docmanager = user_settings / "@jupyterlab" / "docmanager-extension"
    docmanager.mkdir(parents=True)
    # Only autosave: defaultViewers must come from the environment the set-up made.
    (docmanager / "plugin.jupyterlab-settings").write_text(json.dumps({"autosave": False}))
    port, token = free_port(), secrets.token_hex(16)
    env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(tmp / "runtime"),
               JUPYTERLAB_SETTINGS_DIR=str(user_settings),
               JUPYTERLAB_WORKSPACES_DIR=str(tmp / "workspaces"),
               OMP_WAIT_POLICY="PASSIVE", SRBOOK_QUICK="1")
    command = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1",
               f"--port={port}", "--ServerApp.port_retries=0",
               f"--IdentityProvider.token={token}"]
    if os.geteuid() == 0:
        command.append("--allow-root")
    log = (tmp / "jupyterlab.log").open("w")
    server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + SERVER_START_S
    while True:
        try:
            with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=5):
                break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                pytest.fail(f"jupyter lab did not start:\n{(tmp / 'jupyterlab.log').read_text()}")
            time.sleep(0.5)
    yield base, token
    # Shut down the server and its kernels, then make sure nothing of ours is left.
    try:
        request = urllib.request.Request(f"{base}/api/shutdown?token={token}", method="POST")
        urllib.request.urlopen(request, timeout=10).close()
        server.wait(timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        pass
    try:
        os.killpg(server.pid, signal.SIGKILL)  # our own session: the server and its kernels
    except ProcessLookupError:
        pass
    server.wait()
    log.close()


@pytest.fixture(scope="module")
def page():
    executable = chromium()
    if executable is None:
        pytest.skip("no chromium at /usr/bin/chromium (Debian: apt-get install -y chromium)")
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="playwright missing: pip install -e '.[dev]'")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        yield context.new_page()
        context.close()
        browser.close()


def test_chapter_opens_as_notebook_and_runs(jupyter_lab, page):
    base, token = jupyter_lab
    started = time.monotonic()
    page.set_default_timeout(OPEN_S * 1000)
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.goto(f"{base}/lab?token={token}")

    # The real user path: double-clicks in the file browser, folder then chapter.
    listing = page.locator(".jp-DirListing-content")
    listing.get_by_text("notebooks", exact=True).dblclick()
    listing.get_by_text(CHAPTER, exact=True).dblclick()

    panel = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
    editor = page.locator(".jp-FileEditor:not(.lm-mod-hidden)")
    panel.locator(".jp-Cell").or_(editor).first.wait_for(state="visible")
    if editor.count():
        page.screenshot(path=str(SCREENSHOT))
        pytest.fail(f"{CHAPTER} opened in the text editor, not as a notebook: is "
                    ".jupyter/lab/settings copied into this environment (README, Set-up)?")
    tab = page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab.lm-mod-current")
    assert CHAPTER in tab.inner_text()
    # Cells are added to the page progressively: wait for the chapter's many.
    page.wait_for_function("() => document.querySelectorAll("
                           "'.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell').length > 10")

    # MyST in Markdown cells, rendered by jupyterlab-myst: {cite:p} roles become citations
    # (JupyterLab has no bibliography, so each shows its key), none is left raw.
    rendered = panel.locator(".jp-MarkdownCell .myst")
    assert rendered.count() > 0, "Markdown cells not rendered as MyST: jupyterlab-myst missing?"
    text = " ".join(rendered.all_inner_texts())
    assert "Where the photographs come from" in text
    assert "{cite:p}" not in text, "MyST roles shown raw"
    assert panel.locator(".jp-MarkdownCell .myst .cite-group").count() > 0

    # Run the first code cell (the imports) in the python3 kernel.
    first_code = panel.locator(".jp-CodeCell").first
    first_code.locator(".jp-InputArea-editor").click()
    page.keyboard.press("Shift+Enter")
    prompt = first_code.locator(".jp-InputPrompt")
    try:
        page.wait_for_function(
            "element => /\\[1\\]/.test(element.textContent)", arg=prompt.element_handle(),
            timeout=KERNEL_RUN_S * 1000)
    finally:
        page.screenshot(path=str(SCREENSHOT))
    # An exception shows as a traceback in the output (the count is shown either way).
    output = first_code.locator(".jp-OutputArea").inner_text()
    assert "Traceback" not in output and "Error" not in output, \
        f"the first code cell of {CHAPTER} failed in JupyterLab:\n{output[-3000:]}"
    kernel = panel.locator(".jp-KernelName, .jp-Toolbar-kernelName").first.inner_text()
    assert "Python 3" in kernel or "python3" in kernel, kernel
    print(f"JupyterLab: opened {CHAPTER} and ran its first cell in "
          f"{time.monotonic() - started:.1f} s")
