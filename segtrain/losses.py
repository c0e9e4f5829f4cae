"""Losses beyond plain cross-entropy (segtrain.engine.segmentation_loss): FRRN's bootstrapped cross-entropy, and
U-Net's weighted cross-entropy (Ronneberger et al. 2015, eq. 2): w(x) = w_c(x) + w0 exp(-(d1 + d2)^2 / 2 sigma^2),
w_c balancing the class frequencies and d1, d2 the distances to the nearest and second nearest object, so the
thin background gaps between touching objects weigh most."""
import math

import numpy as np
import torch
import torch.nn.functional as F


def unet_weight_map(label: np.ndarray, ignore_index: int = 255, w0: float = 10.0, sigma: float = 5.0,
                    background: int = 0) -> np.ndarray:
    """(H, W) float32 weights for one label map. Objects are the connected components of every class but
    `background`; the border term applies to background pixels, as in the paper's cell images."""
    from scipy import ndimage

    valid = label != ignore_index
    weights = np.zeros(label.shape, np.float32)
    classes, counts = np.unique(label[valid], return_counts=True)
    for cls, count in zip(classes, counts):  # w_c: each present class gets the same total weight
        weights[label == cls] = valid.sum() / (len(classes) * count)
    objects = []
    for cls in classes[classes != background]:
        components, count = ndimage.label(label == cls)
        objects += [components == i for i in range(1, count + 1)]
    if len(objects) >= 2:
        distances = np.sort(np.stack([ndimage.distance_transform_edt(~obj) for obj in objects]), axis=0)
        border = w0 * np.exp(-(distances[0] + distances[1]) ** 2 / (2 * sigma ** 2))
        weights += np.where(label == background, border, 0).astype(np.float32)
    return np.where(valid, weights, 0).astype(np.float32)


def collate_with_unet_weights(batch, collate, ignore_index: int, w0: float, sigma: float):
    """`collate(batch)` plus each label map's U-Net weights: computed in the DataLoader's workers, not in the
    training loop."""
    images, targets = collate(batch)
    weights = np.stack([unet_weight_map(t, ignore_index, w0, sigma) for t in targets.numpy()])
    return images, targets, torch.from_numpy(weights)


def unet_weighted_loss(logits, targets, weights, ignore_index: int, normalize: bool = True, denominator=None):
    """sum_x w(x) * CE(x) over labelled pixels, divided by their number (or by `denominator(count)`)."""
    per_pixel = F.cross_entropy(logits.float(), targets, ignore_index=ignore_index, reduction="none")
    total = (per_pixel * weights).sum()
    if not normalize:
        return total
    count = (targets != ignore_index).sum().float()
    return total / (denominator(count) if denominator else count.clamp_min(1))


def bootstrapped_cross_entropy(logits, targets, ignore_index: int, top_k=None, top_fraction=None,
                               class_weights=None):
    """FRRN's loss (Pohlen et al. 2017): per image, the mean cross-entropy of its K hardest labelled pixels, then
    the mean over the batch. K is `top_k` pixels (the release: 512 x 64) or `top_fraction` of the image's
    labelled pixels; an image with fewer labelled pixels than K uses them all (the release would average in
    zeros for void pixels there)."""
    per_pixel = F.cross_entropy(logits.float(), targets, weight=class_weights, ignore_index=ignore_index,
                                reduction="none")
    labelled = (targets != ignore_index) & (targets >= 0) & (targets < logits.shape[1])
    means = []
    for losses, mask in zip(per_pixel.flatten(1), labelled.flatten(1)):
        values = losses[mask]
        k = min(top_k if top_k is not None else math.ceil(top_fraction * values.numel()), values.numel())
        means.append(values.topk(k).values.mean() if k else losses.sum() * 0)  # no labels: 0, still in the graph
    return torch.stack(means).mean()
