"""One training step and one evaluation pass, on plain arguments (no config objects below this line). The losses
are segtrain.losses'."""
from contextlib import nullcontext

import torch
import torch.nn.functional as F

from .inference import upsample_to_labels
from .metrics import ConfusionMatrix


def autocast_context(device: torch.device, amp: str):
    """The autocast context for trainer.amp as select_amp resolved it: off | fp16 | bf16 (bf16 also on CPUs)."""
    if amp == "off" or device.type not in ("cuda", "cpu"):
        return nullcontext()
    return torch.autocast(device.type, dtype=torch.float16 if amp == "fp16" else torch.bfloat16)


def task_heads(num_classes: int, tasks=None):
    """[(task name, slice of the output channels)]: one head, or one per task of a multi-task dataset (SIFT Flow's
    semantic + geometric: the network scores 33 + 3 channels and each task's softmax runs over its own)."""
    if not tasks:
        return [(None, slice(0, num_classes))]
    heads, start = [], 0
    for name, class_names in tasks:
        heads.append((name, slice(start, start + len(class_names))))
        start += len(class_names)
    return heads


def task_target(targets: torch.Tensor, index: int, tasks) -> torch.Tensor:
    """Multi-task labels are (N, tasks, H, W); single-task (N, H, W)."""
    return targets[:, index] if tasks else targets


def train_step(model, batches, optimizer, scheduler, scaler, autocast, loss_fn):
    """One optimizer step over `batches` (a list of (images, targets, *extra), extra e.g. pixel weights, passed
    to loss_fn; more than one batch accumulates their gradients, each loss divided by their number as Caffe's
    iter_size does). Returns the loss as a detached tensor (no host sync)."""
    optimizer.zero_grad(set_to_none=True)
    total = 0
    for images, *targets in batches:
        with autocast:
            loss = loss_fn(model(images), *targets) / len(batches)
        scaler.scale(loss).backward()
        total = total + loss.detach()
    scaler.step(optimizer)
    scaler.update()
    scheduler.step()
    return total


@torch.inference_mode()
def evaluate(model, loader, num_classes: int, device, autocast, keep=(), tasks=None, predict=None,
             reduce=None, progress=None):
    """Metrics over the whole loader, and the (image, target, prediction) triples of the items at positions
    `keep` (in loader order) on the CPU.
    With several tasks the metrics are the first task's, plus {"tasks": {name: metrics}} for every task.
    `predict(model, images)` gives the scores to take the argmax of (default: the model's logits); `reduce`
    sums each confusion matrix in place across processes before the metrics are taken. Batches of resized images
    with labels at their stored size (pad_collate's third entry) are scored there, the scores upsampled."""
    predict = predict or (lambda net, images: net(images))
    reduce = reduce or (lambda hist: hist)
    was_training = model.training
    model.eval()
    heads = task_heads(num_classes, tasks)
    confusions = [ConfusionMatrix(channels.stop - channels.start, device) for _, channels in heads]
    kept, seen, keep = [], 0, set(keep)
    for images, targets, *sizes in (progress(loader) if progress else loader):
        images, targets = images.to(device, non_blocking=True), targets.to(device, non_blocking=True)
        with autocast:
            logits = predict(model, images)
        if sizes:
            logits = upsample_to_labels(logits, sizes[0], targets.shape[-2:])
        preds = [logits[:, channels].argmax(1) for _, channels in heads]
        for t, confusion in enumerate(confusions):
            confusion.update(task_target(targets, t, tasks), preds[t])
        wanted = [i for i in range(len(images)) if seen + i in keep]
        if wanted:
            shown = images if not sizes else F.interpolate(  # panels at the label's size
                images.float(), size=targets.shape[-2:], mode="bilinear", align_corners=False)
            kept += [(shown[i].cpu(), task_target(targets, 0, tasks)[i].cpu(), preds[0][i].cpu()) for i in wanted]
        seen += len(images)
    model.train(was_training)
    for confusion in confusions:  # distributed: each rank saw a shard of the split
        reduce(confusion.hist)
    metrics = confusions[0].compute()
    if tasks:
        metrics["tasks"] = {name: confusion.compute() for (name, _), confusion in zip(heads, confusions)}
    return metrics, kept


@torch.inference_mode()
def score_for_crf(model, loader, device, autocast, predict, to_rgb):
    """(rgb image, class probabilities, target) for every image of the loader, the probabilities on the
    evaluating device and at the label's size (resized images: upsampled, with the image). `predict(model,
    images)` gives class probabilities; `to_rgb` turns a normalised image back into (H, W, 3) uint8."""
    model.eval()
    for images, targets, *sizes in loader:
        images = images.to(device, non_blocking=True)
        with autocast:
            probs = predict(model, images).float()
        if sizes:  # resized images: the CRF runs at the label's size, on the image upsampled to it
            probs = upsample_to_labels(probs, sizes[0], targets.shape[-2:])
            images = F.interpolate(images.float(), size=targets.shape[-2:], mode="bilinear", align_corners=False)
        for image, prob, target in zip(images, probs, targets):
            yield to_rgb(image), prob, target


@torch.inference_mode()
def evaluate_with_crf(scored, num_classes: int, refine, progress=None):
    """(metrics of the network's prediction, metrics after the CRF) over `scored` (rgb, probabilities, target)
    items (score_for_crf's). `refine(jobs)` runs the CRF (segtrain.crf.crf_refiner: on the evaluating device, or
    in CPU processes), fed lazily while the network scores."""
    plain, refined = None, ConfusionMatrix(num_classes)

    def jobs():
        nonlocal plain
        for rgb, probs, target in scored:
            if plain is None:  # on the probabilities' device: no host sync per image while the network scores
                plain = ConfusionMatrix(num_classes, probs.device)
            plain.update(target.to(probs.device), probs.argmax(0))
            yield rgb, probs, target

    refined_images = refine(jobs())
    for labels, target in (progress(refined_images) if progress else refined_images):
        refined.update(target, torch.from_numpy(labels).long())
    return (plain or ConfusionMatrix(num_classes)).compute(), refined.compute()
