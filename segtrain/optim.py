"""Optimisers and per-iteration learning-rate schedules."""
import math

import torch
from torch.optim.lr_scheduler import LambdaLR

from .errors import SegtrainError


def parameter_groups(model, lr: float, weight_decay: float, bias_lr_mult: float, bias_decay: bool,
                     head_lr_mult: float) -> list:
    """The trainable parameters in up to four groups, backbone weights first (the lr that gets logged).

    "Head" parameters are those below the model's `new_layers` (module paths of the layers a pretrained backbone
    does not provide: FCN's score layers, DeepLab's classifier). A group's lr is lr x head_lr_mult (head) x bias_lr_mult (bias),
    so FCN's recipe is bias_lr_mult=2 with bias_decay=false and DeepLab's is head_lr_mult=10, bias_lr_mult=2."""
    new_layers = model.new_layers
    grouped = {}
    for name, param in model.named_parameters():
        if param.requires_grad:
            key = (any(name.startswith(layer + ".") for layer in new_layers), name.endswith(".bias"))
            grouped.setdefault(key, []).append(param)
    return [{"params": params, "lr": lr * (head_lr_mult if head else 1.0) * (bias_lr_mult if bias else 1.0),
             "weight_decay": 0.0 if bias and not bias_decay else weight_decay}
            for (head, bias), params in sorted(grouped.items())]


def build_optimizer(model, name: str, lr: float, weight_decay: float, bias_lr_mult: float = 1.0,
                    bias_decay: bool = True, head_lr_mult: float = 1.0, **options) -> torch.optim.Optimizer:
    groups = parameter_groups(model, lr, weight_decay, bias_lr_mult, bias_decay, head_lr_mult)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, weight_decay=weight_decay, momentum=options["momentum"],
                               nesterov=options["nesterov"])
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay, betas=tuple(options["betas"]),
                                 eps=options["eps"])
    raise SegtrainError(f"optimizer.name={name!r} is not known; expected 'sgd' or 'adamw'")


def schedule_factor(name: str, iteration: int, max_iters: int, power: float = 0.9, step_size: int = 2000,
                    gamma: float = 0.1, warmup_iters: int = 0, warmup_start: float = 0.001) -> float:
    """The factor on each group's base lr at `iteration`: fixed, step (x gamma every step_size), poly
    ((1 - i/max) ** power), or cosine (0.5 (1 + cos(pi i/max))), ramped linearly from warmup_start over the first
    warmup_iters."""
    progress = min(iteration, max_iters) / max_iters
    if name == "fixed":
        factor = 1.0
    elif name == "step":
        factor = gamma ** (iteration // step_size)
    elif name == "poly":
        factor = max(0.0, 1 - progress) ** power
    elif name == "cosine":
        factor = 0.5 * (1 + math.cos(math.pi * progress))
    else:
        raise SegtrainError(f"schedule.name={name!r} is not known; expected fixed, step, poly or cosine")
    if iteration < warmup_iters:
        factor *= warmup_start + (1 - warmup_start) * iteration / warmup_iters
    return factor


def build_schedule(optimizer, max_iters: int, name: str, **options) -> LambdaLR:
    """Stepped once per iteration; the factor at iteration i multiplies each group's base lr."""
    schedule_factor(name, 0, max_iters, **options)  # an unknown name fails here, before training
    return LambdaLR(optimizer, lambda it: schedule_factor(name, it, max_iters, **options))
