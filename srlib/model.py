"""The multi-scale residual network of the seed design, built as described.

The design (``../shared/seed/README.seed.md``), inspired by LapSRN (Lai et al., CVPR 2017):
a feature extractor, then 12 residual blocks in stages at several scales of the LR grid.
Every block has two flows:

* the up-flow turns the block's input ``X`` (LR grid) into ``s``-times upsampled maps ``U``;
* the back-projection flow maps ``U`` back to the LR grid and keeps what it failed to explain,
  ``R = X - down(U)``, refines it (three conv3x3 + ReLU, squeeze-excitation) and hands
  ``R + A`` on to the next block as its "downsampled residual".

Within a stage the ``U`` maps of its blocks are concatenated and compressed by a 3x3 conv back
to ``channels``, plus a skip: the previous stage's map resampled to this stage's scale. Each
stage that has a ground truth ends in an image head (LapSRN-style multi-scale outputs).

``tied=True`` reproduces what the original code computed instead (``../shared/seed/ANALYSIS.md``):
one block per stage, called repeatedly on the same input, so a stage concatenates identical
copies and the 12 blocks collapse to 3.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from srlib.layers import Conv2d, ConvTranspose2d
from srlib.resize import imresize


@dataclass(frozen=True)
class Preset:
    """The sizes that define a network; `SRNet.from_preset` builds one from them."""

    stage_scales: tuple[int, ...]
    blocks_per_stage: tuple[int, ...]
    output_scales: tuple[int, ...]
    feature_width: int
    channels: int
    global_skip: bool
    se_reduction: int = 16


PRESETS = {
    # The original sizes: coarse-to-fine stages at 8x, 4x, 2x oversample a single x2 output.
    "seed": Preset((8, 4, 2), (2, 4, 6), (2,), 512, 128, False),
    # LapSRN's order: fine-to-coarse stages, an image at every level in one pass.
    "pyramid": Preset((2, 4, 8), (6, 4, 2), (2, 4, 8), 512, 128, True),
    # The pyramid topology (12 blocks) at narrow widths: trains on a laptop CPU and in CI.
    "quick": Preset((2, 4, 8), (6, 4, 2), (2, 4, 8), 32, 16, True, se_reduction=4),
}


def _check_power_of_two(scale: int) -> None:
    if scale < 1 or scale & (scale - 1):
        raise ValueError(f"scales must be powers of two, got {scale}")


def upsampler(channels: int, scale: int) -> ConvTranspose2d:
    """Transposed conv mapping (B, C, H, W) to (B, C, sH, sW) exactly: kernel s + 2, stride s,
    so neighbouring LR pixels' footprints overlap by one pixel on each side."""
    return ConvTranspose2d(channels, channels, scale + 2, stride=scale, padding=1)


def downsampler(channels: int, scale: int) -> Conv2d:
    """The seed's strided 3x3 conv, mapping (B, C, sH, sW) back to (B, C, H, W)."""
    return Conv2d(channels, channels, 3, stride=scale, padding=1)


def resampler(channels: int, ratio: float) -> nn.Module:
    """Learned resampling by a power-of-two `ratio` (>1 up, <1 down, 1 identity)."""
    if ratio == 1:
        return nn.Identity()
    if ratio > 1:
        return upsampler(channels, int(ratio))
    # A stride-2 3x3 conv per halving, as the seed's 8x -> 4x -> 2x transitions.
    halvings = round(math.log2(1 / ratio))
    return nn.Sequential(
        *[Conv2d(channels, channels, 3, stride=2, padding=1) for _ in range(halvings)]
    )


def scale_arguments(preset: Preset, scale: int) -> dict:
    """Stage layout of `preset` narrowed to serve `scale`, keeping its number of blocks.

    A fine-to-coarse preset (LapSRN's order) keeps its stages up to `scale`, the blocks of the
    dropped stages joining the last one, with an image at each kept level. A coarse-to-fine
    preset (the seed's) shifts every stage so that its last one lands on `scale`.

    Raises:
        ValueError: `scale` cannot be served by this preset.
    """
    stages, blocks = preset.stage_scales, preset.blocks_per_stage
    if stages == tuple(sorted(stages)):
        if scale not in stages:
            raise ValueError(f"scale {scale} is not one of this preset's levels {stages}")
        kept = stages.index(scale) + 1
        blocks = blocks[:kept - 1] + (sum(blocks[kept - 1:]),)
        outputs = tuple(s for s in preset.output_scales if s <= scale)
        return {"stage_scales": stages[:kept], "blocks_per_stage": blocks, "output_scales": outputs}
    _check_power_of_two(scale)
    if scale < 2:
        raise ValueError(f"scale must be at least 2, got {scale}")
    shift = scale / stages[-1]
    stages = tuple(int(s * shift) for s in stages)
    return {"stage_scales": stages, "blocks_per_stage": blocks, "output_scales": (scale,)}


class FeatureExtractor(nn.Sequential):
    """conv3x3 3->wide, conv3x3 wide->channels, conv3x3 channels->channels, ReLU after each."""

    def __init__(self, in_channels: int = 3, feature_width: int = 512, channels: int = 128):
        super().__init__(
            Conv2d(in_channels, feature_width, 3, padding=1),
            nn.ReLU(inplace=True),
            Conv2d(feature_width, channels, 3, padding=1),
            nn.ReLU(inplace=True),
            Conv2d(channels, channels, 3, padding=1),
            nn.ReLU(inplace=True),
        )


class SqueezeExcitation(nn.Module):
    """Channel attention (Hu et al., CVPR 2018): scale each map by a gate from its mean."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = max(1, channels // reduction)
        self.gate = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),  # (B, C, H, W) -> (B, C, 1, 1)
            Conv2d(channels, hidden, 1),
            nn.ReLU(inplace=True),
            Conv2d(hidden, channels, 1),
            nn.Sigmoid(),
        )
        # Tiled inference (`srlib.infer`) puts the means of the whole image here, so that a
        # tile is gated as the whole image would be; None: the input's own means.
        self.image_means: Tensor | None = None

    def forward(self, x: Tensor) -> Tensor:
        # The gate's 1x1 convs act on a 1x1 map: as matrix products on (B, C) they give the
        # same numbers without a convolution primitive per call (measured: a 16x4 1x1-conv
        # backward took ~15 ms in oneDNN, the product microseconds).
        reduce, expand = self.gate[1], self.gate[3]
        means = x.mean(dim=(2, 3)) if self.image_means is None else self.image_means  # (B, C)
        hidden = torch.relu(F.linear(means, reduce.weight.flatten(1), reduce.bias))  # (B, C/r)
        gate = torch.sigmoid(F.linear(hidden, expand.weight.flatten(1), expand.bias))  # (B, C)
        return x * gate[:, :, None, None]


class ResidualBlock(nn.Module):
    """One block of the seed design: an up-flow and a back-projection flow.

    Args:
        channels: feature maps in and out.
        scale: how many times the up-flow upsamples (a power of two).
        se_reduction: squeeze-excitation reduction ratio.
    """

    def __init__(self, channels: int, scale: int, se_reduction: int = 16):
        super().__init__()
        _check_power_of_two(scale)
        self.up = upsampler(channels, scale)
        self.down = downsampler(channels, scale)
        # Three convs with their own weights (the original applied one conv three times).
        self.refine = nn.Sequential(
            *[
                layer
                for _ in range(3)
                for layer in (Conv2d(channels, channels, 3, padding=1), nn.ReLU(inplace=True))
            ]
        )
        self.attention = SqueezeExcitation(channels, se_reduction)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Returns (upsampled maps U (B, C, sH, sW), downsampled residual (B, C, H, W))."""
        # In place: the up-conv keeps its input for the backward pass, not its output.
        upsampled = self.up(x).relu_()  # (B, C, H, W) -> (B, C, sH, sW)
        residual = x - self.down(upsampled)  # (B, C, sH, sW) -> (B, C, H, W)
        return upsampled, residual + self.attention(self.refine(residual))


class Stage(nn.Module):
    """Blocks at one scale whose upsampled maps are concatenated and compressed to `channels`."""

    def __init__(self, channels: int, scale: int, num_blocks: int, *, tied: bool = False,
                 se_reduction: int = 16):
        super().__init__()
        self.scale = scale
        self.num_blocks = num_blocks
        self.tied = tied
        distinct = 1 if tied else num_blocks
        self.blocks = nn.ModuleList(
            ResidualBlock(channels, scale, se_reduction) for _ in range(distinct)
        )
        self.compress = Conv2d(num_blocks * channels, channels, 3, padding=1)

    def forward(self, residual: Tensor, checkpointing: bool = False) -> tuple[Tensor, Tensor]:
        """Returns (compressed maps (B, C, sH, sW), the last block's residual (B, C, H, W)).

        With `checkpointing`, each block and its share of the compress conv are recomputed in
        the backward pass instead of storing their activations (see `_block_share`). Without
        gradients the shares are summed too: each block's upsampled maps are freed as soon as
        its share is added, and no concatenation is copied (measured at inference, quick
        preset x4 tiles of 256: 28% faster, and less memory).
        """
        stage_input = residual
        if checkpointing or not torch.is_grad_enabled():
            compressed = None
            for index in range(self.num_blocks):
                # Tied (the original code): every call sees the stage's input.
                block_input = stage_input if self.tied else residual
                if checkpointing:
                    share, residual = checkpoint(self._block_share, index, block_input,
                                                 use_reentrant=False)
                else:
                    share, residual = self._block_share(index, block_input)
                # In place on a conv output, which no backward pass keeps.
                compressed = share if compressed is None else compressed.add_(share)
            return compressed, residual
        maps = []
        for index in range(self.num_blocks):
            block = self.blocks[0 if self.tied else index]
            # Tied (the original code): every call sees the stage's input, not its predecessor's.
            upsampled, residual = block(stage_input if self.tied else residual)
            maps.append(upsampled)
        compressed = self.compress(torch.cat(maps, dim=1))  # (B, nC, sH, sW) -> (B, C, sH, sW)
        return compressed, residual

    def _block_share(self, index: int, block_input: Tensor) -> tuple[Tensor, Tensor]:
        """Block `index` and its share of the compress conv: ((B, C, sH, sW), (B, C, H, W)).

        compress(cat(U_1..U_n)) is the sum of each U_i's conv with its slice of the weights,
        so a checkpoint around a block and its share stores only the block's LR input: its
        upsampled maps U_i, the stage's largest tensors, are never kept. (Checkpointing whole
        stages kept the 8x stage's maps alive in its recomputation: measured, it saved ~20%
        of the seed's step memory instead of ~40%.)
        """
        block = self.blocks[0 if self.tied else index]
        upsampled, residual = block(block_input)  # (B, C, H, W) -> (B, C, sH, sW), (B, C, H, W)
        channels = upsampled.shape[1]
        share = self.compress.forward_part(upsampled, index * channels, bias=index == 0)
        return share, residual

    def residual_flow(self, residual: Tensor) -> Tensor:
        """The last block's residual alone (B, C, H, W), skipping the compress conv."""
        stage_input = residual
        for index in range(self.num_blocks):
            block = self.blocks[0 if self.tied else index]
            _, residual = block(stage_input if self.tied else residual)
        return residual


class ImageHead(nn.Module):
    """Maps stage features to an RGB image: the seed's conv, ReLU, conv 128->3."""

    def __init__(self, channels: int, out_channels: int = 3):
        super().__init__()
        self.body = nn.Sequential(
            Conv2d(channels, channels, 3, padding=1),
            nn.ReLU(inplace=True),
            Conv2d(channels, out_channels, 3, padding=1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


class SRNet(nn.Module):
    """The multi-scale residual super-resolution network.

    Args (keyword-only):
        stage_scales: the scale of each stage, e.g. (8, 4, 2) coarse first or (2, 4, 8).
        blocks_per_stage: residual blocks in each stage (the design has 12 in all).
        output_scales: stages that end in an RGB image (each must be in `stage_scales`).
        feature_width: width of the feature extractor's first conv (512 in the seed).
        channels: feature maps everywhere after it (128 in the seed).
        global_skip: add the MATLAB-bicubic upscaled input to every output, so the network
            learns only the missing detail.
        tied: reproduce the original code: one block per stage, called on the same input.
        se_reduction: squeeze-excitation reduction ratio.
    """

    def __init__(self, *, stage_scales=(8, 4, 2), blocks_per_stage=(2, 4, 6), output_scales=(2,),
                 feature_width: int = 512, channels: int = 128, global_skip: bool = False,
                 tied: bool = False, se_reduction: int = 16):
        super().__init__()
        stage_scales, blocks_per_stage = tuple(stage_scales), tuple(blocks_per_stage)
        output_scales = tuple(sorted(output_scales))
        if len(stage_scales) != len(blocks_per_stage):
            raise ValueError("stage_scales and blocks_per_stage must have the same length")
        for scale in stage_scales:
            _check_power_of_two(scale)
        missing = set(output_scales) - set(stage_scales)
        if missing:
            raise ValueError(f"output scales {sorted(missing)} have no stage")
        self.stage_scales = stage_scales
        self.output_scales = output_scales
        self.global_skip = global_skip
        # Recompute each block (with its share of the compress conv) in the backward pass
        # instead of storing its activations: the seed's 8x stage keeps ~20 GB at batch 16
        # otherwise (ANALYSIS.md). See `Stage._block_share`.
        self.gradient_checkpointing = False
        self.features = FeatureExtractor(3, feature_width, channels)
        previous = (1,) + stage_scales[:-1]
        self.skips = nn.ModuleList(
            resampler(channels, scale / before) for scale, before in zip(stage_scales, previous)
        )
        self.stages = nn.ModuleList(
            Stage(channels, scale, blocks, tied=tied, se_reduction=se_reduction)
            for scale, blocks in zip(stage_scales, blocks_per_stage)
        )
        # Heads, keyed by scale: the final residual upsampled (the seed's ConvT(R2)), then RGB.
        self.residual_up = nn.ModuleDict({str(s): upsampler(channels, s) for s in output_scales})
        self.to_image = nn.ModuleDict({str(s): ImageHead(channels) for s in output_scales})
        if global_skip:
            # Start at bicubic: the heads' last conv begins at zero, so step 0 = the skip.
            for head in self.to_image.values():
                nn.init.zeros_(head.body[-1].weight)
                nn.init.zeros_(head.body[-1].bias)

    @classmethod
    def from_preset(cls, name: str, *, scale: int | None = None, **overrides) -> SRNet:
        """Build a named preset ('seed', 'pyramid', 'quick'), any argument overridden.

        Args:
            name: a key of `PRESETS`.
            scale: build the preset for this output scale alone (see `scale_arguments`);
                None keeps every output of the preset.
            overrides: any `SRNet` argument.
        """
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
        preset = PRESETS[name]
        arguments = {field: getattr(preset, field) for field in preset.__dataclass_fields__}
        if scale is not None:
            arguments.update(scale_arguments(preset, scale))
        arguments.update(overrides)
        return cls(**arguments)

    def _stages_for(self, scales) -> int:
        """How many stages (in order) compute the outputs `scales` (None: all outputs)."""
        if scales is None:
            return len(self.stages)
        missing = set(scales) - set(self.output_scales)
        if missing:
            raise ValueError(f"this network outputs {self.output_scales}, not {sorted(missing)}")
        return 1 + max(self.stage_scales.index(scale) for scale in scales)

    def forward(self, x: Tensor, scales=None) -> dict[int, Tensor]:
        """Upscale a batch of LR images.

        Args:
            x: (B, 3, H, W) float in [0, 1].
            scales: compute only these outputs (each one of `output_scales`) and stop after
                the last stage they need, e.g. (2,) runs only the 2x stage of the pyramid;
                None: every output.

        Returns:
            {scale: (B, 3, scale*H, scale*W)} for every scale asked for; values are not
            clamped (clamp or quantise for display and metrics).
        """
        wanted = self.output_scales if scales is None else tuple(scales)
        count = self._stages_for(scales)
        features = self.features(x)  # (B, 3, H, W) -> (B, C, H, W)
        residual, previous_maps = features, features
        outputs = {}
        for skip, stage in zip(self.skips[:count], self.stages[:count]):
            checkpointing = self.gradient_checkpointing and torch.is_grad_enabled()
            # (B, C, H, W) -> (B, C, sH, sW), (B, C, H, W)
            maps, residual = stage(residual, checkpointing=checkpointing)
            # In place on the compress conv's output, which no backward pass needs.
            maps = maps.add_(skip(previous_maps))  # previous scale -> (B, C, sH, sW)
            previous_maps = maps
            if stage.scale in wanted:
                key = str(stage.scale)
                detail = maps + self.residual_up[key](residual)  # (B, C, sH, sW)
                image = self.to_image[key](detail)  # (B, C, sH, sW) -> (B, 3, sH, sW)
                if self.global_skip:
                    image = image.add_(imresize(x, stage.scale))  # (B, 3, H, W) -> (B, 3, sH, sW)
                outputs[stage.scale] = image
        return outputs

    def residual_flow(self, x: Tensor, scales=None) -> None:
        """Run only the back-projection flow (features and blocks; no compress, skips, heads).

        That is everything squeeze-excitation sees, at about a third of the forward cost:
        tiled inference runs it once over all tiles to collect image-wide SE means.

        Args:
            x: (B, 3, H, W) float in [0, 1].
            scales: as in `forward`: run the stages those outputs need (None: all).
        """
        residual = self.features(x)  # (B, 3, H, W) -> (B, C, H, W)
        for stage in self.stages[:self._stages_for(scales)]:
            residual = stage.residual_flow(residual)  # (B, C, H, W)


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters of `model`."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def count_macs(model: nn.Module, lr_size: int = 64, *, training: bool = False) -> float:
    """Multiply-accumulates of one forward pass on a (1, 3, lr_size, lr_size) patch.

    Counted by `torch.utils.flop_counter.FlopCounterMode` (FLOPs = 2 MACs), not estimated.
    With `training=True`, the forward+backward of one step is counted instead.
    """
    from torch.utils.flop_counter import FlopCounterMode

    parameter = next(model.parameters())
    x = torch.rand(1, 3, lr_size, lr_size, device=parameter.device, dtype=parameter.dtype)
    counter = FlopCounterMode(display=False)
    with counter:
        if training:
            outputs = model(x)
            sum(output.sum() for output in outputs.values()).backward()
        else:
            with torch.no_grad():
                model(x)
    if training:
        model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / 2


def preset_table(names=tuple(PRESETS), lr_size: int = 64) -> list[dict]:
    """Parameters and GMACs per `lr_size`^2 LR patch for each preset (rows a notebook prints)."""
    rows = []
    for name in names:
        # On the meta device nothing is computed: the count is instant at any size.
        model = SRNet.from_preset(name).to("meta")
        rows.append({
            "preset": name,
            "output_scales": list(model.output_scales),
            "params_m": count_parameters(model) / 1e6,
            "gmacs": count_macs(model, lr_size) / 1e9,
        })
    return rows
