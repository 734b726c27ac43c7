"""Every chapter runs, in quick mode, as a test (nbmake); papermill's route works.

Each `notebooks/*.md` is converted with jupytext to an .ipynb in a fresh folder under `runs/`
(inside the repository, so that the chapter finds the book's root and its `runs/book/` as it
does in the book build), then run by `pytest --nbmake` in a child process with
`SRBOOK_QUICK=1` and `OMP_WAIT_POLICY=PASSIVE`. The chapter file itself is never written.

Time budget per chapter: CELL_TIMEOUT_S for any one cell (nbmake's `--nbmake-timeout`) and
CHAPTER_BUDGET_S for the whole chapter, kernel start included. In quick mode on 2 CPU cores
a chapter takes seconds to a few minutes; the training chapter reuses `runs/book/` when the
book was built first (as CI does) and trains its quick network otherwise.
`python -m pytest -m "not chapter"` leaves these out.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "notebooks").glob("*.md"))
CELL_TIMEOUT_S = 600
CHAPTER_BUDGET_S = 900
BIN = Path(sys.executable).parent


def quick_env() -> dict[str, str]:
    return dict(os.environ, SRBOOK_QUICK="1", OMP_WAIT_POLICY="PASSIVE", MPLBACKEND="Agg",
                PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")


def run_budgeted(command: list[str], cwd: Path, budget_s: float) -> tuple[int, str]:
    """Run `command` in its own session; kill the session (kernels too) past `budget_s`."""
    process = subprocess.Popen(command, cwd=cwd, env=quick_env(), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output, _ = process.communicate(timeout=budget_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        return -1, output
    return process.returncode, output


@pytest.fixture(scope="module")
def work_dir():
    # Not under _build: nbmake collects no notebook from a path with a `_build` part.
    runs = ROOT / "runs"
    runs.mkdir(exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="nbmake-", dir=runs))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_there_are_chapters():
    assert CHAPTERS, f"no chapters in {ROOT / 'notebooks'}"


@pytest.mark.chapter
@pytest.mark.parametrize("chapter", CHAPTERS, ids=[path.stem for path in CHAPTERS])
def test_chapter_runs_in_quick_mode(chapter, work_dir):
    import jupytext
    import nbformat

    notebook = work_dir / f"{chapter.stem}.ipynb"
    nbformat.write(jupytext.read(chapter), notebook)
    started = time.monotonic()
    returncode, output = run_budgeted(
        [sys.executable, "-m", "pytest", "--nbmake", f"--nbmake-timeout={CELL_TIMEOUT_S}",
         "-p", "no:cacheprovider", "-q", "--no-header", str(notebook)],
        cwd=work_dir, budget_s=CHAPTER_BUDGET_S)
    seconds = time.monotonic() - started
    print(f"{chapter.name}: {seconds:.0f} s (budget {CHAPTER_BUDGET_S} s, "
          f"{CELL_TIMEOUT_S} s per cell)")
    assert returncode != -1, (f"{chapter.name} ran past its budget of {CHAPTER_BUDGET_S} s:\n"
                              f"{output[-4000:]}")
    assert returncode == 0, f"{chapter.name} failed under nbmake:\n{output[-6000:]}"
    assert "1 passed" in output, f"nbmake did not run {notebook.name}:\n{output[-2000:]}"


TINY = '''---
jupytext:
  text_representation:
    extension: .md
    format_name: myst
kernelspec:
  display_name: Python 3
  language: python
  name: python3
---

# Tiny

```{code-cell} ipython3
:tags: [parameters]

steps = 200
```

```{code-cell} ipython3
print(f"steps={steps}")
```
'''


def test_papermill_route_from_a_text_notebook(tmp_path):
    """book/how_to_run.md's `jupytext --to ipynb -o - X.md | papermill - out.ipynb -p ...`."""
    (tmp_path / "tiny.md").write_text(TINY)
    pipeline = ("set -o pipefail; jupytext --to ipynb -o - tiny.md "
                "| papermill - out.ipynb -p steps 20")
    returncode, output = run_budgeted(["bash", "-c", pipeline], cwd=tmp_path, budget_s=180)
    assert returncode == 0, output[-4000:]
    cells = json.loads((tmp_path / "out.ipynb").read_text())["cells"]
    injected = [cell for cell in cells
                if "injected-parameters" in cell["metadata"].get("tags", [])]
    assert injected and "steps = 20" in "".join(injected[0]["source"])
    printed = "".join("".join(output.get("text", "")) for cell in cells
                      for output in cell.get("outputs", []))
    assert "steps=20" in printed
