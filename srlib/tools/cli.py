"""The `srlib` command: train, upscale, evaluate, download, bench, notebook, sweep.

Every argument of every subcommand is declared here; the work is done by library functions
(`srlib.train.train`, `srlib.infer.upscale`, `srlib.evaluate.evaluate`, `srlib.tools.*`).
Every error a user can cause prints as one line on stderr, without a traceback:

- a wrong, missing or malformed argument: `srlib SUB: error: MESSAGE (see srlib SUB --help)`,
  exit 2 (argparse's own errors, and `srlib.errors.UsageError`);
- a file that cannot be used (image, checkpoint, download) or training that cannot go on:
  `srlib SUB: error: FILE: PROBLEM`, exit 1 (any other `srlib.errors.SrlibError`).

The command runs with OMP_WAIT_POLICY=PASSIVE unless the user set a policy: on a CPU shared
with other work, OpenMP threads that spin while they wait made small operations hundreds of
times slower (see `srlib.tools.bench`). libgomp reads the variable once, when torch loads, and
`import srlib` loads torch, so `main` sets it and re-executes the same command before any work.
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import os
import sys
from pathlib import Path
from typing import NoReturn

from srlib.errors import SrlibError, UsageError

WAIT_POLICY = "OMP_WAIT_POLICY"
COMMANDS = {  # subcommand -> one-line help
    "train": "train a network and write checkpoints",
    "upscale": "upscale one image with a trained checkpoint",
    "evaluate": "PSNR/SSIM on benchmark sets, the published protocol",
    "download": "download the benchmark sets, DIV2K or the 291 training images",
    "bench": "measure training and inference speed on this machine",
    "notebook": "run a book notebook with parameters, or check that it ran",
    "sweep": "run a notebook over a parameter grid and tabulate its metrics",
}


class OneLineParser(argparse.ArgumentParser):
    """argparse, except that a usage error is one line (no usage block), exit code 2."""

    def error(self, message: str) -> NoReturn:
        message = " ".join(message.splitlines())  # argparse messages are meant as one line
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# ---------------------------------------------------------------------------------------
# srlib train
# ---------------------------------------------------------------------------------------

# option -> TrainConfig field, for the options that set a field directly
TRAIN_FIELDS = {"loss": "loss", "data": "data", "data_root": "data_root",
                "val_data": "val_data", "steps": "max_steps", "epochs": "epochs",
                "batch_size": "batch_size", "patch_size": "patch_size", "lr": "lr",
                "schedule": "schedule", "warmup_steps": "warmup_steps", "init": "init",
                "device": "device", "precision": "precision", "seed": "seed",
                "run_dir": "run_dir", "checkpoint_every": "checkpoint_every",
                "val_every": "val_every"}
POSITIVE = ("steps", "epochs", "batch_size", "patch_size", "checkpoint_every", "val_every")


def add_train(parser: argparse.ArgumentParser) -> None:
    from srlib.model import PRESETS as MODEL_PRESETS
    from srlib.train import PRESETS, SCHEDULES, preset_config

    default = inspect.signature(preset_config).parameters["name"].default
    parser.add_argument("--config", default=default, choices=list(PRESETS),
                        help=f"training preset to start from (default: {default})")
    parser.add_argument("--model", choices=list(MODEL_PRESETS),
                        help="network size (default: the training preset's)")
    parser.add_argument("--scale", type=int, help="train for this scale alone (2, 4, 8)")
    parser.add_argument("--init", metavar="CHECKPOINT",
                        help="start from this checkpoint's weights (or 'pretrained'), with a "
                             "fresh optimiser and schedule")
    parser.add_argument("--widths", type=int, nargs=2, metavar=("FEATURE_WIDTH", "CHANNELS"),
                        help="the network at these widths; with --init, the checkpoint's "
                             "network grown to them, computing what it did at the start")
    parser.add_argument("--loss", help="dssim, mse, l1, charbonnier or a sum like dssim+0.5*l1")
    parser.add_argument("--data", help="default, train291, div2k, or a folder of HR images")
    parser.add_argument("--data-root", help="where train291 / div2k live (default: $SRLIB_DATA)")
    parser.add_argument("--val-data", help="folder of HR validation images, e.g. Set5")
    parser.add_argument("--steps", type=int, help="optimiser steps")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--patch-size", type=int, help="LR patch side")
    parser.add_argument("--lr", type=float, help="learning rate")
    parser.add_argument("--schedule", choices=SCHEDULES, help="learning-rate schedule")
    parser.add_argument("--warmup-steps", type=int, help="steps of linear warm-up")
    parser.add_argument("--device", help="auto, cpu, cuda, cuda:N, mps")
    parser.add_argument("--precision", help="auto, fp32, bf16, fp16")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--run-dir", help="where checkpoints and history go")
    parser.add_argument("--checkpoint-every", type=int, help="steps between checkpoints")
    parser.add_argument("--val-every", type=int,
                        help="steps between validations on --val-data (default: every epoch)")
    parser.add_argument("--no-resume", action="store_true",
                        help="start over even if run-dir holds a checkpoint")
    parser.add_argument("--no-progress", action="store_true", help="no progress lines")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the effective config and environment, do not train")


def run_train(args: argparse.Namespace) -> int:
    from srlib.model import check_scale
    from srlib.train import preset_config, train

    for name in POSITIVE:
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    if args.warmup_steps is not None and args.warmup_steps < 0:
        raise UsageError(f"--warmup-steps must not be negative, got {args.warmup_steps}")
    if args.scale is not None:
        check_scale(args.scale)
    changes = {field: getattr(args, option) for option, field in TRAIN_FIELDS.items()
               if getattr(args, option) is not None}
    if args.model is not None:
        changes["model"] = args.model
    elif args.init is not None:
        # Fine-tuning: the network is the one the checkpoint holds, unless --model says otherwise.
        from srlib.checkpoint import load_checkpoint
        from srlib.model import preset_from_config

        changes["model"] = preset_from_config(load_checkpoint(args.init)["config"])
    config = preset_config(args.config, scale=args.scale, **changes)
    if args.widths is not None:
        feature_width, channels = args.widths
        if min(args.widths) < 1:
            raise UsageError(f"--widths must be positive, got {feature_width} {channels}")
        config = config.replace(model=config.model.replace(feature_width=feature_width,
                                                           channels=channels))
    if args.dry_run:
        print(json.dumps(config.to_dict(), indent=1, default=str))
        print(f"{WAIT_POLICY}={os.environ.get(WAIT_POLICY, '(unset)')}")
        return 0
    from srlib.hardware import select_device
    from srlib.tools.backends import configure_backends
    from srlib.tools.distributed import joined

    configure_backends(select_device(config.device))
    with joined(config.device) as world:  # several processes under torchrun, else one
        history = train(config, resume=not args.no_resume, progress=not args.no_progress,
                        world=world)
    if not world.is_main:
        return 0  # under torchrun, rank 0 reports
    seconds = history["train_seconds"]
    final = history["loss"][-1] if history["loss"] else math.nan
    rate = history["patches"] / seconds if seconds else math.nan
    print(f"trained {len(history['loss'])} steps ({history['patches']} patches, {rate:.1f} "
          f"patches/s); final loss {final:.4f}; checkpoint {history['checkpoint']}")
    if history["val"]:
        last_step = history["val"][-1]["step"]
        for row in history["val"]:
            if row["step"] == last_step:
                print(f"validation x{row['scale']}: {row['psnr']:.2f} dB / {row['ssim']:.4f}")
    return 0


# ---------------------------------------------------------------------------------------
# srlib upscale, srlib evaluate
# ---------------------------------------------------------------------------------------


def add_upscale(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", type=Path, help="PNG or JPEG image to upscale")
    parser.add_argument("output", type=Path, help="where to write the upscaled image")
    parser.add_argument("--checkpoint", default="pretrained",
                        help="checkpoint file, or 'pretrained' for the shipped weights (default)")
    parser.add_argument("--scale", type=int, help="output scale (default: the model's smallest)")
    parser.add_argument("--tile", type=int, default=256,
                        help="LR tile side for bounded memory; 0 = whole image (default 256)")
    parser.add_argument("--overlap", type=int, default=16, help="LR pixels tiles share")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N, mps")
    parser.add_argument("--precision", default="fp32", help="fp32, bf16, fp16 or auto")


def _check_checkpoint(name: str) -> None:
    from srlib.checkpoint import PRETRAINED_NAME

    if name != PRETRAINED_NAME and not Path(name).is_file():
        raise UsageError(f"{name}: no such checkpoint file (--checkpoint)")


def run_upscale(args: argparse.Namespace) -> int:
    import torch

    from srlib.checkpoint import load_model
    from srlib.hardware import resolve_precision, select_device
    from srlib.imageio import IMAGE_SUFFIXES, load_image, save_image, to_tensor, to_uint8
    from srlib.infer import check_tiling, upscale
    from srlib.model import check_scale
    from srlib.tools.backends import configure_backends

    # Argument checks first (exit 2), before any file is read or any model built.
    if not args.input.is_file():
        what = "is a folder, not an image file" if args.input.is_dir() else "no such file"
        raise UsageError(f"{args.input}: {what} (input)")
    if args.output.suffix.lower() not in IMAGE_SUFFIXES:
        raise UsageError(f"{args.output}: unsupported output type {args.output.suffix!r} "
                         f"(use one of {', '.join(IMAGE_SUFFIXES)})")
    if not args.output.parent.resolve().is_dir():
        raise UsageError(f"{args.output.parent}: output folder does not exist")
    check_tiling(args.tile, args.overlap)
    if args.scale is not None:
        check_scale(args.scale)
    _check_checkpoint(args.checkpoint)
    device = select_device(args.device)
    configure_backends(device)
    dtype = resolve_precision(args.precision, device)
    image = load_image(args.input)
    model, _ = load_model(args.checkpoint, scale=args.scale)
    scale = args.scale or min(model.output_scales)
    lr_image = to_tensor(image).unsqueeze(0).to(device)  # (h, w, 3) -> (1, 3, h, w)
    model = model.to(device, memory_format=torch.channels_last)
    with torch.no_grad():
        sr = upscale(model, lr_image, scale, tile=args.tile, overlap=args.overlap, dtype=dtype)
    save_image(args.output, to_uint8(sr[0].cpu()))
    height, width = image.shape[:2]
    print(f"{args.input} ({width}x{height}) -> {args.output} "
          f"({scale * width}x{scale * height}, x{scale})")
    return 0


def add_evaluate(parser: argparse.ArgumentParser) -> None:
    from srlib.evaluate import GREY_TREATMENTS
    from srlib.metrics import SSIM_PADDINGS

    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--method", choices=["bicubic"], help="a reference method")
    source.add_argument("--checkpoint", metavar="CKPT",
                        help="a checkpoint file, or 'pretrained' for the bundled weights")
    parser.add_argument("--data", type=Path, metavar="DIR",
                        help="folder holding one folder of HR images per set (DIR/Set5, ...); "
                             "default: the data root's benchmarks/ ($SRLIB_DATA)")
    parser.add_argument("--sets", nargs="+", default=["Set5", "Set14"], metavar="SET",
                        help="set names, folders under --data (default: Set5 Set14)")
    parser.add_argument("--scales", nargs="+", type=int, metavar="S",
                        help="integer factors (default: 2 3 4 8 for bicubic, the "
                             "checkpoint's output scales otherwise)")
    parser.add_argument("--json", type=Path, metavar="FILE",
                        help="also write the rows, with per-image values, as JSON")
    parser.add_argument("--save-images", type=Path, metavar="DIR",
                        help="write the 8-bit outputs as DIR/<set>/x<scale>/<name>.png")
    parser.add_argument("--ssim", choices=SSIM_PADDINGS, default="valid",
                        help="SSIM variant: 'valid' (Wang's ssim_index, most tables) or "
                             "'replicate' (MATLAB's ssim()) (default: valid)")
    parser.add_argument("--grey", choices=GREY_TREATMENTS, default="grey",
                        help="single-channel HR images: score their grey values, or as RGB "
                             "through YCbCr (default: grey, as the published bicubic rows)")
    parser.add_argument("--rgb", action="store_true",
                        help="score RGB channels instead of Y (not comparable to the literature)")
    parser.add_argument("--shave", type=int, metavar="PIXELS",
                        help="border pixels left out of the scores (default: the scale, as "
                             "the published tables)")
    parser.add_argument("--tile", type=int, metavar="PIXELS",
                        help="upscale checkpoint models in tiles of this LR size (saves memory)")
    parser.add_argument("--device", default="auto", help="device for checkpoint models")


def _evaluation_sets(names: list[str], data: Path | None) -> dict[str, Path]:
    """Set name -> folder of HR images, from --data or the data root."""
    from srlib.data import benchmark_dir

    if data is None:
        return {name: benchmark_dir(name) for name in names}
    if not data.is_dir():
        raise UsageError(f"{data}: no such folder (--data)")
    folders = {name: data / name for name in names}
    for name, folder in folders.items():
        if not folder.is_dir():
            raise UsageError(f"{folder}: no folder for set {name} (one folder per set in --data)")
    return folders


def run_evaluate(args: argparse.Namespace) -> int:
    from srlib.evaluate import bicubic_upscaler, evaluate, format_table
    from srlib.model import check_scale

    for scale in args.scales or ():
        # bicubic serves x3; no network does
        check_scale(scale, network=args.checkpoint is not None)
    if args.shave is not None and args.shave < 0:
        raise UsageError(f"--shave must not be negative, got {args.shave}")
    if args.tile is not None and args.tile <= 0:
        raise UsageError(f"--tile must be a positive number of pixels, got {args.tile}")
    for option, path in (("--save-images", args.save_images), ("--json", args.json)):
        if path is not None and not path.parent.is_dir():
            raise UsageError(f"{path.parent}: no such folder ({option} {path})")
    if args.checkpoint is not None:
        _check_checkpoint(args.checkpoint)
    sets = _evaluation_sets(args.sets, args.data)
    if args.checkpoint is not None:
        upscaler, scales = _checkpoint_upscaler(args.checkpoint, args.scales, args.device,
                                                args.tile)
        method = "pretrained" if args.checkpoint == "pretrained" else Path(args.checkpoint).stem
    else:
        upscaler, method, scales = bicubic_upscaler, "bicubic", args.scales or [2, 3, 4, 8]
    rows = evaluate(upscaler, sets, scales, method=method, y_channel=not args.rgb,
                    ssim_padding=args.ssim, grey_as=args.grey, shave=args.shave,
                    save_images=args.save_images, log=lambda line: print(line, file=sys.stderr, flush=True))
    print(format_table(rows))
    if args.json is not None:
        from srlib.files import atomic_write

        atomic_write(args.json, (json.dumps(rows, indent=1) + "\n").encode())
    return 0


def _checkpoint_upscaler(checkpoint: str, scales: list[int] | None, device_name: str,
                         tile: int | None):
    """One model per scale (every error surfaces before any work), as one upscaler."""
    from srlib.checkpoint import load_model
    from srlib.hardware import select_device
    from srlib.infer import as_upscaler

    device = select_device(device_name)
    if scales is None:
        model, _ = load_model(checkpoint)
        scales = [int(scale) for scale in model.output_scales]
    upscalers = {scale: as_upscaler(load_model(checkpoint, scale=scale)[0], device, tile=tile)
                 for scale in scales}

    def upscaler(lr_image, scale: int):
        import torch

        with torch.no_grad():
            return upscalers[scale](lr_image, scale)

    return upscaler, list(scales)


# ---------------------------------------------------------------------------------------
# srlib download, srlib bench
# ---------------------------------------------------------------------------------------


def add_download(parser: argparse.ArgumentParser) -> None:
    from srlib.data import BENCHMARK_SETS, DIV2K_COUNTS, ENV_DATA_ROOT
    from srlib.tools.download import DATASETS

    parser.add_argument("what", choices=DATASETS, help="what to download")
    parser.add_argument("--root", type=Path, default=None,
                        help=f"data root (default: ${ENV_DATA_ROOT}, else ~/.cache/srlib)")
    parser.add_argument("--sets", nargs="+", metavar="SET",
                        help=f"benchmark sets (default: {' '.join(BENCHMARK_SETS)})")
    parser.add_argument("--splits", nargs="+", choices=list(DIV2K_COUNTS),
                        help="DIV2K splits (default: train valid; train is 3.5 GB)")
    parser.add_argument("--keep-archives", action="store_true", help="keep the downloaded archives")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run_download(args: argparse.Namespace) -> int:
    from srlib.imageio import list_images
    from srlib.tools import download

    progress = not args.no_progress
    if args.sets and args.what != "benchmarks":
        raise UsageError("--sets belongs to `srlib download benchmarks`")
    if args.splits and args.what != "div2k":
        raise UsageError("--splits belongs to `srlib download div2k`")
    if args.what == "benchmarks":
        folders = download.download_benchmarks(args.root, args.sets, progress=progress,
                                               keep_archive=args.keep_archives)
    elif args.what == "div2k":
        folders = download.download_div2k(args.root, args.splits or ("train", "valid"),
                                          progress=progress, keep_archives=args.keep_archives)
    else:
        folders = download.download_train291(args.root, progress=progress)
    for name, folder in folders.items():
        print(f"{name}: {folder} ({len(list_images(folder))} images)")
    return 0


def add_bench(parser: argparse.ArgumentParser) -> None:
    from srlib.model import PRESETS

    parser.add_argument("--short", action="store_true",
                        help="small sizes, one inference run: a few minutes on a 2-core CPU")
    parser.add_argument("--json", type=Path, help="also write the full result to this file")
    parser.add_argument("--presets", nargs="+", default=list(PRESETS), choices=list(PRESETS),
                        metavar="PRESET",
                        help=f"model presets to time (default: {' '.join(PRESETS)})")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    parser.add_argument("--threads", type=int, help="intra-op threads (default: PyTorch's)")
    parser.add_argument("--dry-run", action="store_true",
                        help="print what would be measured and the environment, measure nothing")


def run_bench(args: argparse.Namespace) -> int:
    from srlib.tools import bench

    if args.json is not None and not args.json.resolve().parent.is_dir():
        raise UsageError(f"{args.json.parent}: output folder does not exist")
    if args.threads is not None and args.threads < 1:
        raise UsageError(f"--threads must be at least 1, got {args.threads}")
    if args.dry_run:
        plan = bench.SHORT if args.short else bench.FULL
        print(json.dumps({"presets": args.presets, "plan": plan.__dict__}, default=str))
        print(f"{WAIT_POLICY}={os.environ.get(WAIT_POLICY, '(unset)')}")
        return 0
    result = bench.run_bench(short=args.short, presets=args.presets, device=args.device,
                             threads=args.threads, wait_policy="inherit",
                             log=lambda line: print(line, file=sys.stderr, flush=True))
    print(bench.format_report(result))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


# ---------------------------------------------------------------------------------------
# srlib notebook, srlib sweep
# ---------------------------------------------------------------------------------------


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[],
                        metavar=("NAME", "VALUE"),
                        help="set a parameter (repeatable); VALUE is read as a Python literal "
                             "when it is one (3e-4, 300, true, none), else as text")
    parser.add_argument("--output-dir", type=Path,
                        help="where results go (default: runs/notebooks/NAME, runs/sweep/NAME)")
    parser.add_argument("--kernel", help="Jupyter kernel name (default: the notebook's)")
    parser.add_argument("--timeout", type=float, help="seconds one cell may run")
    parser.add_argument("--quiet", action="store_true",
                        help="no progress lines on the terminal (the run's log keeps them)")


def add_notebook(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    run_parser = actions.add_parser(
        "run", help="execute a notebook with parameters (papermill), write it and its metrics")
    run_parser.add_argument("notebook", type=Path, help="jupytext .md or .ipynb notebook")
    _add_run_options(run_parser)
    check_parser = actions.add_parser(
        "check", help="fail unless every code cell of executed notebooks ran without error")
    check_parser.add_argument("paths", nargs="+", type=Path,
                              help=".ipynb files, or folders searched for them")


def _parameters(pairs: list[list[str]]) -> dict:
    from srlib.tools.notebook import parse_value

    names = [name for name, _ in pairs]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise UsageError(f"-p {', '.join(repeated)} given more than once")
    return {name: parse_value(value) for name, value in pairs}


def run_notebook_command(args: argparse.Namespace) -> int:
    from srlib.tools.notebook import METRICS_NAME, check_executed, executed_files, run_notebook

    if args.action == "check":
        files = executed_files(args.paths)
        problems = [problem for path in files for problem in check_executed(path)]
        for problem in problems:
            print(problem)
        verdict = f"{len(problems)} problem(s)" if problems else "all cells executed, no errors"
        print(f"{len(files)} notebook(s) checked: {verdict}")
        return 1 if problems else 0
    result = run_notebook(args.notebook, _parameters(args.parameter), args.output_dir,
                          kernel_name=args.kernel, timeout=args.timeout,
                          echo=None if args.quiet else print)
    print(f"executed {args.notebook} in {result['seconds']:.0f} s -> {result['notebook']}")
    if result["metrics"] is not None:
        print(f"metrics -> {Path(result['output_dir']) / METRICS_NAME}")
        print(json.dumps(result["metrics"], indent=1))
    return 0


def add_sweep(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("notebook", type=Path, help="jupytext .md or .ipynb notebook")
    parser.add_argument("--grid", action="append", required=True, metavar="NAME=V1,V2",
                        help="a parameter and its values (repeatable: the runs are the product)")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once (default 1)")
    _add_run_options(parser)


def run_sweep(args: argparse.Namespace) -> int:
    from srlib.tools.sweep import TABLE_NAME, format_markdown, parse_grid, sweep

    output_dir = args.output_dir or Path("runs") / "sweep" / args.notebook.stem
    rows = sweep(args.notebook, parse_grid(args.grid), _parameters(args.parameter), output_dir,
                 jobs=args.jobs, kernel_name=args.kernel, timeout=args.timeout,
                 echo=None if args.quiet else print)
    print(format_markdown(rows))
    print(f"\ntable -> {Path(output_dir) / (TABLE_NAME + '.md')} (and .csv, .json)")
    return 0


# ---------------------------------------------------------------------------------------
# The command
# ---------------------------------------------------------------------------------------

SUBCOMMANDS = {  # name -> (declare its arguments, run it)
    "train": (add_train, run_train),
    "upscale": (add_upscale, run_upscale),
    "evaluate": (add_evaluate, run_evaluate),
    "download": (add_download, run_download),
    "bench": (add_bench, run_bench),
    "notebook": (add_notebook, run_notebook_command),
    "sweep": (add_sweep, run_sweep),
}


def build_parser() -> argparse.ArgumentParser:
    """The `srlib` parser, one subparser per entry of `COMMANDS`."""
    parser = OneLineParser(prog="srlib", description=__doc__.splitlines()[0])
    # Subparsers are built with the parent's class, so they report errors in one line too.
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, help_text in COMMANDS.items():
        add, run = SUBCOMMANDS[name]
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        add(sub)
        sub.set_defaults(_run=run, _parser=sub)
    return parser


def _reexec_with_passive_wait_policy() -> None:
    """Run this same command again with OMP_WAIT_POLICY=PASSIVE, unless the user set one."""
    if WAIT_POLICY in os.environ or os.name != "posix":
        return
    os.environ[WAIT_POLICY] = "PASSIVE"
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", "srlib", *sys.argv[1:]])


def main(argv: list[str] | None = None) -> int:
    """`srlib ARGV` (None: the process's own arguments, after the wait-policy re-exec)."""
    if argv is None:
        _reexec_with_passive_wait_policy()
    parser = build_parser()
    args, extras = parser.parse_known_args(argv)
    if extras:  # reported by the subcommand's parser, so the hint names its --help
        args._parser.error(f"unrecognized arguments: {' '.join(extras)}")
    try:
        return int(args._run(args) or 0)
    except SrlibError as error:
        message = " ".join(str(error).splitlines())  # one line whatever the message holds
        if isinstance(error, UsageError):
            message += f" (see {args._parser.prog} --help)"
        print(f"{args._parser.prog}: error: {message}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print(f"srlib {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
