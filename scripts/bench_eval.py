"""Evaluation speed: segtrain's evaluation pass (segtrain.engine.evaluate with the inference group's scoring, as
`segtrain-eval` runs it) against a bare `torch.inference_mode()` loop over the same split, model and batches.

    python scripts/bench_eval.py                                   # the demo's model on the synthetic val split
    python scripts/bench_eval.py --repeats 5 inference=multiscale  # any evaluation or config override

Both produce the confusion-matrix metrics; the bare loop is the least code that does: forward, argmax, bincount.
Paired runs, alternately; the median of the paired ratios is reported."""
import argparse
import statistics
import time

import torch

from segtrain.config import compose, to_plain
from segtrain.data import build_dataset
from segtrain.engine import autocast_context, evaluate
from segtrain.inference import predict_scores
from segtrain.models import build_model_from_config
from segtrain.runtime import select_amp, select_device, val_loader_for


def bare_loop(model, loader, num_classes: int, device, predict) -> float:
    began = time.perf_counter()
    hist = torch.zeros(num_classes * num_classes, dtype=torch.int64, device=device)
    with torch.inference_mode():
        for images, targets in loader:
            images, targets = images.to(device), targets.to(device)
            preds = predict(model, images).argmax(1)
            keep = targets < num_classes
            hist += torch.bincount(num_classes * targets[keep] + preds[keep], minlength=num_classes ** 2)
    hist.sum().item()
    return len(loader.dataset) / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    cfg = compose(args.overrides)
    device = select_device(cfg.trainer.device)
    autocast = autocast_context(device, select_amp(cfg.trainer.amp, device))
    dataset = build_dataset(cfg.dataset, cfg.dataset.val_split, evaluation=True)
    num_classes = len(dataset.class_names)
    torch.manual_seed(0)
    model = build_model_from_config(cfg, num_classes, dataset.input_channels).to(device).eval()
    inference = to_plain(cfg.inference)

    def predict(net, images):
        return predict_scores(net, images, **inference)

    loader = val_loader_for(cfg, dataset, device)
    segtrain_speeds, bare_speeds = [], []
    for _ in range(args.repeats):
        began = time.perf_counter()
        evaluate(model, loader, num_classes, device, autocast, predict=predict)
        segtrain_speeds.append(len(dataset) / (time.perf_counter() - began))
        bare_speeds.append(bare_loop(model, loader, num_classes, device, predict))
    ratio = statistics.median(s / b for s, b in zip(segtrain_speeds, bare_speeds))
    print(f"model {cfg.model.name} width {cfg.model.width}, {cfg.dataset.name} {cfg.dataset.val_split} "
          f"({len(dataset)} images), inference {inference['mode']} scales {inference['scales']} flip "
          f"{inference['flip']}, batch {cfg.trainer.val_batch_size}, {device}, torch {torch.__version__}")
    print(f"segtrain evaluate {statistics.median(segtrain_speeds):8.2f} images/s median "
          f"(runs: {', '.join(f'{s:.1f}' for s in segtrain_speeds)})")
    print(f"bare loop         {statistics.median(bare_speeds):8.2f} images/s median "
          f"(runs: {', '.join(f'{s:.1f}' for s in bare_speeds)})")
    print(f"segtrain / bare = {ratio:.3f} (median of paired runs)")


if __name__ == "__main__":
    main()
