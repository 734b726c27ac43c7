"""Export a training run as srlib's shipped weights, with its record beside it.

    python scripts/ship_weights.py runs/stage2 srlib/pretrained/pyramid_small_291.pt \
        --previous results/pretrained/stage1_pyramid_quick_291.json --command "srlib train ..."

Writes the exported checkpoint (config, weights, step, history with lineage; no optimiser
state) and a `.json` beside it: the command, commit, hardware, steps, patches seen, training
time, every earlier stage (lineage), the Set5 validation history and the evaluation on Set5 and
Set14 at every scale the network serves, under the published protocol.

With `--record-only` it ships nothing: a stage that did not beat the shipped weights keeps
its record (`out`, a .json under results/) and its curve continues the shipped one's, while
the weights stay in the run folder.
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from srlib.checkpoint import export_model, load_checkpoint, load_model
from srlib.data import benchmark_dir
from srlib.evaluate import evaluate
from srlib.infer import as_upscaler
from srlib.model import count_parameters
from srlib.tools.record import provenance


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--command", required=True, help="the command that trained the run")
    parser.add_argument("--previous", type=Path,
                        help="the record (.json) of the shipped weights this run started from")
    parser.add_argument("--record-only", action="store_true",
                        help="write the record alone (out: a .json), ship no weights")
    args = parser.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        exported = Path(scratch, "run.pt") if args.record_only else args.out
        export_model(args.run_dir / "last.pt", exported)
        state = load_checkpoint(exported)
        model, config = load_model(exported)
    history = state["history"]
    sets = {name: benchmark_dir(name) for name in ("Set5", "Set14")}
    rows = evaluate(as_upscaler(model), sets, model.output_scales, method="pretrained")
    curve, hours, patches, stage = [], 0.0, 0, 1
    if args.previous is not None:
        previous = json.loads(args.previous.read_text())
        curve = previous.get("curve") or _first_stage_curve(previous)
        # The curve is cumulative over the earlier stages: continue from its last point.
        hours = max(point["core_hours"] for point in curve)
        patches = max(point["patches"] for point in curve)
        stage = 1 + max(point["stage"] for point in curve)
    # Core-hours: wall time x threads (an upper bound of the CPU time on a shared machine).
    hours_per_step = history["train_seconds"] / state["step"] * history["hardware"]["threads"] / 3600
    curve += [{"stage": stage, "step": row["step"],
               "core_hours": round(hours + row["step"] * hours_per_step, 4),
               "patches": patches + row["step"] * config.batch_size,
               "scale": row["scale"], "psnr": row["psnr"]} for row in history["val"]]
    checkpoint = args.run_dir / "last.pt" if args.record_only else "pretrained"
    record = {
        "file": None if args.record_only else args.out.name,
        "shipped": not args.record_only,
        "parameters": count_parameters(model),
        "config": config.to_dict(),
        "steps": state["step"],
        "patches_seen": history["patches"],
        "train_seconds": round(history["train_seconds"], 1),
        "hardware": history["hardware"],
        "command": args.command,
        "lineage": history.get("lineage", []),
        "validation_set5": history["val"],
        "curve": curve,
        "evaluation": [{key: row[key] for key in ("set", "scale", "psnr", "ssim", "n")}
                       for row in rows],
        "evaluation_command": f"srlib evaluate --checkpoint {checkpoint} --sets Set5 Set14",
        "exported": provenance(f"python scripts/ship_weights.py {args.run_dir} {args.out}"
                               + (" --record-only" if args.record_only else ""),
                               time.perf_counter() - started),
    }
    args.out.with_suffix(".json").write_text(json.dumps(record, indent=1) + "\n")
    for row in rows:
        print(f"{row['set']} x{row['scale']}: {row['psnr']:.2f} dB / {row['ssim']:.4f}")


def _first_stage_curve(record: dict) -> list[dict]:
    """Set5 validation points of a srlib 0.1 record (2 threads, per-epoch validation)."""
    hours_per_step = record["train_seconds"] / record["steps"] * 2 / 3600
    batch = record["config"]["batch_size"]
    return [{"stage": 1, "step": row["step"], "core_hours": round(row["step"] * hours_per_step, 4),
             "patches": row["step"] * batch, "scale": row["scale"], "psnr": row["psnr"]}
            for row in record["validation_set5"]]


if __name__ == "__main__":
    with torch.no_grad():
        main()
