"""FCN-32s, FCN-16s and FCN-8s (Long, Shelhamer, Darrell, CVPR 2015) on VGG16, as the Caffe release builds them.

conv1_1 is padded by 100, fc6/fc7 are convolutions, each stride is scored by a 1x1 conv, coarse scores are
upsampled by bilinear-initialised transposed convolutions, fused with the finer skip scores, and cropped with
the release's offsets back to the input's height and width.
"""
from typing import Optional

import torch
from torch import nn

from ._utils import init_relu_convs
from .backbones import VGG16Features, convolutionalise, load_vgg16_state, scale_channels


def bilinear_kernel(channels: int, kernel_size: int) -> torch.Tensor:
    """(channels, channels, k, k) weight of a transposed conv that upsamples each channel bilinearly."""
    factor = (kernel_size + 1) // 2
    center = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    og = torch.arange(kernel_size, dtype=torch.float64)
    filt = 1 - (og - center).abs() / factor
    weight = torch.zeros(channels, channels, kernel_size, kernel_size, dtype=torch.float64)
    weight[range(channels), range(channels)] = filt[:, None] * filt[None, :]
    return weight.float()


def upsampler(channels: int, factor: int, learned: bool) -> nn.ConvTranspose2d:
    up = nn.ConvTranspose2d(channels, channels, 2 * factor, stride=factor, bias=False)
    with torch.no_grad():
        up.weight.copy_(bilinear_kernel(channels, 2 * factor))
    up.weight.requires_grad_(learned)
    return up


def crop_like(x: torch.Tensor, offset: int, height: int, width: int) -> torch.Tensor:
    return x[:, :, offset:offset + height, offset:offset + width]


class FCNHead(nn.Sequential):
    """fc6 (7x7 conv, no padding) and fc7 (1x1) with ReLU and dropout: VGG16's classifier as convolutions."""

    def __init__(self, in_channels: int, channels: int, dropout: float):
        super().__init__(
            nn.Conv2d(in_channels, channels, 7), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Conv2d(channels, channels, 1), nn.ReLU(inplace=True), nn.Dropout(dropout),
        )
        init_relu_convs(self)


def score_layer(in_channels: int, num_classes: int) -> nn.Conv2d:
    score = nn.Conv2d(in_channels, num_classes, 1)
    nn.init.zeros_(score.weight)  # as the release: training starts from zero scores
    nn.init.zeros_(score.bias)
    return score


# Crop offsets of the Caffe release (they follow from conv1_1's padding of 100).
SKIP_OFFSETS = {"pool4": 5, "pool3": 9}
FINAL_OFFSETS = {32: 19, 16: 27, 8: 31}


class FCN(nn.Module):
    """`skips` = () for FCN-32s, ("pool4",) for FCN-16s, ("pool4", "pool3") for FCN-8s.
    `skip_scales` multiply the skip features before scoring (FCN-8s at-once: 0.01 and 0.0001)."""

    new_layers = ("score_fr", "score_skips", "upscore_skips", "upscore")  # not in a pretrained VGG16

    def __init__(self, num_classes: int, skips=(), skip_scales=None, width: float = 1.0,
                 batch_norm: bool = False, dropout: float = 0.5, learned_upsampling: bool = False,
                 pretrained: Optional[str] = None):
        super().__init__()
        self.skips = tuple(skips)
        self.skip_scales = tuple(skip_scales or (1.0,) * len(self.skips))
        self.backbone = VGG16Features(width, batch_norm, return_pools=("pool5",) + self.skips)
        fc_channels = scale_channels(4096, width)
        self.head = FCNHead(self.backbone.stage_channels["pool5"], fc_channels, dropout)
        self.score_fr = score_layer(fc_channels, num_classes)
        self.score_skips = nn.ModuleList(score_layer(self.backbone.stage_channels[s], num_classes)
                                         for s in self.skips)
        self.upscore_skips = nn.ModuleList(upsampler(num_classes, 2, learned_upsampling) for _ in self.skips)
        self.output_stride = 32 // 2 ** len(self.skips)
        self.upscore = upsampler(num_classes, self.output_stride, learned_upsampling)
        if pretrained:
            self.load_vgg16(pretrained)

    def load_vgg16(self, path: str) -> None:
        """torchvision's ImageNet VGG16(-BN) weights: `features.*` as they are, the classifier's fc6 and fc7
        reshaped into the 7x7 and 1x1 convolutions ("convolutionalisation")."""
        state = load_vgg16_state(path, self.backbone.batch_norm)
        self.backbone.load_features(state, path)
        convolutionalise(state, self.head[0], self.head[3])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        features = self.backbone(x)
        scores = self.score_fr(self.head(features["pool5"]))  # (N, classes, h/32 + 6 - 6, ...) after fc6
        for name, scale, score, up in zip(self.skips, self.skip_scales, self.score_skips, self.upscore_skips):
            scores = up(scores)
            skip = score(features[name] * scale if scale != 1.0 else features[name])
            scores = scores + crop_like(skip, SKIP_OFFSETS[name], *scores.shape[-2:])
        scores = self.upscore(scores)
        return crop_like(scores, FINAL_OFFSETS[self.output_stride], height, width)


def fcn32s(num_classes: int, **kwargs) -> FCN:
    return FCN(num_classes, skips=(), **kwargs)


def fcn16s(num_classes: int, **kwargs) -> FCN:
    return FCN(num_classes, skips=("pool4",), **kwargs)


def fcn8s(num_classes: int, **kwargs) -> FCN:
    return FCN(num_classes, skips=("pool4", "pool3"), **kwargs)


def fcn8s_atonce(num_classes: int, **kwargs) -> FCN:
    """FCN-8s trained in one stage: pool4 and pool3 scaled (fixed) before scoring, as the release does."""
    return FCN(num_classes, skips=("pool4", "pool3"), skip_scales=(0.01, 0.0001), **kwargs)


def fcn32s_fixed(num_classes: int, **kwargs) -> FCN:
    """The paper's FCN-32s-fixed: only the final score layer learns; the rest keeps its (pretrained) weights."""
    model = FCN(num_classes, skips=(), **kwargs)
    model.requires_grad_(False)
    model.score_fr.requires_grad_(True)
    return model
