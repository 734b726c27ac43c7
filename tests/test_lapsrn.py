"""The LapSRN timing tool: the architecture as the paper counts it, and the rows it reports."""

import pytest

from srlib.model import count_parameters
from srlib.tools.lapsrn import LapSRN, compare


def test_lapsrn_parameters_follow_the_paper():
    # Per level: 10 convs 64->64 (3x3), a 4x4 transposed conv of the features, a 3x3 conv to
    # the residual image, a 4x4 transposed conv of the image; one 3->64 conv in front.
    first = 3 * 64 * 9 + 64
    level = 10 * (64 * 64 * 9 + 64) + (64 * 64 * 16 + 64) + (64 * 3 * 9 + 3) + (3 * 3 * 16 + 3)
    for levels in (1, 2, 3):
        assert count_parameters(LapSRN(levels=levels)) == first + levels * level


def test_compare_times_the_shipped_network_and_other_widths():
    shipped = compare(lr_side=8, scales=(2, 4), repeats=1)
    narrow = compare(lr_side=8, scales=(2,), repeats=1, widths=(8, 8))
    assert [row["scale"] for row in shipped] == [2, 4]
    assert shipped[0]["lapsrn_params_m"] == pytest.approx(0.4386, abs=1e-3)
    assert narrow[0]["srnet_params_m"] < shipped[0]["srnet_params_m"]
    for row in shipped + narrow:
        assert row["srnet_ms_per_mp"] > 0 and row["lapsrn_ms_per_mp"] > 0
