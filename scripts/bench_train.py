"""Training throughput of segtrain's trainer against a bare PyTorch loop on the same model, data and batch.

    python scripts/bench_train.py                      # the default run's model and data
    python scripts/bench_train.py --iters 60 model=fcn32s trainer.batch_size=4 trainer.device=cuda
    python scripts/bench_train.py trainer.device=cuda trainer.amp=bf16 trainer.channels_last=true trainer.compile=true
    python scripts/bench_train.py --options            # eager fp32 vs channels_last, bf16, compile (the step)
    python scripts/bench_train.py --losses             # each loss's step, and the loss alone, against cross-entropy

The trainer runs as `segtrain` does (progress, loss logging, TensorBoard, checkpoints at their intervals);
its validation is left out of its speed, and the bare loop has none. Both are timed from the first batch to the
last step, alternately, `--repeats` times. Each trainer run is divided by the bare run right after it and the
median of those paired ratios is reported: a shared 2-core machine drifts by several per cent between runs.
--options and --losses time the bare loop's step the same way, interleaved, each against its baseline; --losses
also times each loss alone (forward and backward on logits of the step's shape, the first batch's labels).
"""
import argparse
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from segtrain.config import compose
from segtrain.data import build_dataset, pad_collate
from segtrain.data.samplers import InfiniteSampler
from segtrain.engine import autocast_context
from segtrain.losses import build_loss
from segtrain.optim import build_optimizer, build_schedule
from segtrain.models import build_model_from_config
from segtrain.runtime import resolve_num_workers, select_amp, select_device
from segtrain.train import train


def bare_loop(cfg, iters: int, warmup: int = 0, segtrain_loss: bool = False) -> float:
    """The same work written as plainly as possible: images/s over `iters` steps after `warmup` untimed ones.
    The loss is torch's cross-entropy, or with `segtrain_loss` the one cfg.loss names (segtrain.losses)."""
    tc = cfg.trainer
    torch.manual_seed(cfg.seed)
    device = select_device(tc.device)
    autocast = autocast_context(device, select_amp(tc.amp, device))
    dataset = build_dataset(cfg.dataset, cfg.dataset.train_split)
    loader = DataLoader(dataset, batch_size=tc.batch_size, sampler=InfiniteSampler(len(dataset), cfg.seed),
                        num_workers=resolve_num_workers(tc.num_workers, dataset), pin_memory=device.type == "cuda",
                        drop_last=True)
    memory_format = torch.channels_last if tc.channels_last else torch.contiguous_format
    model = build_model_from_config(cfg, cfg.dataset.num_classes).to(device, memory_format=memory_format).train()
    step_model = torch.compile(model) if tc.compile else model
    optimizer = build_optimizer(model, **cfg.optimizer)
    scheduler = build_schedule(optimizer, iters + warmup, **cfg.schedule)
    scaler = torch.amp.GradScaler("cuda", enabled=tc.amp == "fp16" and device.type == "cuda")
    loss_fn = build_loss(cfg.loss, cfg.dataset.num_classes, dataset, device, model.output_stride) \
        if segtrain_loss else lambda logits, targets: F.cross_entropy(logits.float(), targets, ignore_index=255)
    batches = iter(loader)
    began = time.perf_counter()
    for step in range(warmup + iters):
        if step == warmup:  # compile and autotuning happen in the first steps
            if device.type == "cuda":
                torch.cuda.synchronize()
            began = time.perf_counter()
        images, targets = next(batches)
        images = images.to(device, non_blocking=True, memory_format=memory_format)
        targets = targets.to(device, non_blocking=True)
        with autocast:
            loss = loss_fn(step_model(images), targets)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return iters * tc.batch_size / (time.perf_counter() - began)


# --options: each speed option's training step against eager fp32, in the bare loop (the step itself)
OPTIONS = {
    "eager fp32": [],
    "channels_last": ["trainer.channels_last=true"],
    "bf16 autocast": ["trainer.amp=bf16"],
    "bf16 + channels_last": ["trainer.amp=bf16", "trainer.channels_last=true"],
    "compile": ["trainer.compile=true"],
}


def compose_config(overrides):
    return compose(overrides)


def compare_options(args, base) -> None:
    speeds = {name: [] for name in OPTIONS}
    for _ in range(args.repeats):  # interleaved, so drift hits every option alike
        for name, extra in OPTIONS.items():
            cfg = compose_config(base + extra)
            amp = select_amp(cfg.trainer.amp, select_device(cfg.trainer.device))
            if "trainer.amp=bf16" in extra and amp == "off":
                speeds.pop(name, None)  # no bfloat16 here: select_amp said so
                continue
            speeds[name].append(bare_loop(cfg, args.iters, warmup=args.warmup))
    eager = speeds["eager fp32"]
    print(f"{args.iters} timed steps after {args.warmup} warm-up, {args.repeats} interleaved repeats, "
          f"CPU {torch.get_num_threads()} threads, torch {torch.__version__}")
    for name, runs in speeds.items():
        ratio = statistics.median(r / e for r, e in zip(runs, eager))
        print(f"{name:22s} {statistics.median(runs):8.2f} images/s median  x{ratio:.2f} vs eager fp32 "
              f"(runs: {', '.join(f'{r:.1f}' for r in runs)})")


# --losses: each loss against cross-entropy
LOSSES = ("cross_entropy", "dice", "dice_ce", "focal", "lovasz")


def loss_alone(cfg, iters: int, warmup: int) -> float:
    """Seconds per forward and backward of cfg.loss alone, on random logits of one batch's shape (float32, on the
    configured device) and that batch's labels (ignored pixels as the data has them)."""
    device = select_device(cfg.trainer.device)
    dataset = build_dataset(cfg.dataset, cfg.dataset.train_split)
    _, targets, *_ = next(iter(DataLoader(dataset, batch_size=cfg.trainer.batch_size, collate_fn=pad_collate)))
    targets = targets.to(device)
    logits = torch.randn(len(targets), cfg.dataset.num_classes, *targets.shape[-2:], device=device,
                         generator=torch.Generator(device).manual_seed(0), requires_grad=True)
    loss_fn = build_loss(cfg.loss, cfg.dataset.num_classes, dataset, device)
    for step in range(warmup + iters):
        if step == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            began = time.perf_counter()
        logits.grad = None
        loss_fn(logits, targets).backward()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - began) / iters


def compare_losses(args, base) -> None:
    steps = {name: [] for name in LOSSES}
    alone = {name: [] for name in LOSSES}
    for _ in range(args.repeats):  # interleaved, so drift hits every loss alike
        for name in LOSSES:
            cfg = compose_config(base + [f"loss={name}"])
            steps[name].append(bare_loop(cfg, args.iters, warmup=args.warmup, segtrain_loss=True))
            alone[name].append(loss_alone(cfg, args.iters, args.warmup))
    cfg = compose_config(base)
    device = select_device(cfg.trainer.device)
    where = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"model {cfg.model.name} width {cfg.model.width}, {cfg.dataset.name}, batch {cfg.trainer.batch_size}, "
          f"{args.iters} timed steps after {args.warmup} warm-up, {args.repeats} interleaved repeats, {where}, "
          f"torch {torch.__version__}")
    print(f"{'loss':14s} {'step img/s':>10s} {'step time x CE':>14s} {'loss alone ms':>13s} {'loss time x CE':>14s}")
    for name in LOSSES:  # time ratios: the median of each repeat's paired ratio
        step_ratio = statistics.median(ce / speed for ce, speed in zip(steps["cross_entropy"], steps[name]))
        alone_ratio = statistics.median(t / ce for t, ce in zip(alone[name], alone["cross_entropy"]))
        print(f"{name:14s} {statistics.median(steps[name]):10.2f} {step_ratio:14.2f} "
              f"{1000 * statistics.median(alone[name]):13.3f} {alone_ratio:14.2f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iters", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--options", action="store_true", help="compare the speed options against eager fp32")
    parser.add_argument("--losses", action="store_true", help="compare each loss's step against cross-entropy")
    parser.add_argument("--warmup", type=int, default=10, help="untimed first steps with --options and --losses")
    parser.add_argument("overrides", nargs="*", help="segtrain config overrides")
    args = parser.parse_args()
    base = [f"trainer.max_iters={args.iters}", "trainer.val_interval=1000000", "dataset.num_val=8", *args.overrides]
    if args.options:
        return compare_options(args, base)
    if args.losses:
        return compare_losses(args, base)
    cfg = compose_config(base)
    trainer_speeds, bare_speeds = [], []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as run_dir:
            trainer_speeds.append(train(cfg, run_dir)["train_images_per_s"])
        bare_speeds.append(bare_loop(cfg, args.iters))
    trainer, bare = statistics.median(trainer_speeds), statistics.median(bare_speeds)
    ratio = statistics.median(t / b for t, b in zip(trainer_speeds, bare_speeds))
    device = select_device(cfg.trainer.device)
    where = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"model {cfg.model.name} width {cfg.model.width}, {cfg.dataset.name} {cfg.dataset.image_size}px, "
          f"batch {cfg.trainer.batch_size}, {args.iters} iterations, {where}, torch {torch.__version__}")
    print(f"trainer   {trainer:8.2f} images/s median (runs: {', '.join(f'{s:.2f}' for s in trainer_speeds)})")
    print(f"bare loop {bare:8.2f} images/s median (runs: {', '.join(f'{s:.2f}' for s in bare_speeds)})")
    print(f"trainer / bare = {ratio:.3f} (median of paired runs; overhead {100 * (1 - ratio):+.1f}%)")


if __name__ == "__main__":
    main()
