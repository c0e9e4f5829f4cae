"""DeepLab v1 LargeFOV (Chen et al., ICLR 2015): atrous VGG16 at output stride 8, fc6 a 3x3 convolution
dilated by 12 with 1024 channels, fc7 1x1, fc8 scoring. DeepLab v2 ASPP (Chen et al., TPAMI 2017): ResNet-101 at
output stride 8 scored by four parallel 3x3 convolutions at rates 6, 12, 18 and 24, summed. Both upsample their
logits bilinearly to the input size."""
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import SegtrainError
from ._utils import SegmentationModel, init_relu_convs
from .backbones import VGG16Features, load_vgg16_state, resnet101_dilated, scale_channels


class DeepLabLargeFOV(SegmentationModel):
    new_layers = ("classifier",)  # fc8; fc6/fc7 come decimated from VGG16's classifier
    output_stride = 8

    def __init__(self, num_classes: int, width: float = 1.0, batch_norm: bool = False, dropout: float = 0.5,
                 pretrained: Optional[str] = None):
        super().__init__()
        self.backbone = VGG16Features(width, batch_norm, atrous=True)
        channels = scale_channels(1024, width)
        self.head = nn.Sequential(  # fc6, fc7
            nn.Conv2d(self.backbone.stage_channels["pool5"], channels, 3, padding=12, dilation=12),
            nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Conv2d(channels, channels, 1), nn.ReLU(inplace=True), nn.Dropout(dropout),
        )
        self.classifier = nn.Conv2d(channels, num_classes, 1)  # fc8
        init_relu_convs(self.head)
        nn.init.normal_(self.classifier.weight, std=0.01)
        nn.init.zeros_(self.classifier.bias)
        if pretrained:
            self.load_vgg16(pretrained)

    def load_vgg16(self, path: str) -> None:
        """torchvision's VGG16(-BN) weights; fc6/fc7 decimated as DeepLab initialises them: every 4th unit,
        and fc6's 7x7 window sampled every 3rd tap to 3x3."""
        state = load_vgg16_state(path, self.backbone.batch_norm)
        self.backbone.load_features(state, path)
        fc6, fc7 = self.head[0], self.head[3]
        if fc6.out_channels != 1024:
            raise SegtrainError(f"model.pretrained={path}: fc6/fc7 need model.width=1.0")
        with torch.no_grad():
            fc6.weight.copy_(state["classifier.0.weight"].view(4096, 512, 7, 7)[::4, :, ::3, ::3])
            fc6.bias.copy_(state["classifier.0.bias"][::4])
            fc7.weight.copy_(state["classifier.3.weight"][::4, ::4, None, None])
            fc7.bias.copy_(state["classifier.3.bias"][::4])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scores = self.classifier(self.head(self.backbone(x)["pool5"]))  # (N, classes, ~H/8, ~W/8)
        return F.interpolate(scores, size=x.shape[-2:], mode="bilinear", align_corners=False)


def deeplab_largefov(num_classes: int, **kwargs) -> DeepLabLargeFOV:
    return DeepLabLargeFOV(num_classes, **kwargs)


class ASPP(nn.Module):
    """DeepLab v2's ASPP-L: one 3x3 classifier per atrous rate on the same features, their scores summed."""

    def __init__(self, in_channels: int, num_classes: int, rates=(6, 12, 18, 24)):
        super().__init__()
        self.branches = nn.ModuleList(nn.Conv2d(in_channels, num_classes, 3, padding=rate, dilation=rate)
                                      for rate in rates)
        for conv in self.branches:
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sum(branch(x) for branch in self.branches)


class DeepLabASPP(SegmentationModel):
    new_layers = ("aspp",)
    output_stride = 8

    def __init__(self, num_classes: int, width: float = 1.0, pretrained: Optional[str] = None):
        super().__init__()
        self.backbone, channels = resnet101_dilated(width, pretrained)
        self.aspp = ASPP(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scores = self.aspp(self.backbone(x)["out"])  # (N, classes, ~H/8, ~W/8)
        return F.interpolate(scores, size=x.shape[-2:], mode="bilinear", align_corners=False)


def deeplab_aspp(num_classes: int, **kwargs) -> DeepLabASPP:
    return DeepLabASPP(num_classes, **kwargs)
