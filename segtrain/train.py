"""train(cfg, run_dir): seed -> data -> model -> optimiser -> resume -> loop (validate, checkpoint) -> metrics.

    segtrain                                   # FCN-8s on the built-in synthetic scenes
    segtrain model=fcn32s trainer.max_iters=500
    segtrain -m optimizer.lr=1e-3,1e-4         # a sweep: one run dir (and TensorBoard run) per job
    segtrain hydra.run.dir=outputs/RUN trainer.resume=auto   # continue RUN from its last.pt
    torchrun --nproc_per_node=2 -m segtrain.cli.train ...   # several processes: trainer.batch_size is global

The checkpoints' contents and timing are segtrain.checkpoint.Checkpointer's; the logs', TensorBoard's and
metrics.json's segtrain.runlog.RunLogger's. The loop below only steps, validates and asks them to save and write.
"""
import copy
import gc
import logging
import math
import signal
import time
from itertools import islice
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from . import distributed
from .checkpoint import Checkpointer, find_resume_checkpoint, init_from_checkpoint, remove_stale_temporaries
from .config import check_config, override_argument, to_plain
from .config.schemas import MIN_SIDE
from .data import build_dataset, dataset_info, item_name, shared_images
from .data.augment import Augmented
from .data.files import FileDataset, resized_size
from .data.labels import IGNORE_INDEX
from .data.samplers import InfiniteSampler
from .data.scan import class_weights as class_weights_from_scan
from .data.scan import problems_line, scan_labels
from .engine import autocast_context, evaluate, train_step
from .errors import SegtrainError
from .losses import PixelWeighted, build_loss, pixel_weights
from .metrics import check_monitor, monitored
from .models import build_model_from_config, count_parameters
from .optim import build_optimizer, build_schedule
from .outputs import require_writable
from .processes import shutdown_workers, worker_signals
from .runlog import RunLogger
from .runtime import (nondeterministic_ops_named, resolve_deterministic, resolve_num_workers, seed_everything,
                      select_amp, select_device, val_loader_for)
from .signals import StopRequests, TrainingInterrupted
from .visualize import evenly_spaced

log = logging.getLogger("segtrain")


FROM_CONFIG = "trainer.resume"  # train(resume_from=): the checkpoint trainer.resume names, if any


def train(cfg, run_dir, resume_from=FROM_CONFIG) -> dict:
    """Train as `cfg` says, writing checkpoints and TensorBoard events under `run_dir`; returns the final
    validation metrics (with `best_mean_iu`, trainer.monitor's best value `best_monitored` and whether the run
    `stopped_early`). `resume_from`: the checkpoint to continue, or None (segtrain's
    console script decides it once, with the config it resumes with); by default the one trainer.resume names.
    Under torchrun every rank runs this; rank 0's run_dir is used."""
    device = distributed.setup(select_device(cfg.trainer.device))
    try:
        return _train(cfg, Path(distributed.broadcast(str(run_dir))), device, resume_from)
    finally:
        distributed.teardown()
        # a sweep runs its jobs in this one process: hand the model's and optimizer's memory back before the next
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()


def _train(cfg, run_dir: Path, device: torch.device, resume_from) -> dict:
    tc = cfg.trainer
    rank, world = distributed.rank(), distributed.world_size()
    main_process = rank == 0
    resume_from = start_run(cfg, run_dir, world, main_process, resume_from)
    deterministic = resolve_deterministic(tc.deterministic, device)
    seed_everything(cfg.seed, deterministic)
    amp = select_amp(tc.amp, device)
    autocast = autocast_context(device, amp)

    cfg, train_set, val_set, class_weights = load_data(cfg, run_dir, main_process)
    model, train_model, memory_format = build_network(cfg, train_set, device, world)
    optimizer = build_optimizer(model, **cfg.optimizer)
    scheduler = build_schedule(optimizer, tc.max_iters, **cfg.schedule)
    scaler = torch.amp.GradScaler("cuda", enabled=amp == "fp16")
    loss_fn = build_loss(cfg.loss, cfg.dataset.num_classes, train_set, device, model.output_stride, world,
                         class_weights)
    checkpointer = Checkpointer(run_dir / "checkpoints", model, optimizer, scheduler, scaler, to_plain(cfg),
                                {"class_names": list(train_set.class_names), "data": dataset_info(val_set),
                                 "class_weights": class_weights}, main_process, tc.best_with_state, tc.monitor,
                                lambda metrics: monitored(metrics, tc.monitor, metric_classes(val_set)),
                                tc.early_stop_patience)
    start_iter = checkpointer.resume(resume_from, device) if resume_from is not None else 0

    workers = resolve_num_workers(tc.num_workers, train_set)
    log.info("device %s%s, %d DataLoader worker(s), %s kernels", device, f" with {amp} autocast" if amp != "off"
             else "", workers, "deterministic" if deterministic else "autotuned (non-deterministic)")
    batches = iter(train_loader_for(cfg, train_set, start_iter, workers, rank, world, device))
    # each rank validates every world-th image; the confusion matrices are summed
    val_loader = val_loader_for(cfg, Subset(val_set, range(rank, len(val_set), world)) if world > 1 else val_set,
                                device)
    # the same evenly spaced validation images in the panels at every validation (not the first few, which in a
    # real dataset are often neighbouring frames)
    panel_items = evenly_spaced(tc.num_vis_images, len(val_loader.dataset))
    logger = RunLogger(run_dir, start_iter, tc.max_iters, tc.batch_size * tc.accumulate, main_process)

    def validate(iteration: int) -> None:
        began = time.perf_counter()
        metrics, samples = evaluate(model, val_loader, cfg.dataset.num_classes, device, autocast, keep=panel_items,
                                    tasks=val_set.tasks, reduce=distributed.all_reduce_sum)
        logger.validation(iteration, metrics, checkpointer.improves(metrics), samples,
                          [item_name(val_loader.dataset, i) for i in panel_items], val_set, began)
        checkpointer.validated(iteration, metrics, logger.progress.trained(), final=iteration == tc.max_iters)
        if checkpointer.stopped_early:
            logger.message(early_stop_line(checkpointer, iteration, tc.early_stop_patience))

    try:
        model.train()
        with StopRequests() as stop, nondeterministic_ops_named(deterministic):
            if checkpointer.validation_missing() and validation_due(start_iter, tc):
                # stopped (or killed) between its checkpoint and its validation: that validation first, as it
                # would have run (it draws from no RNG stream the training uses)
                log.info("iteration %d's validation did not run before the stop: running it now", start_iter)
                validate(start_iter)
            if start_iter < tc.max_iters and checkpointer.patience_spent() and not checkpointer.stopped_early:
                # resumed from a run that stopped early (or has since), with the same patience: it stays stopped
                checkpointer.stopped_early = True
                logger.message(early_stop_line(checkpointer, start_iter, tc.early_stop_patience, resumed=True))
            for iteration in range(start_iter + 1, (start_iter if checkpointer.stopped_early else tc.max_iters) + 1):
                step = [to_device(batch, device, memory_format) for batch in islice(batches, tc.accumulate)]
                loss = train_step(train_model, step, optimizer, scheduler, scaler, autocast, loss_fn)
                last = iteration == tc.max_iters
                # one process reads its flag every iteration; under torchrun the ranks agree (a collective and a
                # host sync) only at log steps, where the loop syncs anyway
                log_step = iteration % tc.log_interval == 0 or last
                signum = stop.pending(device) if world == 1 or log_step else None
                mean_loss = logger.step(iteration, loss, optimizer.param_groups[0]["lr"] if log_step else None)
                if mean_loss is not None and not math.isfinite(mean_loss):
                    raise SegtrainError(f"loss became {mean_loss} by iteration {iteration}; {checkpointer.kept()}")
                if iteration == start_iter + CPU_ESTIMATE_AFTER and device.type == "cpu":
                    warn_if_long_on_cpu(logger.progress, tc.max_iters - iteration, cfg.model.width)
                save_last = iteration % tc.ckpt_interval == 0 or last or signum
                if (validation_due(iteration, tc) or save_last) and not all_finite(model):
                    raise SegtrainError(f"the weights became non-finite by iteration {iteration}; "
                                        f"{checkpointer.kept()}")
                if save_last:  # before validating: an error there then cannot lose this iteration
                    checkpointer.save_last(iteration, logger.progress.trained())
                if signum:
                    message = stop_line(signum, iteration, run_dir)
                    logger.message(message, logging.WARNING)
                    raise TrainingInterrupted(message, signum, stop.previous.get(signum))
                if validation_due(iteration, tc):
                    validate(iteration)
                    if checkpointer.stopped_early:
                        break
            if stop.signum:  # it came during the final validation: nothing was left to stop
                logger.message(f"received {signal_name(stop.signum)} during the final validation: too late to "
                               "stop, the run has finished", logging.WARNING)
        logger.progress.close()
        return logger.finish(checkpointer.metrics, checkpointer.summary(), checkpointer.metrics_iteration,
                             train_set.class_names, checkpointer.config,
                             checkpointer.trained(logger.progress.trained()))
    finally:
        # a failed run (or a failed job of a sweep) ends its workers and writer threads here too: left to exit
        # handlers, idle persistent workers kept the process from exiting
        logger.close()
        shutdown_workers(batches, val_loader)


def to_device(batch, device, memory_format):
    """A batch (images, targets, *per-pixel maps) on the training device, the images in `memory_format`."""
    images, *targets = batch
    return (images.to(device, non_blocking=True, memory_format=memory_format),
            *(t.to(device, non_blocking=True) for t in targets))


def stop_line(signum: int, iteration: int, run_dir: Path) -> str:
    """What a stopped run says: where it stopped and the command that resumes it (resuming takes the stored
    config, so the run dir is all that command needs)."""
    return (f"received {signal_name(signum)}: interrupted at iteration {iteration}; resume with: segtrain "
            f"{override_argument('hydra.run.dir', run_dir)} trainer.resume=auto")


def early_stop_line(checkpointer, iteration: int, patience: int, resumed: bool = False) -> str:
    head = "the resumed run stays stopped" if resumed else "early stop"
    return (f"{head} at iteration {iteration}: {checkpointer.monitor} has not improved for "
            f"{checkpointer.stale} validation{'s' * (checkpointer.stale != 1)} (trainer.early_stop_patience={patience}); best {checkpointer.best:.4f} "
            f"at iteration {checkpointer.best_iteration}, last.pt at iteration {iteration}; to train on, resume "
            "with a larger trainer.early_stop_patience (or null)")


def validation_due(iteration: int, tc) -> bool:
    """Whether the loop validates at `iteration`: every trainer.val_interval and at the end."""
    return iteration % tc.val_interval == 0 or iteration == tc.max_iters


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


CPU_ESTIMATE_AFTER = 10  # iterations measured before estimating a CPU run's length


def warn_if_long_on_cpu(progress, remaining_iters: int, width: float) -> None:
    """The advice fits the run: a narrower network is proposed only where the run has room below its width."""
    seconds = remaining_iters * progress.per_step / max(progress.rate(), 1e-9)
    if seconds > 3600:
        narrower = f"model.width (e.g. {width / 4:g}), " if width > 0.0625 else ""
        log.warning("on this CPU the remaining %d iterations take about %.1f hours (%.1f img/s); shrink the run with "
                    "trainer.max_iters, %sdataset.scale or dataset.short_side, or trainer.batch_size",
                    remaining_iters, seconds / 3600, progress.rate(), narrower)


def resolve_class_weights(setting, train_set, train_scan):
    """loss.class_weights as numbers: as given, or median_frequency / inverse_log from the train labels."""
    if setting is None or not isinstance(setting, str):
        return None if setting is None else [float(w) for w in setting]
    scan = train_scan or scan_labels(train_set, "counting train labels")
    per_task = [len(names) for _, names in train_set.tasks] if train_set.tasks else [len(train_set.class_names)]
    weights = class_weights_from_scan(scan, per_task, setting)
    log.info("loss.class_weights=%s: %s", setting, ", ".join(f"{name} {w:.3f}" for name, w in
                                                           zip(train_set.class_names, weights)))
    return weights


def write_split_lists(folder: Path, datasets: dict) -> None:
    """Which files went to which split, as 'IMAGE LABEL' lines relative to the dataset root (a split file
    dataset=folder reads back)."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, dataset in datasets.items():
        lines = [" ".join(str(Path(p).relative_to(dataset.root)) for p in item) for item in dataset.items]
        (folder / f"{split}.txt").write_text("".join(f"{line}\n" for line in lines))
    log.info("held-out split: %d train / %d val images, listed in %s", len(datasets["train"]),
             len(datasets["val"]), folder)


def start_run(cfg, run_dir: Path, world: int, main_process: bool, resume_from):
    """The checks before any work, and the checkpoint to resume from (None: a new run)."""
    check_config(cfg)
    tc = cfg.trainer
    ckpt_dir = run_dir / "checkpoints"
    if not main_process:
        log.setLevel(logging.WARNING)  # rank 0 reports for everyone
    if tc.batch_size % world:
        raise SegtrainError(f"trainer.batch_size={tc.batch_size} is the global batch and must divide evenly over "
                            f"the {world} processes")
    if main_process:
        require_writable(run_dir, "hydra.run.dir")
        remove_stale_temporaries(ckpt_dir)
    resume_path = find_resume_checkpoint(tc.resume, ckpt_dir) if resume_from == FROM_CONFIG else resume_from
    if resume_path is None and any(ckpt_dir.glob("*.pt")):
        raise SegtrainError(f"{ckpt_dir} already holds checkpoints; continue that run with trainer.resume=auto "
                            f"or choose a new hydra.run.dir (nothing was overwritten)")
    return resume_path


def load_data(cfg, run_dir: Path, main_process: bool):
    """(cfg with dataset.num_classes, dataset.channels and the dataset's paths resolved, train set, val set, class
    weights as numbers). Every label file is
    read once here: a bad one stops the run before any training, not at the first validation. `cfg` itself is
    left as it was."""
    cfg = with_paths_resolved(cfg)
    train_set = build_dataset(cfg.dataset, cfg.dataset.train_split)
    val_set = build_dataset(cfg.dataset, cfg.dataset.val_split, evaluation=True)
    if cfg.dataset.num_classes is None:  # the dataset's own count, stored resolved in every checkpoint
        cfg = copy.deepcopy(cfg)
        cfg.dataset.num_classes = len(train_set.class_names)
    if str(cfg.dataset.get("channels")) == "auto":  # decided once for both splits, stored resolved
        channels = dataset_channels(train_set, val_set)
        cfg = copy.deepcopy(cfg)
        cfg.dataset.channels = str(channels)
        if {train_set.channels, val_set.channels} != {channels}:  # grey and colour files: grey ones expanded
            log.info("dataset.channels=auto: colour and grey images in the splits; reading all as %d channels",
                     channels)
            train_set = build_dataset(cfg.dataset, cfg.dataset.train_split)
            val_set = build_dataset(cfg.dataset, cfg.dataset.val_split, evaluation=True)
    if getattr(train_set, "channels", 3) == 1 and train_set.scale != val_set.scale:  # 16-bit files in one split
        for dataset in (train_set, val_set):
            dataset.hold_grey_at(max(*train_set.scale, *val_set.scale))
    log.info("data: %s, %d train / %d val images, %d classes", cfg.dataset.name, len(train_set), len(val_set),
             cfg.dataset.num_classes)
    for warning in shared_images(train_set, val_set):
        log.warning(warning)
    train_scan = scan_labels(train_set, "checking train labels", keep_going=True) \
        if isinstance(train_set, FileDataset) else None
    val_scan = scan_labels(val_set, "checking val labels", keep_going=True) \
        if isinstance(val_set, FileDataset) else None
    problems = [p for scan in (train_scan, val_scan) if scan is not None for p in scan.problems]
    if problems:  # all of them at once: fix them in one go, not one per run
        for problem in problems:
            log.error("bad label file: %s", problem)
        raise SegtrainError(f"{problems_line(problems)} (all {len(problems)} listed in the run's log)"
                            if len(problems) > 1 else problems[0])
    if train_scan is not None:
        refuse_what_cannot_train(cfg.dataset, train_set, train_scan)
        for warning in absent_classes(train_set, train_scan, val_scan):
            log.warning(warning)
    refuse_what_cannot_be_monitored(cfg.trainer.monitor, val_set, val_scan)
    if train_scan is not None:
        log.info("labels checked: %d train (%d cached) and %d val files", len(train_set), train_scan.cached,
                 len(val_set))
    class_weights = resolve_class_weights(cfg.loss.class_weights, train_set, train_scan)
    if main_process and cfg.dataset.get("val_fraction") is not None:
        write_split_lists(run_dir / "splits", {"train": train_set, "val": val_set})
    return cfg, train_set, val_set, class_weights


# dataset keys that name files or folders relative to the working folder (image_dir, mask_dir, roi_dir are relative
# to the root and stay as written)
PATH_KEYS = ("root", "classes", "sbd_root", "voc2011_root", "aug_label_dir")


def with_paths_resolved(cfg):
    """cfg (a copy, where anything changes) with the dataset's paths absolute, so that a checkpoint evaluates from
    any working folder; a dataset moved since is then one line naming the dataset.root to give."""
    relative = [k for k in PATH_KEYS if isinstance(cfg.dataset.get(k), str) and cfg.dataset.get(k)
                and not Path(cfg.dataset.get(k)).expanduser().is_absolute()]
    if not relative:
        return cfg
    cfg = copy.deepcopy(cfg)
    for key in relative:
        cfg.dataset[key] = str(Path(cfg.dataset[key]).expanduser().resolve())
    return cfg


def dataset_channels(*datasets) -> int:
    """dataset.channels=auto over every image of the splits (file headers only): 3 if any is colour, else 1."""
    from .data.folder import image_channels

    return 3 if any(image_channels(item[0]) == 3 for dataset in datasets for item in dataset.items) else 1


def refuse_what_cannot_train(dataset_cfg, train_set, scan) -> None:
    """Labels and sizes that would train on nothing (and show only as a NaN loss later), as one line each."""
    per_task = [len(names) for _, names in train_set.tasks] if train_set.tasks else [len(train_set.class_names)]
    if all(scan.class_pixels(classes, task).sum() == 0 for task, classes in enumerate(per_task)):
        raise SegtrainError(f"every pixel of the {len(train_set)} train label files is void ({IGNORE_INDEX}, or a "
                            "value of dataset.ignore_values): there is nothing to learn from; check "
                            "dataset.label_values, dataset.ignore_values and dataset.mask_format")
    if train_set.resize is not None:
        sizes = [resized_size(*size, *train_set.resize) for size in scan.image_sizes]
        index = min(range(len(sizes)), key=lambda i: min(sizes[i]))
        if min(sizes[index]) < MIN_SIDE:
            key = "dataset.scale" if train_set.resize[0] is not None else "dataset.short_side"
            (height, width), (new_height, new_width) = scan.image_sizes[index], sizes[index]
            raise SegtrainError(f"{key}={dataset_cfg.get(key.split('.')[1])} shrinks {train_set.item_label(index)} "
                                f"({width}x{height}) to {new_width}x{new_height} pixels; expected at least "
                                f"{MIN_SIDE} px on the short side")


def absent_classes(train_set, train_scan, val_scan) -> list:
    """A line for each class without a labelled pixel in the train split (the network cannot learn it; e.g. a
    foreground value listed in dataset.ignore_values). One absent from the val split too is left out of mean IU
    and mean Dice, which then score the other classes alone (a background-only split scores 1.0)."""
    lines = []
    tasks = train_set.tasks or [(None, train_set.class_names)]
    for task, (_, names) in enumerate(tasks):
        in_train = train_scan.class_pixels(len(names), task)
        in_val = val_scan.class_pixels(len(names), task) if val_scan is not None else None
        for index in np.flatnonzero(in_train == 0):
            also = in_val is not None and in_val[index] == 0
            lines.append(f"class {names[index]!r} never occurs in the train labels ({len(train_set)} files)"
                         + (" nor in the val labels: mean IU and mean Dice leave it out" if also else "")
                         + "; check dataset.label_values, dataset.ignore_values and dataset.mask_format")
    return lines


def metric_classes(dataset) -> list:
    """The classes the validation metrics' per-class IU and Dice are of: the first task's for multi-task data."""
    return list(dataset.tasks[0][1] if dataset.tasks else dataset.class_names)


def refuse_what_cannot_be_monitored(monitor: str, val_set, val_scan) -> None:
    """trainer.monitor names a metric or a class's IU (check_monitor); a class without a pixel in the val labels
    (`val_scan`, for file datasets) would have an IU of 0 or NaN at every validation and never choose a best.pt."""
    classes = metric_classes(val_set)
    check_monitor(monitor, classes)
    if val_scan is None or monitor == "mean_iu" or not monitor.endswith("_iu"):
        return
    name = monitor[:-len("_iu")]
    if val_scan.class_pixels(len(classes))[classes.index(name)] == 0:
        raise SegtrainError(f"trainer.monitor={monitor}: the {len(val_set)} val label files hold no {name} pixels, "
                            f"so its IU is 0 or undefined at every validation; monitor another metric (mean_iu, "
                            "mean_dice, pixel_acc or another class's IU)")


def build_network(cfg, train_set, device, world: int):
    """(model, the module that trains it, memory format): `model` is what gets evaluated and saved; DDP and/or
    torch.compile wrap the same parameters for training."""
    tc = cfg.trainer
    model = build_model_from_config(cfg, cfg.dataset.num_classes, train_set.input_channels,
                                    (train_set.mean, train_set.std)).to(device)
    if cfg.model.init_from:
        init_from_checkpoint(model, cfg.model.init_from, cfg.model.init_from_strict)
    memory_format = torch.channels_last if tc.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    if world > 1 and tc.sync_bn:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    train_model = model
    if world > 1:
        train_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    train_model = torch.compile(train_model) if tc.compile else train_model
    log.info("model: %s%s, %s trainable parameters", cfg.model.name, " + CRF-as-RNN" if cfg.model.crf else "",
             f"{count_parameters(model):,}")
    return model, train_model, memory_format


def train_loader_for(cfg, train_set, start_iter: int, workers: int, rank: int, world: int, device):
    """The endless training batches from `start_iter` on: augmented (and cropped) items in the sampler's order,
    with the per-pixel weights the loss takes (U-Net's), each rank its slice of the global batch."""
    tc = cfg.trainer
    images_per_step = tc.batch_size * tc.accumulate
    augmenting = cfg.augment.name != "none" or cfg.augment.crop_size is not None
    train_items = Augmented(train_set, cfg.augment, cfg.seed) if augmenting else train_set
    weights = pixel_weights(cfg.loss, train_set.ignore_index)
    if weights is not None:  # computed in the DataLoader's workers, not in the training loop
        train_items = PixelWeighted(train_items, weights)
    sampler = InfiniteSampler(len(train_set), cfg.seed, start=start_iter * images_per_step, with_position=augmenting)
    if world > 1:
        sampler = distributed.RankSlice(sampler, tc.batch_size, rank, world)
    # its own generator: iter() would otherwise draw the workers' base seed from the global RNG, which a
    # resumed run has just restored, and shift every later dropout mask
    from .data import pad_collate

    return DataLoader(train_items, batch_size=tc.batch_size // world, sampler=sampler, num_workers=workers,
                      collate_fn=pad_collate, persistent_workers=workers > 0, worker_init_fn=worker_signals,
                      pin_memory=device.type == "cuda", drop_last=True,
                      generator=torch.Generator().manual_seed(cfg.seed + start_iter))


def all_finite(model) -> bool:
    """Parameters and buffers (BN statistics) alike, in one host sync."""
    tensors = [t for t in model.state_dict().values() if t.is_floating_point()]
    return bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all())
