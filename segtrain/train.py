"""train(cfg, run_dir): seed -> data -> model -> optimiser -> resume -> loop (validate, checkpoint) -> metrics.

    segtrain                                   # FCN-8s on the built-in synthetic scenes
    segtrain model=fcn32s trainer.max_iters=500
    segtrain -m optimizer.lr=1e-3,1e-4         # a sweep: one run dir (and TensorBoard run) per job
    segtrain hydra.run.dir=outputs/RUN trainer.resume=auto   # continue RUN from its last.pt
"""
import copy
import gc
import logging
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams

from . import distributed
from .checkpoint import (find_resume_checkpoint, load_checkpoint, remove_stale_temporaries, require_training_state,
                         rng_states, save_checkpoint, set_rng_states)
from .config import check_config, override_argument, strict_json, to_plain, with_keys_moved
from .data import build_dataset, dataset_info, item_name
from .data.augment import Augmented
from .data.files import IGNORE_INDEX, FileDataset, resized_size
from .data.scan import class_weights as class_weights_from_scan
from .data.scan import problems_line, scan_labels
from .data.samplers import InfiniteSampler
from .engine import autocast_context, evaluate, train_step
from .errors import SegtrainError
from .losses import build_loss
from .metrics import METRIC_NAMES, format_metrics
from .models import CRFasRNN, build_model_from_config, count_parameters
from .optim import build_optimizer, build_schedule
from .runtime import (nondeterministic_ops_named, resolve_deterministic, resolve_num_workers, seed_everything,
                      select_amp, select_device, val_loader_for)
from .processes import shutdown_workers, worker_signals
from .signals import StopRequests, TrainingInterrupted
from .visualize import evenly_spaced, prediction_panels

log = logging.getLogger("segtrain")

def init_from_checkpoint(model, path: str, strict: bool = True) -> None:
    """Copies every weight of a segtrain checkpoint whose name and shape match (FCN-16s from a trained FCN-32s:
    all but the new skip layers and the final upsampling), as the FCN paper trains its finer nets; CRF-as-RNN
    takes its network's weights from a run of that network, as the paper starts from a trained FCN-8s. A trainable
    weight of the same name and another shape (another width, another class count) is an error unless
    `strict` is false; fixed buffers of another shape (e.g. a bilinear upsampling kernel) are left as built."""
    source = load_checkpoint(path)["model"]
    target = model.state_dict()
    if isinstance(model, CRFasRNN) and not any(k.startswith("network.") for k in source):
        source = {f"network.{k}": v for k, v in source.items()}  # CRF-as-RNN from the plain network's run
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    matched = {k: v for k, v in source.items() if k in target and target[k].shape == v.shape}
    mismatched = [k for k in source if k in target and k not in matched]
    if strict and any(k in trainable for k in mismatched):
        shown = ", ".join(f"{k} {tuple(source[k].shape)} -> {tuple(target[k].shape)}"
                          for k in mismatched if k in trainable)
        raise SegtrainError(f"model.init_from={path}: {len(mismatched)} weights have other shapes ({shown[:300]}"
                            f"{'...' if len(shown) > 300 else ''}); is it another width or class count? "
                            "model.init_from_strict=false copies only the weights that fit")
    if not matched:
        raise SegtrainError(f"model.init_from={path}: none of its weights fits {type(model).__name__}")
    model.load_state_dict(matched, strict=False)
    left = [k for k in target if k not in matched]
    log.info("initialised %d of %d tensors from %s; kept as built: %s", len(matched), len(target), path,
             ", ".join(left[:12]) + (f" and {len(left) - 12} more" if len(left) > 12 else "") if left else "none")


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


CPU_ESTIMATE_AFTER = 10  # iterations measured before estimating a CPU run's length


def warn_if_long_on_cpu(progress, remaining_iters: int, width: float) -> None:
    """The advice fits the run: a narrower network is proposed only where the run has room below its width."""
    seconds = remaining_iters * progress.batch_size / max(progress.images_per_second(), 1e-9)
    if seconds > 3600:
        narrower = f"model.width (e.g. {width / 4:g}), " if width > 0.0625 else ""
        log.warning("on this CPU the remaining %d iterations take about %.1f hours (%.1f img/s); shrink the run with "
                    "trainer.max_iters, %sdataset.scale or dataset.short_side, or trainer.batch_size",
                    remaining_iters, seconds / 3600, progress.images_per_second(), narrower)


def kept_checkpoint(ckpt_dir: Path) -> str:
    """Which checkpoint a failed run leaves to go back to, as the end of an error line."""
    last = ckpt_dir / "last.pt"
    if last.is_file():
        return f"the last good checkpoint is {last} (iteration {load_checkpoint(last, peek=True)['iteration']})"
    return "no checkpoint had been written yet"


# what resuming restores from the checkpoint: a different value on the command line would be recorded but ignored
RESTORED_ON_RESUME = ("model.", "optimizer.", "schedule.", "dataset.name", "dataset.num_classes", "seed")


def train(cfg, run_dir) -> dict:
    """Train as `cfg` says, writing checkpoints and TensorBoard events under `run_dir`; returns the final
    validation metrics (with `best_mean_iu`). Under torchrun every rank runs this; rank 0's run_dir is used."""
    tc = cfg.trainer
    device = distributed.setup(select_device(tc.device))
    try:
        return _train(cfg, Path(distributed.broadcast(str(run_dir))), device)
    finally:
        distributed.teardown()
        # a sweep runs its jobs in this one process: hand the model's and optimizer's memory back before the next
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()


def _train(cfg, run_dir: Path, device: torch.device) -> dict:
    tc = cfg.trainer
    ckpt_dir = run_dir / "checkpoints"
    rank, world = distributed.rank(), distributed.world_size()
    main_process = rank == 0
    resume_path = start_run(cfg, run_dir, world, main_process)
    deterministic = resolve_deterministic(tc.deterministic, device)
    seed_everything(cfg.seed, deterministic)
    amp = select_amp(tc.amp, device)
    autocast = autocast_context(device, amp)

    cfg, train_set, val_set, class_weights = load_data(cfg, run_dir, main_process)
    model, train_model, memory_format = build_network(cfg, train_set, device, world)
    optimizer = build_optimizer(model, **cfg.optimizer)
    scheduler = build_schedule(optimizer, tc.max_iters, **cfg.schedule)
    scaler = torch.amp.GradScaler("cuda", enabled=amp == "fp16")
    loss_fn, collate = build_loss(cfg.loss, cfg.dataset.num_classes, train_set, device,
                                  model.output_stride, world, class_weights)

    config_plain = to_plain(cfg)  # what checkpoints store
    run = {"iteration": 0, "best_mean_iu": -1.0, "metrics": None, "metrics_iteration": None,
           "trained": {"images": 0, "seconds": 0.0}}  # what a checkpoint carries over to a resumed run
    if resume_path is not None:
        run = resume_training(resume_path, device, model, optimizer, scheduler, scaler, config_plain)
    start_iter = run["iteration"]

    images_per_step = tc.batch_size * tc.accumulate
    workers = resolve_num_workers(tc.num_workers, train_set)
    log.info("device %s%s, %d DataLoader worker(s), %s kernels", device, f" with {amp} autocast" if amp != "off"
             else "", workers, "deterministic" if deterministic else "autotuned (non-deterministic)")
    train_loader = train_loader_for(cfg, train_set, collate, start_iter, workers, rank, world, device)
    # each rank validates every world-th image; the confusion matrices are summed
    val_loader = val_loader_for(cfg, Subset(val_set, range(rank, len(val_set), world)) if world > 1 else val_set,
                                device)
    # the same evenly spaced validation images in the panels at every validation (not the first few, which in a
    # real dataset are often neighbouring frames)
    panel_items = evenly_spaced(tc.num_vis_images, len(val_loader.dataset))
    # purge_step drops events a crashed run logged after its last checkpoint, so curves don't double back
    writer = SummaryWriter(run_dir / "tb", purge_step=start_iter if start_iter else None) if main_process \
        else NullWriter()
    progress = Progress(start_iter, tc.max_iters, images_per_step, quiet=not main_process)

    def trained_so_far() -> dict:
        """Images and seconds of training (validation left out) over every session of the run."""
        images, seconds = progress.trained()
        return {"images": run["trained"]["images"] + images, "seconds": run["trained"]["seconds"] + seconds}

    def checkpoint_state(iteration: int, training_state: bool = True) -> dict:
        """What evaluation and prediction need; with training_state also what resuming needs. `validated`: this
        iteration's validation ran (its metrics are the checkpoint's), which a resume otherwise runs first."""
        state = {"model": model.state_dict(), "iteration": iteration, "metrics": run["metrics"],
                 "metrics_iteration": run["metrics_iteration"], "validated": run["metrics_iteration"] == iteration,
                 "best_mean_iu": run["best_mean_iu"], "class_names": list(train_set.class_names),
                 "data": dataset_info(val_set), "config": config_plain, "class_weights": class_weights,
                 "trained": trained_so_far()}
        if training_state:
            state.update(optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
                         scaler=scaler.state_dict(), rng=rng_states())
        return state

    def validate(iteration: int) -> None:
        """Validation at `iteration`: metrics, best.pt when they improved, and at the end last.pt again."""
        val_began = time.perf_counter()
        metrics = validate_and_log(model, val_loader, cfg.dataset.num_classes, val_set, train_set.class_names,
                                   panel_items, writer, device, autocast, iteration)
        improved = metrics["mean_iu"] > run["best_mean_iu"]
        run.update(metrics=metrics, metrics_iteration=iteration,
                   best_mean_iu=max(run["best_mean_iu"], metrics["mean_iu"]))
        progress.write(f"val @ {iteration}: {format_metrics(metrics)}" + ("  (best)" if improved else ""))
        progress.exclude(time.perf_counter() - val_began)
        if improved and main_process:
            save_checkpoint(checkpoint_state(iteration, tc.best_with_state), ckpt_dir / "best.pt")
        if iteration == tc.max_iters and main_process:  # the final last.pt also carries the final metrics
            save_checkpoint(checkpoint_state(iteration), ckpt_dir / "last.pt")

    batches = iter(train_loader)
    try:
        model.train()
        loss_sum, loss_count = torch.zeros((), device=device), 0
        with StopRequests() as stop, nondeterministic_ops_named(deterministic):
            if start_iter and validation_due(start_iter, tc) and run["metrics_iteration"] != start_iter:
                # stopped (or killed) between its checkpoint and its validation: that validation first, as it
                # would have run (it draws from no RNG stream the training uses)
                log.info("iteration %d's validation did not run before the stop: running it now", start_iter)
                validate(start_iter)
            for iteration in range(start_iter + 1, tc.max_iters + 1):
                step_batches = [(images.to(device, non_blocking=True, memory_format=memory_format),
                                 *(t.to(device, non_blocking=True) for t in targets))
                                for images, *targets in (next(batches) for _ in range(tc.accumulate))]
                loss = train_step(train_model, step_batches, optimizer, scheduler, scaler, autocast, loss_fn)
                loss_sum += loss
                loss_count += 1
                last = iteration == tc.max_iters
                save_last = iteration % tc.ckpt_interval == 0 or last
                # one process reads its flag every iteration; under torchrun the ranks agree (a collective and a
                # host sync) only at log steps, where the loop syncs anyway
                signum = stop.pending(device) if world == 1 or iteration % tc.log_interval == 0 or last else None

                if iteration % tc.log_interval == 0 or last:
                    mean_loss = (loss_sum / loss_count).item()  # the loop's only host sync, once per log_interval
                    if not np.isfinite(mean_loss):
                        raise SegtrainError(f"loss became {mean_loss} by iteration {iteration}; "
                                            f"{kept_checkpoint(ckpt_dir)}")
                    lr = optimizer.param_groups[0]["lr"]
                    writer.add_scalar("train/loss", mean_loss, iteration)
                    writer.add_scalar("train/lr", lr, iteration)
                    progress.update(iteration, mean_loss, lr)
                    loss_sum.zero_()
                    loss_count = 0
                else:
                    progress.tick(iteration)
                if iteration == start_iter + CPU_ESTIMATE_AFTER and device.type == "cpu":
                    warn_if_long_on_cpu(progress, tc.max_iters - iteration, cfg.model.width)

                if (validation_due(iteration, tc) or save_last or signum) and not all_finite(model):
                    raise SegtrainError(f"the weights became non-finite by iteration {iteration}; "
                                        f"{kept_checkpoint(ckpt_dir)}")
                # last.pt first: an error in validation then cannot lose this iteration's checkpoint
                if (save_last or signum) and main_process:
                    save_checkpoint(checkpoint_state(iteration), ckpt_dir / "last.pt")
                if signum:
                    # resuming takes the stored config, so the run dir is all the command needs
                    message = (f"received {signal_name(signum)}: interrupted at iteration {iteration}; resume "
                               f"with: segtrain {override_argument('hydra.run.dir', run_dir)} trainer.resume=auto")
                    progress.write(message, logging.WARNING)
                    raise TrainingInterrupted(message, signum, stop.previous.get(signum))
                if validation_due(iteration, tc):
                    validate(iteration)
            if stop.signum:  # it came during the final validation: nothing was left to stop
                progress.write(f"received {signal_name(stop.signum)} during the final validation: too late to stop, "
                               "the run has finished", logging.WARNING)
        progress.close()
        trained = trained_so_far()
        return finish_run(cfg, run_dir, writer, run["metrics"], run["best_mean_iu"], train_set.class_names,
                          config_plain, trained["images"] / max(trained["seconds"], 1e-9), main_process)
    finally:
        # a failed run (or a failed job of a sweep) ends its workers and writer threads here too: left to exit
        # handlers, idle persistent workers kept the process from exiting
        progress.close()
        shutdown_workers(batches, val_loader)
        writer.close()


def validation_due(iteration: int, tc) -> bool:
    """Whether the loop validates at `iteration`: every trainer.val_interval and at the end."""
    return iteration % tc.val_interval == 0 or iteration == tc.max_iters


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


def start_run(cfg, run_dir: Path, world: int, main_process: bool):
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
        require_writable(run_dir)
        remove_stale_temporaries(ckpt_dir)
    resume_path = find_resume_checkpoint(tc.resume, ckpt_dir)
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
    log.info("data: %s, %d train / %d val images, %d classes", cfg.dataset.name, len(train_set), len(val_set),
             cfg.dataset.num_classes)
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


MIN_SIDE = 8  # pixels: an image resized below this on its short side leaves nothing to segment


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


def resume_training(path: Path, device, model, optimizer, scheduler, scaler, config_plain: dict) -> dict:
    """Restore a checkpoint's training state into these objects (and the RNGs); what the run carries over
    (iteration, best mean IU, last metrics and their iteration, images and seconds trained). A config that
    changes what resuming restores, and weights that do not fit, are one-line errors."""
    state = load_checkpoint(path, map_location=device)
    require_training_state(state, path)
    stored = _flatten(with_keys_moved(state["config"]))  # a checkpoint of an older version, as this one reads it
    wanted = _flatten(config_plain)
    changed = sorted(k for k, v in wanted.items() if k != "trainer.resume" and k in stored and stored[k] != v)
    frozen = [k for k in changed if k.startswith(RESTORED_ON_RESUME)]
    if frozen:  # before the weights are loaded: another width would otherwise be a page of shape mismatches
        raise SegtrainError(f"{frozen[0]}={wanted[frozen[0]]}: {path} was trained with {stored[frozen[0]]}, and a "
                            "resumed run restores the model, optimizer and schedule as they were; start a new run "
                            f"(model.init_from={path}) to change it")
    try:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
    except (RuntimeError, ValueError, KeyError) as e:  # an edited or foreign file
        detail = next((line.strip() for line in str(e).splitlines()[1:] if line.strip()), str(e).strip())
        raise SegtrainError(f"checkpoint {path}: its weights do not fit the model its config describes "
                            f"({detail[:200]})") from None
    try:
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        set_rng_states(state["rng"])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise SegtrainError(f"checkpoint {path}: its training state does not load ({type(e).__name__}: "
                            f"{str(e).strip().splitlines()[0][:160] if str(e).strip() else ''})") from None
    if changed:
        log.warning("resuming with a config that differs from the checkpoint's in: %s", ", ".join(changed))
    log.info("resumed from %s at iteration %d", path, state["iteration"])
    # "trained" is newer than some checkpoints
    return {"iteration": state["iteration"], "best_mean_iu": state["best_mean_iu"], "metrics": state["metrics"],
            "metrics_iteration": state["metrics_iteration"],
            "trained": state.get("trained") or {"images": 0, "seconds": 0.0}}


def train_loader_for(cfg, train_set, collate, start_iter: int, workers: int, rank: int, world: int, device):
    """The endless training batches from `start_iter` on: augmented (and cropped) items in the sampler's order,
    each rank its slice of the global batch."""
    tc = cfg.trainer
    images_per_step = tc.batch_size * tc.accumulate
    augmenting = cfg.augment.name != "none" or cfg.augment.crop_size is not None
    train_items = Augmented(train_set, cfg.augment, cfg.seed) if augmenting else train_set
    sampler = InfiniteSampler(len(train_set), cfg.seed, start=start_iter * images_per_step, with_position=augmenting)
    if world > 1:
        sampler = distributed.RankSlice(sampler, tc.batch_size, rank, world)
    # its own generator: iter() would otherwise draw the workers' base seed from the global RNG, which a
    # resumed run has just restored, and shift every later dropout mask
    return DataLoader(train_items, batch_size=tc.batch_size // world, sampler=sampler, num_workers=workers,
                      collate_fn=collate, persistent_workers=workers > 0, worker_init_fn=worker_signals,
                      pin_memory=device.type == "cuda", drop_last=True,
                      generator=torch.Generator().manual_seed(cfg.seed + start_iter))


def finish_run(cfg, run_dir: Path, writer, metrics: dict, best_mean_iu: float, class_names, config_plain: dict,
               images_per_second: float, main_process: bool) -> dict:
    """The run's result (final metrics, best mean IU), into metrics.json and TensorBoard's HPARAMS tab."""
    result = {**{k: metrics[k] for k in METRIC_NAMES}, "best_mean_iu": best_mean_iu,
              "iu": dict(zip(class_names, metrics["iu"])), "iteration": cfg.trainer.max_iters,
              **({"tasks": metrics["tasks"]} if "tasks" in metrics else {}),
              "train_images_per_s": images_per_second}
    # the HPARAMS tab of `tensorboard --logdir multirun/...` then compares the jobs of a sweep side by side
    hparam_values = {k: v for k, v in _flatten(config_plain).items() if isinstance(v, (int, float, str, bool))}
    for summary in hparams(hparam_values, {f"val/{k}": metrics[k] for k in METRIC_NAMES}):
        writer.file_writer.add_summary(summary)
    writer.close()
    if main_process:
        (run_dir / "metrics.json").write_text(strict_json(result, indent=2))
    log.info("done: %s  best mean_iu %.4f  checkpoints in %s", format_metrics(metrics), best_mean_iu,
             run_dir / "checkpoints")
    return result


def validate_and_log(model, val_loader, num_classes: int, val_set, class_names, panel_items, writer, device,
                     autocast, iteration: int) -> dict:
    """One validation (under torchrun each rank scores its share and the confusion matrices are summed), and its
    four metrics, per-class IU, per-task metrics, confusion matrix and the panels of `panel_items` to
    TensorBoard; the metrics."""
    metrics, samples = evaluate(model, val_loader, num_classes, device, autocast, keep=panel_items,
                                tasks=val_set.tasks, reduce=distributed.all_reduce_sum)
    names = [item_name(val_loader.dataset, i) for i in panel_items]
    for name in METRIC_NAMES:
        writer.add_scalar(f"val/{name}", metrics[name], iteration)
    for name, iu in zip(class_names, metrics["iu"]):
        if not np.isnan(iu):
            writer.add_scalar(f"val_iu/{name}", iu, iteration)
    for task, task_metrics in metrics.get("tasks", {}).items():  # multi-task: every task's four metrics
        for name in METRIC_NAMES:
            writer.add_scalar(f"val_{task}/{name}", task_metrics[name], iteration)
    if samples:
        writer.add_image("val/input_gt_pred", prediction_panels(samples, val_set.mean, val_set.std, val_set.palette,
                                                                names), iteration)
    if not isinstance(writer, NullWriter):  # pictures only where they are written (rank 0)
        from .plots import confusion_figure, iu_bar_figure

        writer.add_figure("val/confusion", confusion_figure(metrics["confusion"], class_names[:len(
            metrics["confusion"])]), iteration)
        writer.add_figure("val/iu_per_class", iu_bar_figure(metrics["iu"], class_names[:len(metrics["iu"])]),
                          iteration)
    return metrics


def require_writable(run_dir: Path) -> None:
    """Before any work: a run dir that cannot take files fails now, not at the first checkpoint."""
    probe = run_dir / f".segtrain-write-test-{os.getpid()}"
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise SegtrainError(f"hydra.run.dir={run_dir}: cannot write there ({e.strerror})") from None


def all_finite(model) -> bool:
    """Parameters and buffers (BN statistics) alike, in one host sync."""
    tensors = [t for t in model.state_dict().values() if t.is_floating_point()]
    return bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all())


def _flatten(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


class NullWriter:
    """SummaryWriter's calls, doing nothing: ranks other than 0 write no TensorBoard events."""

    def __getattr__(self, name):
        return lambda *args, **kwargs: None

    file_writer = property(lambda self: self)


class Progress:
    """A tqdm bar on a terminal; elsewhere (logs, CI) a log line per log_interval. Both show speed and ETA."""

    def __init__(self, start: int, total: int, batch_size: int, quiet: bool = False):
        self.start, self.total, self.batch_size = start, total, batch_size
        self.began = time.perf_counter()
        self.done = start
        self.bar = None
        if sys.stderr.isatty() and not quiet:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=start, unit="it", dynamic_ncols=True, leave=False)

    def exclude(self, seconds: float) -> None:
        """Leave time spent outside training (validation) out of the speed."""
        self.began += seconds

    def images_per_second(self) -> float:
        images, seconds = self.trained()
        return images / max(seconds, 1e-9)

    def tick(self, iteration: int) -> None:
        if self.bar is not None:
            self.bar.update(iteration - self.done)
        self.done = iteration

    def update(self, iteration: int, loss: float, lr: float) -> None:
        self.tick(iteration)
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", refresh=False)
            return
        speed = self.images_per_second()
        eta = (self.total - iteration) * self.batch_size / max(speed, 1e-9)
        log.info("iter %d/%d  loss %.4f  lr %.2e  %.1f img/s  eta %s", iteration, self.total, loss, lr, speed,
                 time.strftime("%H:%M:%S", time.gmtime(eta)))

    def trained(self):
        """(images, seconds) this process trained on, validation time left out."""
        return (self.done - self.start) * self.batch_size, time.perf_counter() - self.began

    def write(self, message: str, level: int = logging.INFO) -> None:
        if self.bar is not None:
            self.bar.clear()
        log.log(level, message)
        if self.bar is not None:
            self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
