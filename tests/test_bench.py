"""srlib bench at toy sizes: the report's numbers are positive and agree with each other."""

import json
import statistics

import pytest
import torch

from srlib.errors import UsageError
from srlib.hardware import resolve_precision
from srlib.model import PRESETS, build_model
from srlib.tools.bench import (
    Plan,
    count_macs,
    format_report,
    matmul_peak,
    run_bench,
    training_flops,
)

TOY = Plan(train_sizes={"small": (2, 8)}, warmup=1, repeats=2,
           inference=(("small", 2, 40, 24, 4),), max_matrix=128)


@pytest.fixture(scope="module")
def result():
    # Through the child processes, as `srlib bench` runs; toy sizes, no timing asserted.
    return run_bench(presets=["small"], plan=TOY)


def test_training_rows_are_consistent(result):
    assert result["peak_gflops"]["float32"] > 0 and result["peak_gflops"]["bfloat16"] > 0
    (row,) = result["training"]
    assert row["preset"] == "small" and row["batch"] == 2 and row["patch"] == 8
    assert row["params"] == sum(p.numel() for p in build_model(PRESETS["small"]).parameters())
    # FLOPs are counted: forward + backward of one sample, times the batch, 2 per MAC.
    with torch.device("meta"):
        model = build_model(PRESETS["small"])
    macs = count_macs(model, 8, training=True)
    assert row["gflop_per_step"] == pytest.approx(2 * macs * 2 / 1e9)
    for name in ("fp32", "fast"):
        variant = row[name]
        assert len(variant["times"]) == TOY.repeats and variant["step_s"] > 0
        assert variant["patches_per_s"] == pytest.approx(2 / variant["step_s"])
        assert variant["gflops"] == pytest.approx(row["gflop_per_step"] / variant["step_s"])
    assert row["fp32"]["dtype"] == "float32" and not row["fp32"]["channels_last"]
    # The fast path: autocast in resolve_precision("auto")'s dtype, channels_last.
    fast_dtype = resolve_precision("auto", torch.device("cpu"))
    assert row["fast"]["channels_last"] and row["fast"]["precision"] == "auto"
    assert row["fast"]["dtype"] == str(fast_dtype).removeprefix("torch.")
    assert row["speedup"] == pytest.approx(row["fp32"]["step_s"] / row["fast"]["step_s"])
    assert set(row) & {"accelerated", "fp32_channels_last"} == set()  # two variants only
    # Utilization: against the fast dtype's matmul peak measured between this row's steps.
    assert len(row["peak_gflops_samples"]) == TOY.repeats
    assert row["peak_gflops"] == pytest.approx(statistics.median(row["peak_gflops_samples"]))
    assert row["utilization"] == pytest.approx(row["fast"]["gflops"] / row["peak_gflops"])
    assert row["data_ms"] > 0


def test_inference_rows_are_consistent(result):
    (row,) = result["inference"]
    assert (row["preset"], row["scale"], row["lr_side"], row["tile"]) == ("small", 2, 40, 24)
    assert row["output_megapixels"] == pytest.approx(80 * 80 / 1e6)
    assert row["ms_per_output_mp"] == pytest.approx(1000 * row["seconds"] / (80 * 80 / 1e6))
    assert row["peak_memory_mib"] >= row["added_memory_mib"] >= 0
    assert row["gflop"] > 0


def test_report_and_json(result, tmp_path):
    table = format_report(result)
    assert "| small |" in table and "speedup" in table and "ms per output MP" in table
    assert table.startswith("srlib bench --short:") and "accelerate" not in table
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(result))
    assert json.loads(path.read_text())["training"][0]["preset"] == "small"
    assert result["omp_wait_policy"] == "PASSIVE" and result["seconds"] > 0


def test_flops_scale_with_the_batch_and_peak_is_positive():
    assert training_flops("small", 4, 8) == pytest.approx(4 * training_flops("small", 1, 8))
    assert matmul_peak(torch.device("cpu"), torch.float32, repeats=1, max_side=64) > 0


def test_unknown_preset_is_refused():
    with pytest.raises(UsageError, match="unknown preset"):
        run_bench(presets=["huge"], plan=TOY)
