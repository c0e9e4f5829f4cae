from ..errors import SegtrainError
from .deconvnet import deconvnet
from .deeplab import deeplab_largefov
from .fcn import fcn8s, fcn8s_atonce, fcn16s, fcn32s, fcn32s_fixed
from .unet import unet, unet_same

# model name (the `model=` choice) -> builder(num_classes, **options)
MODELS = {
    "fcn32s": fcn32s,
    "fcn16s": fcn16s,
    "fcn8s": fcn8s,
    "fcn8s_atonce": fcn8s_atonce,
    "fcn32s_fixed": fcn32s_fixed,
    "deeplab_largefov": deeplab_largefov,
    "unet": unet,
    "unet_same": unet_same,
    "deconvnet": deconvnet,
}


def build_model(name: str, num_classes: int, **options):
    if name not in MODELS:
        raise SegtrainError(f"model.name={name!r} is not a known model; expected one of {sorted(MODELS)}")
    return MODELS[name](num_classes, **options)


def count_parameters(model, trainable_only: bool = True) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
