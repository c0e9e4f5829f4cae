"""Full-Resolution Residual Networks (Pohlen, Hermans, Mathias, Leibe, CVPR 2017), FRRN-A and FRRN-B, as the
authors' release (github.com/TobyPDE/FRRN, dltools/architectures.py) builds them.

Two streams: a residual stream of 32 channels ("lanes") that stays at the image's full resolution, and a
pooling stream that goes down by 2x2 max pooling and back up by bilinear upsampling. Each full-resolution
residual unit (FRRU) max-pools the residual stream to the pooling stream's scale, concatenates the two, applies
two 3x3 conv-BN-ReLU (the pooling stream's new value), and adds a 1x1 projection of the result, upsampled
(nearest) to full resolution, to the residual stream. The network is trained from scratch.

    stem      5x5 conv 48, 3 residual units (RU) of 48; the residual stream starts as a 1x1 conv to 32
    encoder   /2: 3 FRRU 96 | /4: 4 FRRU 192 | /8: 2 FRRU 384 | /16: 2 FRRU 384 | (B: /32: 2 FRRU 384)
    decoder   (B: /16: 2 FRRU 192) | /8: 2 FRRU 192 | /4: 2 FRRU 192 | /2: 2 FRRU 96
    head      upsample, concatenate with the residual stream, 3 RU of 48 (the first projects), 1x1 conv to classes

Images whose sides are not multiples of 16 (A) or 32 (B) are mirror-padded and the output cropped back, so
every input size gets logits at its own resolution.
"""

import torch
import torch.nn.functional as F
from torch import nn

from ._utils import InputSizes, SegmentationModel, mirror_pad
from .backbones import scale_channels

BASE_CHANNELS, LANES = 48, 32  # the release's BASE_CHANNELS and FR_CHANNELS
# (pooling factor, channel multiplier of BASE_CHANNELS, units) per stage, encoder then decoder
FRRN_A = ([(2, 2, 3), (4, 4, 4), (8, 8, 2), (16, 8, 2)], [(8, 4, 2), (4, 4, 2), (2, 2, 2)])
FRRN_B = ([(2, 2, 3), (4, 4, 4), (8, 8, 2), (16, 8, 2), (32, 8, 2)], [(16, 4, 2), (8, 4, 2), (4, 4, 2), (2, 2, 2)])


def conv_bn(in_channels: int, out_channels: int, kernel_size: int, relu: bool = True) -> nn.Sequential:
    layers = [nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
              nn.BatchNorm2d(out_channels)]
    return nn.Sequential(*layers, nn.ReLU(inplace=True)) if relu else nn.Sequential(*layers)


class ResidualUnit(nn.Module):
    """conv-BN-ReLU, conv-BN, plus the input (through a bias-free 1x1 projection when the widths differ); as
    in the release, no ReLU after the sum."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.body = nn.Sequential(conv_bn(in_channels, out_channels, 3), conv_bn(out_channels, out_channels, 3,
                                                                                 relu=False))
        self.project = nn.Conv2d(in_channels, out_channels, 1, bias=False) if in_channels != out_channels else None

    def forward(self, x):
        return self.body(x) + (x if self.project is None else self.project(x))


class FRRU(nn.Module):
    """Full-resolution residual unit at pooling factor `scale`: (pooling stream, residual stream) in and out."""

    def __init__(self, in_channels: int, channels: int, lanes: int, scale: int):
        super().__init__()
        self.scale = scale
        self.convs = nn.Sequential(conv_bn(in_channels + lanes, channels, 3), conv_bn(channels, channels, 3))
        self.to_residual = nn.Conv2d(channels, lanes, 1)  # with bias, no BN, as the release

    def forward(self, pooled, residual):
        pooled = self.convs(torch.cat([pooled, F.max_pool2d(residual, self.scale)], dim=1))
        update = F.interpolate(self.to_residual(pooled), scale_factor=self.scale, mode="nearest")
        return pooled, residual + update


class FRRN(SegmentationModel):
    def __init__(self, num_classes: int, stages, width: float = 1.0):
        super().__init__()
        base, lanes = scale_channels(BASE_CHANNELS, width), scale_channels(LANES, width)
        encoder, decoder = stages
        self.divisor = encoder[-1][0]  # the deepest pooling factor: inputs are padded to a multiple of it
        self.input_sizes = InputSizes(self.divisor, 0, self.divisor)
        self.stem = nn.Sequential(conv_bn(3, base, 5), *(ResidualUnit(base, base) for _ in range(3)))
        self.to_residual = conv_bn(base, lanes, 1, relu=False)
        self.down, self.up = nn.ModuleList(), nn.ModuleList()
        channels = base
        for units, plan in ((self.down, encoder), (self.up, decoder)):
            for scale, multiplier, count in plan:
                out = scale_channels(BASE_CHANNELS * multiplier, width)
                units.append(nn.ModuleList(FRRU(channels if i == 0 else out, out, lanes, scale)
                                           for i in range(count)))
                channels = out
        self.head = nn.Sequential(ResidualUnit(channels + lanes, base), ResidualUnit(base, base),
                                  ResidualUnit(base, base))
        self.classifier = nn.Conv2d(base, num_classes, 1)
        for m in self.modules():  # the release's He init; biases start at zero
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_uniform_(m.weight, nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        x = mirror_pad(x, 0, -height % self.divisor, 0, -width % self.divisor)
        pooled = self.stem(x)
        residual = self.to_residual(pooled)
        for stage in self.down:
            pooled = F.max_pool2d(pooled, 2)
            for unit in stage:
                pooled, residual = unit(pooled, residual)
        for stage in self.up:
            pooled = F.interpolate(pooled, scale_factor=2, mode="bilinear", align_corners=False)
            for unit in stage:
                pooled, residual = unit(pooled, residual)
        pooled = F.interpolate(pooled, scale_factor=2, mode="bilinear", align_corners=False)
        out = self.classifier(self.head(torch.cat([pooled, residual], dim=1)))
        return out[..., :height, :width]


def frrn_a(num_classes: int, **kwargs) -> FRRN:
    return FRRN(num_classes, FRRN_A, **kwargs)


def frrn_b(num_classes: int, **kwargs) -> FRRN:
    return FRRN(num_classes, FRRN_B, **kwargs)
