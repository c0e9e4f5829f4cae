import torch
import torch.nn.functional as F
from torch import nn


def mirror_pad(x: torch.Tensor, top: int, bottom: int, left: int, right: int) -> torch.Tensor:
    """Reflect padding of any size, reflecting again while the pad is larger than the image."""
    while top or bottom or left or right:
        h, w = x.shape[-2:]
        if min(h, w) == 1:  # nothing to reflect
            return F.pad(x, (left, right, top, bottom), mode="replicate")
        step = (min(left, w - 1), min(right, w - 1), min(top, h - 1), min(bottom, h - 1))
        x = F.pad(x, step, mode="reflect")
        left, right, top, bottom = left - step[0], right - step[1], top - step[2], bottom - step[3]
    return x


def init_relu_convs(modules) -> None:
    """torchvision's VGG init for every (transposed) convolution: Kaiming normal (fan-out, ReLU), zero bias."""
    for m in modules:
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
