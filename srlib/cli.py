"""The `srlib` command: one entry point, a subcommand per task.

Each subcommand lives beside the code it drives: module `srlib.X` defines
`configure_parser(parser)` and `run(args) -> int`. Errors srlib raises for bad input
(`srlib.errors.SrlibError`) print as one line, without a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from srlib.errors import SrlibError

# subcommand -> (module, one-line help)
COMMANDS = {
    "train": ("srlib.train", "train a network and write checkpoints"),
    "upscale": ("srlib.infer", "upscale one image with a trained checkpoint"),
    "evaluate": ("srlib.evaluate", "PSNR/SSIM on benchmark sets, the published protocol"),
    "download": ("srlib.datasets", "download benchmark sets or DIV2K"),
    "bench": ("srlib.bench", "measure training and inference speed on this machine"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="srlib", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        module = importlib.import_module(module_name)
        module.configure_parser(sub)
        sub.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except SrlibError as error:
        print(f"srlib {args.command}: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print(f"srlib {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
