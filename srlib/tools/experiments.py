"""The book's long experiments, run once and committed as data under `results/`.

    python -m srlib.tools.experiments ablation --steps 1000 --workers 2
    python -m srlib.tools.experiments levers --steps 1000 --seeds 2 --workers 2

`ablation` trains one network per (variant, seed) on the 291-image set with the same data,
schedule and budget, evaluates each on Set5 and Set14 under the published protocol (Y channel,
`scale` pixels shaved) and under the seed's own (RGB SSIM, nothing shaved), and writes:

- `results/ablation/runs.csv`: one row per run, set and scale (loss, design, seed, steps, set,
  psnr, ssim, rgb_ssim, train_seconds);
- `results/ablation/per_image.csv`: the same per image (for paired comparisons);
- `results/ablation/histories/<run>.json`: loss, learning rate and validation curves;
- `results/ablation/weights/<run>.pt`: the weights of seed 0 of each variant (small);
- `results/ablation/provenance.json`: command, commit, hardware, CPU and wall time.

Variants: the five losses on the design as described, and three design changes (no
back-projection, no squeeze-excitation, tied blocks) trained with the Charbonnier loss.
`levers` writes the same files under `results/levers/` (no weights) for the training levers
(`LEVERS`), each changed alone from the Charbonnier run.
Runs are independent: `--workers 2` runs two at a time, one thread each (a 16-channel network
uses a second thread poorly: measured 0.27 vs 0.24 s/step). A finished run is not redone, so
an interrupted sweep continues where it stopped.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

LOSSES = {"mse": "mse", "dssim": "dssim", "l1": "l1", "charbonnier": "charbonnier",
          "dssim+l1": "0.84*dssim+0.16*l1"}
DESIGNS = {"no-backprojection": {"back_projection": False}, "no-se": {"se_reduction": 0},
           "tied": {"tied": True}}
DESIGN_LOSS = "charbonnier"
# The training levers of issue 13, one change at a time from the ablation's Charbonnier run;
# patch and batch move together so that every step sees the same 9,216 LR pixels.
LEVERS = {"baseline": ({}, {}),
          "patch-48-batch-4": ({"patch_size": 48, "batch_size": 4}, {}),
          "patch-16-batch-36": ({"patch_size": 16, "batch_size": 36}, {}),
          "lr-5e-4": ({"lr": 5e-4}, {}),
          "step-schedule": ({"schedule": "step", "lr_decay_epochs": 1}, {}),
          "width-64-32": ({}, {"feature_width": 64, "channels": 32})}


def plan(seeds: int, design_seeds: int) -> list[dict]:
    """Every run, seed-major so that a sweep cut short still has whole seeds."""
    runs = []
    for seed in range(max(seeds, design_seeds)):
        if seed < seeds:
            runs += [{"name": f"{name}-s{seed}", "loss": name, "design": "as described",
                      "seed": seed, "changes": {}} for name in LOSSES]
        if seed < design_seeds:
            runs += [{"name": f"{design}-s{seed}", "loss": DESIGN_LOSS, "design": design,
                      "seed": seed, "changes": changes} for design, changes in DESIGNS.items()]
    return runs


def lever_plan(seeds: int) -> list[dict]:
    """One run per (lever, seed), seed-major."""
    return [{"name": f"{name}-s{seed}", "loss": DESIGN_LOSS, "design": name, "seed": seed,
             "changes": changes, "training": training}
            for seed in range(seeds) for name, (training, changes) in LEVERS.items()]


def run_one(run: dict, options: dict) -> dict:
    """Train and evaluate one run in this process; returns its rows (and writes its files)."""
    import torch

    torch.set_num_threads(options["threads"])
    from srlib.checkpoint import export_model
    from srlib.data import benchmark_dir
    from srlib.evaluate import evaluate
    from srlib.infer import as_upscaler
    from srlib.model import PRESETS
    from srlib.train import preset_config, train

    out = Path(options["out"])
    sets = {name: benchmark_dir(name) for name in ("Set5", "Set14")}
    model = PRESETS["small"].for_scale(options["scale"]).replace(**run["changes"])
    training = {"patch_size": options["patch"], "batch_size": options["batch"],
                "lr": options["lr"], "schedule": "cosine", **run.get("training", {})}
    config = preset_config(
        "small", model=model, loss=LOSSES[run["loss"]], data="train291",
        warmup_steps=options["steps"] // 20, max_steps=options["steps"],
        epochs=10_000, seed=run["seed"], run_dir=str(Path(options["runs"]) / run["name"]),
        checkpoint_every=options["steps"], val_data=str(sets["Set5"]),
        val_every=max(1, options["steps"] // 10), precision=options["precision"], **training)
    started = time.process_time()
    history = train(config, progress=False)
    from srlib.checkpoint import load_model

    network, _ = load_model(history["checkpoint"])
    upscaler = as_upscaler(network)
    published = evaluate(upscaler, sets, (options["scale"],), method=run["name"])
    seed_protocol = evaluate(upscaler, sets, (options["scale"],), method=run["name"],
                             y_channel=False, shave=0)
    rows, images = [], []
    for row, rgb in zip(published, seed_protocol):
        rows.append({"loss": run["loss"], "design": run["design"], "seed": run["seed"],
                     "scale": row["scale"], "steps": len(history["step"]), "set": row["set"],
                     "psnr": round(row["psnr"], 4), "ssim": round(row["ssim"], 5),
                     "rgb_ssim": round(rgb["ssim"], 5),
                     "train_seconds": round(history["train_seconds"], 1)})
        for image, rgb_image in zip(row["images"], rgb["images"]):
            images.append({"loss": run["loss"], "design": run["design"], "seed": run["seed"],
                           "scale": row["scale"], "set": row["set"], "image": image["name"],
                           "psnr": round(image["psnr"], 4), "ssim": round(image["ssim"], 5),
                           "rgb_ssim": round(rgb_image["ssim"], 5)})
    (out / "histories").mkdir(parents=True, exist_ok=True)
    kept = {key: history[key] for key in ("step", "loss", "lr", "val", "train_seconds",
                                          "patches", "hardware")}
    (out / "histories" / f"{run['name']}.json").write_text(json.dumps(kept))
    if run["seed"] == 0 and options.get("keep_weights", True):
        export_model(history["checkpoint"], out / "weights" / f"{run['name']}.pt")
    result = {"rows": rows, "images": images, "cpu_seconds": time.process_time() - started}
    (Path(options["runs"]) / run["name"] / "result.json").write_text(json.dumps(result))
    return result


def _write_csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def bicubic_rows(scale: int) -> tuple[list[dict], list[dict]]:
    """The bicubic baseline in the same format (steps 0), for the chapter's reference lines."""
    from srlib.data import benchmark_dir
    from srlib.evaluate import bicubic_upscaler, evaluate

    sets = {name: benchmark_dir(name) for name in ("Set5", "Set14")}
    published = evaluate(bicubic_upscaler, sets, (scale,))
    seed_protocol = evaluate(bicubic_upscaler, sets, (scale,), y_channel=False, shave=0)
    rows, images = [], []
    for row, rgb in zip(published, seed_protocol):
        base = {"loss": "bicubic", "design": "bicubic", "seed": 0, "scale": scale}
        rows.append({**base, "steps": 0, "set": row["set"], "psnr": round(row["psnr"], 4),
                     "ssim": round(row["ssim"], 5), "rgb_ssim": round(rgb["ssim"], 5),
                     "train_seconds": 0})
        images += [{**base, "set": row["set"], "image": image["name"],
                    "psnr": round(image["psnr"], 4), "ssim": round(image["ssim"], 5),
                    "rgb_ssim": round(rgb_image["ssim"], 5)}
                   for image, rgb_image in zip(row["images"], rgb["images"])]
    return rows, images


def ablation(args: argparse.Namespace) -> int:
    import torch

    from srlib.hardware import describe_hardware
    from srlib.tools.record import provenance

    out, runs_dir = Path(args.out), Path(args.runs)
    out.mkdir(parents=True, exist_ok=True)
    options = {"out": str(out), "runs": str(runs_dir), "steps": args.steps, "scale": args.scale,
               "patch": args.patch, "batch": args.batch, "lr": args.lr, "threads": args.threads,
               "precision": args.precision,
               "keep_weights": args.experiment == "ablation"}  # chapter 4 shows the ablation's
    # The code that runs is the code at launch: record that commit, not the one at the end.
    launched = provenance("", 0.0)["commit"]
    runs = (lever_plan(args.seeds) if args.experiment == "levers"
            else plan(args.seeds, args.design_seeds))
    print(f"{args.experiment}: {len(runs)} runs of {args.steps} steps, {args.workers} at a time",
          flush=True)
    wall = time.perf_counter()
    results = {}
    pending = []
    for run in runs:
        done = runs_dir / run["name"] / "result.json"
        if done.exists():
            results[run["name"]] = json.loads(done.read_text())
        else:
            pending.append(run)
    with ProcessPoolExecutor(args.workers) as pool:
        futures = {run["name"]: pool.submit(run_one, run, options) for run in pending}
        for name, future in futures.items():
            results[name] = future.result()
            rows = results[name]["rows"]
            scores = ", ".join(f"{row['set']} {row['psnr']:.2f}" for row in rows)
            print(f"{time.strftime('%H:%M:%S')} {name}: {scores} "
                  f"({results[name]['cpu_seconds'] / 60:.1f} CPU min)", flush=True)
    rows, images = bicubic_rows(args.scale)
    for run in runs:
        rows += results[run["name"]]["rows"]
        images += results[run["name"]]["images"]
    _write_csv(out / "runs.csv", rows)
    _write_csv(out / "per_image.csv", images)
    record = provenance(" ".join([Path(sys.executable).name, "-m", "srlib.tools.experiments",
                                  *sys.argv[1:]]), time.perf_counter() - wall)
    record["commit"] = launched
    record["cpu_seconds"] = round(sum(result["cpu_seconds"] for result in results.values()), 1)
    record["options"] = options
    record["hardware"] = describe_hardware(torch.device("cpu"),
                                           torch.bfloat16 if args.precision != "fp32"
                                           and record.get("cpu_features") else torch.float32)
    record["hardware"]["threads"] = args.threads
    record["workers"] = args.workers
    (out / "provenance.json").write_text(json.dumps(record, indent=1))
    print(f"wrote {out}/runs.csv ({len(rows)} rows) in {record['wall_seconds'] / 60:.0f} min",
          flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    parser = argparse.ArgumentParser(prog="python -m srlib.tools.experiments",
                                     description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="experiment", required=True)
    ablation_parser = sub.add_parser("ablation", help="losses and design changes, several seeds")
    ablation_parser.add_argument("--seeds", type=int, default=3, help="seeds per loss")
    ablation_parser.add_argument("--design-seeds", type=int, default=2,
                                 help="seeds per design change")
    levers_parser = sub.add_parser(
        "levers", help="training levers (patch/batch, lr, schedule, width), Charbonnier")
    levers_parser.add_argument("--seeds", type=int, default=2, help="seeds per lever")
    for run in (ablation_parser, levers_parser):
        _common_options(run, run is levers_parser)
    args = parser.parse_args(argv)
    return ablation(args)


def _common_options(run: argparse.ArgumentParser, levers: bool) -> None:
    run.add_argument("--steps", type=int, default=1000)
    run.add_argument("--scale", type=int, default=2)
    run.add_argument("--patch", type=int, default=24, help="LR patch side")
    run.add_argument("--batch", type=int, default=16)
    run.add_argument("--lr", type=float, default=1e-3)
    run.add_argument("--precision", default="auto")
    run.add_argument("--workers", type=int, default=2)
    run.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    folder = "levers" if levers else "ablation"
    run.add_argument("--out", default=f"results/{folder}")
    run.add_argument("--runs", default=f"runs/{folder}", help="checkpoints of every run")


if __name__ == "__main__":
    sys.exit(main())
