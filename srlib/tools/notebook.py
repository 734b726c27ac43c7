"""The book's chapters as parameterised programs: run one with papermill, check that it ran.

The chapters are jupytext MyST Markdown files (``notebooks/*.md``): plain text that diffs
well, with no outputs in git. `run_notebook` turns one into an .ipynb (jupytext), puts the
given values into its cell tagged ``parameters`` and executes it (papermill), so any chapter
can be re-run with other settings:

    srlib notebook run notebooks/03_training.md -p loss dssim -p steps 600 --output-dir runs/dssim

It first prints the effective parameters (each given one, and the defaults of the others),
then plain-text progress: which cell runs, the time so far, and every line the kernel prints
(training's ``step 120/1000 ...`` lines among them), on the terminal and in the run's
``run.log``. The kernel runs with OMP_WAIT_POLICY=PASSIVE unless the environment sets one.

Conventions a notebook follows to be run this way:

- its ``parameters`` cell assigns a default to every parameter (papermill injects a cell
  after it that overrides the ones given);
- a parameter named ``output_dir`` receives the folder of the run; the notebook writes what
  it produces there, and its measurements as ``output_dir/metrics.json`` (a flat JSON
  object), which `run_notebook` returns and `srlib.tools.sweep` collects into one table.

`check_executed` is the guard of the book build: a notebook whose code cells did not all run,
or that holds an error output, fails it (a plain Sphinx build reports success either way).
"""

from __future__ import annotations

import ast
import contextlib
import json
import logging
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from srlib.errors import SrlibError, UsageError

PARAMETERS_TAG = "parameters"
METRICS_NAME = "metrics.json"
OUTPUT_DIR_PARAMETER = "output_dir"
KERNEL_LOG = "kernel.log"  # the kernel process's own log (not cell output), per run
RUN_LOG = "run.log"  # the progress lines of a run
WAIT_POLICY = "OMP_WAIT_POLICY"


# ---------------------------------------------------------------------------------------
# Running notebooks
# ---------------------------------------------------------------------------------------

def to_ipynb(source: str | os.PathLike, target: str | os.PathLike) -> Path:
    """Write the notebook `source` (jupytext text such as MyST .md, or .ipynb) as .ipynb.

    Raises:
        UsageError: `source` is missing or not a notebook jupytext can read.
    """
    import jupytext
    import nbformat

    source, target = Path(source), Path(target)
    if not source.is_file():
        raise UsageError(f"{source}: no such notebook")
    try:
        notebook = jupytext.read(source)
    except Exception as error:  # noqa: BLE001 (jupytext raises many types for a bad file)
        raise UsageError(f"{source}: not a readable notebook ({error})") from None
    target.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, target)
    return target


def declared_parameters(ipynb: str | os.PathLike) -> dict[str, str]:
    """Names assigned in the ``parameters`` cell of an .ipynb -> their default, as source text."""
    import papermill

    found = papermill.inspect_notebook(str(ipynb))
    return {name: info.get("default") for name, info in found.items()}


def parse_value(text: str):
    """A command-line parameter value as Python: numbers, True/False/None, lists, else the text.

    '3e-4' -> 0.0003, '300' -> 300, 'true' -> True, 'none' -> None, '[2, 4]' -> [2, 4],
    'mse' -> 'mse'.
    """
    lowered = text.strip().lower()
    if lowered in ("true", "false", "none", "null"):
        return {"true": True, "false": False}.get(lowered)
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def run_notebook(
    notebook: str | os.PathLike,
    parameters: dict | None = None,
    output_dir: str | os.PathLike | None = None,
    *,
    kernel_name: str | None = None,
    timeout: float | None = None,
    echo: Callable[[str], None] | None = print,
) -> dict:
    """Execute a notebook with parameters, as papermill does, and collect what it measured.

    The notebook runs with its own folder as the working directory (as in JupyterLab and in
    the book build), in a fresh kernel that inherits this process's environment (with
    OMP_WAIT_POLICY=PASSIVE added when unset).

    Args:
        notebook: a jupytext text notebook (.md) or an .ipynb.
        parameters: name -> value; every name must be assigned in its ``parameters`` cell.
        output_dir: where the executed notebook (and, for notebooks with an ``output_dir``
            parameter, everything they write) goes; default ``runs/notebooks/<name>``.
        kernel_name: Jupyter kernel; default the notebook's own (``python3``).
        timeout: seconds one cell may run (None: no limit).
        echo: called with each progress line (the effective parameters, cell starts, the
            kernel's printed lines), which also go to ``output_dir/run.log``; None: the log only.

    Returns:
        {"notebook": executed .ipynb path, "output_dir", "parameters": the effective values
        (given and default), "metrics": the notebook's ``metrics.json`` as a dict, or None,
        "seconds": float}.

    Raises:
        UsageError: missing notebook, or a parameter the notebook does not declare.
        SrlibError: a cell raised; the message names the cell and the exception.
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    notebook = Path(notebook)
    parameters = dict(parameters or {})
    output_dir = Path(output_dir or Path("runs") / "notebooks" / notebook.stem).resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    executed = output_dir / f"{notebook.stem}.ipynb"
    metrics_path = output_dir / METRICS_NAME
    with tempfile.TemporaryDirectory(prefix="srlib-notebook-") as folder:
        source = to_ipynb(notebook, Path(folder) / f"{notebook.stem}.ipynb")
        declared = declared_parameters(source)
        unknown = sorted(set(parameters) - set(declared))
        if unknown:
            raise UsageError(
                f"{notebook}: no parameter(s) {', '.join(unknown)} in its parameters cell "
                f"(it declares: {', '.join(declared) or 'none'})"
            )
        if OUTPUT_DIR_PARAMETER in declared:
            parameters.setdefault(OUTPUT_DIR_PARAMETER, str(output_dir))
        # A metrics file left by an earlier run must not pass for this run's.
        metrics_path.unlink(missing_ok=True)
        progress = _Progress(output_dir / RUN_LOG, echo, _count_cells(source) + 1)
        progress.line(f"running {notebook} -> {executed}")
        progress.line("parameters: " + ", ".join(
            [f"{name}={value!r} (given)" for name, value in parameters.items()]
            + [f"{name}={default} (default)" for name, default in declared.items()
               if name not in parameters]))
        started = time.perf_counter()
        try:
            with _stderr_to(output_dir / KERNEL_LOG), _passive_wait_policy(), progress:
                papermill.execute_notebook(
                    str(source), str(executed), parameters=parameters, kernel_name=kernel_name,
                    cwd=str(notebook.resolve().parent), progress_bar=False, log_output=True,
                    execution_timeout=timeout,
                )
        except PapermillExecutionError as error:
            message = str(error.evalue).strip().splitlines()[0] if error.evalue else ""
            where = _describe_cell(executed, error.source)
            progress.line(f"{where} raised {error.ename}: {message}")
            raise SrlibError(f"{notebook}: {where} raised {error.ename}: {message} "
                             f"(executed notebook: {executed})") from None
        seconds = time.perf_counter() - started
        progress.line(f"done in {seconds:.0f} s")
    metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else None
    return {"notebook": str(executed), "output_dir": str(output_dir), "parameters": parameters,
            "metrics": metrics, "seconds": seconds}


class _Progress(logging.Handler):
    """Papermill's log as plain-text progress lines: to `echo` and appended to `log`.

    Papermill (with log_output) logs "Executing Cell N" when a cell starts and every text the
    kernel prints; within the block this handler takes them instead of papermill's defaults.
    """

    def __init__(self, log: Path, echo: Callable[[str], None] | None, cells: int):
        super().__init__(logging.INFO)
        self.log, self.echo, self.cells = log, echo, cells
        self.started = time.perf_counter()
        self.logger = logging.getLogger("papermill")
        log.write_text("")

    def line(self, text: str) -> None:
        text = f"[{_clock(time.perf_counter() - self.started)}] {text}"
        with open(self.log, "a") as file:
            file.write(text + "\n")
        if self.echo is not None:
            self.echo(text)

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        match = re.match(r"(Executing|Ending) Cell (\d+)", message)
        if match:
            if match[1] == "Executing":
                self.line(f"cell {match[2]}/{self.cells} started")
            return
        if message.startswith("Executing notebook with kernel"):
            return
        for text in message.rstrip("\n").splitlines():
            if text.strip():
                self.line(f"  {text}")

    def __enter__(self):
        self.saved = (self.logger.level, self.logger.propagate)
        self.logger.setLevel(logging.INFO)
        self.logger.propagate = False
        self.logger.addHandler(self)
        return self

    def __exit__(self, *exc):
        self.logger.removeHandler(self)
        self.logger.setLevel(self.saved[0])
        self.logger.propagate = self.saved[1]


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60:d}:{seconds % 60:02d}"


def _count_cells(ipynb: Path) -> int:
    import nbformat

    return len(nbformat.read(ipynb, as_version=4).cells)  # papermill numbers all cells


@contextlib.contextmanager
def _passive_wait_policy():
    """OMP_WAIT_POLICY=PASSIVE for the kernels started in the block, unless already set."""
    if WAIT_POLICY in os.environ:
        yield
        return
    os.environ[WAIT_POLICY] = "PASSIVE"
    try:
        yield
    finally:
        os.environ.pop(WAIT_POLICY, None)


@contextlib.contextmanager
def _stderr_to(path: Path):
    """Send this process's stderr (file descriptor 2) to `path` while the block runs.

    Why: the kernel papermill starts inherits descriptor 2 and writes its own log there; when
    the caller is itself a notebook (a sweep run from a chapter), that log would become cell
    output. The cells' output is unaffected: it travels over the kernel's messages.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(path, "ab") as log:
            os.dup2(log.fileno(), 2)
            yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def _describe_cell(ipynb: Path, source: str) -> str:
    """'code cell N (first line)' for the code cell holding `source`, counting from 1."""
    import nbformat

    sources = [cell.source for cell in nbformat.read(ipynb, as_version=4).cells
               if cell.cell_type == "code"]
    number = sources.index(source) + 1 if source in sources else "?"
    first = next((line.strip() for line in source.splitlines() if line.strip()), "")
    return f"code cell {number} ({first[:60]!r})"


def check_executed(ipynb: str | os.PathLike) -> list[str]:
    """What shows that an executed notebook did not really run; an empty list if it did.

    Every code cell with source must carry an execution count, none may hold an error
    output, and the notebook must have at least one code cell.
    """
    import nbformat

    path = Path(ipynb)
    try:
        notebook = nbformat.read(path, as_version=4)
    except Exception as error:  # noqa: BLE001 (nbformat raises several types for a bad file)
        return [f"{path}: not a readable notebook ({error})"]
    problems = []
    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    if not code_cells:
        problems.append(f"{path}: no code cells")
    for index, cell in enumerate(code_cells, start=1):
        if cell.source.strip() and cell.get("execution_count") is None:
            problems.append(f"{path}: code cell {index} was not executed")
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                problems.append(f"{path}: code cell {index} raised {output.get('ename')}: "
                                f"{output.get('evalue', '')}")
    return problems


def executed_files(paths: list[Path]) -> list[Path]:
    """The .ipynb files among `paths`, folders searched (checkpoints folders left out).

    Raises:
        UsageError: a path that does not exist, or no notebook at all.
    """
    files = []
    for path in map(Path, paths):
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*.ipynb")
                                if ".ipynb_checkpoints" not in p.parts))
        elif path.is_file():
            files.append(path)
        else:
            raise UsageError(f"{path}: no such file or folder")
    if not files:
        raise UsageError(f"no .ipynb files in {', '.join(map(str, paths))}")
    return files
