"""Parameter sweeps: run a notebook once per point of a grid, collect its metrics in one table.

    srlib sweep notebooks/03_training.md --grid loss=mse,dssim,l1,charbonnier \\
        -p steps 150 --output-dir runs/ablation --jobs 2

runs the training notebook four times (`srlib.tools.notebook.run_notebook`), each in its own
folder ``<output-dir>/<name>=<value>[,<name>=<value>...]/`` with the executed notebook, its
files, its ``metrics.json`` and its ``run.log``, and writes the table of every run's grid values
and metrics as ``sweep.json``, ``sweep.csv`` and ``sweep.md`` in ``<output-dir>``. The ablation
chapter reads it.

Progress is plain text, on the terminal and in ``<output-dir>/sweep.log``: which run starts and
ends (and how long it took), and each run's own progress lines prefixed by its name.
"""

from __future__ import annotations

import csv
import itertools
import json
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

from srlib.errors import SrlibError, UsageError
from srlib.tools.notebook import parse_value, run_notebook

TABLE_NAME = "sweep"


def parse_grid(items: list[str]) -> dict[str, list]:
    """['loss=mse,dssim', 'scale=2,4'] -> {'loss': ['mse', 'dssim'], 'scale': [2, 4]}.

    Raises:
        UsageError: an item without '=' or values, or a name given twice.
    """
    grid = {}
    for item in items:
        name, equals, values = item.partition("=")
        name = name.strip()
        if not equals or not name or not values.strip():
            raise UsageError(f"bad --grid {item!r}: expected NAME=VALUE[,VALUE...]")
        if name in grid:
            raise UsageError(f"--grid names {name!r} twice")
        grid[name] = [parse_value(value.strip()) for value in values.split(",") if value.strip()]
    return grid


def grid_points(grid: dict[str, list]) -> list[dict]:
    """Every combination of the grid's values, the first name varying slowest."""
    names = list(grid)
    return [dict(zip(names, values)) for values in itertools.product(*grid.values())]


def run_name(point: dict) -> str:
    """The folder name of one run: 'loss=mse,scale=2'."""
    return ",".join(f"{name}={value}" for name, value in point.items())


def _run_point(notebook: str, point: dict, parameters: dict, folder: str, options: dict,
               echo: Callable[[str], None] | None) -> dict:
    """One run of a sweep; never raises, so one failure does not stop the others."""
    name = run_name(point)

    def prefixed(line: str) -> None:
        echo(f"{name} {line}")

    try:
        result = run_notebook(notebook, {**parameters, **point}, folder, **options,
                              echo=prefixed if echo is not None else None)
    except Exception as error:  # noqa: BLE001 (a dead kernel too: record it, go on)
        known = isinstance(error, SrlibError)
        message = str(error) if known else f"{type(error).__name__}: {error}"
        return {**point, "error": message.splitlines()[0] if message else "", "output_dir": folder}
    metrics = {key: value for key, value in (result["metrics"] or {}).items()
               if isinstance(value, (int, float, str, bool)) or value is None}
    return {**point, **metrics, "seconds": round(result["seconds"], 1), "output_dir": folder,
            "notebook_path": result["notebook"]}


def sweep(
    notebook: str | os.PathLike,
    grid: dict[str, list],
    parameters: dict | None = None,
    output_dir: str | os.PathLike = Path("runs") / "sweep",
    *,
    jobs: int = 1,
    kernel_name: str | None = None,
    timeout: float | None = None,
    echo: Callable[[str], None] | None = print,
) -> list[dict]:
    """Run `notebook` at every point of `grid` and tabulate what each run measured.

    Args:
        notebook: jupytext .md or .ipynb; it declares every grid name and parameter in its
            ``parameters`` cell and writes ``metrics.json`` into its ``output_dir``.
        grid: name -> values, e.g. {"loss": ["mse", "dssim"]}.
        parameters: values shared by every run (the same budget and seed for all).
        output_dir: the sweep's folder; each run gets a sub-folder named by `run_name`.
        jobs: runs executed at once, each in its own process and kernel.
        kernel_name, timeout: as `srlib.tools.notebook.run_notebook`.
        echo: called with every progress line (runs starting and ending, and each run's own
            lines prefixed by its name); they also go to ``output_dir/sweep.log``. None: the
            log files only.

    Returns:
        One row per point, in grid order: the point's values, the run's scalar metrics,
        "seconds", "output_dir", "notebook_path" (or "error" for a run that failed).

    Raises:
        UsageError: an empty grid, or a grid name also given as a fixed parameter.
        SrlibError: some runs failed (after the table of the others is written).
    """
    if not grid or not all(grid.values()):
        raise UsageError("the sweep grid is empty: give --grid NAME=VALUE[,VALUE...]")
    parameters = dict(parameters or {})
    both = sorted(set(grid) & set(parameters))
    if both:
        raise UsageError(f"{', '.join(both)} given both as grid and as fixed parameter")
    if jobs < 1:
        raise UsageError(f"jobs must be at least 1, got {jobs}")
    output_dir = Path(output_dir).resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    notebook = str(Path(notebook).resolve())
    options = {"kernel_name": kernel_name, "timeout": timeout}
    points = grid_points(grid)
    sweep_log = output_dir / "sweep.log"
    sweep_log.write_text("")
    started = time.perf_counter()

    def say(line: str) -> None:
        line = f"[{time.perf_counter() - started:6.0f} s] {line}"
        with open(sweep_log, "a") as file:
            file.write(line + "\n")
        if echo is not None:
            echo(line)

    # Each run's own lines reach the terminal (not sweep.log: they are in its run.log).
    calls = [(notebook, point, parameters, str(output_dir / run_name(point)), options, echo)
             for point in points]
    rows: list[dict] = [{} for _ in points]
    say(f"{len(points)} runs of {notebook}, {jobs} at a time, fixed parameters {parameters}")
    if jobs == 1:
        for index, call in enumerate(calls):
            say(f"run {index + 1}/{len(calls)} started: {run_name(points[index])}")
            rows[index] = _run_point(*call)
            _log_row(say, rows[index], index, len(calls))
    else:
        # spawn, not fork: the caller (a notebook kernel) may hold torch's OpenMP threads.
        with ProcessPoolExecutor(min(jobs, len(calls)), mp_context=get_context("spawn")) as pool:
            futures = {pool.submit(_run_point, *call): index for index, call in enumerate(calls)}
            say(f"runs started: {', '.join(run_name(point) for point in points[:jobs])}"
                + (" (the others as these end)" if len(points) > jobs else ""))
            for future in as_completed(futures):
                index = futures[future]
                rows[index] = future.result()
                _log_row(say, rows[index], index, len(calls))
    write_table(rows, output_dir)
    failed = [run_name({name: row[name] for name in grid}) for row in rows if "error" in row]
    if failed:
        raise SrlibError(f"{len(failed)} of {len(rows)} runs failed ({'; '.join(failed)}); "
                         f"see {output_dir / (TABLE_NAME + '.md')}")
    return rows


def _log_row(say, row: dict, index: int, total: int) -> None:
    status = f"failed: {row['error']}" if "error" in row else f"done in {row['seconds']} s"
    say(f"run {index + 1}/{total} {Path(row['output_dir']).name}: {status}")


def _columns(rows: list[dict]) -> list[str]:
    return list(dict.fromkeys(key for row in rows for key in row))


def format_markdown(rows: list[dict], columns: list[str] | None = None,
                    digits: int = 4) -> str:
    """A Markdown table of sweep rows (floats to `digits` significant decimals)."""
    columns = columns or [c for c in _columns(rows) if c not in ("output_dir", "notebook_path")]

    def cell(value) -> str:
        if isinstance(value, float):
            return f"{value:.{digits}f}"
        return "" if value is None else str(value).replace("|", "\\|")

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def write_table(rows: list[dict], output_dir: str | os.PathLike) -> dict[str, Path]:
    """Write rows as sweep.json, sweep.csv and sweep.md in `output_dir`; their paths."""
    output_dir = Path(output_dir)
    paths = {suffix: output_dir / f"{TABLE_NAME}.{suffix}" for suffix in ("json", "csv", "md")}
    paths["json"].write_text(json.dumps(rows, indent=1) + "\n")
    with paths["csv"].open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=_columns(rows))
        writer.writeheader()
        writer.writerows(rows)
    paths["md"].write_text(format_markdown(rows) + "\n")
    return paths


def load_table(output_dir: str | os.PathLike) -> list[dict]:
    """The rows a sweep wrote in `output_dir` (sweep.json).

    Raises:
        UsageError: no sweep table there.
    """
    path = Path(output_dir) / f"{TABLE_NAME}.json"
    if not path.is_file():
        raise UsageError(f"{path}: no sweep table (run `srlib sweep ... --output-dir "
                         f"{output_dir}` first)")
    return json.loads(path.read_text())
