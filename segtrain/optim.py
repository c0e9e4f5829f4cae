"""Optimisers and per-iteration learning-rate schedules."""
import torch
from torch.optim.lr_scheduler import LambdaLR

from .errors import SegtrainError


def build_optimizer(params, name: str, lr: float, weight_decay: float, **options) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay, momentum=options["momentum"],
                               nesterov=options["nesterov"])
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, betas=tuple(options["betas"]),
                                 eps=options["eps"])
    raise SegtrainError(f"optimizer.name={name!r} is not known; expected 'sgd' or 'adamw'")


def build_schedule(optimizer, name: str, max_iters: int, power: float) -> LambdaLR:
    """Stepped once per iteration; the factor at iteration i multiplies each group's base lr."""
    if name == "fixed":
        return LambdaLR(optimizer, lambda it: 1.0)
    if name == "poly":
        return LambdaLR(optimizer, lambda it: max(0.0, 1 - it / max_iters) ** power)
    raise SegtrainError(f"schedule.name={name!r} is not known; expected 'fixed' or 'poly'")
