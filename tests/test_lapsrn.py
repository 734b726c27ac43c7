"""The LapSRN timing tool: the architecture as the paper counts it, and the rows it reports."""

import pytest

from srlib.model import PRESETS, build_model, count_parameters
from srlib.tools.lapsrn import LapSRN, compare


def test_lapsrn_parameters_follow_the_paper():
    # Per level: 10 convs 64->64 (3x3), a 4x4 transposed conv of the features, a 3x3 conv to
    # the residual image, a 4x4 transposed conv of the image; one 3->64 conv in front.
    first = 3 * 64 * 9 + 64
    level = 10 * (64 * 64 * 9 + 64) + (64 * 64 * 16 + 64) + (64 * 3 * 9 + 3) + (3 * 3 * 16 + 3)
    for levels in (1, 2, 3):
        assert count_parameters(LapSRN(levels=levels)) == first + levels * level


def test_compare_times_the_shipped_network_and_other_shapes():
    shipped = compare(lr_side=8, scales=(2, 4), repeats=1)
    narrow = compare(lr_side=8, scales=(2,), repeats=1, widths=(8, 8))
    # Two blocks moved to the x2 stage, still 12: an x2 block is the cheapest (its transposed
    # conv is 4x4, an x4 block's 6x6, an x8 block's 10x10), so the network has fewer parameters.
    moved = compare(lr_side=8, scales=(2,), repeats=1, blocks=(8, 3, 1))
    expected = build_model(PRESETS["small"].replace(blocks_per_stage=(8, 3, 1)))
    assert moved[0]["srnet_params_m"] == round(count_parameters(expected) / 1e6, 3)
    assert moved[0]["srnet_params_m"] < shipped[0]["srnet_params_m"]
    assert [row["scale"] for row in shipped] == [2, 4]
    assert shipped[0]["lapsrn_params_m"] == pytest.approx(0.4386, abs=1e-3)
    assert narrow[0]["srnet_params_m"] < shipped[0]["srnet_params_m"]
    for row in shipped + narrow + moved:
        assert row["srnet_ms_per_mp"] > 0 and row["lapsrn_ms_per_mp"] > 0


def test_the_written_file_says_which_network_it_timed(tmp_path):
    import json

    from srlib.tools.lapsrn import main

    out = tmp_path / "speed.json"
    main(["--blocks", "8", "3", "1", "--lr-side", "8", "--repeats", "1", "--out", str(out)])
    written = json.loads(out.read_text())
    assert written["checkpoint"] == "pretrained"
    assert written["rebuilt"] == {"blocks_per_stage": [8, 3, 1]}
    assert [row["scale"] for row in written["rows"]] == [2, 4, 8]
    assert "--blocks 8 3 1" in written["provenance"]["command"]
