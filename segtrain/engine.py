"""One training step and one evaluation pass, on plain arguments (no config objects below this line)."""
from contextlib import nullcontext

import torch
import torch.nn.functional as F

from .metrics import ConfusionMatrix


def autocast_context(device: torch.device, amp: str):
    """The autocast context for trainer.amp (off | fp16 | bf16); AMP runs on CUDA only."""
    if amp == "off" or device.type != "cuda":
        return nullcontext()
    return torch.autocast("cuda", dtype=torch.float16 if amp == "fp16" else torch.bfloat16)


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


def segmentation_loss(logits, targets, num_classes: int, ignore_index: int, tasks=None):
    """Cross-entropy over the pixels that are not ignored; with several tasks, the sum of their losses."""
    return sum(F.cross_entropy(logits[:, channels].float(), task_target(targets, t, tasks), ignore_index=ignore_index)
               for t, (_, channels) in enumerate(task_heads(num_classes, tasks)))


def train_step(model, images, targets, optimizer, scheduler, scaler, autocast, ignore_index: int, tasks=None):
    """Forward, backward and step on one batch; returns the loss as a detached tensor (no host sync)."""
    with autocast:
        logits = model(images)
        loss = segmentation_loss(logits, targets, logits.shape[1], ignore_index, tasks)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    scheduler.step()
    return loss.detach()


@torch.no_grad()
def evaluate(model, loader, num_classes: int, device, autocast, num_keep: int = 0, tasks=None, predict=None):
    """Metrics over the whole loader, and the first `num_keep` (image, target, prediction) triples on the CPU.
    With several tasks the metrics are the first task's, plus {"tasks": {name: metrics}} for every task.
    `predict(model, images)` gives the scores to take the argmax of (default: the model's logits)."""
    predict = predict or (lambda net, images: net(images))
    was_training = model.training
    model.eval()
    heads = task_heads(num_classes, tasks)
    confusions = [ConfusionMatrix(channels.stop - channels.start, device) for _, channels in heads]
    kept = []
    for images, targets in loader:
        images, targets = images.to(device, non_blocking=True), targets.to(device, non_blocking=True)
        with autocast:
            logits = predict(model, images)
        preds = [logits[:, channels].argmax(1) for _, channels in heads]
        for t, confusion in enumerate(confusions):
            confusion.update(task_target(targets, t, tasks), preds[t])
        if len(kept) < num_keep:
            kept.extend(zip(images.cpu(), task_target(targets, 0, tasks).cpu(), preds[0].cpu()))
    model.train(was_training)
    metrics = confusions[0].compute()
    if tasks:
        metrics["tasks"] = {name: confusion.compute() for (name, _), confusion in zip(heads, confusions)}
    return metrics, kept[:num_keep]


@torch.no_grad()
def evaluate_with_crf(model, loader, num_classes: int, device, autocast, predict, refine, to_rgb):
    """(metrics of the network's prediction, metrics after the CRF) over the whole loader. `predict(model, images)`
    gives class probabilities; `refine(jobs)` runs
    the CRF on (rgb image, probabilities, target) jobs in parallel (segtrain.crf.crf_refiner); `to_rgb` turns a
    normalised image back into (H, W, 3) uint8."""
    model.eval()
    plain, refined = ConfusionMatrix(num_classes), ConfusionMatrix(num_classes)

    def jobs():
        for images, targets in loader:
            with autocast:
                probs = predict(model, images.to(device, non_blocking=True)).float()
            plain.update(targets, probs.argmax(1).cpu())
            for image, prob, target in zip(images, probs.cpu().numpy(), targets):
                yield to_rgb(image), prob, target

    for labels, target in refine(jobs()):
        refined.update(target, torch.from_numpy(labels).long())
    return plain.compute(), refined.compute()
