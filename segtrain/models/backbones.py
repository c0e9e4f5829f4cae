"""Backbones built from torchvision's layer definitions, so torchvision's state dicts load into them."""
from pathlib import Path

import torch
from torch import nn
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.models.vgg import cfgs as vgg_cfgs
from torchvision.models.vgg import make_layers

from ..errors import SegtrainError

# torchvision's file names for its ImageNet weights, as its cache stores them (~/.cache/torch/hub/checkpoints)
TORCHVISION_FILES = {
    "vgg16": "vgg16-397923af.pth",
    "vgg16_bn": "vgg16_bn-6c64b313.pth",
}


def scale_channels(channels: int, width: float) -> int:
    return max(1, round(channels * width))


def load_torchvision_state(path: str, arch: str) -> dict:
    """A torchvision state dict from a local file; nothing is ever downloaded."""
    file = TORCHVISION_FILES[arch]
    if not Path(path).is_file():
        raise SegtrainError(
            f"model.pretrained={path}: no such file. Get torchvision's ImageNet {arch} weights ({file}, saved by "
            f"torchvision.models.{arch}(weights='DEFAULT') under ~/.cache/torch/hub/checkpoints/ on a machine with "
            f"internet), copy it here and pass its path")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file gets the same one-line message
        raise SegtrainError(f"model.pretrained={path}: not a readable torchvision state dict ({e})") from None


class VGG16Features(nn.Module):
    """torchvision's VGG16 (or VGG16-BN) `features`, changed as FCN or DeepLab change it.

    atrous=False (FCN): conv1_1 padded by 100 so that fc6's 7x7 window fits any input; 2x2 ceil-mode pools.
    atrous=True (DeepLab-LargeFOV): 3x3 pools padded by 1, stride 2 for pool1-3 and 1 for pool4-5, conv5_x
    dilated by 2, so pool5 has stride 8.
    Returns the outputs of the pools named in `return_pools`. Layer indices are torchvision's, so its
    `features.*` weights load unchanged.
    """

    def __init__(self, width: float = 1.0, batch_norm: bool = False, return_pools=("pool5",), atrous: bool = False):
        super().__init__()
        self.batch_norm = batch_norm
        layer_cfg = [v if v == "M" else scale_channels(v, width) for v in vgg_cfgs["D"]]
        features = make_layers(layer_cfg, batch_norm=batch_norm)
        if not atrous:
            features[0].padding = (100, 100)
        pool_names = {}
        for index, layer in enumerate(features):
            if isinstance(layer, nn.MaxPool2d):
                pool_names[str(index)] = f"pool{len(pool_names) + 1}"
                if atrous:
                    features[index] = nn.MaxPool2d(3, stride=2 if len(pool_names) <= 3 else 1, padding=1,
                                                   ceil_mode=True)
                else:
                    layer.ceil_mode = True
            elif atrous and isinstance(layer, nn.Conv2d) and len(pool_names) == 4:  # conv5_1..conv5_3
                layer.dilation, layer.padding = (2, 2), (2, 2)
        # channels of each pool's output: the width of the last conv before it
        self.stage_channels, last = {}, 3
        for v in layer_cfg:
            if v == "M":
                self.stage_channels[f"pool{len(self.stage_channels) + 1}"] = last
            else:
                last = v
        wanted = {index: name for index, name in pool_names.items() if name in return_pools}
        self.body = IntermediateLayerGetter(features, return_layers=wanted)
        for m in self.body.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def load_features(self, state: dict, source: str) -> None:
        try:
            self.body.load_state_dict(state)
        except RuntimeError as e:
            raise SegtrainError(f"model.pretrained={source}: does not fit this backbone (it needs model.width=1.0 "
                                f"and model.batch_norm matching the file): {str(e).splitlines()[1].strip()}") from None

    def forward(self, x):
        return self.body(x)
