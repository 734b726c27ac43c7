"""srlib.resize against hand-derived MATLAB weights and closed forms.

The end-to-end reference (the published bicubic rows) is in tests/test_evaluate.py. Chapter 1's
`pil_vs_matlab` (its cell tagged `pil-vs-matlab`) is run from the chapter's source.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from srlib.resize import _weight_matrix, cubic, degrade, imresize, modcrop, quantize

FIXTURE = Path(__file__).parent / "fixtures" / "resize_matlab_1d.json"
SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SET5 = SHARED / "benchmarks" / "Set5"
CHAPTER = Path(__file__).resolve().parents[1] / "notebooks" / "01_data.md"

DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(
        not torch.cuda.is_available(), reason="no CUDA device on this machine")),
]


def _matrix_of(in_size: int, out_size: int, antialias: bool) -> torch.Tensor:
    """The (out, in) matrix of a 1-D resize, read off by resizing the unit vectors."""
    basis = torch.eye(in_size, dtype=torch.float64)[:, :, None]  # (in, in, 1): in images n x 1
    # Width 1 -> 1 is the identity (cubic is 1 at 0 and 0 at other integers).
    columns = imresize(basis, size=(out_size, 1), antialias=antialias)  # (in, out, 1)
    return columns[:, :, 0].T


@pytest.mark.parametrize("case", json.loads(FIXTURE.read_text())["cases"], ids=lambda c: c["name"])
def test_weights_match_hand_derived_fixture(case):
    expected = torch.tensor(case["matrix"], dtype=torch.float64)
    actual = _matrix_of(case["in_size"], case["out_size"], case["antialias"])
    torch.testing.assert_close(actual, expected, rtol=0, atol=1e-15)


def test_cubic_kernel_closed_form():
    t = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5, -0.25],
                     dtype=torch.float64)
    expected = [1.0, 0.8671875, 0.5625, 0.2265625, 0.0, -0.0703125, -0.0625, -0.0234375,
                0.0, 0.0, 0.8671875]
    assert cubic(t).tolist() == expected


def test_two_dimensional_resize_is_separable():
    x = torch.rand(2, 8, 4, dtype=torch.float64)
    rows, cols = _matrix_of(8, 4, True), _matrix_of(4, 8, True)
    expected = rows @ x @ cols.T  # (4, 8) (2, 8, 4) (4, 8) -> (2, 4, 8)
    torch.testing.assert_close(imresize(x, size=(4, 8)), expected, rtol=0, atol=1e-14)


@pytest.mark.parametrize("scale", [0.5, 1 / 3, 0.25, 0.37, 1.7, 2, 3, 4, 8])
def test_constant_image_stays_constant(scale):
    x = torch.full((3, 21, 17), 0.3, dtype=torch.float64)
    y = imresize(x, scale)
    torch.testing.assert_close(y, torch.full_like(y, 0.3), rtol=0, atol=1e-14)


@pytest.mark.parametrize("scale", [2, 3, 4, 1 / 2, 1 / 3, 1 / 4])
def test_linear_ramp_reproduced_in_the_interior(scale):
    # Keys' kernel reproduces linear functions, and an integer downscale samples the
    # stretched kernel symmetrically, so a ramp maps to the ramp at the output positions.
    size = 48
    position = torch.arange(1, size + 1, dtype=torch.float64)  # MATLAB 1-based coordinates
    x = (0.02 * position - 0.1).view(1, 1, size).expand(1, size, size)  # ramp along width
    y = imresize(x, scale)[0, 0]  # (out,)
    out_position = torch.arange(1, y.numel() + 1, dtype=torch.float64)
    u = out_position / scale + 0.5 * (1 - 1 / scale)  # where each output pixel samples
    support = 2 / min(scale, 1) + 1  # stay clear of the mirrored border
    interior = (u > support) & (u < size + 1 - support)
    assert interior.sum() > 3
    torch.testing.assert_close(y[interior], (0.02 * u - 0.1)[interior], rtol=0, atol=1e-13)


def test_scale_one_is_identity():
    x = torch.rand(2, 3, 9, 7, dtype=torch.float64)
    torch.testing.assert_close(imresize(x, 1.0), x, rtol=0, atol=1e-15)


@pytest.mark.parametrize(("in_size", "scale", "out_size"), [
    (10, 0.3, 3), (7, 0.5, 4), (5, 1.5, 8), (255, 1 / 3, 85), (9, 2, 18), (100, 1 / 8, 13),
])
def test_output_size_is_ceil(in_size, scale, out_size):
    y = imresize(torch.zeros(1, in_size, in_size), scale)
    assert tuple(y.shape) == (1, out_size, out_size)


def test_explicit_size_and_non_square():
    y = imresize(torch.rand(3, 20, 30), size=(7, 45))
    assert tuple(y.shape) == (3, 7, 45)


def test_batch_matches_single_images_and_dtype_kept():
    x = torch.rand(3, 3, 16, 12)
    batched = imresize(x, 0.5)
    assert batched.dtype == torch.float32
    for image, out in zip(x, batched):
        torch.testing.assert_close(imresize(image, 0.5), out)


def test_rejects_bad_arguments():
    with pytest.raises(TypeError):
        imresize(torch.zeros(1, 4, 4, dtype=torch.uint8), 2)
    with pytest.raises(ValueError):
        imresize(torch.zeros(1, 4, 4), 2, size=(8, 8))
    with pytest.raises(ValueError):
        imresize(torch.zeros(1, 4, 4))
    with pytest.raises(ValueError):
        imresize(torch.zeros(1, 4, 4), -1.0)


def test_differentiable():
    x = torch.rand(1, 2, 6, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: imresize(t, 1.5), (x,))
    assert torch.autograd.gradcheck(lambda t: imresize(t, 0.5), (x,))


def test_weights_are_cached_per_size_scale_device_dtype():
    _weight_matrix.cache_clear()
    x = torch.rand(1, 3, 24, 24)
    imresize(x, 2)
    first = _weight_matrix.cache_info()
    imresize(x, 2)
    second = _weight_matrix.cache_info()
    assert second.misses == first.misses and second.hits == first.hits + 2
    imresize(x.double(), 2)  # another dtype: new entries
    assert _weight_matrix.cache_info().misses == first.misses + 1  # square: one (in, out) pair


@pytest.mark.parametrize("device", DEVICES)
def test_runs_on_device(device):
    x = torch.rand(2, 3, 16, 16, device=device)
    y = imresize(x, 0.5)
    assert y.device.type == device
    torch.testing.assert_close(y.cpu(), imresize(x.cpu(), 0.5), rtol=1e-5, atol=1e-6)


def test_quantize_rounds_half_away_from_zero_and_clamps():
    levels = torch.tensor([0.5, 1.5, 2.5, 2.49, 254.5, -3.0, 300.0], dtype=torch.float64) / 255
    assert (quantize(levels) * 255).tolist() == [1.0, 2.0, 3.0, 2.0, 255.0, 0.0, 255.0]


def test_modcrop_tensor_and_array():
    assert tuple(modcrop(torch.zeros(2, 3, 13, 10), 4).shape) == (2, 3, 12, 8)
    array = np.arange(13 * 10 * 3).reshape(13, 10, 3)
    cropped = modcrop(array, 3)
    assert cropped.shape == (12, 9, 3)
    assert (cropped == array[:12, :9]).all()  # top-left corner kept


def test_degrade_rounds_after_each_pass_like_matlab_uint8():
    generator = torch.Generator().manual_seed(0)
    hr = torch.randint(0, 256, (1, 3, 24, 36), generator=generator).double() / 255
    lr = degrade(hr, 4)
    assert tuple(lr.shape) == (1, 3, 6, 9)
    # MATLAB's mex returns uint8 for uint8 input, after the height pass and the width pass
    # (exact halfway cases: test_degrade_is_exact_at_halfway_values).
    expected = quantize(imresize(quantize(imresize(hr, size=(6, 36))), size=(6, 9)))
    torch.testing.assert_close(lr, expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(lr * 255, (lr * 255).round(), rtol=0, atol=1e-9)
    # Rounding once at the end instead differs by at most one level.
    assert ((lr - quantize(imresize(hr, 0.25))).abs() * 255).max() <= 1 + 1e-9


def test_degrade_requires_modcropped_input():
    with pytest.raises(ValueError, match="modcrop"):
        degrade(torch.zeros(3, 10, 12), 4)


def chapter_function(name: str, tag: str):
    """`name` as chapter 1 defines it: its `imports` cells and the cells tagged `tag`, run."""
    import jupytext

    cells = [cell for cell in jupytext.read(CHAPTER).cells if cell.cell_type == "code"]
    tagged = {t: [c.source for c in cells if t in c.metadata.get("tags", [])]
              for t in ("imports", tag)}
    assert len(tagged[tag]) == 1, f"expected one cell tagged {tag} in {CHAPTER}"
    namespace: dict = {}
    for source in tagged["imports"] + tagged[tag]:
        exec(compile(source, str(CHAPTER), "exec"), namespace)  # noqa: S102 (our chapter)
    return namespace[name]


@pytest.mark.skipif(not SET5.is_dir(), reason=f"benchmark images not found at {SET5}")
def test_chapter_pil_vs_matlab_on_set5():
    pil_vs_matlab = chapter_function("pil_vs_matlab", "pil-vs-matlab")
    paths = sorted(SET5.glob("*.png"))
    result = pil_vs_matlab(paths[:2], 2)
    assert result["n"] == 2 and len(result["images"]) == 2
    # PIL's bicubic is close but not equal: LR images differ, shaved PSNR barely does.
    assert 50 < result["lr_psnr"] < 70
    assert 0 < result["lr_differing"] < 0.5
    assert abs(result["difference_db"]) < 0.05


def _exact_half_downscale(signal: list[int]) -> list[int]:
    """MATLAB's uint8 x1/2 resize of a 1-D signal in exact rational arithmetic."""
    from fractions import Fraction

    # Antialiased x1/2 taps (fixture derivation), in 1/256: distances 3.5, 2.5, ..., 3.5.
    taps = [-3, -9, 29, 111, 111, 29, -9, -3]
    n = len(signal)
    out = []
    for i in range(1, n // 2 + 1):  # output pixel i sits at u = 2i - 1/2
        total = Fraction(0)
        for offset, weight in enumerate(taps):
            k = 2 * i - 4 + offset  # 1-based input tap
            k = 1 - k if k < 1 else (2 * n + 1 - k if k > n else k)  # mirror, edge included
            total += Fraction(weight, 256) * signal[k - 1]
        out.append(min(255, max(0, int(total + Fraction(1, 2)) if total >= 0 else 0)))
    return out


def test_degrade_is_exact_at_halfway_values():
    # x1/2 weights are multiples of 1/256, so outputs land exactly halfway between two
    # levels now and then; MATLAB (uint8, round half away from zero) rounds those up.
    generator = torch.Generator().manual_seed(1)
    image = torch.randint(0, 256, (64, 64), generator=generator)
    rows = [_exact_half_downscale(column) for column in image.T.tolist()]  # height pass
    halfway = torch.tensor(rows).T  # (32, 64)
    expected = torch.tensor([_exact_half_downscale(row) for row in halfway.tolist()])  # (32, 32)
    lr = degrade(image[None].double() / 255, 2)[0] * 255
    assert torch.equal(lr.round().long(), expected)
    torch.testing.assert_close(lr, expected.double(), rtol=0, atol=1e-9)
