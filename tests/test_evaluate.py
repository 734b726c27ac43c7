"""srlib.evaluate: the published bicubic rows end to end, conventions, CLI errors."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from srlib import evaluate as evaluation
from srlib.errors import UsageError
from srlib.metrics import psnr, ssim
from srlib.resize import degrade, imresize, modcrop, quantize
from srlib.tools import cli

BENCHMARKS = Path(__file__).resolve().parents[1].parent / "shared" / "benchmarks"

# REFERENCE.md (SRCNN / VDSR / LapSRN tables), x3 from the issue: PSNR dB / SSIM.
PUBLISHED_BICUBIC = {
    ("Set5", 2): (33.66, 0.9299), ("Set14", 2): (30.24, 0.8688),
    ("Set5", 3): (30.39, 0.8682), ("Set14", 3): (27.55, 0.7742),
    ("Set5", 4): (28.42, 0.8104), ("Set14", 4): (26.00, 0.7027),
    ("Set5", 8): (24.40, 0.6580), ("Set14", 8): (23.10, 0.5660),
}


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread: on a few shared cores, OpenMP workers spinning for a busy core
    made the table test 4x slower in wall time (measured: 23 s vs 91 s under load 7)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="srlib evaluate")
    cli.add_evaluate(parser)
    return parser.parse_args(argv)


def _smooth_image(seed: int, height: int, width: int, channels: int) -> np.ndarray:
    """A smooth random uint8 image (upsampled noise), so bicubic scores are realistic."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(channels, height // 8 + 1, width // 8 + 1, generator=generator,
                        dtype=torch.float64)
    fine = imresize(coarse, size=(height, width)).clamp(0, 1)  # (C, H, W)
    array = np.round(fine.numpy() * 255).astype(np.uint8).transpose(1, 2, 0)
    return array[..., 0] if channels == 1 else array


@pytest.fixture
def tiny_sets(tmp_path: Path) -> Path:
    """DATA/A with two RGB images and DATA/B with one RGB and one grey image."""
    data = tmp_path / "data"
    for set_name, specs in {"A": [(0, 3), (1, 3)], "B": [(2, 3), (3, 1)]}.items():
        (data / set_name).mkdir(parents=True)
        for seed, channels in specs:
            Image.fromarray(_smooth_image(seed, 50, 44, channels)).save(
                data / set_name / f"image{seed}.png")
    return data


@pytest.mark.skipif(not (BENCHMARKS / "Set5").is_dir() or not (BENCHMARKS / "Set14").is_dir(),
                    reason=f"Set5/Set14 HR images not found under {BENCHMARKS}")
def test_bicubic_reproduces_published_rows(tmp_path, capsys):
    output = tmp_path / "bicubic.json"
    status = cli.run_evaluate(_parse([
        "--method", "bicubic", "--data", str(BENCHMARKS), "--sets", "Set5", "Set14",
        "--scales", "2", "3", "4", "8", "--json", str(output),
    ]))
    assert status == 0
    rows = json.loads(output.read_text())
    assert {(row["set"], row["scale"]) for row in rows} == set(PUBLISHED_BICUBIC)
    for row in rows:
        published_psnr, published_ssim = PUBLISHED_BICUBIC[(row["set"], row["scale"])]
        where = f"{row['set']} x{row['scale']}"
        assert abs(row["psnr"] - published_psnr) <= 0.03, f"{where}: PSNR {row['psnr']:.3f}"
        assert abs(row["ssim"] - published_ssim) <= 0.003, f"{where}: SSIM {row['ssim']:.4f}"
        assert row["method"] == "bicubic"
        assert row["n"] == len(row["images"]) == {"Set5": 5, "Set14": 14}[row["set"]]
    table = capsys.readouterr().out
    assert "| x2 | bicubic | 33.6" in table
    assert "Wang's ssim_index" in table and "own grey values" in table


def test_rows_hold_per_image_values_and_means(tiny_sets):
    sets = {"A": tiny_sets / "A", "B": tiny_sets / "B"}
    rows = evaluation.evaluate(evaluation.bicubic_upscaler, sets, [2, 4])
    assert [(row["set"], row["scale"]) for row in rows] == [("A", 2), ("B", 2), ("A", 4), ("B", 4)]
    for row in rows:
        assert set(row) >= {"set", "scale", "method", "psnr", "ssim", "n", "images"}
        assert row["n"] == 2
        assert row["psnr"] == pytest.approx(np.mean([image["psnr"] for image in row["images"]]))
        assert row["ssim"] == pytest.approx(np.mean([image["ssim"] for image in row["images"]]))
        assert row["protocol"] == {"y_channel": True, "shave": row["scale"], "ssim": "valid",
                                   "grey": "grey"}


def test_rgb_image_scored_as_the_protocol_says(tiny_sets):
    path = tiny_sets / "A" / "image0.png"
    rows = evaluation.evaluate(evaluation.bicubic_upscaler, {"A": tiny_sets / "A"}, [2])
    # The protocol spelled out by hand: modcrop, degrade, bicubic, 8 bits, Y, shave.
    hr_uint8 = modcrop(np.asarray(Image.open(path)), 2)
    hr = torch.from_numpy(hr_uint8 / 255.0).permute(2, 0, 1)[None]
    sr = quantize(imresize(degrade(hr, 2), 2.0))
    image = rows[0]["images"][0]
    assert image["name"] == "image0.png"
    assert image["psnr"] == pytest.approx(psnr(sr, hr, shave=2, y_channel=True).item(), abs=1e-4)
    assert image["ssim"] == pytest.approx(ssim(sr, hr, shave=2, y_channel=True).item(), abs=1e-6)


def test_grey_image_treatments(tiny_sets):
    sets = {"B": tiny_sets / "B"}
    grey = evaluation.evaluate(evaluation.bicubic_upscaler, sets, [2], grey_as="grey")[0]
    ycbcr = evaluation.evaluate(evaluation.bicubic_upscaler, sets, [2], grey_as="ycbcr")[0]
    # The RGB image is scored the same way under both; the grey one is not.
    assert grey["images"][0] == ycbcr["images"][0]
    assert grey["images"][1]["psnr"] != pytest.approx(ycbcr["images"][1]["psnr"], abs=1e-3)
    # "grey": bicubic on the grey values themselves, scored on them without a Y transform.
    values = np.asarray(Image.open(tiny_sets / "B" / "image3.png"))
    hr = torch.from_numpy(modcrop(values, 2) / 255.0)[None, None]  # (1, 1, H, W)
    sr = quantize(imresize(degrade(hr, 2), 2.0))
    assert grey["images"][1]["psnr"] == pytest.approx(psnr(sr, hr, shave=2).item(), abs=1e-4)
    assert ycbcr["protocol"]["grey"] == "ycbcr"


def test_format_table_names_its_conventions(tiny_sets):
    sets = {"A": tiny_sets / "A"}
    rows = evaluation.evaluate(evaluation.bicubic_upscaler, sets, [2], ssim_padding="replicate",
                               grey_as="ycbcr")
    table = evaluation.format_table(rows)
    lines = table.splitlines()
    assert lines[0] == "| scale | method | A |"
    assert lines[2].startswith("| x2 | bicubic | ")
    assert "MATLAB ssim()" in table and "replicate" in table
    assert "through YCbCr" in table and "Y channel" in table and "shaved" in table


def test_upscaler_gets_float32_lr_and_wrong_shapes_are_refused(tiny_sets):
    seen = []

    def nearest(lr, scale):
        seen.append(lr.dtype)
        return lr.repeat_interleave(scale, -1).repeat_interleave(scale, -2)

    rows = evaluation.evaluate(nearest, {"A": tiny_sets / "A"}, [2], method="nearest")
    assert seen == [torch.float32, torch.float32] and rows[0]["method"] == "nearest"
    bicubic = evaluation.evaluate(evaluation.bicubic_upscaler, {"A": tiny_sets / "A"}, [2])
    assert rows[0]["psnr"] < bicubic[0]["psnr"]
    with pytest.raises(ValueError, match="image0.png"):
        evaluation.evaluate(lambda lr, scale: lr, {"A": tiny_sets / "A"}, [2])


def test_cli_json_and_saved_images(tiny_sets, tmp_path, capsys):
    output, images = tmp_path / "rows.json", tmp_path / "sr"
    status = cli.run_evaluate(_parse([
        "--method", "bicubic", "--data", str(tiny_sets), "--sets", "A", "B",
        "--scales", "3", "--json", str(output), "--save-images", str(images),
        "--ssim", "replicate",
    ]))
    assert status == 0
    rows = json.loads(output.read_text())
    assert [row["set"] for row in rows] == ["A", "B"]
    assert rows[0]["images"][0]["name"] == "image0.png"
    saved = np.asarray(Image.open(images / "B" / "x3" / "image3.png"))
    assert saved.shape == (48, 42, 3)  # modcropped to multiples of 3, upscaled output
    assert "| x3 | bicubic |" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [
    ["--scales", "1"], ["--scales", "0"], ["--scales", "-2"],
])
def test_unsupported_scale_is_a_usage_error(tiny_sets, argv):
    with pytest.raises(UsageError, match="scale"):
        cli.run_evaluate(_parse(["--method", "bicubic", "--data", str(tiny_sets), "--sets", "A",
                               *argv]))


def test_missing_set_folder_is_named(tiny_sets):
    with pytest.raises(UsageError, match="Urban100"):
        cli.run_evaluate(_parse(["--method", "bicubic", "--data", str(tiny_sets),
                               "--sets", "A", "Urban100", "--scales", "2"]))
    with pytest.raises(UsageError, match="nowhere"):
        cli.run_evaluate(_parse(["--method", "bicubic", "--data", str(tiny_sets / "nowhere"),
                               "--scales", "2"]))


def test_empty_set_folder_is_a_usage_error(tiny_sets):
    (tiny_sets / "Empty").mkdir()
    with pytest.raises(UsageError, match="Empty"):
        cli.run_evaluate(_parse(["--method", "bicubic", "--data", str(tiny_sets),
                               "--sets", "Empty", "--scales", "2"]))


def test_missing_json_folder_is_a_usage_error(tiny_sets, tmp_path):
    with pytest.raises(UsageError, match="no such folder"):
        cli.run_evaluate(_parse(["--method", "bicubic", "--data", str(tiny_sets), "--sets", "A",
                               "--scales", "2", "--json", str(tmp_path / "no" / "rows.json")]))


def test_without_data_the_data_root_is_asked(tiny_sets, monkeypatch):
    import srlib.data

    def benchmark_dir(name, root=None):
        if name == "Set5":
            raise UsageError("benchmark set 'Set5' not found; `srlib download benchmarks`")
        return tiny_sets / name

    monkeypatch.setattr(srlib.data, "benchmark_dir", benchmark_dir)
    assert cli.run_evaluate(_parse(["--method", "bicubic", "--sets", "A", "--scales", "2"])) == 0
    with pytest.raises(UsageError, match="srlib download benchmarks"):
        cli.run_evaluate(_parse(["--method", "bicubic", "--sets", "Set5", "--scales", "2"]))

    def not_found(name, root=None):
        raise UsageError(f"benchmark set {name} not found; run `srlib download benchmarks`")

    monkeypatch.setattr(srlib.data, "benchmark_dir", not_found)
    with pytest.raises(UsageError, match="^benchmark set A not found"):
        cli.run_evaluate(_parse(["--method", "bicubic", "--sets", "A", "--scales", "2"]))


def test_method_and_checkpoint_are_exclusive():
    with pytest.raises(SystemExit):
        _parse(["--method", "bicubic", "--checkpoint", "x.pt"])
    with pytest.raises(SystemExit):
        _parse(["--sets", "Set5"])


class _NearestModel(torch.nn.Module):
    """Stands in for SRNet: {scale: nearest-neighbour upscale} for each output scale."""

    output_scales = (2, 4)

    def forward(self, x):
        return {s: x.repeat_interleave(s, -1).repeat_interleave(s, -2) for s in self.output_scales}


def test_checkpoint_loads_per_scale_and_upscales_through_infer(tiny_sets, tmp_path, monkeypatch,
                                                               capsys):
    import srlib.checkpoint
    import srlib.infer

    loads, calls = [], []

    def load_model(path, *, scale=None, preset=None, map_location="cpu"):
        loads.append((str(path), scale))
        return _NearestModel(), None

    def upscale(model, lr, scale, *, tile=None, overlap=16, dtype=torch.float32):
        calls.append((lr.dtype, scale, tile))
        return model(lr)[scale]

    monkeypatch.setattr(srlib.checkpoint, "load_model", load_model)
    monkeypatch.setattr(srlib.infer, "upscale", upscale)
    checkpoint = tmp_path / "best.pt"
    checkpoint.write_bytes(b"stands in for a checkpoint; load_model is replaced")
    status = cli.run_evaluate(_parse(["--checkpoint", str(checkpoint), "--data", str(tiny_sets),
                                    "--sets", "A", "--tile", "64", "--device", "cpu"]))
    assert status == 0
    # Default scales: the checkpoint's own; each scale's model loaded before any work.
    assert loads == [(str(checkpoint), None), (str(checkpoint), 2), (str(checkpoint), 4)]
    assert {call[1] for call in calls} == {2, 4}
    assert all(call[0] == torch.float32 and call[2] == 64 for call in calls)
    assert "| x4 | best |" in capsys.readouterr().out


@pytest.mark.skipif(not (BENCHMARKS / "Set5").is_dir(), reason=f"no benchmark sets in {BENCHMARKS}")
def test_shipped_weights_give_their_recorded_numbers():
    """The shipped checkpoint loads with today's code and scores what its JSON recorded when it
    was exported: Set5 and Set14 at x2, x4 and x8."""
    import json

    from srlib.checkpoint import load_model, resolve
    from srlib.infer import as_upscaler

    model, config = load_model("pretrained")
    assert not config.model.leaky_head  # its first stage was trained with the seed's ReLU heads
    recorded = json.loads(resolve("pretrained").with_suffix(".json").read_text())["evaluation"]
    sets = {name: BENCHMARKS / name for name in ("Set5", "Set14")}
    rows = evaluation.evaluate(as_upscaler(model), sets, (2, 4, 8), method="pretrained")
    for row in rows:
        expected = next(r for r in recorded if r["set"] == row["set"] and r["scale"] == row["scale"])
        assert row["psnr"] == pytest.approx(expected["psnr"], abs=0.005), row["set"]
        assert row["ssim"] == pytest.approx(expected["ssim"], abs=0.0005), row["set"]
