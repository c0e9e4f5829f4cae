"""Image panels for TensorBoard: input | ground truth | prediction, labels in the dataset's palette."""
import torch
from torchvision.utils import make_grid

from .data.palette import colorize


def denormalize(image: torch.Tensor, mean, std) -> torch.Tensor:
    """(3, H, W) normalised float -> (3, H, W) uint8."""
    image = image.float().cpu() * torch.tensor(std)[:, None, None] + torch.tensor(mean)[:, None, None]
    return (image.clamp(0, 1) * 255).round().to(torch.uint8)


def prediction_panels(samples, mean, std, palette) -> torch.Tensor:
    """One row per (image, target, prediction) triple, as a single (3, H', W') uint8 grid."""
    tiles = []
    for image, target, pred in samples:
        tiles += [denormalize(image, mean, std), colorize(target, palette), colorize(pred, palette)]
    return make_grid(tiles, nrow=3, padding=2, pad_value=255)
