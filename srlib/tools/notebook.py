"""The book's notebooks as parameterised programs, and the small helpers their cells share.

The chapters are jupytext MyST Markdown files (``notebooks/*.md``): plain text that diffs
well, with no outputs in git. `run_notebook` turns one into an .ipynb (jupytext), puts the
given values into its cell tagged ``parameters`` and executes it (papermill), so any chapter
can be re-run with other settings:

    srlib notebook run notebooks/03_training.md -p loss dssim -p steps 500 --output-dir runs/dssim

Conventions a notebook follows to be run this way:

- its ``parameters`` cell assigns a default to every parameter (papermill injects a cell
  after it that overrides the ones given);
- a parameter named ``output_dir`` receives the folder of the run; the notebook writes what
  it produces there, and its measurements as ``output_dir/metrics.json`` (a flat JSON
  object), which `run_notebook` returns and `srlib.sweep` collects into one table.

`check_executed` is the guard of the book build: a notebook whose code cells did not all run,
or that holds an error output, fails it (a plain Sphinx build reports success either way).
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from srlib.errors import SrlibError, UsageError

PARAMETERS_TAG = "parameters"
METRICS_NAME = "metrics.json"
OUTPUT_DIR_PARAMETER = "output_dir"
KERNEL_LOG = "kernel.log"  # the kernel process's own log (not cell output), per run


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
    log_output: bool = False,
) -> dict:
    """Execute a notebook with parameters, as papermill does, and collect what it measured.

    The notebook runs with its own folder as the working directory (as in JupyterLab and in
    the book build), in a fresh kernel that inherits this process's environment.

    Args:
        notebook: a jupytext text notebook (.md) or an .ipynb.
        parameters: name -> value; every name must be assigned in its ``parameters`` cell.
        output_dir: where the executed notebook (and, for notebooks with an ``output_dir``
            parameter, everything they write) goes; default ``runs/notebooks/<name>``.
        kernel_name: Jupyter kernel; default the notebook's own (``python3``).
        timeout: seconds one cell may run (None: no limit).
        log_output: echo the cells' output while they run, and the kernel's own log (which
            otherwise goes to ``output_dir/kernel.log``).

    Returns:
        {"notebook": executed .ipynb path, "output_dir", "parameters": the values given,
        "metrics": the notebook's ``metrics.json`` as a dict, or None, "seconds": float}.

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
        started = time.perf_counter()
        try:
            log = output_dir / KERNEL_LOG
            with contextlib.nullcontext() if log_output else _stderr_to(log):
                papermill.execute_notebook(
                    str(source), str(executed), parameters=parameters, kernel_name=kernel_name,
                    cwd=str(notebook.resolve().parent), progress_bar=False,
                    log_output=log_output, execution_timeout=timeout,
                )
        except PapermillExecutionError as error:
            message = str(error.evalue).strip().splitlines()[0] if error.evalue else ""
            raise SrlibError(f"{notebook}: {_describe_cell(executed, error.source)} raised "
                             f"{error.ename}: {message} (executed notebook: {executed})") from None
        seconds = time.perf_counter() - started
    metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else None
    return {"notebook": str(executed), "output_dir": str(output_dir), "parameters": parameters,
            "metrics": metrics, "seconds": seconds}


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


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Arguments of `srlib notebook {run,check}`."""
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    run_parser = actions.add_parser(
        "run", help="execute a notebook with parameters (papermill), write it and its metrics")
    run_parser.add_argument("notebook", type=Path, help="jupytext .md or .ipynb notebook")
    add_run_arguments(run_parser)
    run_parser.add_argument("--log-output", action="store_true",
                            help="echo cell output and the kernel's log while it runs")
    check_parser = actions.add_parser(
        "check", help="fail unless every code cell of executed notebooks ran without error")
    check_parser.add_argument("paths", nargs="+", type=Path,
                              help=".ipynb files, or folders searched for them")


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The options `srlib notebook run` and `srlib sweep` share."""
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[],
                        metavar=("NAME", "VALUE"),
                        help="set a parameter (repeatable); VALUE is read as a Python literal "
                             "when it is one (3e-4, 300, true, none), else as text")
    parser.add_argument("--output-dir", type=Path,
                        help="where results go (default: runs/notebooks/NAME, runs/sweep/NAME)")
    parser.add_argument("--kernel", help="Jupyter kernel name (default: the notebook's)")
    parser.add_argument("--timeout", type=float, help="seconds one cell may run")


def parameters_from(pairs: list[list[str]]) -> dict:
    return {name: parse_value(value) for name, value in pairs}


def run(args: argparse.Namespace) -> int:
    if args.action == "check":
        files = []
        for path in args.paths:
            if path.is_dir():
                files.extend(sorted(p for p in path.rglob("*.ipynb")
                                    if ".ipynb_checkpoints" not in p.parts))
            elif path.is_file():
                files.append(path)
            else:
                raise UsageError(f"{path}: no such file or folder")
        if not files:
            raise UsageError(f"no .ipynb files in {', '.join(map(str, args.paths))}")
        problems = [problem for path in files for problem in check_executed(path)]
        for problem in problems:
            print(problem)
        verdict = f"{len(problems)} problem(s)" if problems else "all cells executed, no errors"
        print(f"{len(files)} notebook(s) checked: {verdict}")
        return 1 if problems else 0
    result = run_notebook(args.notebook, parameters_from(args.parameter), args.output_dir,
                          kernel_name=args.kernel, timeout=args.timeout,
                          log_output=args.log_output)
    print(f"executed {args.notebook} in {result['seconds']:.0f} s -> {result['notebook']}")
    if result["metrics"] is not None:
        print(f"metrics -> {Path(result['output_dir']) / METRICS_NAME}")
        print(json.dumps(result["metrics"], indent=1))
    return 0


# ---------------------------------------------------------------------------------------
# Helpers the chapters share
# ---------------------------------------------------------------------------------------

def repo_root(start: str | os.PathLike | None = None) -> Path:
    """The book's root (the folder holding ``_toc.yml``) above `start` (default: the cwd)."""
    start = Path(start or Path.cwd()).resolve()
    for folder in (start, *start.parents):
        if (folder / "_toc.yml").is_file():
            return folder
    return start


def book_run_dir(name: str, *, quick: bool | None = None) -> Path:
    """Where the chapters keep a run: ``runs/book/<name>``, ``-quick`` added in quick mode."""
    from srlib.config import quick_mode

    quick = quick_mode() if quick is None else quick
    return repo_root() / "runs" / "book" / (f"{name}-quick" if quick else name)


def set_threads(threads: int | None) -> int:
    """Use `threads` CPU threads for torch (None or 0: leave torch's choice); the count used.

    Why: on a small machine shared with other work, several OpenMP threads waiting for each
    other can run many times slower than one thread alone.
    """
    if threads:
        torch.set_num_threads(int(threads))
    return torch.get_num_threads()


def upscaler(model, device: str | torch.device | None = None):
    """`model` as an `srlib.evaluate` upscaler: (lr (1, 3, h, w), scale) -> (1, 3, sh, sw) on
    the CPU, computed on `device` (default: where the model is)."""
    from srlib.infer import upscale

    device = torch.device(device) if device is not None else next(model.parameters()).device
    model = model.to(device).eval()
    return lambda lr, scale: upscale(model, lr.to(device), scale).cpu()


def write_metrics(path: str | os.PathLike, metrics: dict) -> Path:
    """Write a notebook's measurements as JSON, atomically (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(handle, "w") as file:
        json.dump(metrics, file, indent=1)
    os.replace(temporary, path)
    return path


def as_image(image) -> np.ndarray:
    """A displayable (H, W, 3) or (H, W) array from a uint8 array or a [0, 1] float tensor
    shaped (H, W), (C, H, W) or (1, C, H, W) with C = 1 or 3."""
    if isinstance(image, Tensor):
        image = image.detach().float().cpu().clamp(0, 1)
        if image.ndim == 4:
            image = image[0]  # (1, C, H, W) -> (C, H, W)
        if image.ndim == 3:
            image = image.permute(1, 2, 0)  # (C, H, W) -> (H, W, C)
            image = image[..., 0] if image.shape[-1] == 1 else image
        image = image.numpy()
    return np.asarray(image)


def show_images(images, titles=None, *, columns: int | None = None, size: float = 3.0,
                title: str | None = None):
    """A grid of images without axes (nearest-neighbour, so pixels stay pixels); the figure."""
    import matplotlib.pyplot as plt

    images = [as_image(image) for image in images]
    columns = columns or len(images)
    rows = math.ceil(len(images) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(size * columns, size * rows),
                                squeeze=False)
    for index, axis in enumerate(axes.flat):
        axis.axis("off")
        if index < len(images):
            axis.imshow(images[index], cmap="gray", interpolation="nearest")
            if titles is not None:
                axis.set_title(titles[index], fontsize=9)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    return figure


def most_different_crop(images: list[Tensor], size: int) -> tuple[int, int]:
    """(top, left) of the `size` x `size` window where `images` (each (1, 3, H, W), same
    shape) disagree most: the largest mean over the window of their per-pixel variance."""
    stack = torch.cat([image.float() for image in images])  # (N, 3, H, W)
    spread = stack.var(dim=0).mean(dim=0)[None, None]  # (N, 3, H, W) -> (1, 1, H, W)
    windows = torch.nn.functional.avg_pool2d(spread, size, stride=max(1, size // 4))
    index = int(windows.flatten().argmax())
    stride = max(1, size // 4)
    return (index // windows.shape[-1]) * stride, (index % windows.shape[-1]) * stride


def crop(image: Tensor, top: int, left: int, size: int) -> Tensor:
    """The (..., size, size) window of a (..., H, W) tensor at (top, left)."""
    return image[..., top:top + size, left:left + size]


def residual_norms(model, lr: Tensor) -> list[float]:
    """Mean |residual| each residual block hands on, in the order the blocks run.

    The back-projection flow passes on what the blocks so far failed to explain; the design
    intends it to shrink from block to block (whether it does is for this to measure).

    Args:
        model: an `srlib.model.SRNet`.
        lr: (B, 3, h, w) in [0, 1].
    """
    from srlib.model import ResidualBlock

    norms = []
    def record(_, __, output) -> None:
        norms.append(output[1].abs().mean().item())  # output = (U, residual handed on)

    hooks = [module.register_forward_hook(record)
             for module in model.modules() if isinstance(module, ResidualBlock)]
    try:
        with torch.no_grad():
            model(lr)
    finally:
        for hook in hooks:
            hook.remove()
    return norms


def published_rows(path: str | os.PathLike | None = None) -> list[dict]:
    """The published PSNR/SSIM rows of ``shared/REFERENCE.md`` as `srlib.evaluate` rows.

    Returns:
        [{"set", "scale", "method", "psnr", "ssim"}], method names suffixed " (published)".

    Raises:
        UsageError: the file is not there.
    """
    from srlib.datasets import SHARED_DIR

    path = Path(path) if path is not None else SHARED_DIR / "REFERENCE.md"
    if not path.is_file():
        raise UsageError(f"{path}: no table of published results")
    rows, header = [], None
    for line in path.read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if cells[:2] == ["scale", "method"]:
            header = cells[2:]
        elif header and len(cells) == len(header) + 2 and cells[0].startswith("x"):
            for set_name, value in zip(header, cells[2:]):
                psnr_text, _, ssim_text = value.partition("/")
                rows.append({"set": set_name, "scale": int(cells[0][1:]),
                             "method": f"{cells[1]} (published)",
                             "psnr": float(psnr_text), "ssim": float(ssim_text)})
        elif not line.strip().startswith("|"):
            header = None
    return rows


def split_view(before: Tensor, after: Tensor, position: float) -> Tensor:
    """`before` left of `position` (0..1 of the width), `after` right of it, a white seam."""
    width = before.shape[-1]
    cut = round(position * width)
    view = torch.cat([before[..., :cut], after[..., cut:]], dim=-1)  # (.., H, W)
    view[..., max(0, cut - 1):cut + 1] = 1.0
    return view


def before_after(before: Tensor, after: Tensor, labels=("before", "after")):
    """An ipywidgets slider that moves the seam between two images (for JupyterLab)."""
    import ipywidgets
    import matplotlib.pyplot as plt

    def draw(position: float = 0.5):
        figure = show_images([split_view(before, after, position)],
                             [f"{labels[0]} | {labels[1]}"], size=6)
        plt.show(figure)

    slider = ipywidgets.FloatSlider(value=0.5, min=0.0, max=1.0, step=0.01,
                                    description="seam", continuous_update=True)
    return ipywidgets.interactive(draw, position=slider)
