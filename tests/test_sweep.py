"""Parameterised notebook runs and sweeps (`srlib notebook`, `srlib sweep`) on a tiny notebook.

Each run starts a real Jupyter kernel through papermill; the notebook itself is a few lines
of plain Python, so the whole file runs in well under a minute.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import nbformat
import pytest

from srlib.errors import UsageError
from srlib.tools.cli import main
from srlib.tools.notebook import check_executed, parse_value, run_notebook, to_ipynb
from srlib.tools.sweep import grid_points, load_table, parse_grid, run_name, sweep

TINY = """\
---
jupytext:
  text_representation:
    extension: .md
    format_name: myst
kernelspec:
  display_name: Python 3
  language: python
  name: python3
---

# A tiny notebook

```{code-cell} ipython3
:tags: [parameters]

factor = 2
label = "plain"
fail = False
output_dir = None
```

```{code-cell} ipython3
import json
import os
from pathlib import Path

if fail:
    raise ValueError("asked to fail")
folder = Path(output_dir or ".")
folder.mkdir(parents=True, exist_ok=True)
metrics = {"product": 21 * factor, "label": label, "cwd": os.getcwd(), "nested": [1, 2],
           "omp": os.environ.get("OMP_WAIT_POLICY")}
(folder / "metrics.json").write_text(json.dumps(metrics))
print(metrics["product"])
```
"""


@pytest.fixture
def tiny(tmp_path) -> Path:
    path = tmp_path / "notebooks" / "tiny.md"
    path.parent.mkdir()
    path.write_text(TINY)
    return path


def test_parse_value_reads_literals_and_keeps_text():
    assert parse_value("3e-4") == 3e-4
    assert parse_value("300") == 300
    assert parse_value("true") is True and parse_value("False") is False
    assert parse_value("none") is None
    assert parse_value("[2, 4]") == [2, 4]
    assert parse_value("mse") == "mse"
    assert parse_value("dssim+0.5*l1") == "dssim+0.5*l1"


def test_parse_grid_and_points():
    grid = parse_grid(["loss=mse,dssim", "scale=2,4"])
    assert grid == {"loss": ["mse", "dssim"], "scale": [2, 4]}
    points = grid_points(grid)
    assert points[0] == {"loss": "mse", "scale": 2} and len(points) == 4
    assert run_name(points[-1]) == "loss=dssim,scale=4"
    for bad in (["loss"], ["loss="], ["=1"]):
        with pytest.raises(UsageError):
            parse_grid(bad)
    with pytest.raises(UsageError, match="twice"):
        parse_grid(["a=1", "a=2"])


def test_run_notebook_injects_parameters_and_returns_metrics(tiny, tmp_path):
    result = run_notebook(tiny, {"factor": 3, "label": "x"}, tmp_path / "out")
    assert result["metrics"]["product"] == 63
    assert result["metrics"]["label"] == "x"
    # Runs in the notebook's own folder, as JupyterLab and the book build do.
    assert Path(result["metrics"]["cwd"]) == tiny.parent
    executed = Path(result["notebook"])
    assert executed == tmp_path / "out" / "tiny.ipynb"
    assert check_executed(executed) == []
    injected = nbformat.read(executed, as_version=4).cells
    assert any("injected-parameters" in cell.metadata.get("tags", []) for cell in injected)


@pytest.mark.parametrize(("own", "expected"), [(None, "PASSIVE"), ("active", "active")])
def test_the_kernel_runs_with_a_passive_wait_policy_unless_set(tiny, tmp_path, monkeypatch,
                                                               own, expected):
    if own is None:
        monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    else:
        monkeypatch.setenv("OMP_WAIT_POLICY", own)
    result = run_notebook(tiny, {}, tmp_path / "out", echo=None)
    assert result["metrics"]["omp"] == expected
    assert os.environ.get("OMP_WAIT_POLICY") == own  # this process's environment is restored


def test_unknown_parameter_is_an_error_not_a_silent_no_op(tiny, tmp_path):
    with pytest.raises(UsageError, match="no parameter.*factr"):
        run_notebook(tiny, {"factr": 3}, tmp_path / "out")


def test_check_flags_a_notebook_that_never_ran(tiny, tmp_path):
    unexecuted = to_ipynb(tiny, tmp_path / "unexecuted.ipynb")
    problems = check_executed(unexecuted)
    assert problems and all("was not executed" in problem for problem in problems)


def test_sweep_runs_the_grid_in_parallel_and_writes_one_table(tiny, tmp_path):
    rows = sweep(tiny, {"factor": [1, 2]}, {"label": "same"}, tmp_path / "sweep", jobs=2,
                 echo=None)
    assert [row["product"] for row in rows] == [21, 42]
    assert all(row["label"] == "same" for row in rows)
    assert "nested" not in rows[0]  # only scalar metrics go in the table
    assert load_table(tmp_path / "sweep") == rows
    with (tmp_path / "sweep" / "sweep.csv").open() as file:
        assert [r["product"] for r in csv.DictReader(file)] == ["21", "42"]
    markdown = (tmp_path / "sweep" / "sweep.md").read_text()
    assert "| factor |" in markdown and "| 2 |" in markdown
    for point in ("factor=1", "factor=2"):
        assert check_executed(tmp_path / "sweep" / point / "tiny.ipynb") == []


def test_command_line(tiny, tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["notebook", "run", str(tiny), "-p", "factor", "5", "--output-dir", str(out)]) == 0
    assert json.loads((out / "metrics.json").read_text())["product"] == 105
    # Plain-text progress on the terminal and in run.log: the effective parameters, the
    # cells, and what the kernel printed.
    printed = capsys.readouterr().out
    log = (out / "run.log").read_text()
    for text in (printed, log):
        assert "factor=5 (given)" in text and 'label="plain" (default)' in text
        assert "cell 4/4 started" in text and "  105" in text
    assert main(["notebook", "check", str(out)]) == 0
    assert main(["notebook", "check", str(tmp_path / "missing")]) == 2
    # A failing cell fails its run, and the sweep after the other runs' table is written.
    code = main(["sweep", str(tiny), "--grid", "fail=false,true", "-p", "factor", "1",
                 "--output-dir", str(tmp_path / "s")])
    assert code == 1
    captured = capsys.readouterr()
    assert "1 of 2 runs failed (fail=True)" in captured.err
    assert "run 1/2 started: fail=False" in captured.out and "fail=False [" in captured.out
    assert "run 2/2 fail=True: failed" in (tmp_path / "s" / "sweep.log").read_text()
    rows = load_table(tmp_path / "s")
    assert rows[0]["product"] == 21
    # Cells are counted as a reader counts them: code cells only (papermill's injected
    # parameters cell is the second), with the cell's first line.
    assert "code cell 3 ('import json') raised ValueError: asked to fail" in rows[1]["error"]
    assert not (tmp_path / "s" / "fail=True" / "metrics.json").exists()
    problems = check_executed(tmp_path / "s" / "fail=True" / "tiny.ipynb")
    assert any("raised ValueError" in problem for problem in problems)
