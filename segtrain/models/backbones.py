"""Backbones built from torchvision's layer definitions, so torchvision's state dicts load into them."""
from pathlib import Path

import torch
from torch import nn
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.models.vgg import cfgs as vgg_cfgs
from torchvision.models.vgg import make_layers

from ..errors import SegtrainError
from ._utils import init_relu_convs

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


def load_vgg16_state(path: str, batch_norm: bool) -> dict:
    return load_torchvision_state(path, "vgg16_bn" if batch_norm else "vgg16")


def vgg16_features_state(state: dict) -> dict:
    """The `features.*` entries of a torchvision VGG state dict, keyed as in `features` itself."""
    return {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}


def load_pretrained(module: nn.Module, state: dict, source: str) -> None:
    """load_state_dict, failing with one line that names the file and what the model needs."""
    try:
        module.load_state_dict(state)
    except RuntimeError as e:
        detail = next((line.strip() for line in str(e).splitlines()[1:] if line.strip()), str(e))
        detail = detail if len(detail) <= 200 else detail[:200] + " ..."
        raise SegtrainError(f"model.pretrained={source}: does not fit this model (it needs model.width=1.0 and "
                            f"model.batch_norm matching the file): {detail}") from None


def convolutionalise(state: dict, fc6: nn.Conv2d, fc7: nn.Conv2d) -> None:
    """VGG16's classifier fc6 (25088 -> 4096) and fc7 (4096 -> 4096) copied into 7x7 and 1x1 convolutions."""
    with torch.no_grad():
        fc6.weight.copy_(state["classifier.0.weight"].view(fc6.weight.shape))
        fc6.bias.copy_(state["classifier.0.bias"])
        fc7.weight.copy_(state["classifier.3.weight"].view(fc7.weight.shape))
        fc7.bias.copy_(state["classifier.3.bias"])


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
        init_relu_convs(self.body.modules())

    def load_features(self, state: dict, source: str) -> None:
        """The `features.*` weights of a torchvision VGG16(-BN) state dict."""
        load_pretrained(self.body, vgg16_features_state(state), source)

    def forward(self, x):
        return self.body(x)
