"""The multi-scale residual network of the seed design, built as described.

The design (the seed's README), inspired by LapSRN (Lai et al., CVPR 2017): a feature
extractor, then 12 residual blocks in stages at several scales of the LR grid. Every block has
two flows:

* the up-flow turns the block's input ``X`` (LR grid) into ``s``-times upsampled maps ``U``;
* the back-projection flow maps ``U`` back to the LR grid and keeps what it failed to explain,
  ``R = X - down(U)``, refines it (three conv3x3 + ReLU, squeeze-excitation) and hands
  ``R + A`` on to the next block as its "downsampled residual".

Within a stage the ``U`` maps of its blocks are concatenated and compressed by a 3x3 conv back
to ``channels``, plus a skip: the previous stage's map resampled to this stage's scale. Each
stage that has a ground truth ends in an image head (LapSRN-style multi-scale outputs).

    model = build_model(PRESETS["small"])          # or SRNet(stage_scales=..., ...)
    outputs = model(x)                             # {2: (B, 3, 2H, 2W), 4: ..., 8: ...}

``tied=True`` reproduces what the original code computed instead: one block per stage, called
repeatedly on the same input, so a stage concatenates identical copies and the 12 blocks
collapse to 3.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from srlib.errors import UsageError
from srlib.resize import imresize


def check_scale(scale, *, network: bool = True) -> int:
    """`scale` if it is an integer >= 2 (and, for a network, a power of two); else UsageError."""
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 2:
        raise UsageError(f"unsupported scale {scale!r}: an integer factor of at least 2")
    if network and scale & (scale - 1):
        raise UsageError(f"unsupported scale {scale!r}: srlib networks upscale by a power of "
                         "two (2, 4, 8)")
    return scale


@dataclass(frozen=True)
class Preset:
    """Everything that defines a network's shape; `build_model` turns it into an `SRNet`.

    Stored in every checkpoint (inside the training config), so a file rebuilds its model.
    """

    stage_scales: tuple[int, ...] = (8, 4, 2)  # the scale of each stage, in the order they run
    blocks_per_stage: tuple[int, ...] = (2, 4, 6)  # 12 blocks in all
    output_scales: tuple[int, ...] = (2,)  # stages that end in an RGB image
    feature_width: int = 512  # the feature extractor's first conv
    channels: int = 128  # feature maps everywhere after it
    global_skip: bool = False  # add the bicubic-upscaled input to every output
    se_reduction: int = 16  # squeeze-excitation reduction; 0: no squeeze-excitation
    back_projection: bool = True  # False: a block hands on X instead of X - down(U)
    tied: bool = False  # the original code: one block per stage, always fed the stage input
    leaky_head: bool = True  # LeakyReLU(0.2) in the image heads (False: the seed's ReLU)

    def for_scale(self, scale: int) -> Preset:
        """This network narrowed to serve `scale`, keeping its number of blocks: a
        fine-to-coarse preset (LapSRN's order) keeps its stages up to `scale`, the dropped
        stages' blocks joining the last one; a coarse-to-fine one (the seed's) shifts every
        stage so that its last lands on `scale`. UsageError if it cannot."""
        check_scale(scale)
        stages, blocks = self.stage_scales, self.blocks_per_stage
        if stages == tuple(sorted(stages)):
            if scale not in stages:
                raise UsageError(f"scale {scale} is not one of this preset's levels {stages}")
            kept = stages.index(scale) + 1
            return dataclasses.replace(
                self, stage_scales=stages[:kept],
                blocks_per_stage=blocks[:kept - 1] + (sum(blocks[kept - 1:]),),
                output_scales=tuple(s for s in self.output_scales if s <= scale))
        shift = scale / stages[-1]
        return dataclasses.replace(self, stage_scales=tuple(int(s * shift) for s in stages),
                                   output_scales=(scale,))

    def replace(self, **changes) -> Preset:
        """A copy with `changes` applied."""
        return dataclasses.replace(self, **changes)


PRESETS = {
    # The original sizes: coarse-to-fine stages at 8x, 4x, 2x serve a single x2 output.
    "seed": Preset(),
    # LapSRN's order: fine-to-coarse stages, an image at every level in one pass.
    "pyramid": Preset(stage_scales=(2, 4, 8), blocks_per_stage=(6, 4, 2),
                      output_scales=(2, 4, 8), global_skip=True),
    # The pyramid (12 blocks) at narrow widths: trains on a laptop CPU in minutes.
    "small": Preset(stage_scales=(2, 4, 8), blocks_per_stage=(6, 4, 2), output_scales=(2, 4, 8),
                    feature_width=32, channels=16, global_skip=True, se_reduction=4),
}


def upsampler(channels: int, scale: int) -> nn.ConvTranspose2d:
    """Transposed conv mapping (B, C, H, W) to (B, C, sH, sW) exactly: kernel s + 2, stride s,
    so neighbouring LR pixels' footprints overlap by one pixel on each side."""
    return nn.ConvTranspose2d(channels, channels, scale + 2, stride=scale, padding=1)


def downsampler(channels: int, scale: int) -> nn.Conv2d:
    """The seed's strided 3x3 conv, mapping (B, C, sH, sW) back to (B, C, H, W)."""
    return nn.Conv2d(channels, channels, 3, stride=scale, padding=1)


def resampler(channels: int, ratio: float) -> nn.Module:
    """Learned resampling by a power-of-two `ratio` (>1 up, <1 down, 1 identity)."""
    if ratio == 1:
        return nn.Identity()
    if ratio > 1:
        return upsampler(channels, int(ratio))
    # A stride-2 3x3 conv per halving, as the seed's 8x -> 4x -> 2x transitions.
    halvings = round(math.log2(1 / ratio))
    return nn.Sequential(
        *[nn.Conv2d(channels, channels, 3, stride=2, padding=1) for _ in range(halvings)])


class FeatureExtractor(nn.Sequential):
    """conv3x3 3->wide, conv3x3 wide->channels, conv3x3 channels->channels, ReLU after each."""

    def __init__(self, in_channels: int = 3, feature_width: int = 512, channels: int = 128):
        super().__init__(
            nn.Conv2d(in_channels, feature_width, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(feature_width, channels, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.ReLU(inplace=True),
        )


class SqueezeExcitation(nn.Module):
    """Channel attention (Hu et al., CVPR 2018): scale each map by a gate from its mean."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = max(1, channels // reduction)
        self.gate = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),  # (B, C, H, W) -> (B, C, 1, 1)
            nn.Conv2d(channels, hidden, 1),  # (B, C, 1, 1) -> (B, C/r, 1, 1)
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1),  # (B, C/r, 1, 1) -> (B, C, 1, 1)
            nn.Sigmoid(),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gate(x)


class ResidualBlock(nn.Module):
    """One block of the seed design: an up-flow and a back-projection flow.

    Args:
        channels: feature maps in and out.
        scale: how many times the up-flow upsamples (a power of two).
        se_reduction: squeeze-excitation reduction ratio; 0 leaves it out.
        back_projection: hand on R = X - down(U) (the design); False hands on X itself.
    """

    def __init__(self, channels: int, scale: int, se_reduction: int = 16,
                 back_projection: bool = True):
        super().__init__()
        self.back_projection = back_projection
        self.up = upsampler(channels, scale)
        self.down = downsampler(channels, scale) if back_projection else None
        # Three convs with their own weights (the original applied one conv three times).
        self.refine = nn.Sequential(*[
            layer for _ in range(3)
            for layer in (nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(inplace=True))
        ])
        self.attention = SqueezeExcitation(channels, se_reduction) if se_reduction else None

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Returns (upsampled maps U (B, C, sH, sW), downsampled residual (B, C, H, W))."""
        upsampled = torch.relu(self.up(x))  # (B, C, H, W) -> (B, C, sH, sW)
        if self.back_projection:
            residual = x - self.down(upsampled)  # (B, C, sH, sW) -> (B, C, H, W)
        else:
            residual = x
        refined = self.refine(residual)
        if self.attention is not None:
            refined = self.attention(refined)
        return upsampled, residual + refined


class Stage(nn.Module):
    """Blocks at one scale whose upsampled maps are concatenated and compressed to `channels`.

    Args:
        channels: feature maps.
        scale: the stage's scale of the LR grid.
        num_blocks: block calls in the stage.
        tied: the original code: one block, called `num_blocks` times on the stage input.
        se_reduction, back_projection: as in `ResidualBlock`.
    """

    def __init__(self, channels: int, scale: int, num_blocks: int, *, tied: bool = False,
                 se_reduction: int = 16, back_projection: bool = True):
        super().__init__()
        self.scale = scale
        self.num_blocks = num_blocks
        self.tied = tied
        self.blocks = nn.ModuleList(
            ResidualBlock(channels, scale, se_reduction, back_projection)
            for _ in range(1 if tied else num_blocks))
        self.compress = nn.Conv2d(num_blocks * channels, channels, 3, padding=1)
        # Recompute each block in the backward pass instead of storing its activations.
        self.gradient_checkpointing = False

    def forward(self, residual: Tensor) -> tuple[Tensor, Tensor]:
        """Returns (compressed maps (B, C, sH, sW), the last block's residual (B, C, H, W))."""
        stage_input = residual
        maps = []
        for index in range(self.num_blocks):
            block = self.blocks[0 if self.tied else index]
            # Tied (the original code): every call sees the stage's input, not its predecessor's.
            block_input = stage_input if self.tied else residual
            if self.gradient_checkpointing and torch.is_grad_enabled():
                upsampled, residual = checkpoint(block, block_input, use_reentrant=False)
            else:
                upsampled, residual = block(block_input)
            maps.append(upsampled)
        compressed = self.compress(torch.cat(maps, dim=1))  # (B, nC, sH, sW) -> (B, C, sH, sW)
        return compressed, residual


class ImageHead(nn.Module):
    """Stage features to an RGB image: the seed's conv, activation, conv 128->3.

    LeakyReLU(0.2), LapSRN's, not the seed's ReLU: with the last conv starting at zero, L1-like
    losses switched every ReLU unit of the head off for good within tens of steps (chapter 4).
    """

    def __init__(self, channels: int, out_channels: int = 3, *, leaky: bool = True):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.LeakyReLU(0.2, inplace=True) if leaky else nn.ReLU(inplace=True),
            nn.Conv2d(channels, out_channels, 3, padding=1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


class SRNet(nn.Module):
    """The multi-scale residual super-resolution network.

    Args (keyword-only; the fields of `Preset`, which says what each one means):
        stage_scales, blocks_per_stage, output_scales, feature_width, channels, global_skip,
        se_reduction, back_projection, tied, leaky_head.
    """

    def __init__(self, *, stage_scales=(8, 4, 2), blocks_per_stage=(2, 4, 6), output_scales=(2,),
                 feature_width: int = 512, channels: int = 128, global_skip: bool = False,
                 se_reduction: int = 16, back_projection: bool = True, tied: bool = False,
                 leaky_head: bool = True):
        super().__init__()
        stage_scales, blocks_per_stage = tuple(stage_scales), tuple(blocks_per_stage)
        if len(stage_scales) != len(blocks_per_stage):
            raise UsageError("stage_scales and blocks_per_stage must have the same length")
        for scale in stage_scales:
            if scale < 1 or scale & (scale - 1):
                raise UsageError(f"stage scales must be powers of two, got {scale}")
        missing = set(output_scales) - set(stage_scales)
        if missing:
            raise UsageError(f"output scales {sorted(missing)} have no stage")
        self.stage_scales = stage_scales
        self.output_scales = tuple(sorted(output_scales))
        self.global_skip = global_skip
        self.features = FeatureExtractor(3, feature_width, channels)
        previous = (1,) + stage_scales[:-1]
        self.skips = nn.ModuleList(
            resampler(channels, scale / before) for scale, before in zip(stage_scales, previous))
        self.stages = nn.ModuleList(
            Stage(channels, scale, blocks, tied=tied, se_reduction=se_reduction,
                  back_projection=back_projection)
            for scale, blocks in zip(stage_scales, blocks_per_stage))
        # Heads, keyed by scale: the final residual upsampled (the seed's ConvT(R2)), then RGB.
        self.residual_up = nn.ModuleDict(
            {str(s): upsampler(channels, s) for s in self.output_scales})
        self.to_image = nn.ModuleDict(
            {str(s): ImageHead(channels, leaky=leaky_head) for s in self.output_scales})
        if global_skip:
            # Start at bicubic: the heads' last conv begins at zero, so step 0 = the skip.
            for head in self.to_image.values():
                nn.init.zeros_(head.body[-1].weight)
                nn.init.zeros_(head.body[-1].bias)

    def set_gradient_checkpointing(self, enabled: bool = True) -> SRNet:
        """Recompute each block in the backward pass instead of storing its activations."""
        for stage in self.stages:
            stage.gradient_checkpointing = enabled
        return self

    def forward(self, x: Tensor, scales=None) -> dict[int, Tensor]:
        """Upscale a batch of LR images.

        Args:
            x: (B, 3, H, W) float in [0, 1].
            scales: compute only these outputs (each one of `output_scales`) and stop after
                the last stage they need; None: every output.

        Returns:
            {scale: (B, 3, scale*H, scale*W)} for every scale asked for; values are not
            clamped (clamp or quantise for display and metrics).
        """
        wanted = self.output_scales if scales is None else tuple(scales)
        unknown = set(wanted) - set(self.output_scales)
        if unknown:
            raise UsageError(f"this network outputs {self.output_scales}, not {sorted(unknown)}")
        last = max(self.stage_scales.index(scale) for scale in wanted)
        features = self.features(x)  # (B, 3, H, W) -> (B, C, H, W)
        residual, previous_maps = features, features
        outputs = {}
        for skip, stage in zip(self.skips[:last + 1], self.stages[:last + 1]):
            maps, residual = stage(residual)  # (B, C, H, W) -> (B, C, sH, sW), (B, C, H, W)
            maps = maps + skip(previous_maps)  # previous scale -> (B, C, sH, sW)
            previous_maps = maps
            if stage.scale in wanted:
                key = str(stage.scale)
                detail = maps + self.residual_up[key](residual)  # (B, C, H, W) -> (B, C, sH, sW)
                image = self.to_image[key](detail)  # (B, C, sH, sW) -> (B, 3, sH, sW)
                if self.global_skip:
                    image = image + imresize(x, stage.scale)  # (B, 3, H, W) -> (B, 3, sH, sW)
                outputs[stage.scale] = image
        return outputs


def preset_from_config(config: dict) -> Preset:
    """The `Preset` in a checkpoint's training config (a dict); UsageError if there is none.

    srlib 0.1 checkpoints named a preset ('quick', today's 'small') with a `scale` and
    `model_options`, and their image heads used ReLU.
    """
    try:
        if isinstance(config.get("model"), dict):
            values = {key: tuple(value) if isinstance(value, list) else value
                      for key, value in config["model"].items()}
            return Preset(**values)
        name = {"quick": "small"}.get(config.get("preset"), config.get("preset"))
        preset = PRESETS[name].replace(leaky_head=False, **config.get("model_options", {}))
        return preset.for_scale(config["scale"]) if config.get("scale") else preset
    except (KeyError, TypeError, ValueError) as error:
        raise UsageError(f"not a network description ({type(error).__name__}: {error})") from None


def build_model(preset: Preset) -> SRNet:
    """The `SRNet` a `Preset` describes."""
    return SRNet(**dataclasses.asdict(preset))


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters of `model`."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
