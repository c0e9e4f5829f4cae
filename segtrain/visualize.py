"""Pictures people look at: TensorBoard's input | ground truth | prediction panels (a row per image, labelled with
its name), class overlays with a legend of the classes drawn, in the dataset's palette."""
import numpy as np
import torch

from .data.palette import colorize

IGNORE_COLOUR = (255, 255, 255)  # void (255) in legends


def denormalize(image: torch.Tensor, mean, std) -> torch.Tensor:
    """(C, H, W) normalised float -> (3, H, W) uint8 on the same device: the first three channels (RGB, or HHA),
    or a single channel (depth) stretched to grey."""
    image = image.float()
    if image.shape[0] < 3:
        grey = image[:1]
        grey = (grey - grey.min()) / (grey.max() - grey.min()).clamp_min(1e-6)
        return (grey.expand(3, -1, -1) * 255).round().to(torch.uint8)
    image = (image[:3] * torch.tensor(std[:3], device=image.device)[:, None, None]
             + torch.tensor(mean[:3], device=image.device)[:, None, None])
    return (image.clamp(0, 1) * 255).round().to(torch.uint8)


def evenly_spaced(count: int, total: int) -> list:
    """`count` indices spread over 0..total-1 (first and last included): the same items at every validation."""
    if count <= 0 or total <= 0:
        return []
    return sorted({round(i) for i in np.linspace(0, total - 1, min(count, total))})


def _text_height() -> int:
    return 14


def prediction_panels(samples, mean, std, palette, names=None) -> torch.Tensor:
    """One row per (image, target, prediction) triple under a line with its name, as one (3, H', W') uint8 image."""
    from PIL import Image, ImageDraw

    rows = [[denormalize(image, mean, std), colorize(target, palette), colorize(pred, palette)]
            for image, target, pred in samples]
    height = max(t.shape[-2] for row in rows for t in row)
    width = max(t.shape[-1] for row in rows for t in row)
    gap, text = 2, _text_height()
    canvas = Image.new("RGB", (3 * width + 4 * gap, len(rows) * (height + text + gap) + gap), "white")
    draw = ImageDraw.Draw(canvas)
    for r, row in enumerate(rows):
        top = gap + r * (height + text + gap)
        draw.text((gap, top), (names[r] if names else f"#{r}") + "  (input | ground truth | prediction)",
                  fill="black")
        for c, tile in enumerate(row):
            canvas.paste(Image.fromarray(tile.permute(1, 2, 0).numpy()), (gap + c * (width + gap), top + text))
    return torch.from_numpy(np.array(canvas)).permute(2, 0, 1)


def overlay_with_legend(rgb: torch.Tensor, labels: torch.Tensor, palette, class_names, alpha: float = 0.5,
                        skip=()):
    """(3, H, W) uint8 image with every class present and not in `skip` painted at `alpha`, and below it a legend of
    the classes painted (colour and name); as a PIL image."""
    from PIL import Image
    from torchvision.utils import draw_segmentation_masks

    painted = [c for c in range(len(class_names)) if c not in skip and bool((labels == c).any())]
    drawn = draw_segmentation_masks(rgb, torch.stack([labels == c for c in painted]), alpha=alpha,
                                    colors=[tuple(int(v) for v in palette[c]) for c in painted]) if painted else rgb
    image = Image.fromarray(drawn.permute(1, 2, 0).numpy())
    return stack_legend(image, [(tuple(int(v) for v in palette[c]), f"{c}: {class_names[c]}") for c in painted])


def stack_legend(image, entries):
    """`image` (PIL) with a legend below it: one line per (colour, text) entry, wrapped into columns."""
    from PIL import Image, ImageDraw

    if not entries:
        return image
    line, column = 16, max(120, 8 * max(len(text) for _, text in entries) + 24)
    per_row = max(1, image.width // column)
    rows = -(-len(entries) // per_row)
    canvas = Image.new("RGB", (max(image.width, column), image.height + rows * line + 6), "white")
    canvas.paste(image, (0, 0))
    draw = ImageDraw.Draw(canvas)
    for i, (colour, text) in enumerate(entries):
        x, y = (i % per_row) * column + 4, image.height + 4 + (i // per_row) * line
        draw.rectangle([x, y + 1, x + 12, y + 12], fill=colour, outline="black")
        draw.text((x + 18, y), text, fill="black")
    return canvas
