from ..errors import SegtrainError
from ._utils import adapt_input_channels, freeze_batch_norm
from .deconvnet import deconvnet
from .deeplab import deeplab_aspp, deeplab_largefov
from .ensemble import ProductEnsemble
from .fusion import LateFusion
from .fcn import fcn8s, fcn8s_atonce, fcn16s, fcn32s, fcn32s_fixed, fcn_alexnet, fcn_googlenet
from .frrn import frrn_a, frrn_b
from .unet import unet, unet_same

# model name (the `model=` choice) -> builder(num_classes, **options)
MODELS = {
    "fcn32s": fcn32s,
    "fcn16s": fcn16s,
    "fcn8s": fcn8s,
    "fcn8s_atonce": fcn8s_atonce,
    "fcn32s_fixed": fcn32s_fixed,
    "fcn_alexnet": fcn_alexnet,
    "fcn_googlenet": fcn_googlenet,
    "deeplab_largefov": deeplab_largefov,
    "deeplab_aspp": deeplab_aspp,
    "unet": unet,
    "unet_same": unet_same,
    "deconvnet": deconvnet,
    "frrn_a": frrn_a,
    "frrn_b": frrn_b,
}

__all__ = ["MODELS", "LateFusion", "ProductEnsemble", "build_model", "count_parameters"]


def build_model(name: str, num_classes: int, in_channels: int = 3, frozen_bn: bool = False, **options):
    """A model for `in_channels` inputs (the first conv is rebuilt from the RGB one when it is not 3); after any
    pretrained weights are loaded, `frozen_bn` turns every BN layer into a fixed affine map."""
    if name not in MODELS:
        raise SegtrainError(f"model.name={name!r} is not a known model; expected one of {sorted(MODELS)}")
    model = MODELS[name](num_classes, **options)
    if in_channels != 3:
        adapt_input_channels(model, in_channels)
    if frozen_bn and not freeze_batch_norm(model):
        raise SegtrainError(f"model.frozen_bn=true: {name} has no BN layers to freeze (model.batch_norm=false?)")
    return model


def count_parameters(model, trainable_only: bool = True) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
