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


def train_step(model, images, targets, optimizer, scheduler, scaler, autocast, ignore_index: int):
    """Forward, backward and step on one batch; returns the loss as a detached tensor (no host sync)."""
    with autocast:
        logits = model(images)
        loss = F.cross_entropy(logits.float(), targets, ignore_index=ignore_index)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    scheduler.step()
    return loss.detach()


@torch.no_grad()
def evaluate(model, loader, num_classes: int, device, autocast, num_keep: int = 0):
    """Metrics over the whole loader, and the first `num_keep` (image, target, prediction) triples on the CPU."""
    was_training = model.training
    model.eval()
    confusion = ConfusionMatrix(num_classes, device)
    kept = []
    for images, targets in loader:
        images, targets = images.to(device, non_blocking=True), targets.to(device, non_blocking=True)
        with autocast:
            preds = model(images).argmax(1)
        confusion.update(targets, preds)
        if len(kept) < num_keep:
            kept.extend(zip(images.cpu(), targets.cpu(), preds.cpu()))
    model.train(was_training)
    return confusion.compute(), kept[:num_keep]
