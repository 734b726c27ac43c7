"""The ablation chapter's analysis, written out in its cells: intervals, verdicts, conclusions.

The cells of `notebooks/04_ablation.md` tagged `analysis` and `head-units` are read (jupytext)
and executed; the functions they define are tested here. `late_gain`, which chapters 3 and 4
share, is srlib.book's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from srlib.book import late_gain
from srlib.model import PRESETS, build_model

CHAPTER = Path(__file__).resolve().parents[1] / "notebooks" / "04_ablation.md"


def _chapter_functions() -> dict:
    import jupytext

    namespace = {"np": np, "torch": torch}
    cells = [cell.source for cell in jupytext.read(CHAPTER).cells if cell.cell_type == "code"
             and {"analysis", "head-units"} & set(cell.metadata.get("tags", []))]
    assert len(cells) >= 5, "the chapter's analysis cells are missing their tags"
    for source in cells:
        exec(compile(source, str(CHAPTER), "exec"), namespace)  # noqa: S102 (our chapter)
    return namespace


_chapter = _chapter_functions()
ablation_conclusion = _chapter["ablation_conclusion"]
active_head_units = _chapter["active_head_units"]
bootstrap_interval = _chapter["bootstrap_interval"]
mean_and_std = _chapter["mean_and_std"]
paired_differences = _chapter["paired_differences"]
paired_table = _chapter["paired_table"]
verdict = _chapter["verdict"]


def row(variant, mean, low, high, *, metric="psnr", set_name="Set5", baseline="mse"):
    return {"variant": variant, "baseline": baseline, "set": set_name, "metric": metric,
            "n": 10, "mean": mean, "low": low, "high": high}


# bootstrap_interval ---------------------------------------------------------------------

def test_bootstrap_tie_is_a_point_at_zero():
    assert bootstrap_interval([0.0, 0.0, 0.0]) == (0.0, 0.0, 0.0)


def test_bootstrap_constant_difference_is_a_point():
    assert bootstrap_interval([0.25] * 7) == (0.25, 0.25, 0.25)


def test_bootstrap_is_reproducible_and_brackets_the_mean():
    data = [1.0, 2.0, 3.0, 4.0, 10.0]
    first = bootstrap_interval(data, seed=3)
    assert first == bootstrap_interval(data, seed=3)
    mean, low, high = first
    assert mean == pytest.approx(4.0)
    assert 1.0 <= low < mean < high <= 10.0


def test_bootstrap_straddles_zero_for_balanced_differences():
    mean, low, high = bootstrap_interval([-1.0, 1.0] * 10)
    assert mean == 0.0 and low < 0 < high


def test_bootstrap_matches_the_normal_interval_for_many_samples():
    values = np.random.default_rng(0).normal(0.3, 1.0, 400)
    mean, low, high = bootstrap_interval(values, samples=4000)
    half = 1.96 * values.std(ddof=1) / np.sqrt(values.size)
    assert low == pytest.approx(mean - half, abs=0.2 * half)
    assert high == pytest.approx(mean + half, abs=0.2 * half)


def test_bootstrap_wider_for_higher_confidence():
    values = np.arange(20.0)
    _, low90, high90 = bootstrap_interval(values, confidence=0.9)
    _, low99, high99 = bootstrap_interval(values, confidence=0.99)
    assert low99 < low90 and high99 > high90


@pytest.mark.parametrize("values, confidence", [([], 0.95), ([1.0, 2.0], 1.0),
                                                ([1.0, 2.0], 0.0)])
def test_bootstrap_refuses_bad_input(values, confidence):
    with pytest.raises(ValueError):
        bootstrap_interval(values, confidence=confidence)


# verdicts and conclusions ---------------------------------------------------------------

@pytest.mark.parametrize("mean, low, high, expected", [
    (0.1, 0.05, 0.2, "better"),
    (-0.1, -0.2, -0.05, "worse"),
    (0.0, -0.1, 0.1, "unclear"),  # straddles 0
    (0.05, 0.0, 0.1, "unclear"),  # touches 0: not a difference
    (-0.05, -0.1, 0.0, "unclear"),
    (0.0, 0.0, 0.0, "tie"),
])
def test_verdict_thresholds(mean, low, high, expected):
    assert verdict(row("l1", mean, low, high)) == expected


def test_conclusion_names_the_winner_and_the_losers():
    text = ablation_conclusion([row("l1", 0.05, 0.02, 0.08), row("dssim", -0.3, -0.4, -0.2),
                                row("charbonnier", 0.01, -0.01, 0.03)])
    assert text.startswith("- Set5 PSNR: best: **l1**")
    assert "above mse: l1 (+0.050 dB [+0.020, +0.080])" in text
    assert "below mse: dssim (-0.300 dB [-0.400, -0.200])" in text
    assert "not distinguishable from mse: charbonnier" in text


def test_conclusion_names_runners_up_inside_the_winners_interval():
    text = ablation_conclusion([row("l1", 0.10, 0.05, 0.15), row("charbonnier", 0.06, 0.02, 0.1),
                                row("dssim", 0.04, 0.01, 0.07)])
    assert "best: **l1** (the highest mean, above mse; charbonnier within its interval)" in text


def test_conclusion_without_a_clear_winner():
    text = ablation_conclusion([row("l1", 0.02, -0.01, 0.05), row("dssim", -0.01, -0.03, 0.01)])
    assert "no clear winner over mse" in text
    assert "**" not in text


def test_conclusion_when_the_highest_mean_is_not_clearly_above():
    text = ablation_conclusion([row("l1", 0.10, -0.01, 0.20), row("charbonnier", 0.05, 0.01, 0.09)])
    assert "no single winner (charbonnier above mse, but l1 has the highest mean)" in text


def test_conclusion_baseline_wins_when_everything_is_below():
    text = ablation_conclusion([row("l1", -0.1, -0.2, -0.05), row("dssim", -0.3, -0.4, -0.2)])
    assert "best: **mse** (every other one is below it)" in text


def test_conclusion_reports_ties_and_one_line_per_set_and_metric():
    table = [row("l1", 0.0, 0.0, 0.0), row("l1", 0.001, 0.0005, 0.002, metric="ssim"),
             row("l1", 0.0, 0.0, 0.0, set_name="Set14")]
    lines = ablation_conclusion(table).splitlines()
    assert len(lines) == 3
    assert "identical to mse: l1 (+0.000 dB [+0.000, +0.000])" in lines[0]
    assert lines[1].startswith("- Set5 SSIM: best: **l1**")
    assert "l1 (+0.00100 [+0.00050, +0.00200])" in lines[1]
    assert lines[2].startswith("- Set14 PSNR: no clear winner")


# paired differences and tables ----------------------------------------------------------

def per_image_rows():
    rows = []
    for seed in (0, 1):
        for image, base in (("a.png", 30.0), ("b.png", 32.0)):
            rows.append({"loss": "mse", "seed": seed, "set": "Set5", "image": image,
                         "psnr": base + seed})
            rows.append({"loss": "l1", "seed": seed, "set": "Set5", "image": image,
                         "psnr": base + seed + 0.1})
    rows.append({"loss": "l1", "seed": 2, "set": "Set5", "image": "a.png", "psnr": 99.0})
    return rows


def test_paired_differences_pair_seed_and_image_only():
    differences = paired_differences(per_image_rows(), column="loss", variant="l1",
                                     baseline="mse", metric="psnr", set_name="Set5")
    np.testing.assert_allclose(differences, [0.1] * 4)  # seed 2 has no mse partner


def test_paired_table_and_missing_pairs():
    table = paired_table(per_image_rows(), column="loss", baseline="mse", variants=["l1"],
                         sets=["Set5"], metrics=["psnr"])
    assert len(table) == 1 and table[0]["n"] == 4 and verdict(table[0]) == "better"
    with pytest.raises(ValueError):
        paired_differences(per_image_rows(), column="loss", variant="l1", baseline="mse",
                           metric="psnr", set_name="Set14")


def test_mean_and_std():
    rows = [{"loss": "l1", "psnr": value} for value in (1.0, 2.0, 3.0)]
    assert mean_and_std(rows, "psnr", loss="l1") == (2.0, 1.0, 3)
    assert mean_and_std(rows[:1], "psnr", loss="l1") == (1.0, 0.0, 1)
    with pytest.raises(ValueError):
        mean_and_std(rows, "psnr", loss="mse")


def test_late_gain_over_the_last_quarter():
    steps = [100, 200, 300, 400, 500, 600, 700, 800]
    values = [30.0, 31.0, 31.5, 31.8, 32.0, 32.1, 32.15, 32.2]
    gain, start, end = late_gain(steps, values)
    assert (start, end) == (600, 800) and gain == pytest.approx(0.1)
    assert late_gain([10], [5.0]) == (0.0, 10, 10)


# the head's switched-off units ------------------------------------------------------------

def test_active_head_units_counts_channels_positive_somewhere():
    torch.manual_seed(0)
    model = build_model(PRESETS["small"].for_scale(2)).eval()
    x = torch.rand(2, 3, 12, 12)
    assert 0 < active_head_units(model, x) <= 1
    head = model.to_image["2"].body[0]
    with torch.no_grad():
        head.bias[: head.out_channels // 2] = -1e6  # half the units can never be positive
    assert active_head_units(model, x) <= 0.5
    with torch.no_grad():
        head.bias.fill_(-1e6)
    assert active_head_units(model, x) == 0.0
