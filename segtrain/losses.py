"""The training losses and what they need: cross-entropy over the labelled pixels (per task for multi-task data,
mean or FCN's sum, class weights), FCN's cell sampling, FRRN's bootstrapped cross-entropy, U-Net's weighted
cross-entropy (Ronneberger et al. 2015, eq. 2): w(x) = w_c(x) + w0 exp(-(d1 + d2)^2 / 2 sigma^2),
w_c balancing the class frequencies and d1, d2 the distances to the nearest and second nearest object, so the
thin background gaps between touching objects weigh most; the focal loss (Lin et al. 2017), the soft Dice loss
(Milletari et al. 2016), Dice + cross-entropy (nnU-Net, Isensee et al. 2021) and Lovasz-softmax (Berman et al.
2018). Each takes logits (N, C, H, W) and long targets (N, H, W), 255 (or any value outside [0, C)) ignored, and
returns a scalar float32 tensor."""
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


def over_tasks(one_task, logits, targets, num_classes: int, tasks=None, class_weights=None):
    """The sum over the dataset's tasks (one for most datasets) of one_task(scores, target, weights): scores
    (N, C_t, H, W) float32 of the task's channels, its target (N, H, W) and its slice of `class_weights` (C_t,) or
    None."""
    loss = 0
    for t, (_, channels) in enumerate(task_heads(num_classes, tasks)):
        weight = None if class_weights is None else class_weights[channels]
        loss = loss + one_task(logits[:, channels].float(), task_target(targets, t, tasks), weight)
    return loss


FOCAL_FLOOR = 1e-7  # 1 - p_t is clamped to this before ** gamma: its gradient stays finite at p_t = 1, gamma < 1


def cross_entropy(scores, target, weight, ignore_index: int, normalize: bool = True, denominator=None,
                  gamma: float = 0.0):
    """One task's cross-entropy over its labelled pixels: their mean, or with normalize=False their sum; `weight`
    (C,) weighs each class as torch's cross_entropy does (the mean is then over the summed weights).
    `gamma` > 0 makes it the focal loss of Lin et al. 2017 (Focal Loss for Dense Object Detection, eq. 5),
    FL = -alpha_t (1 - p_t)^gamma log p_t with softmax p_t and alpha_t = weight[t], normalised as cross-entropy
    is, so that gamma = 0 is exactly cross-entropy with the same weights. `denominator(local)` turns this batch's
    labelled-pixel count (or weight) into the one to divide by (distributed training: the whole global batch's,
    over the number of ranks)."""
    if gamma:
        per_pixel = F.cross_entropy(scores, target, ignore_index=ignore_index, reduction="none")  # -log p_t
        # 1 - p_t as -expm1(-CE): exact where p_t is near 1, where the focus matters most
        per_pixel = (-torch.expm1(-per_pixel)).clamp_min(FOCAL_FLOOR) ** gamma * per_pixel
        if weight is not None:
            per_pixel = per_pixel * weight[target.clamp(0, scores.shape[1] - 1)]
        total = per_pixel.sum()
    else:
        total = F.cross_entropy(scores, target, weight=weight, ignore_index=ignore_index, reduction="sum")
    if not normalize:
        return total
    # counted on the device (no host sync); a batch without labelled pixels (or only zero-weight ones) adds 0,
    # where cross_entropy's mean would be 0 / 0 = NaN and end the run
    labelled = (target != ignore_index) & (target >= 0) & (target < scores.shape[1])
    local = labelled.sum().float() if weight is None else \
        (weight[target.clamp(0, scores.shape[1] - 1)] * labelled).sum()
    return total / (denominator(local) if denominator else local.clamp_min(torch.finfo(local.dtype).tiny))


def segmentation_loss(logits, targets, num_classes: int, ignore_index: int, tasks=None, normalize: bool = True,
                      class_weights=None, denominator=None):
    """Cross-entropy over the pixels that are not ignored, summed over the tasks (see cross_entropy);
    `class_weights` (num_classes,) weigh each class."""
    return over_tasks(partial(cross_entropy, ignore_index=ignore_index, normalize=normalize, denominator=denominator),
                      logits, targets, num_classes, tasks, class_weights)


DICE_EPS = 1e-7  # the smallest denominator of a class's Dice (segmentation_models_pytorch's eps)


def soft_dice_loss(scores, target, weight, ignore_index: int, global_sum=None):
    """One task's soft Dice loss over the softmax: per class c, over the batch's labelled pixels,
    D_c = 2 sum(p_c g_c) / (sum p_c + sum g_c) (Milletari et al. 2016, V-Net, with the plain sums in the
    denominator as Sudre et al. 2017 and nnU-Net write it, rather than V-Net's squares), and the loss
    sum_c w_c m_c (1 - D_c) / sum_c w_c with m_c = 1 where class c has labelled pixels in the batch, else 0, and w_c
    = `weight` (default 1). This is segmentation_models_pytorch's DiceLoss(mode="multiclass", ignore_index=255,
    smooth=0, class_weights=w) exactly: a class absent from the batch's labels adds nothing (its Dice, 0 / sum p_c,
    has no gradient) but still counts in the mean, so a batch with fewer classes weighs less. The sums run over the
    whole batch ("batch Dice"); `global_sum` sums them over the ranks of a distributed run, with its gradient,
    so that every rank's loss is the global batch's (segtrain.distributed.all_reduce_sum_with_grad)."""
    classes = scores.shape[1]
    labelled = (target != ignore_index) & (target >= 0) & (target < classes)
    probs = scores.softmax(1) * labelled[:, None]
    truth = (target[:, None] == torch.arange(classes, device=target.device).view(1, -1, *[1] * (target.dim() - 1))) \
        & labelled[:, None]
    dims = (0, *range(2, scores.dim()))
    sums = torch.stack([(probs * truth).sum(dims), probs.sum(dims), truth.sum(dims).float()])
    if global_sum is not None:
        sums = global_sum(sums)
    intersection, predicted, actual = sums
    per_class = (1 - 2 * intersection / (predicted + actual).clamp_min(DICE_EPS)) * (actual > 0)
    if weight is None:
        return per_class.mean()
    return (per_class * weight).sum() / weight.sum().clamp_min(torch.finfo(weight.dtype).tiny)


def lovasz_softmax_loss(scores, target, weight, ignore_index: int):
    """One task's Lovasz-softmax loss (Berman, Rannen Triki, Blaschko, CVPR 2018, section 3 and Algorithm 1, as the
    authors' release computes it with classes="present", per_image=False): for each class present in the batch's
    labels, the Lovasz extension of its Jaccard loss applied to the errors |[y = c] - p_c| over the batch's
    labelled pixels, then the mean over those classes (0 for a batch without labels). segmentation_models_pytorch's
    LovaszLoss(mode="multiclass", ignore_index=255) is the same loss. `weight` must be None (a class weight has
    no meaning here; the config check refuses loss.class_weights with loss=lovasz). It sorts the (C, N*H*W) errors
    of all classes at once: about 40 bytes per class and pixel of the batch while the loss and its gradient run."""
    if weight is not None:
        raise ValueError("lovasz_softmax_loss takes no class weights")
    classes = scores.shape[1]
    labelled = (target != ignore_index) & (target >= 0) & (target < classes)
    probs = scores.softmax(1).movedim(1, 0).reshape(classes, -1)  # (C, P)
    labelled = labelled.reshape(1, -1)
    truth = (target.reshape(1, -1) == torch.arange(classes, device=target.device)[:, None]) & labelled
    # ignored pixels get the error -1: below every real one (>= 0), so they sort last and leave every real
    # pixel's place, and its share of the Jaccard loss, as it would be without them (no host sync to drop them)
    errors = torch.where(labelled, (truth.float() - probs).abs(), -1.0)
    errors, order = errors.sort(dim=1, descending=True)
    truth = truth.gather(1, order).float()
    positives = truth.sum(1, keepdim=True)
    jaccard = 1 - (positives - truth.cumsum(1)) / (positives + (1 - truth).cumsum(1))
    gradient = torch.cat([jaccard[:, :1], jaccard[:, 1:] - jaccard[:, :-1]], 1)  # Algorithm 1's lovasz_grad
    per_class = (errors.clamp_min(0) * gradient).sum(1)
    present = (positives[:, 0] > 0).float()
    return (per_class * present).sum() / present.sum().clamp_min(1)


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
    the cross-entropy (and focal) mean is over the global batch's labelled pixels and the Dice sums are the global
    batch's (DDP then averages the gradients, so N processes step as one would); Lovasz-softmax and the
    bootstrapped loss are each process's own batch's, their gradients averaged. `class_weights` are
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
    global_sum = distributed.all_reduce_sum_with_grad if world > 1 else None

    name = str(loss_cfg.name)
    if name == "unet_weighted" and (dataset.tasks or weights is not None):
        raise SegtrainError("loss=unet_weighted computes its own pixel weights for one task; drop "
                            "loss.class_weights and use a single-task dataset")
    if name == "bootstrap":
        if (loss_cfg.top_k is None) == (loss_cfg.top_fraction is None):
            raise SegtrainError("loss=bootstrap: set exactly one of loss.top_k (pixels per image) and "
                                "loss.top_fraction (of each image's labelled pixels)")
        if dataset.tasks:
            raise SegtrainError("loss=bootstrap ranks one task's pixels; use loss=cross_entropy for "
                                f"{len(dataset.tasks)} tasks")
    ignore = dataset.ignore_index
    cross_entropy_part = partial(cross_entropy, ignore_index=ignore, normalize=loss_cfg.normalize,
                                 denominator=denominator, gamma=loss_cfg.gamma if name == "focal" else 0.0)
    dice_part = partial(soft_dice_loss, ignore_index=ignore, global_sum=global_sum)
    per_task = {
        "cross_entropy": cross_entropy_part,
        "focal": cross_entropy_part,
        "dice": dice_part,
        # nnU-Net's DC_and_CE_loss: the two with weight 1 each
        "dice_ce": lambda scores, target, weight: cross_entropy_part(scores, target, weight) + dice_part(
            scores, target, weight),
        "lovasz": partial(lovasz_softmax_loss, ignore_index=ignore),
    }

    def loss_fn(logits, targets, pixel_weights=None):
        if sample_rate < 1:
            targets = drop_cells(targets, sample_rate, cell, ignore)
        if name == "bootstrap":  # a mean per image, then over the batch (DDP averages the ranks)
            return bootstrapped_cross_entropy(logits, targets, ignore, loss_cfg.top_k, loss_cfg.top_fraction,
                                              weights)
        if name == "unet_weighted":  # the weights come with the batch (PixelWeighted)
            return unet_weighted_loss(logits, targets, pixel_weights, ignore, loss_cfg.normalize, denominator)
        return over_tasks(per_task[name], logits, targets, num_classes, dataset.tasks, weights)

    return loss_fn
