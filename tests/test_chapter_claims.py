"""Claims the chapters rest on that live outside a cell: the committed network figure.

`book/images/network.svg` (chapter 2) is drawn by `scripts/draw_network.py` from the model
itself; if srlib.model changes a shape, the committed figure must be regenerated.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_network_figure_is_up_to_date(tmp_path):
    fresh = tmp_path / "network.svg"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "draw_network.py"), str(fresh)],
                   check=True, cwd=ROOT, capture_output=True)
    committed = (ROOT / "book" / "images" / "network.svg").read_text()
    assert fresh.read_text() == committed, (
        "book/images/network.svg is stale: run `python scripts/draw_network.py`")


def test_network_figure_labels_the_output_shapes():
    svg = (ROOT / "book" / "images" / "network.svg").read_text()
    for label in ("(1,3,32,32)", "(1,3,64,64)", "(1,3,128,128)", "(1,3,256,256)",
                  "(1,96,64,64)"):
        assert label in svg, label
