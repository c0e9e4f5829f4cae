"""Test-time scoring of whole images: one forward pass, a sliding window of tiles, or several scales and a
horizontal flip averaged (the `inference` config group)."""
import torch
import torch.nn.functional as F


def items_per_forward(images: torch.Tensor) -> int:
    """How many windows (x images) or mirrored copies one forward pass scores: a GPU is faster with more at once;
    a CPU is slower (docs/benchmarks.md), so there each goes alone."""
    return 16 if images.is_cuda else 1


def sliding_window(model, images: torch.Tensor, tile: int, overlap: float, per_forward=None) -> torch.Tensor:
    """Class probabilities from overlapping tile x tile windows, averaged where they overlap; images smaller
    than a tile in both directions go through whole. Up to `per_forward` (default items_per_forward) windows
    times images go through one forward pass (they all have one size: the last window of a row or column
    starts at size - tile)."""
    height, width = images.shape[-2:]
    if height <= tile and width <= tile:
        return model(images).float().softmax(1)
    stride = max(1, int(tile * (1 - overlap)))

    def starts(size):
        if size <= tile:
            return [0]
        return sorted(set(list(range(0, size - tile, stride)) + [size - tile]))

    windows = [(top, left) for top in starts(height) for left in starts(width)]
    per_forward = max(1, (per_forward or items_per_forward(images)) // images.shape[0])
    probs, counts = None, torch.zeros(1, 1, height, width, device=images.device)
    for first in range(0, len(windows), per_forward):
        chunk = windows[first:first + per_forward]
        scores = model(torch.cat([images[..., top:top + tile, left:left + tile] for top, left in chunk]))
        for (top, left), window_probs in zip(chunk, scores.float().softmax(1).split(images.shape[0])):
            if probs is None:
                probs = torch.zeros(images.shape[0], scores.shape[1], height, width, device=images.device)
            probs[..., top:top + tile, left:left + tile] += window_probs
            counts[..., top:top + tile, left:left + tile] += 1
    return probs / counts


def predict_scores(model, images: torch.Tensor, mode: str = "whole", tile: int = 512, overlap: float = 1 / 3,
                   scales=(1.0,), flip: bool = False, probabilities: bool = False, per_forward=None) -> torch.Tensor:
    """(N, C, H, W) scores whose argmax is the prediction: for one whole-image pass the logits themselves (so the
    metrics equal training's validation) unless `probabilities`; else class probabilities averaged over scales
    and flips. `per_forward` (default items_per_forward) bounds the windows or mirrored copies per forward."""
    scales = tuple(scales)
    if mode == "whole" and scales == (1.0,) and not flip:
        return model(images).float().softmax(1) if probabilities else model(images)
    height, width = images.shape[-2:]

    def score(x):
        return sliding_window(model, x, tile, overlap, per_forward) if mode == "slide" else model(x).float().softmax(1)

    total = 0
    for scale in scales:
        scaled = images if scale == 1.0 else F.interpolate(images, scale_factor=scale, mode="bilinear",
                                                           align_corners=False)
        if flip and 2 * len(scaled) <= (per_forward or items_per_forward(images)):  # with their mirrors at once
            probs = score(torch.cat([scaled, scaled.flip(-1)]))
            probs = probs[:len(scaled)] + probs[len(scaled):].flip(-1)
        elif flip:
            probs = score(scaled) + score(scaled.flip(-1)).flip(-1)
        else:
            probs = score(scaled)
        if probs.shape[-2:] != (height, width):
            probs = F.interpolate(probs, size=(height, width), mode="bilinear", align_corners=False)
        total = total + probs
    return total / (len(scales) * (2 if flip else 1))


def inference_name(mode: str = "whole", scales=(1.0,), flip: bool = False, **_) -> str:
    """The scoring of these `inference.*` settings as the choice that gives it: whole (one pass, what training
    validates with), slide (tiles) or multiscale (several scales, or a flip, averaged)."""
    if mode == "slide":
        return "slide"
    return "multiscale" if tuple(scales) != (1.0,) or flip else "whole"


def upsample_to_labels(scores: torch.Tensor, sizes: torch.Tensor, label_shape) -> torch.Tensor:
    """Scores of resized images (N, C, h, w), padded, to their labels' stored sizes (N, C, H, W), padded:
    each item's (image height, image width, label height, label width) in `sizes` (from pad_collate)."""
    out = scores.new_zeros(*scores.shape[:2], *label_shape)
    for i, (height, width, label_height, label_width) in enumerate(sizes.tolist()):
        out[i, :, :label_height, :label_width] = F.interpolate(
            scores[i:i + 1, :, :height, :width].float(), size=(label_height, label_width), mode="bilinear",
            align_corners=False)[0]
    return out
