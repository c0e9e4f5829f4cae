"""DeconvNet (Noh, Hong, Han, ICCV 2015): VGG16 with BN after every convolution, fc6/fc7 as convolutions, and a
mirrored decoder: a 7x7 "fc6-deconv", then per stage an unpooling that puts each value back where the
encoder's max-pooling found it (its switches) followed by 3x3 deconvolutions; a 1x1 score layer.

The network is built for 224x224 proposals (pool5 is 7x7, exactly fc6's window). forward() mirrors a
whole image outward to at least 224 and to a multiple of 32, and returns logits for its own pixels.
"""
from typing import Optional

import torch
from torch import nn
from torchvision.models.vgg import cfgs as vgg_cfgs
from torchvision.models.vgg import make_layers

from ._utils import InputSizes, SegmentationModel, init_relu_convs, mirror_pad
from .backbones import convolutionalise, load_pretrained, load_vgg16_state, scale_channels, vgg16_features_state

# (in, out) channels of the 3x3 deconvolutions after each unpooling, from pool5's back to pool1's
DECODER_STAGES = (
    ((512, 512), (512, 512), (512, 512)),
    ((512, 512), (512, 512), (512, 256)),
    ((256, 256), (256, 256), (256, 128)),
    ((128, 128), (128, 64)),
    ((64, 64), (64, 64)),
)


def conv_bn_relu(conv: nn.Module, channels: int, batch_norm: bool) -> list:
    return [conv, nn.BatchNorm2d(channels), nn.ReLU(inplace=True)] if batch_norm else [conv, nn.ReLU(inplace=True)]


class DeconvNet(SegmentationModel):
    new_layers = ("fc6_deconv", "decoder", "score")  # not in a pretrained VGG16
    input_sizes = InputSizes(32, 0, 224)  # forward() mirrors images out to this

    def __init__(self, num_classes: int, width: float = 1.0, batch_norm: bool = True, dropout: float = 0.5,
                 pretrained: Optional[str] = None):
        super().__init__()
        c = lambda channels: scale_channels(channels, width)  # noqa: E731
        self.batch_norm = batch_norm
        self.features = make_layers([v if v == "M" else c(v) for v in vgg_cfgs["D"]], batch_norm=batch_norm)
        for layer in self.features:
            if isinstance(layer, nn.MaxPool2d):
                layer.return_indices = True  # the switches the decoder's unpooling uses
        fc = c(4096)
        self.fc = nn.Sequential(  # fc6 (7x7, no padding) and fc7 (1x1)
            *conv_bn_relu(nn.Conv2d(c(512), fc, 7), fc, batch_norm), nn.Dropout(dropout),
            *conv_bn_relu(nn.Conv2d(fc, fc, 1), fc, batch_norm), nn.Dropout(dropout),
        )
        self.fc6_deconv = nn.Sequential(*conv_bn_relu(nn.ConvTranspose2d(fc, c(512), 7), c(512), batch_norm))
        self.unpool = nn.MaxUnpool2d(2, stride=2)
        self.decoder = nn.ModuleList(
            nn.Sequential(*[m for c_in, c_out in stage
                            for m in conv_bn_relu(nn.ConvTranspose2d(c(c_in), c(c_out), 3, padding=1), c(c_out),
                                                  batch_norm)])
            for stage in DECODER_STAGES)
        self.score = nn.Conv2d(c(64), num_classes, 1)
        init_relu_convs(self.modules())
        if pretrained:
            self.load_vgg16(pretrained)

    def load_vgg16(self, path: str) -> None:
        """torchvision's VGG16-BN (or VGG16) weights: the encoder as it is, fc6/fc7 convolutionalised."""
        state = load_vgg16_state(path, self.batch_norm)
        load_pretrained(self.features, vgg16_features_state(state), path)
        convolutionalise(state, *[m for m in self.fc if isinstance(m, nn.Conv2d)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        x = mirror_pad(x, 0, max(224, height + -height % 32) - height, 0, max(224, width + -width % 32) - width)
        switches, sizes = [], []
        for layer in self.features:
            if isinstance(layer, nn.MaxPool2d):
                sizes.append(x.shape[-2:])
                x, indices = layer(x)
                switches.append(indices)
            else:
                x = layer(x)
        x = self.fc6_deconv(self.fc(x))  # (N, 512w, H/32, W/32): fc6 takes 7x7 to 1x1, fc6-deconv back
        for stage in self.decoder:  # pool5's switches first
            x = stage(self.unpool(x, switches.pop(), output_size=sizes.pop()))
        return self.score(x)[..., :height, :width]


def deconvnet(num_classes: int, **kwargs) -> DeconvNet:
    return DeconvNet(num_classes, **kwargs)
