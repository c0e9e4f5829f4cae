"""Image panels for TensorBoard: input | ground truth | prediction, labels in the dataset's palette."""
import torch
import torch.nn.functional as F
from torchvision.utils import make_grid

from .data.palette import colorize


def denormalize(image: torch.Tensor, mean, std) -> torch.Tensor:
    """(C, H, W) normalised float -> (3, H, W) uint8: the first three channels (RGB, or HHA), or a single
    channel (depth) stretched to grey."""
    image = image.float().cpu()
    if image.shape[0] < 3:
        grey = image[:1]
        grey = (grey - grey.min()) / (grey.max() - grey.min()).clamp_min(1e-6)
        return (grey.expand(3, -1, -1) * 255).round().to(torch.uint8)
    image = image[:3] * torch.tensor(std[:3])[:, None, None] + torch.tensor(mean[:3])[:, None, None]
    return (image.clamp(0, 1) * 255).round().to(torch.uint8)


def prediction_panels(samples, mean, std, palette) -> torch.Tensor:
    """One row per (image, target, prediction) triple, as a single (3, H', W') uint8 grid."""
    tiles = []
    for image, target, pred in samples:
        tiles += [denormalize(image, mean, std), colorize(target, palette), colorize(pred, palette)]
    height, width = max(t.shape[-2] for t in tiles), max(t.shape[-1] for t in tiles)
    tiles = [F.pad(t, (0, width - t.shape[-1], 0, height - t.shape[-2]), value=255) for t in tiles]  # sizes vary
    return make_grid(tiles, nrow=3, padding=2, pad_value=255)
