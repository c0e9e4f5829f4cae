import logging

from ..errors import SegtrainError
from ._utils import adapt_input_channels, freeze_batch_norm
from .deconvnet import deconvnet
from .deeplab import deeplab_aspp, deeplab_largefov
from .ensemble import ProductEnsemble
from .fusion import LateFusion
from .fcn import fcn8s, fcn8s_atonce, fcn16s, fcn32s, fcn32s_fixed, fcn_alexnet, fcn_googlenet
from .frrn import frrn_a, frrn_b
from .unet import unet, unet_same
from .crfrnn import CRFasRNN

log = logging.getLogger("segtrain")

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

__all__ = ["MODELS", "CRFasRNN", "LateFusion", "ProductEnsemble", "build_model", "build_model_from_config",
           "count_parameters"]


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


def build_model_from_config(cfg, num_classes: int, input_channels=(3,), image_stats=None):
    """The configured model for a dataset whose input has one stream per entry of `input_channels` (e.g. (4,)
    for RGB-D early fusion, (3, 3) for FCN's RGB-HHA late fusion: a network per stream, scores summed).
    model.crf=crfrnn appends CRF-as-RNN's mean-field layers, which undo the normalisation `image_stats`
    ((mean, std); a checkpoint's weights restore them)."""
    # the family's schema (segtrain.config) holds only the options its builder takes
    options = {k: v for k, v in cfg.model.items()
               if k not in ("name", "init_from", "init_from_strict") and not k.startswith("crf")}
    if cfg.model.crf not in (None, "crfrnn"):
        raise SegtrainError(f"model.crf={cfg.model.crf}: expected crfrnn (CRF-as-RNN) or null")
    if cfg.model.crf and list(input_channels) != [3]:
        raise SegtrainError(f"model.crf=crfrnn compares RGB colours; {cfg.dataset.name} gives "
                            f"{'+'.join(str(c) for c in input_channels)}-channel input")
    pretrained = cfg.model.get("pretrained")  # U-Net and FRRN train from scratch: no such key
    if pretrained and any(c != 3 for c in input_channels):
        log.warning("model.pretrained=%s expects 3-channel RGB input; for %s-channel input its first convolution is "
                    "adapted (RGB filters summed for 1 channel, their mean for extra channels), so normalise "
                    "with the data's own dataset.mean/std", pretrained,
                    "/".join(str(c) for c in input_channels))
    streams = [build_model(cfg.model.name, num_classes, in_channels=c, **options) for c in input_channels]
    model = streams[0] if len(streams) == 1 else LateFusion(streams, input_channels)
    if cfg.model.crf:
        m = cfg.model
        model = CRFasRNN(model, num_classes, m.crf_iterations, m.crf_test_iterations, m.crf_sigma_alpha,
                         m.crf_sigma_beta, m.crf_sigma_gamma, *(image_stats or ()))
    return model
