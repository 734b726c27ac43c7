"""The `srlib` command under bad input (issue 7): one line on stderr, no traceback.

Wrong, missing or malformed arguments, an unknown preset, a scale no network can serve, a
missing output folder or input path: exit 2. A file that cannot be used (image, checkpoint)
or a checkpoint that cannot serve the asked scale: exit 1, naming the file.

Most cases call `srlib.tools.cli.main` in this process (fast); a few run the real
`python -m srlib` in parallel subprocesses, where a stray warning or traceback would show.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from srlib.checkpoint import save_checkpoint
from srlib.model import PRESETS, build_model
from srlib.tools import cli
from srlib.train import TrainConfig

REPO = Path(__file__).resolve().parents[1]
TINY_MODEL = PRESETS["small"].for_scale(2).replace(feature_width=8, channels=8)
BAD_IMAGES = {  # kind -> what the one-line error says
    "zero-byte": "empty file (0 bytes)",
    "truncated": "truncated",
    "text-as-png": "not an image",
    "too-large": "above the limit",
}


class RunsCode:
    """Unpickling this calls os.system: what a malicious checkpoint would carry."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _png(pixels: np.ndarray) -> bytes:
    from io import BytesIO

    buffer = BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _huge_png() -> bytes:
    """A 1x1 PNG whose header claims 12000 x 10000 pixels (a decompression bomb's shape)."""
    data = bytearray(_png(np.zeros((1, 1, 3), np.uint8)))
    data[16:24] = (12000).to_bytes(4, "big") + (10000).to_bytes(4, "big")  # IHDR width, height
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")  # IHDR's CRC
    return bytes(data)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models; two OpenMP threads only fight on a busy CPU
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """Images good and bad, checkpoints good, foreign and malicious, evaluation folders."""
    root = tmp_path_factory.mktemp("cli")
    rng = np.random.default_rng(0)
    paths = {"root": root, "good.png": root / "good.png", "out": root / "out"}
    paths["out"].mkdir()
    paths["good.png"].write_bytes(_png(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)))
    photo = _png(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    bad = {
        "zero-byte": b"",
        "truncated": photo[: len(photo) // 2],
        "text-as-png": b"This is a text file with a .png suffix.\n",
        "too-large": _huge_png(),
    }
    for kind, data in bad.items():
        paths[kind] = root / f"{kind}.png"
        paths[kind].write_bytes(data)
        # An evaluation data folder whose set holds this one image.
        paths[f"data-{kind}"] = root / f"data-{kind}"
        (paths[f"data-{kind}"] / "Set").mkdir(parents=True)
        (paths[f"data-{kind}"] / "Set" / f"{kind}.png").write_bytes(data)
    config = TrainConfig(model=TINY_MODEL)
    paths["x2.pt"] = save_checkpoint(root / "x2.pt", {"config": config.to_dict(),
                                                      "model": build_model(TINY_MODEL).state_dict()})
    paths["foreign.pt"] = root / "foreign.pt"
    torch.save({"state_dict": build_model(TINY_MODEL).state_dict()}, paths["foreign.pt"])
    paths["marker"] = root / "code-ran"
    paths["evil.pt"] = root / "evil.pt"
    torch.save({"format": "srlib", "config": {}, "model": RunsCode(paths["marker"])},
               paths["evil.pt"])
    return paths


def fill(text: str, files: dict[str, Path]) -> str:
    """Replace each {name} in `text` by the path files[name]."""
    return re.sub(r"\{([^{}]+)\}", lambda match: str(files[match[1]]), text)


def main(argv: list[str], capsys) -> tuple[int, str, str]:
    """`srlib ARGV` in this process: (exit code, stdout, stderr)."""
    try:
        code = cli.main([str(arg) for arg in argv])
    except SystemExit as exit_:  # argparse exits by itself
        code = exit_.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_error(code: int, err: str, expected_code: int, command: str, *parts) -> None:
    assert code == expected_code, err
    assert err.endswith("\n") and err.count("\n") == 1, f"not one line: {err!r}"
    assert err.startswith(f"srlib{' ' + command if command else ''}: error: "), err
    assert "Traceback" not in err
    for part in parts:
        assert str(part) in err, (part, err)


# ---------------------------------------------------------------------------------------
# Arguments: exit 2, one line
# ---------------------------------------------------------------------------------------

# (argv with {names} from `files`, text the error must contain)
USAGE_ERRORS = [
    ([], "the following arguments are required: COMMAND"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    (["upscale"], "the following arguments are required: input, output"),
    (["upscale", "{good.png}", "{out}/a.png", "--scale", "two"], "invalid int value: 'two'"),
    (["upscale", "{good.png}", "{out}/a.png", "--checkpoint", "{x2.pt}", "--scale", "3"],
     "unsupported scale 3"),
    (["upscale", "{good.png}", "{out}/a.png", "--checkpoint", "{x2.pt}", "--scale", "1"],
     "unsupported scale 1"),
    (["upscale", "{good.png}", "{root}/missing/a.png", "--checkpoint", "{x2.pt}"],
     "missing: output folder does not exist"),
    (["upscale", "{good.png}", "{out}/a.txt", "--checkpoint", "{x2.pt}"],
     "unsupported output type '.txt'"),
    (["upscale", "{root}/missing.png", "{out}/a.png", "--checkpoint", "{x2.pt}"],
     "missing.png: no such file"),
    (["upscale", "{good.png}", "{out}/a.png", "--checkpoint", "{root}/nope.pt"],
     "nope.pt: no such checkpoint file"),
    (["upscale", "{good.png}", "{out}/a.png", "--checkpoint", "{x2.pt}", "--tile", "-1"],
     "tile must be 0 (no tiling) or positive, got -1"),
    (["upscale", "{good.png}", "{out}/a.png", "--checkpoint", "{x2.pt}", "--tile", "16"],
     "tile overlap 16 must be under half the tile side 16"),
    (["upscale", "{good.png}", "{out}/a.png", "--checkpoint", "{x2.pt}", "--device", "tpu"],
     "unknown device 'tpu'"),
    (["train", "--model", "huge"], "invalid choice: 'huge'"),
    (["train", "--preset", "small"], "unrecognized arguments: --preset small"),
    (["train", "--schedule", "linear"], "invalid choice: 'linear'"),
    (["train", "--warmup-steps", "-1"], "--warmup-steps must not be negative"),
    (["train", "--scale", "3"], "scale 3"),
    (["train", "--config", "huge"], "invalid choice: 'huge'"),
    (["train", "--batch-size", "0"], "--batch-size must be at least 1"),
    (["train", "--steps"], "expected one argument"),
    (["evaluate"], "one of the arguments --method --checkpoint is required"),
    (["evaluate", "--method", "bicubic", "--data", "{root}/nowhere"], "nowhere: no such folder"),
    (["evaluate", "--method", "bicubic", "--data", "{root}", "--scales", "1"],
     "unsupported scale 1"),
    (["evaluate", "--checkpoint", "{x2.pt}", "--data", "{root}", "--scales", "3"],
     "unsupported scale 3"),
    (["evaluate", "--checkpoint", "{root}/nope.pt", "--data", "{root}"],
     "nope.pt: no such checkpoint file"),
    (["evaluate", "--method", "bicubic", "--data", "{root}", "--shave", "-1"],
     "--shave must not be negative"),
    (["evaluate", "--method", "bicubic", "--json", "{root}/missing/rows.json"],
     "missing: no such folder"),
    (["download", "everything"], "invalid choice: 'everything'"),
]


@pytest.mark.parametrize(("argv", "expected"), USAGE_ERRORS,
                         ids=[" ".join(argv)[:60] or "(none)" for argv, _ in USAGE_ERRORS])
def test_argument_errors_exit_2_in_one_line(files, capsys, argv, expected):
    argv = [fill(arg, files) for arg in argv]
    code, out, err = main(argv, capsys)
    command = argv[0] if argv and argv[0] in cli.COMMANDS else ""
    assert_error(code, err, 2, command, expected)
    assert out == ""


def test_argparse_errors_point_to_help(capsys):
    code, _, err = main(["train", "--bogus"], capsys)
    assert_error(code, err, 2, "train", "unrecognized arguments: --bogus",
                 "(see srlib train --help)")
    assert "usage:" not in err


# ---------------------------------------------------------------------------------------
# Files that cannot be used: exit 1, one line naming the file
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(BAD_IMAGES))
def test_upscale_refuses_a_bad_image_naming_it(files, capsys, kind):
    output = files["out"] / f"{kind}-out.png"
    code, _, err = main(["upscale", files[kind], output, "--checkpoint", files["x2.pt"]], capsys)
    assert_error(code, err, 1, "upscale", files[kind], BAD_IMAGES[kind])
    assert not output.exists()


@pytest.mark.parametrize("kind", list(BAD_IMAGES))
def test_evaluate_refuses_a_bad_image_naming_it(files, capsys, kind):
    data = files[f"data-{kind}"]
    code, out, err = main(["evaluate", "--method", "bicubic", "--data", data, "--sets", "Set",
                           "--scales", "2"], capsys)
    assert_error(code, err, 1, "evaluate", data / "Set" / f"{kind}.png", BAD_IMAGES[kind])
    assert out == ""


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["upscale", "{good.png}", "{out}/a.png", "--checkpoint", "{foreign.pt}"],
         "{foreign.pt}: not an srlib checkpoint"),
        (["upscale", "{good.png}", "{out}/a.png", "--checkpoint", "{evil.pt}"],
         "{evil.pt}: refused: holds Python objects"),
        (["upscale", "{good.png}", "{out}/a.png", "--checkpoint", "{x2.pt}", "--scale", "4"],
         "{x2.pt}: checkpoint serves x2, not x4"),
        (["evaluate", "--checkpoint", "{x2.pt}", "--data", "{data-zero-byte}", "--sets", "Set",
          "--scales", "2", "4"], "{x2.pt}: checkpoint serves x2, not x4"),
    ],
    ids=["foreign", "malicious", "upscale-scale-not-served", "evaluate-scale-not-served"],
)
def test_checkpoint_that_cannot_serve_exits_1_naming_it(files, capsys, argv, expected):
    argv = [fill(arg, files) for arg in argv]
    code, _, err = main(argv, capsys)
    assert_error(code, err, 1, argv[0], fill(expected, files))
    assert not files["marker"].exists()


def test_train_into_an_unwritable_run_folder_exits_1_naming_it(files, capsys):
    photos = files["root"] / "photos"
    photos.mkdir(exist_ok=True)
    rng = np.random.default_rng(1)
    for index in range(2):
        (photos / f"{index}.png").write_bytes(
            _png(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)))
    blocker = files["root"] / "blocker"
    blocker.write_text("a file where the run folder's parent should be")
    code, _, err = main(["train", "--data", photos, "--run-dir", blocker / "run", "--scale", "2",
                         "--steps", "1", "--checkpoint-every", "1", "--patch-size", "8",
                         "--batch-size", "1", "--device", "cpu", "--precision", "fp32",
                         "--no-progress"], capsys)
    assert_error(code, err, 1, "train", blocker / "run", f"{blocker} is a file, not a folder")


def test_upscale_with_a_good_checkpoint_works(files, capsys):
    output = files["out"] / "good-x2.png"
    code, out, err = main(["upscale", files["good.png"], output, "--checkpoint",
                           files["x2.pt"]], capsys)
    assert code == 0 and err == ""
    assert "(32x24, x2)" in out
    assert Image.open(output).size == (32, 24)


# ---------------------------------------------------------------------------------------
# The parser itself
# ---------------------------------------------------------------------------------------


def test_every_subcommand_has_help_and_arguments(capsys):
    assert list(cli.SUBCOMMANDS) == list(cli.COMMANDS)
    for name in cli.COMMANDS:
        code, out, _ = main([name, "--help"], capsys)
        assert code == 0 and f"usage: srlib {name}" in out


def test_train_dry_run_prints_the_effective_config(capsys, tmp_path):
    code, out, _ = main(["train", "--config", "small", "--model", "pyramid", "--scale", "4",
                         "--steps", "7", "--schedule", "cosine", "--warmup-steps", "2",
                         "--init", "pretrained", "--run-dir", tmp_path, "--dry-run"], capsys)
    assert code == 0
    config = out[:out.rindex("}") + 1]
    import json

    values = json.loads(config)
    assert values["max_steps"] == 7 and values["schedule"] == "cosine"
    assert values["warmup_steps"] == 2 and values["init"] == "pretrained"
    assert values["model"]["channels"] == PRESETS["pyramid"].channels
    assert max(values["model"]["output_scales"]) == 4


def test_error_messages_with_line_breaks_still_print_as_one_line(monkeypatch, capsys):
    from srlib.errors import DownloadError

    def fail(args):
        raise DownloadError("first line\nsecond line")

    monkeypatch.setitem(cli.SUBCOMMANDS, "download", (cli.add_download, fail))
    code, _, err = main(["download", "div2k"], capsys)
    assert_error(code, err, 1, "download", "first line second line")


# ---------------------------------------------------------------------------------------
# The real entry point, in subprocesses run in parallel
# ---------------------------------------------------------------------------------------

SUBPROCESS_CASES = {
    # name: (argv with {names}, exit code, text stderr must contain; None: a success)
    "unknown model": (["train", "--model", "huge"], 2, "invalid choice: 'huge'"),
    "zero-byte image": (["upscale", "{zero-byte}", "{out}/z.png", "--checkpoint", "{x2.pt}"],
                        1, "{zero-byte}: empty file"),
    "works": (["upscale", "{good.png}", "{out}/w.png", "--checkpoint", "{x2.pt}", "--scale", "2",
               "--device", "cpu"], 0, None),
}


@pytest.fixture(scope="module")
def subprocess_results(files) -> dict[str, subprocess.CompletedProcess]:
    """Start every case at once (each pays Python's and torch's start-up), then collect."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    running = {}
    for name, (argv, _, _) in SUBPROCESS_CASES.items():
        command = [sys.executable, "-m", "srlib", *(fill(arg, files) for arg in argv)]
        running[name] = subprocess.Popen(command, cwd=REPO, env=env, text=True,
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    results = {}
    for name, process in running.items():
        out, err = process.communicate(timeout=300)
        results[name] = subprocess.CompletedProcess(process.args, process.returncode, out, err)
    return results


@pytest.mark.parametrize("name", list(SUBPROCESS_CASES))
def test_python_m_srlib(files, subprocess_results, name):
    argv, expected_code, expected = SUBPROCESS_CASES[name]
    result = subprocess_results[name]
    if expected is None:
        assert result.returncode == 0, result.stderr
        assert "Traceback" not in result.stderr and "error" not in result.stderr.lower()
        assert (files["out"] / "w.png").is_file()
    else:
        assert_error(result.returncode, result.stderr, expected_code, argv[0],
                     fill(expected, files))


def test_a_successful_upscale_prints_nothing_on_stderr(subprocess_results):
    assert subprocess_results["works"].stderr == ""


# ---------------------------------------------------------------------------------------
# OMP_WAIT_POLICY: PASSIVE unless the user chose
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [["train", "--dry-run"], ["bench", "--short", "--dry-run"]])
def test_the_command_runs_with_a_passive_wait_policy_unless_set(command):
    env = {key: value for key, value in os.environ.items() if key != "OMP_WAIT_POLICY"}
    env.update(PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    argv = [sys.executable, "-m", "srlib", *command]
    running = [subprocess.Popen(argv, cwd=REPO, env=env, text=True, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE),
               subprocess.Popen(argv, cwd=REPO, env={**env, "OMP_WAIT_POLICY": "active"},
                                text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)]
    (default_out, default_err), (own_out, own_err) = (p.communicate(timeout=300) for p in running)
    assert running[0].returncode == 0, default_err
    assert running[1].returncode == 0, own_err
    assert default_out.strip().endswith("OMP_WAIT_POLICY=PASSIVE")
    assert own_out.strip().endswith("OMP_WAIT_POLICY=active")  # the user's value, kept


def test_evaluate_bicubic_writes_the_table_and_json(files, capsys, tmp_path):
    data = tmp_path / "data"
    (data / "Set").mkdir(parents=True)
    (data / "Set" / "good.png").write_bytes(files["good.png"].read_bytes())
    code, out, _ = main(["evaluate", "--method", "bicubic", "--data", data, "--sets", "Set",
                         "--scales", "2", "--shave", "0", "--json", tmp_path / "rows.json"],
                        capsys)
    assert code == 0 and "bicubic" in out
    import json

    (row,) = json.loads((tmp_path / "rows.json").read_text())
    assert row["scale"] == 2 and row["method"] == "bicubic" and row["psnr"] > 10
