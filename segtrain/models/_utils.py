from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn


class InputSizes(NamedTuple):
    """The heights and widths a network's forward() takes without padding of its own that depends on the size:
    offset + multiple x k pixels, at least `minimum`. forward() mirrors any other size out to one of these in
    Python, which a graph with dynamic sizes (an ONNX export) cannot follow."""
    multiple: int = 1
    offset: int = 0
    minimum: int = 1

    def any_size(self) -> bool:
        return self.multiple == 1 and self.minimum <= 1

    def fitting(self, size: int) -> int:
        """The smallest size these sizes take that is >= `size`."""
        size = max(size, self.minimum)
        return size + (self.offset - size) % self.multiple

    def __str__(self) -> str:
        if self.any_size():
            return "any size"
        first = self.fitting(1)
        rule = f"{self.multiple}k" + (f"+{self.offset}" if self.offset else "")
        return f"{rule} px ({first}, {first + self.multiple}, {first + 2 * self.multiple}, ...)"


class SegmentationModel(nn.Module):
    """What every segtrain network declares beside forward(images) -> class scores at the images' size: its
    `output_stride` (input pixels per cell of its coarsest score map, the cell of FCN's loss sampling),
    `new_layers`, the module paths a pretrained backbone does not provide (trained at optimizer.head_lr_mult), and
    `input_sizes`, the sizes it takes as they are (InputSizes; any by default)."""
    output_stride: int = 1
    new_layers: tuple = ()
    input_sizes: InputSizes = InputSizes()


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


def freeze_batch_norm(module: nn.Module) -> int:
    """Replaces every BatchNorm2d below `module` by torchvision's FrozenBatchNorm2d holding the same statistics
    and affine (buffers: never trained, never updated). Returns how many were replaced."""
    from torchvision.ops import FrozenBatchNorm2d

    replaced = 0
    for parent in list(module.modules()):
        for name, child in parent.named_children():
            if isinstance(child, nn.BatchNorm2d):
                frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps).to(child.weight.device)
                with torch.no_grad():
                    for key in ("weight", "bias", "running_mean", "running_var"):
                        getattr(frozen, key).copy_(getattr(child, key))
                setattr(parent, name, frozen)
                replaced += 1
    return replaced


def adapt_input_channels(model: nn.Module, in_channels: int) -> None:
    """Rebuilds the convolution that takes the image (every segtrain network registers it before any other
    convolution: the first in depth-first order, not merely the first of 3 input channels, which a narrow
    network's classifier may also have) for `in_channels` inputs, keeping its (pretrained) RGB filters: one channel
    gets their sum (as if the value were fed to R, G and B), channels beyond the third get their mean (FCN's RGB-D
    early fusion widens conv1_1 this way). Errors: ValueError when that convolution does not take 3 channels."""
    path, conv = next((path, m) for path, m in model.named_modules() if isinstance(m, nn.Conv2d))
    if conv.in_channels != 3:
        raise ValueError(f"{type(model).__name__}: its first convolution ({path}) takes {conv.in_channels} "
                         "channels, not the image's 3")
    owner, _, name = path.rpartition(".")
    parent = model.get_submodule(owner)
    wider = nn.Conv2d(in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                      conv.groups, conv.bias is not None, device=conv.weight.device)
    with torch.no_grad():
        rgb = conv.weight
        if in_channels < 3:
            wider.weight.copy_(rgb.sum(1, keepdim=True).expand_as(wider.weight))
        else:
            wider.weight[:, :3] = rgb
            wider.weight[:, 3:] = rgb.mean(1, keepdim=True)
        if conv.bias is not None:
            wider.bias.copy_(conv.bias)
    setattr(parent, name, wider)
