"""U-Net (Ronneberger, Fischer, Brox, MICCAI 2015) and the common "same"-padding variant.

`unet` is the paper's: unpadded 3x3 convolutions, 2x2 max pooling, 2x2 up-convolutions halving the channels,
skip features centre-cropped and concatenated. An input of 16m+60 pixels gives an output of 16m-124 (572 ->
388), so forward() mirrors the image outward as the paper's overlap-tile strategy does and returns logits for
exactly the input's pixels, whatever its size. `unet_same` pads every convolution by 1 and uses BN.
"""

import torch
from torch import nn

from ._utils import InputSizes, SegmentationModel, init_relu_convs, mirror_pad
from .backbones import scale_channels

VALID_BORDER = 92  # pixels the unpadded network eats on each side: (572 - 388) / 2


def center_crop(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    top, left = (x.shape[-2] - height) // 2, (x.shape[-1] - width) // 2
    return x[..., top:top + height, left:left + width]


def double_conv(in_channels: int, out_channels: int, padding: int, batch_norm: bool) -> nn.Sequential:
    layers = []
    for channels in (in_channels, out_channels):
        layers.append(nn.Conv2d(channels, out_channels, 3, padding=padding, bias=not batch_norm))
        if batch_norm:
            layers.append(nn.BatchNorm2d(out_channels))
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class UNet(SegmentationModel):
    def __init__(self, num_classes: int, width: float = 1.0, batch_norm: bool = False, dropout: float = 0.5,
                 padding: int = 0):
        super().__init__()
        self.padding = padding
        # same: four 2x poolings; valid: 16m-124, mirrored out by VALID_BORDER (a single reflection from 93 px)
        self.input_sizes = InputSizes(16, 0, 16) if padding else InputSizes(16, 4, 100)
        channels = [scale_channels(64 * 2 ** i, width) for i in range(5)]  # 64 .. 1024
        self.encoder = nn.ModuleList(double_conv(c_in, c_out, padding, batch_norm)
                                     for c_in, c_out in zip([3] + channels[:-1], channels))
        self.pool = nn.MaxPool2d(2)
        self.dropout = nn.Dropout(dropout)  # "at the end of the contracting path"
        self.upconvs = nn.ModuleList(nn.ConvTranspose2d(channels[i + 1], channels[i], 2, stride=2)
                                     for i in reversed(range(4)))
        self.decoder = nn.ModuleList(double_conv(2 * channels[i], channels[i], padding, batch_norm)
                                     for i in reversed(range(4)))
        self.classifier = nn.Conv2d(channels[0], num_classes, 1)
        init_relu_convs(self.modules())  # the paper's sqrt(2/N)

    def tile_input(self, x: torch.Tensor) -> torch.Tensor:
        """Mirror the image outward to the nearest input size whose output covers every input pixel."""
        height, width = x.shape[-2:]
        if self.padding:  # four 2x poolings: a multiple of 16
            return mirror_pad(x, 0, -height % 16, 0, -width % 16)
        tile = [16 * -(-(size + 124) // 16) + 60 for size in (height, width)]  # the smallest 16m+60 that fits
        return mirror_pad(x, VALID_BORDER, tile[0] - height - VALID_BORDER,
                          VALID_BORDER, tile[1] - width - VALID_BORDER)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        x = self.tile_input(x)
        skips = []
        for depth, block in enumerate(self.encoder):
            x = block(self.pool(x) if depth else x)
            skips.append(x)
        x = self.dropout(skips.pop())  # (N, 1024w, ...) the bottom of the U
        for upconv, block in zip(self.upconvs, self.decoder):
            x = upconv(x)
            # padded convolutions keep the sizes (no crop: one with symbolic sizes fails an ONNX export of
            # unet_same); unpadded ones crop 568->392, 280->200, 136->104, 64->56 at 572
            skip = skips.pop() if self.padding else center_crop(skips.pop(), *x.shape[-2:])
            x = block(torch.cat([skip, x], dim=1))
        return self.classifier(x)[..., :height, :width]  # the output starts at the image's first pixel


def unet(num_classes: int, **kwargs) -> UNet:
    return UNet(num_classes, padding=0, **kwargs)


def unet_same(num_classes: int, **kwargs) -> UNet:
    return UNet(num_classes, padding=1, **kwargs)
