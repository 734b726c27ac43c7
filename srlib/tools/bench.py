"""`srlib bench`: how fast this machine trains and runs each network, measured, not assumed.

    srlib bench --short --json bench.json

For each model preset it reports the parameters, the FLOPs of one training step (counted by
`torch.utils.flop_counter` over the model's forward and backward passes, not estimated), the
step time of plain fp32 eager training (NCHW, no autocast, no compile) and of the fast path
(`fast_path`: autocast in the fastest dtype the hardware has, channels_last, plain `torch.nn`
layers), measured in the same process, interleaved step by step so that a machine shared with
other work slows both alike; the fast path's speedup over fp32 eager, and `utilization`: its
achieved FLOP/s over the measured matrix-product peak of the dtype it computes in. Then tiled
inference: seconds, milliseconds per output megapixel and peak memory for a 1024x1024 LR
image at x2 and a 512x512 one at x4.

Hand-written layout-aware convolutions (a faster channels_last weight gradient) were removed
because they did not pay on the CPUs measured: the fast path trained the pyramid preset 1.97x
as fast as fp32 eager without them and 1.89x with them (AMD EPYC, AVX-512).

Measurements run in one child process, whose OpenMP wait policy is set before PyTorch loads
(the only time libgomp reads it), and whose peak memory is reset before each inference case.
On a machine shared with other jobs the default policy (threads spin at every barrier) made
small operations hundreds of times slower; 'passive' (threads sleep) is what the `srlib`
command sets unless the user chose a policy. The process-wide switches of
`srlib.tools.backends.configure_backends` (cuDNN autotuning; glibc keeping freed blocks)
apply to both fp32 eager and the fast path: they are the environment, not the fast path.

Times are medians over repeats after warm-up steps; the load average is reported with them.
"""

from __future__ import annotations

import copy
import ctypes
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from srlib.errors import SrlibError, UsageError
from srlib.hardware import cpu_name

# The loss of the seed design; its cost is in the step time, not in the FLOP count.
LOSS = "dssim"


@dataclass(frozen=True)
class Plan:
    """What a bench run measures: training sizes per preset, repeats, inference cases."""

    # preset -> (batch, LR patch side) of the training step timed
    train_sizes: dict = field(default_factory=dict)
    warmup: int = 1
    repeats: int = 3
    # (preset, scale, LR side, tile, overlap)
    inference: tuple = ()
    inference_repeats: int = 1
    # Matrix side for the peak measurement (grown until one product takes 20 ms).
    max_matrix: int = 2048


SHORT = Plan(
    # small: the `small` training config's own batch and patch. The 128-channel presets at one
    # 16x16 patch: a 64x64 patch costs 16 times as much (214 GMAC forward for the seed).
    train_sizes={"seed": (1, 16), "pyramid": (1, 16), "small": (8, 24)},
    warmup=1,
    repeats=3,
    inference=(("small", 2, 1024, 256, 16), ("small", 4, 512, 256, 16)),
)
FULL = Plan(
    train_sizes={"seed": (2, 32), "pyramid": (2, 32), "small": (16, 32)},
    warmup=2,
    repeats=5,
    inference=(("small", 2, 1024, 256, 16), ("small", 4, 512, 256, 16),
               ("pyramid", 2, 160, 96, 16), ("pyramid", 4, 160, 96, 16),
               ("seed", 2, 160, 96, 16)),
    inference_repeats=3,
    max_matrix=4096,
)


# ---------------------------------------------------------------- measurements (child side)

def fast_path(device: torch.device) -> dict:
    """The fast training settings for `device`: {"dtype", "channels_last", "precision"}.

    The dtype is `resolve_precision("auto")`: bf16 where the hardware multiplies bf16 natively
    (CUDA, or a CPU with AMX/AVX512-BF16), fp16 on older GPUs, else fp32 (without native bf16
    a CPU emulates it, ~10x slower than fp32 measured here).
    """
    from srlib.hardware import resolve_precision

    dtype = resolve_precision("auto", device)
    return {"precision": "auto", "dtype": str(dtype).removeprefix("torch."),
            "channels_last": True}


def device_info(device: torch.device) -> dict:
    """Name, cores, threads and instruction set of `device`."""
    from srlib.hardware import cpu_has_fast_bf16

    info = {"type": device.type, "torch": torch.__version__, "threads": torch.get_num_threads(),
            "cpu": cpu_name(), "cores": os.cpu_count(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "cpu_native_bf16": cpu_has_fast_bf16()}
    if device.type == "cuda":
        properties = torch.cuda.get_device_properties(device)
        info["gpu"] = properties.name
        info["gpu_memory_gib"] = round(properties.total_memory / 2**30, 1)
    info["name"] = info.get("gpu") or f"{info['cpu']} ({info['cores']} cores, " \
        f"{info['cpu_capability']}, {info['threads']} threads)"
    return info


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(device: torch.device, dtype: torch.dtype, *, repeats: int = 5,
                max_side: int = 2048) -> float:
    """Measured matrix-product throughput in GFLOP/s: the median of `repeats` square products.

    The side grows from 256 until one product takes at least 20 ms (or reaches `max_side`), so
    a slow dtype (bf16 emulated on a CPU) is measured on a small matrix in little time.
    """
    side = 256
    while True:
        a = torch.randn(side, side, device=device, dtype=dtype)
        b = torch.randn(side, side, device=device, dtype=dtype)
        a @ b  # warm-up: kernel selection, page faults
        _synchronize(device)
        start = time.perf_counter()
        a @ b
        _synchronize(device)
        if time.perf_counter() - start >= 0.02 or side >= max_side:
            break
        side *= 2
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        _synchronize(device)
        times.append(time.perf_counter() - start)
    return 2 * side**3 / statistics.median(times) / 1e9


def count_macs(model: nn.Module, lr_size: int = 64, *, training: bool = False) -> float:
    """Multiply-accumulates of one forward pass (with `training`, forward + backward) on a
    (1, 3, lr_size, lr_size) patch, counted by torch's FlopCounterMode (FLOPs = 2 MACs)."""

    parameter = next(model.parameters())
    x = torch.rand(1, 3, lr_size, lr_size, device=parameter.device, dtype=parameter.dtype)
    counter = FlopCounterMode(display=False)
    with counter:
        if training:
            sum(output.sum() for output in model(x).values()).backward()
        else:
            with torch.no_grad():
                model(x)
    if training:
        model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / 2


def training_flops(preset: str, batch: int, patch: int) -> float:
    """FLOPs of the model's forward and backward passes on (batch, 3, patch, patch), counted.

    Counted by `FlopCounterMode` on the meta device (nothing computed): convolutions and
    matrix products, 2 FLOPs per multiply-accumulate. The loss and the optimiser are not in it.
    """
    from srlib.model import PRESETS, build_model

    with torch.device("meta"):
        model = build_model(PRESETS[preset])
    # FLOPs are linear in the batch: count one sample.
    return 2 * count_macs(model, patch, training=True) * batch


def _sample_batch(model, batch: int, patch: int, generator: torch.Generator):
    """A training batch (LR, {scale: HR}) from `PatchSampler`, and the time it took (seconds).

    The sampler cuts patches from five 512x512 uint8 images in memory, as training does from
    its decoded photographs (random pixels: the sampler's cost does not depend on content).
    """
    from srlib.data import PatchSampler

    side = max(512, max(model.output_scales) * patch)
    images = [torch.randint(0, 256, (3, side, side), dtype=torch.uint8, generator=generator)
              for _ in range(5)]
    sampler = PatchSampler(images, patch_size=patch, scales=model.output_scales,
                           generator=generator)
    sampler.sample(batch)  # warm-up: imresize's weight matrices are cached per size
    times = []
    for _ in range(3):
        start = time.perf_counter()
        lr, targets = sampler.sample(batch)
        times.append(time.perf_counter() - start)
    return lr, targets, statistics.median(times)


def bench_training(preset: str, batch: int, patch: int, *, device: torch.device, warmup: int,
                   repeats: int, peak_probe=None) -> dict:
    """Step times of fp32 eager and of the fast path for one preset, interleaved.

    Args:
        peak_probe: called after every round of steps, returning the matrix-product peak
            (GFLOP/s) of the fast path's dtype just then, so that utilization compares the
            steps with a peak measured under the same load; None: no probe.

    Returns:
        {"preset", "batch", "patch", "params", "gflop_per_step", "data_ms", "fp32" and "fast":
        {"step_s", "patches_per_s", "times", "gflops", "dtype", "channels_last", "speedup"
        (fp32 step time / this one)}, "speedup" (the fast path's), "peak_gflops_samples"}.
    """
    from srlib.hardware import resolve_precision
    from srlib.losses import parse_loss
    from srlib.model import PRESETS, build_model, count_parameters
    from srlib.train import training_step

    loss_function = parse_loss(LOSS)
    settings = fast_path(device)
    fast_dtype = resolve_precision("auto", device)
    variants = {"fp32": (torch.float32, False), "fast": (fast_dtype, True)}
    steps, row = {}, {"preset": preset, "batch": batch, "patch": patch}
    lr = targets = None
    for name, (dtype, channels_last) in variants.items():
        torch.manual_seed(0)
        model = build_model(PRESETS[preset]).to(device)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        if lr is None:
            row["params"] = count_parameters(model)
            generator = torch.Generator().manual_seed(0)
            lr, targets, data_seconds = _sample_batch(model, batch, patch, generator)
            row["data_ms"] = 1000 * data_seconds
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
        scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)

        def step(model=model, optimizer=optimizer, scaler=scaler, dtype=dtype,
                 channels_last=channels_last, lr=lr, targets=targets):
            training_step(model, optimizer, scaler, loss_function, lr, targets, device, dtype,
                          channels_last)
            _synchronize(device)

        steps[name] = step
    for _ in range(warmup):
        for step in steps.values():
            step()
    times = {name: [] for name in steps}
    row["peak_gflops_samples"] = []
    for _ in range(repeats):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
        if peak_probe is not None:
            row["peak_gflops_samples"].append(peak_probe())
    flops = training_flops(preset, batch, patch)
    row["gflop_per_step"] = flops / 1e9
    for name in steps:
        median = statistics.median(times[name])
        row[name] = {"step_s": median, "patches_per_s": batch / median, "times": times[name],
                     "gflops": flops / median / 1e9}
    for name, (dtype, channels_last) in variants.items():
        row[name].update({"dtype": str(dtype).removeprefix("torch."),
                          "channels_last": channels_last})
        row[name]["speedup"] = row["fp32"]["step_s"] / row[name]["step_s"]
    row["fast"].update(settings)
    row["speedup"] = row["fast"]["speedup"]
    return row


def bench_inference(preset: str, scale: int, lr_side: int, tile: int, overlap: int, *,
                    device: torch.device, repeats: int) -> dict:
    """Tiled inference of a random (1, 3, lr_side, lr_side) image with the fast settings.

    Peak memory is the process's peak resident set (CPU) or peak allocation (CUDA) while
    upscaling; `added_memory_mib` is that less what the process held just before.
    """
    from srlib.hardware import resolve_precision
    from srlib.infer import upscale
    from srlib.model import PRESETS, build_model

    torch.manual_seed(0)
    # The preset as `srlib train` builds it (its forward stops after the stage that makes
    # `scale`), or narrowed to `scale` when it has no such output (the seed's x4).
    spec = PRESETS[preset]
    model = build_model(spec if scale in spec.output_scales else spec.for_scale(scale))
    model = model.to(device).eval()
    model = model.to(memory_format=torch.channels_last)
    dtype = resolve_precision("auto", device)
    lr = torch.rand(1, 3, lr_side, lr_side, device=device)
    with torch.no_grad():
        upscale(model, lr[..., :tile, :tile], scale, dtype=dtype)  # warm-up on one tile
    before = _peak_memory(device, reset=True)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        sr = upscale(model, lr, scale, tile=tile, overlap=overlap, dtype=dtype)
        _synchronize(device)
        times.append(time.perf_counter() - start)
        del sr
    peak = _peak_memory(device)
    seconds = statistics.median(times)
    megapixels = (scale * lr_side) ** 2 / 1e6
    flops = inference_flops(model, scale, lr_side)
    return {"preset": preset, "scale": scale, "lr_side": lr_side, "tile": tile,
            "overlap": overlap, "dtype": str(dtype).removeprefix("torch."), "seconds": seconds,
            "times": times, "output_megapixels": megapixels,
            "ms_per_output_mp": 1000 * seconds / megapixels,
            "gflop": flops / 1e9, "peak_memory_mib": peak / 2**20,
            "added_memory_mib": (peak - before) / 2**20}


def inference_flops(model, scale: int, lr_side: int) -> float:
    """FLOPs of `model(x, scales=(scale,))` on one (1, 3, lr_side, lr_side) image (untiled),
    counted on a 64x64 input and scaled by the pixels (every layer's cost is per pixel)."""
    from torch.utils.flop_counter import FlopCounterMode

    meta = copy.deepcopy(model).to("meta")
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        meta(torch.empty(1, 3, 64, 64, device="meta"), scales=(scale,))
    return counter.get_total_flops() * (lr_side / 64) ** 2


def _peak_memory(device: torch.device, reset: bool = False) -> int:
    """Peak bytes: resident set of this process (CPU) or allocated on the GPU.

    With `reset`, returns the current value and restarts the peak from it: Linux resets a
    process's peak resident set (VmHWM) when "5" is written to /proc/self/clear_refs.
    """
    if device.type == "cuda":
        if reset:
            value = torch.cuda.memory_allocated(device)
            torch.cuda.reset_peak_memory_stats(device)
            return value
        return torch.cuda.max_memory_allocated(device)
    if reset:
        _release_freed_memory()
        Path("/proc/self/clear_refs").write_text("5")
        return _status_kib("VmRSS") * 1024
    return _status_kib("VmHWM") * 1024


def _release_freed_memory() -> None:
    # Freed blocks glibc keeps for reuse would hide (or inflate) the next case's peak.
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _status_kib(field_name: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    raise OSError(f"/proc/self/status has no {field_name}")


def can_measure_peak_memory(device: torch.device) -> bool:
    """Whether `_peak_memory` works here (CUDA, or Linux with a resettable peak RSS)."""
    if device.type == "cuda":
        return True
    try:
        _peak_memory(device, reset=True)
        _peak_memory(device)
    except OSError:
        return False
    return True


def _worker(task: dict) -> dict:
    """Run one measurement task (what the parent sends as JSON) in this process."""
    if task.get("threads"):
        torch.set_num_threads(task["threads"])
    from srlib.hardware import resolve_precision, select_device
    from srlib.tools.backends import configure_backends

    device = select_device(task["device"])
    configure_backends(device)
    kind = task["kind"]
    if kind == "all":
        result = _worker({**task, "kind": "training"})
        result["inference"] = []
        if not can_measure_peak_memory(device):
            raise SrlibError("cannot measure peak memory here (no /proc/self/clear_refs)")
        for case in task["plan"]["inference"]:
            result["inference"].append(bench_inference(
                *case, device=device, repeats=task["plan"]["inference_repeats"]))
        return result
    if kind == "training":
        plan = task["plan"]
        result = {"device": device_info(device), "peak_gflops": {}, "training": []}
        result["peak_gflops"]["float32"] = matmul_peak(device, torch.float32,
                                                       max_side=plan["max_matrix"])
        low = torch.bfloat16 if device.type == "cpu" or torch.cuda.is_bf16_supported() \
            else torch.float16
        result["peak_gflops"][str(low).removeprefix("torch.")] = matmul_peak(
            device, low, max_side=plan["max_matrix"])
        fast_dtype = resolve_precision("auto", device)

        def peak_probe() -> float:
            return matmul_peak(device, fast_dtype, repeats=3, max_side=plan["max_matrix"])

        for preset in task["presets"]:
            batch, patch = plan["train_sizes"][preset]
            result["training"].append(bench_training(
                preset, batch, patch, device=device, warmup=plan["warmup"],
                repeats=plan["repeats"], peak_probe=peak_probe))
        return result
    if kind == "inference":
        return bench_inference(*task["case"], device=device, repeats=task["repeats"])
    raise ValueError(f"unknown bench task {kind!r}")


# ---------------------------------------------------------------- orchestration (parent side)

def _child(task: dict, env: dict) -> dict:
    command = [sys.executable, "-m", "srlib.tools.bench", "--worker", json.dumps(task)]
    result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise SrlibError(f"bench measurement {task['kind']} failed: {last}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def run_bench(*, short: bool = True, presets=None, device: str = "auto",
              threads: int | None = None, wait_policy: str = "passive",
              plan: Plan | None = None, log=None) -> dict:
    """Measure training and inference on this machine; returns the JSON-ready result.

    Args:
        short: the short plan (under 2 minutes on a 2-core CPU) or the full one.
        presets: model presets whose training to time (None: all of `srlib.model.PRESETS`).
        device: 'auto', 'cpu', 'cuda', ...
        threads: intra-op threads in the children (None: PyTorch's default).
        wait_policy: OMP_WAIT_POLICY for the children ('passive', 'active' or 'inherit').
        plan: sizes to measure instead of SHORT / FULL (tests use tiny ones).
        log: called with a line after each measurement, or None.
    """
    from srlib.model import PRESETS

    plan = plan or (SHORT if short else FULL)
    presets = list(PRESETS) if presets is None else presets
    unknown = set(presets) - set(PRESETS)
    if unknown:
        raise UsageError(f"unknown preset(s) {', '.join(sorted(unknown))}; "
                         f"choose from {', '.join(PRESETS)}")
    env = dict(os.environ)
    if wait_policy != "inherit":
        env["OMP_WAIT_POLICY"] = wait_policy.upper()
    started = time.perf_counter()
    load_start = os.getloadavg()
    base = {"device": device, "threads": threads}
    # One child measures everything: its PyTorch starts with the wait policy set, and its
    # peak memory is reset before each inference case.
    result = _child({**base, "kind": "all", "presets": list(presets), "plan": asdict(plan)},
                    env)
    fast_dtype = None
    for row in result["training"]:
        fast_dtype = row["fast"]["dtype"]
        # The peak of the fast path's dtype, measured between this preset's steps (median).
        samples = row["peak_gflops_samples"] or [result["peak_gflops"][fast_dtype]]
        row["peak_gflops"] = statistics.median(samples)
        row["utilization"] = row["fast"]["gflops"] / row["peak_gflops"]
        if fast_dtype == "float32":
            row["utilization_fp32"] = row["fp32"]["gflops"] / row["peak_gflops"]
        if log:
            log(f"trained {row['preset']}: fp32 eager {row['fp32']['step_s']:.2f} s/step, "
                f"fast path {row['fast']['step_s']:.2f} s/step")
    for row in result["inference"]:
        if log:
            log(f"upscaled with {row['preset']} x{row['scale']}: {row['seconds']:.1f} s")
    result.update({
        "command": "srlib bench" + (" --short" if short else ""),
        "short": short, "omp_wait_policy": env.get("OMP_WAIT_POLICY", "default"),
        "load_average_start": [round(value, 2) for value in load_start],
        "load_average_end": [round(value, 2) for value in os.getloadavg()],
        "seconds": time.perf_counter() - started, "loss": LOSS, "fast_dtype": fast_dtype,
    })
    return result


def format_report(result: dict) -> str:
    """The bench result as Markdown: a header and two tables (training per preset, inference)."""
    device = result["device"]
    peaks = ", ".join(f"{name} {value:.1f}" for name, value in result["peak_gflops"].items())
    lines = [
        (f"srlib bench{' --short' if result['short'] else ''}: {device['name']}, "
         f"torch {device['torch']}, OMP_WAIT_POLICY={result['omp_wait_policy']}, load average "
         f"{result['load_average_start'][0]:.1f} -> {result['load_average_end'][0]:.1f}, "
         f"{result['seconds']:.0f} s"),
        (f"matmul peak at start (GFLOP/s): {peaks}; each row's peak is measured between its "
         "steps; speedup = fp32 eager step time / fast step time; utilization = fast GFLOP/s "
         "/ peak"),
        "",
        ("| preset | params | batch x patch | GFLOP/step | fp32 eager s/step | fp32 patches/s "
         "| fast s/step | fast patches/s | fast path | speedup | peak GFLOP/s | utilization "
         "| data ms/batch |"),
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in result["training"]:
        fast = row["fast"]
        path = f"{fast['dtype']}{', channels_last' if fast['channels_last'] else ''}"
        utilization = f"{row['utilization']:.2f}"
        lines.append(
            f"| {row['preset']} | {row['params'] / 1e6:.2f} M | {row['batch']} x "
            f"{row['patch']}^2 | {row['gflop_per_step']:.1f} | {row['fp32']['step_s']:.3f} | "
            f"{row['fp32']['patches_per_s']:.2f} | {fast['step_s']:.3f} | "
            f"{fast['patches_per_s']:.2f} | {path} | {row['speedup']:.2f} | "
            f"{row['peak_gflops']:.0f} | {utilization} | {row['data_ms']:.0f} |")
    lines += [
        "",
        ("| inference | scale | LR image | tile / overlap | seconds | ms per output MP "
         "| GFLOP | peak memory MiB | added MiB |"),
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in result["inference"]:
        lines.append(
            f"| {row['preset']} ({row['dtype']}) | x{row['scale']} | {row['lr_side']}^2 | "
            f"{row['tile']} / {row['overlap']} | {row['seconds']:.2f} | "
            f"{row['ms_per_output_mp']:.0f} | {row['gflop']:.0f} | "
            f"{row['peak_memory_mib']:.0f} | {row['added_memory_mib']:.0f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    # A measuring child: `python -m srlib.tools.bench --worker TASK_JSON`, result JSON on stdout.
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        print(json.dumps(_worker(json.loads(sys.argv[2]))))
    else:
        sys.exit("usage: srlib bench [--short] [--json FILE] (this entry point is internal)")
