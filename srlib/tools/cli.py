"""The `srlib` command: one entry point, a subcommand per task.

Each subcommand lives beside the code it drives: module `srlib.X` defines
`configure_parser(parser)` and `run(args) -> int`. Every error a user can cause prints as
one line on stderr, without a traceback:

- a wrong, missing or malformed argument: `srlib SUB: error: MESSAGE (see srlib SUB --help)`,
  exit 2 (argparse's own errors, and `srlib.errors.UsageError`);
- a file that cannot be used (image, checkpoint, download) or training that cannot go on:
  `srlib SUB: error: FILE: PROBLEM`, exit 1 (any other `srlib.errors.SrlibError`).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import NoReturn

from srlib.errors import SrlibError

# subcommand -> (module, one-line help)
COMMANDS = {
    "train": ("srlib.train", "train a network and write checkpoints"),
    "upscale": ("srlib.infer", "upscale one image with a trained checkpoint"),
    "evaluate": ("srlib.evaluate", "PSNR/SSIM on benchmark sets, the published protocol"),
    "download": ("srlib.datasets", "download benchmark sets or DIV2K"),
    "bench": ("srlib.bench", "measure training and inference speed on this machine"),
    "notebook": ("srlib.notebook", "run a book notebook with parameters, or check it ran"),
    "sweep": ("srlib.sweep", "run a notebook over a parameter grid and tabulate its metrics"),
}


class OneLineParser(argparse.ArgumentParser):
    """argparse, except that a usage error is one line (no usage block), exit code 2."""

    def error(self, message: str) -> NoReturn:
        message = " ".join(message.splitlines())  # argparse messages are meant as one line
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The `srlib` parser, one subparser per module of `COMMANDS` that is installed."""
    parser = OneLineParser(prog="srlib", description=__doc__.splitlines()[0])
    # Subparsers are built with the parent's class, so they report errors in one line too.
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            # Only the subcommand's own module may be absent (not written yet, or left out
            # of a build); a module it imports that is missing is a real error.
            if error.name != module_name:
                raise
            continue
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        module.configure_parser(sub)
        sub.set_defaults(_run=module.run, _parser=sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extras = parser.parse_known_args(argv)
    if extras:  # reported by the subcommand's parser, so the hint names its --help
        args._parser.error(f"unrecognized arguments: {' '.join(extras)}")
    try:
        return int(args._run(args) or 0)
    except SrlibError as error:
        message = " ".join(str(error).splitlines())  # one line whatever the message holds
        print(f"srlib {args.command}: error: {message}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print(f"srlib {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
