"""Backbones built from torchvision's layer definitions, so torchvision's state dicts load into them."""
import sys
from pathlib import Path

import torch
from torch import nn
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.models.resnet import Bottleneck, ResNet
from torchvision.models.vgg import cfgs as vgg_cfgs
from torchvision.models.vgg import make_layers

from ..errors import SegtrainError
from ._utils import init_relu_convs

# torchvision's ImageNet weights for each backbone (its weights API gives the address and the cache file name)
TORCHVISION_WEIGHTS = {
    "vgg16": "VGG16_Weights",
    "vgg16_bn": "VGG16_BN_Weights",
    "alexnet": "AlexNet_Weights",
    "googlenet": "GoogLeNet_Weights",
    "resnet101": "ResNet101_Weights",  # IMAGENET1K_V1: the weights the DeepLab-era papers fine-tuned from
}
IMAGENET = "imagenet"  # model.pretrained=imagenet: torchvision's weights through its cache


def scale_channels(channels: int, width: float) -> int:
    return max(1, round(channels * width))


def imagenet_weights_file(arch: str):
    """(the cache file for torchvision's IMAGENET1K_V1 weights of `arch`, their address): the file under
    $TORCH_HOME/hub/checkpoints (default ~/.cache/torch) that torchvision.models.<arch>(weights=...) uses."""
    import torchvision.models

    weights = getattr(torchvision.models, TORCHVISION_WEIGHTS[arch]).IMAGENET1K_V1
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name, weights.url


def fetch_imagenet_weights(arch: str) -> Path:
    """The cached weights file, downloaded into the cache first when missing (needs the network)."""
    cached, url = imagenet_weights_file(arch)
    if cached.is_file():
        return cached
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(url, str(cached), progress=sys.stderr.isatty())
    except Exception as e:  # noqa: BLE001 - offline, refused, timed out, disk: all the same advice
        Path(f"{cached}.partial").unlink(missing_ok=True)
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise SegtrainError(f"model.pretrained=imagenet: {cached.name} is not in torchvision's cache and could not "
                            f"be downloaded ({reason}); put the file from {url} at {cached} (or set TORCH_HOME to a "
                            "folder whose hub/checkpoints/ holds it), or pass a local file as model.pretrained=PATH") \
            from None
    return cached


def load_torchvision_state(path: str, arch: str) -> dict:
    """A torchvision ImageNet state dict: `imagenet` through torchvision's weights API and cache, else a local
    file. Read with torch.load(weights_only=True)."""
    if path == IMAGENET:
        path = fetch_imagenet_weights(arch)
    if not Path(path).is_file():
        name = imagenet_weights_file(arch)[0].name
        raise SegtrainError(
            f"model.pretrained={path}: no such file. Use model.pretrained=imagenet (torchvision's {arch} weights, "
            f"{name}, through its cache), or pass the path of that file")
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


def convolutionalise(state: dict, fc6: nn.Conv2d, fc7: nn.Conv2d, fc6_key: str = "classifier.0",
                     fc7_key: str = "classifier.3") -> None:
    """A classifier's fc6 (e.g. VGG16's 25088 -> 4096) and fc7 (4096 -> 4096) copied into the (7x7 for VGG16)
    and 1x1 convolutions that replace them."""
    with torch.no_grad():
        fc6.weight.copy_(state[f"{fc6_key}.weight"].view(fc6.weight.shape))
        fc6.bias.copy_(state[f"{fc6_key}.bias"])
        fc7.weight.copy_(state[f"{fc7_key}.weight"].view(fc7.weight.shape))
        fc7.bias.copy_(state[f"{fc7_key}.bias"])


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


def alexnet_features(width: float = 1.0, batch_norm: bool = False) -> nn.Sequential:
    """torchvision's AlexNet `features` (one tower, no LRN, unlike the papers' CaffeNet) with FCN's changes:
    conv1 padded by 100 and ceil-mode pools. Without BN the layer indices are torchvision's, so its weights load."""
    c = [scale_channels(v, width) for v in (64, 192, 384, 256, 256)]
    convs = [nn.Conv2d(3, c[0], 11, stride=4, padding=100), nn.Conv2d(c[0], c[1], 5, padding=2),
             nn.Conv2d(c[1], c[2], 3, padding=1), nn.Conv2d(c[2], c[3], 3, padding=1),
             nn.Conv2d(c[3], c[4], 3, padding=1)]
    layers = []
    for index, conv in enumerate(convs):
        layers += [conv, nn.BatchNorm2d(conv.out_channels), nn.ReLU(inplace=True)] if batch_norm else [
            conv, nn.ReLU(inplace=True)]
        if index in (0, 1, 4):
            layers.append(nn.MaxPool2d(3, stride=2, ceil_mode=True))
    features = nn.Sequential(*layers)
    init_relu_convs(features.modules())
    return features


class _ScaledResNet(ResNet):
    """torchvision's ResNet with the widths of its four stages scaled; the 64-channel stem stays."""

    def __init__(self, width: float, **kwargs):
        object.__setattr__(self, "stage_width", width)  # read by _make_layer during ResNet.__init__
        super().__init__(**kwargs)

    def _make_layer(self, block, planes, *args, **kwargs):
        return super()._make_layer(block, scale_channels(planes, self.stage_width), *args, **kwargs)


def resnet101_dilated(width: float = 1.0, pretrained=None) -> tuple:
    """torchvision's ResNet-101 at output stride 8 (layer3 dilated by 2, layer4 by 4), as DeepLab v2 uses it.
    Returns (backbone returning {"out": layer4 features}, their channels)."""
    resnet = _ScaledResNet(width, block=Bottleneck, layers=[3, 4, 23, 3],
                           replace_stride_with_dilation=[False, True, True])
    if pretrained:
        load_pretrained(resnet, load_torchvision_state(pretrained, "resnet101"), pretrained)
    channels = scale_channels(512, width) * Bottleneck.expansion
    return IntermediateLayerGetter(resnet, return_layers={"layer4": "out"}), channels


def googlenet_features(width: float = 1.0, pretrained=None) -> tuple:
    """torchvision's GoogLeNet (BN after every conv, 3x3 convs in the "5x5" branches) up to inception5b at
    stride 32, without its average pool and classifier as FCN drops them. Returns (features, their channels)."""
    from collections import OrderedDict

    from torchvision.models.googlenet import BasicConv2d, GoogLeNet, Inception, InceptionAux

    stem_in = {"channels": 3}
    block_in = {"channels": scale_channels(192, width)}  # conv3's output feeds inception3a

    def conv_block(in_channels, out_channels, **kwargs):
        conv = BasicConv2d(stem_in["channels"], scale_channels(out_channels, width), **kwargs)
        stem_in["channels"] = conv.conv.out_channels
        return conv

    def inception_block(in_channels, *branch_channels):
        c1, c3red, c3, c5red, c5, pool_proj = (scale_channels(v, width) for v in branch_channels)
        block = Inception(block_in["channels"], c1, c3red, c3, c5red, c5, pool_proj)
        block_in["channels"] = c1 + c3 + c5 + pool_proj  # the four branches are concatenated
        return block

    net = GoogLeNet(aux_logits=False, transform_input=False, init_weights=True,
                    blocks=[conv_block, inception_block, InceptionAux])
    if pretrained:
        state = load_torchvision_state(pretrained, "googlenet")
        state = {k: v for k, v in state.items() if not k.startswith(("aux1.", "aux2."))}
        load_pretrained(net, state, pretrained)
    layers = OrderedDict()
    for name, layer in net.named_children():
        layers[name] = layer
        if name == "inception5b":
            break
    return nn.Sequential(layers), block_in["channels"]
