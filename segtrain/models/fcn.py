"""FCN-32s, FCN-16s and FCN-8s (Long, Shelhamer, Darrell, CVPR 2015) on VGG16, as the Caffe release builds them.

conv1_1 is padded by 100, fc6/fc7 are convolutions, each stride is scored by a 1x1 conv, coarse scores are
upsampled by bilinear-initialised transposed convolutions, fused with the finer skip scores, and cropped with
the release's offsets back to the input's height and width.
"""
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import SegtrainError
from ._utils import SegmentationModel, init_relu_convs
from .backbones import (VGG16Features, alexnet_features, convolutionalise, googlenet_features, load_pretrained,
                        load_torchvision_state, load_vgg16_state, scale_channels)


def bilinear_kernel(channels: int, kernel_size: int) -> torch.Tensor:
    """(channels, channels, k, k) weight of a transposed conv that upsamples each channel bilinearly."""
    factor = (kernel_size + 1) // 2
    center = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    og = torch.arange(kernel_size, dtype=torch.float64)
    filt = 1 - (og - center).abs() / factor
    weight = torch.zeros(channels, channels, kernel_size, kernel_size, dtype=torch.float64)
    weight[range(channels), range(channels)] = filt[:, None] * filt[None, :]
    return weight.float()


def upsampler(channels: int, factor: int, learned: bool, kernel_size: Optional[int] = None) -> nn.ConvTranspose2d:
    kernel_size = kernel_size or 2 * factor
    up = nn.ConvTranspose2d(channels, channels, kernel_size, stride=factor, bias=False)
    with torch.no_grad():
        up.weight.copy_(bilinear_kernel(channels, kernel_size))
    up.weight.requires_grad_(learned)
    return up


def crop_like(x: torch.Tensor, offset: int, height: int, width: int) -> torch.Tensor:
    return x[:, :, offset:offset + height, offset:offset + width]


class FCNHead(nn.Sequential):
    """fc6 (7x7 conv for VGG16, 6x6 for AlexNet; no padding) and fc7 (1x1) with ReLU and dropout: the
    classifier's fully connected layers as convolutions."""

    def __init__(self, in_channels: int, channels: int, dropout: float, kernel_size: int = 7):
        super().__init__(
            nn.Conv2d(in_channels, channels, kernel_size), nn.ReLU(inplace=True), nn.Dropout(dropout),
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


class FCN(SegmentationModel):
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


class FCN32sOnBackbone(SegmentationModel):
    """FCN-32s on another ImageNet classifier (the paper's Table 1): the last features through `head`, one 1x1
    score layer, upsampled 32x by a 63-tap bilinear deconvolution (odd, so the crop offset is whole) and cropped
    back to the input. Inputs smaller than `min_size` are zero-padded at the bottom and right first, so that
    every pooling window fits; the crop removes the padding again."""

    new_layers = ("score_fr", "upscore")

    def __init__(self, backbone: nn.Module, head: nn.Module, head_channels: int, num_classes: int,
                 crop_offset: int, learned_upsampling: bool, min_size: int = 1):
        super().__init__()
        self.backbone, self.head = backbone, head
        self.score_fr = score_layer(head_channels, num_classes)
        self.upscore = upsampler(num_classes, 32, learned_upsampling, kernel_size=63)
        self.crop_offset, self.min_size = crop_offset, min_size
        self.output_stride = 32

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        x = F.pad(x, (0, max(0, self.min_size - width), 0, max(0, self.min_size - height)))
        scores = self.upscore(self.score_fr(self.head(self.backbone(x))))
        return crop_like(scores, self.crop_offset, height, width)


def fcn_alexnet(num_classes: int, width: float = 1.0, batch_norm: bool = False, dropout: float = 0.5,
                learned_upsampling: bool = False, pretrained: Optional[str] = None) -> FCN32sOnBackbone:
    """FCN-AlexNet on torchvision's AlexNet: conv1 padded by 100, fc6 a 6x6 conv, upscore 63/s32, crop 18 (the
    release's geometry). torchvision's AlexNet has one tower and no LRN, so it has more weights than CaffeNet."""
    if batch_norm and pretrained:
        raise SegtrainError("model.batch_norm=true: torchvision has no AlexNet weights with BN; drop "
                            "model.pretrained or set model.batch_norm=false")
    features = alexnet_features(width, batch_norm)
    fc_channels = scale_channels(4096, width)
    head = FCNHead(scale_channels(256, width), fc_channels, dropout, kernel_size=6)  # pool5: 256 channels
    if pretrained:
        state = load_torchvision_state(pretrained, "alexnet")
        load_pretrained(features, {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")},
                        pretrained)
        convolutionalise(state, head[0], head[3], fc6_key="classifier.1", fc7_key="classifier.4")
    # Input x maps to score cell (x - 13) / 32 and the 63-tap upscore puts cell y at 32 y + 31: offset 18.
    return FCN32sOnBackbone(features, head, fc_channels, num_classes, crop_offset=18,
                            learned_upsampling=learned_upsampling)


def fcn_googlenet(num_classes: int, width: float = 1.0, dropout: float = 0.4, learned_upsampling: bool = False,
                  pretrained: Optional[str] = None) -> FCN32sOnBackbone:
    """FCN-GoogLeNet on torchvision's GoogLeNet: inception5b scored directly (the final loss only, average
    pooling dropped, as the paper), upscore 63/s32, crop 9. torchvision's GoogLeNet always has BN."""
    features, channels = googlenet_features(width, pretrained)
    # Input x maps to inception5b cell (x - 22) / 32 (conv1's padding is 3) and upscore puts cell y at
    # 32 y + 31: offset 9. Inputs below 32 pixels would leave a pooling window empty.
    return FCN32sOnBackbone(features, nn.Dropout(dropout), channels, num_classes, crop_offset=9,
                            learned_upsampling=learned_upsampling, min_size=32)
