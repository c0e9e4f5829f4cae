"""The training losses and what they need: cross-entropy over the labelled pixels (per task for multi-task data,
mean or FCN's sum, class weights), FCN's cell sampling, FRRN's bootstrapped cross-entropy, U-Net's weighted
cross-entropy (Ronneberger et al. 2015, eq. 2): w(x) = w_c(x) + w0 exp(-(d1 + d2)^2 / 2 sigma^2),
w_c balancing the class frequencies and d1, d2 the distances to the nearest and second nearest object, so the
thin background gaps between touching objects weigh most."""
import math
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from . import distributed
from .data.labels import IGNORE_INDEX
from .engine import task_heads, task_target
from .errors import SegtrainError


def unet_weight_map(label: np.ndarray, ignore_index: int = IGNORE_INDEX, w0: float = 10.0, sigma: float = 5.0,
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


def pixel_weights(loss_cfg, ignore_index: int):
    """The per-pixel weights a loss takes with every label map (U-Net's: a function of the (H, W) label giving
    (H, W) float32 weights), or None."""
    if loss_cfg.name == "unet_weighted":
        return partial(unet_weight_map, ignore_index=ignore_index, w0=loss_cfg.w0, sigma=loss_cfg.sigma)
    return None


class PixelWeighted(Dataset):
    """Items of `dataset` (image, label) with the label's per-pixel weights `weigh(label)` as a third entry,
    computed in the DataLoader's workers; pad_collate pads them with 0 like the labels' void."""

    def __init__(self, dataset, weigh):
        self.dataset, self.weigh = dataset, weigh

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, item):
        image, label = self.dataset[item]
        return image, label, torch.from_numpy(self.weigh(label.numpy()))


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


def segmentation_loss(logits, targets, num_classes: int, ignore_index: int, tasks=None, normalize: bool = True,
                      class_weights=None, denominator=None):
    """Cross-entropy over the pixels that are not ignored: their mean, or with normalize=False their sum (the
    FCN release's unnormalised loss); `class_weights` weight each class. With several tasks, the sum of theirs.
    `denominator(local)` turns this batch's labelled-pixel count (or weight) into the one to divide by
    (distributed training: the whole global batch's, over the number of ranks)."""
    loss = 0
    for t, (_, channels) in enumerate(task_heads(num_classes, tasks)):
        target = task_target(targets, t, tasks)
        weight = None if class_weights is None else class_weights[channels]
        scores = logits[:, channels].float()
        total = F.cross_entropy(scores, target, weight=weight, ignore_index=ignore_index, reduction="sum")
        if normalize:
            # counted on the device (no host sync); a batch without labelled pixels (or only zero-weight ones)
            # adds 0, where cross_entropy's mean would be 0 / 0 = NaN and end the run
            labelled = (target != ignore_index) & (target >= 0) & (target < scores.shape[1])
            local = labelled.sum().float() if weight is None else \
                (weight[target.clamp(0, scores.shape[1] - 1)] * labelled).sum()
            total = total / (denominator(local) if denominator else local.clamp_min(torch.finfo(local.dtype).tiny))
        loss = loss + total
    return loss


def drop_cells(targets: torch.Tensor, rate: float, cell: int, ignore_index: int) -> torch.Tensor:
    """FCN's sampling rate: each cell x cell block (a cell of the final score map) stays in the loss with
    probability `rate`; the others become ignored."""
    height, width = targets.shape[-2:]
    keep = torch.rand(targets.shape[0], -(-height // cell), -(-width // cell), device=targets.device) < rate
    keep = keep.repeat_interleave(cell, 1).repeat_interleave(cell, 2)[:, :height, :width]
    return targets.masked_fill(~(keep if targets.dim() == 3 else keep[:, None]), ignore_index)


def build_loss(loss_cfg, num_classes: int, dataset, device, cell: int = 1, world: int = 1, class_weights=None):
    """loss_fn(logits, targets[, pixel weights]) as the `loss` config says (its pixel weights come with the batch:
    pixel_weights, PixelWeighted), with
    FCN's cell sampling when loss.sample_rate < 1 (`cell`: the network's output stride). With `world` processes
    the mean is over the global batch's labelled pixels (DDP then averages the gradients). `class_weights` are
    loss.class_weights as numbers (segtrain.train.resolve_class_weights)."""
    sample_rate = loss_cfg.sample_rate
    weights = None
    if class_weights is None and loss_cfg.class_weights is not None:
        class_weights = list(loss_cfg.class_weights)
    if class_weights is not None:
        if len(class_weights) != num_classes:
            raise SegtrainError(f"loss.class_weights has {len(class_weights)} entries; expected one per "
                                f"class ({num_classes}: {', '.join(dataset.class_names)})")
        weights = torch.tensor(class_weights, dtype=torch.float32, device=device)
    if not 0 < sample_rate <= 1:
        raise SegtrainError(f"loss.sample_rate={sample_rate}: expected a probability in (0, 1]")

    def global_denominator(local: torch.Tensor) -> torch.Tensor:
        return distributed.all_reduce_sum(local.clone()) / world

    denominator = global_denominator if world > 1 else None

    if loss_cfg.name == "unet_weighted" and (dataset.tasks or weights is not None):
        raise SegtrainError("loss=unet_weighted computes its own pixel weights for one task; drop "
                            "loss.class_weights and use a single-task dataset")
    if loss_cfg.name == "bootstrap":
        if (loss_cfg.top_k is None) == (loss_cfg.top_fraction is None):
            raise SegtrainError("loss=bootstrap: set exactly one of loss.top_k (pixels per image) and "
                                "loss.top_fraction (of each image's labelled pixels)")
        if dataset.tasks:
            raise SegtrainError("loss=bootstrap ranks one task's pixels; use loss=cross_entropy for "
                                f"{len(dataset.tasks)} tasks")

    def loss_fn(logits, targets, pixel_weights=None):
        if sample_rate < 1:
            targets = drop_cells(targets, sample_rate, cell, dataset.ignore_index)
        if loss_cfg.name == "bootstrap":  # a mean per image, then over the batch (DDP averages the ranks)
            return bootstrapped_cross_entropy(logits, targets, dataset.ignore_index, loss_cfg.top_k,
                                              loss_cfg.top_fraction, weights)
        if loss_cfg.name == "unet_weighted":  # the weights come with the batch (PixelWeighted)
            return unet_weighted_loss(logits, targets, pixel_weights, dataset.ignore_index, loss_cfg.normalize,
                                      denominator)
        return segmentation_loss(logits, targets, num_classes, dataset.ignore_index, dataset.tasks,
                                 loss_cfg.normalize, weights, denominator)

    return loss_fn
