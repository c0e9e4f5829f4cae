"""Evaluation of a checkpoint, as segtrain-eval's config says (configs/eval.yaml), shaped as segtrain.train holds
training: restore the stored model and dataset, score the validation split (whole, slide or multiscale; an
ensemble's product), refine with the dense CRF, report (the table, metrics.json, metrics.md, config.yaml, the
confusion matrix) into the evaluation's own folder. `evaluate(cfg, out_dir)` is what segtrain-eval runs.

Sweeps over CRF parameters run their jobs in one process: the network scores each checkpoint's split once and
the later jobs only rerun the CRF (scored_once)."""
import json
import logging
from pathlib import Path

from .config import app_overrides, check_config, to_plain
from .errors import SegtrainError
from .jsonio import strict_json
from .processes import Interrupted, log_to_files

log = logging.getLogger("segtrain")
SCORE_CACHE_BYTES = 2 * 1024 ** 3  # a split's network probabilities kept for the next job of a sweep, up to this


def format_report(class_names, metrics, crf_metrics=None) -> str:
    """Per-class IU, Dice and accuracy, then the summary metrics in percent, each named by its label and all in
    one column (the first: IU); with `crf_metrics`, the same after the CRF (under +CRF IU)."""
    summary = (("pixel_acc", "pixel accuracy"), ("mean_acc", "mean accuracy"), ("mean_iu", "mean IU"),
               ("mean_dice", "mean Dice"), ("fw_iu", "f.w. IU"))
    width = max(len(text) for text in [*class_names, *(label for _, label in summary), "class"])
    columns = [metrics] + ([crf_metrics] if crf_metrics else [])

    def cell(value):
        return f"{'-' if value != value else f'{100 * value:6.2f}':>7}"

    header = f"  {'IU':>7}  {'Dice':>7}  {'acc.':>7}"
    lines = [f"{'class':<{width}}{header}" + (f"  {'+CRF IU':>7}  {'Dice':>7}  {'acc.':>7}" if crf_metrics else "")]
    for index, name in enumerate(class_names):
        lines.append(f"{name:<{width}}  " + "  ".join("  ".join(cell(m[kind][index]) for kind in ("iu", "dice", "acc"))
                                                      for m in columns))
    lines.append("")
    for key, label in summary:  # all under IU (and +CRF IU), so the rows read as a list: the label says which
        row = "  ".join("  ".join([cell(m[key]), " " * 7, " " * 7]) for m in columns)
        lines.append(f"{label:<{width}}  {row}".rstrip())
    return "\n".join(lines)


def write_confusion(folder: Path, metrics: dict, class_names, tasks=None, title=None) -> list:
    """confusion.csv and confusion.png (one pair per task, confusion_<task>.*, for multi-task data); `title`
    replaces the picture's default one."""
    from .plots import confusion_figure, save_png, write_confusion_csv

    folder.mkdir(parents=True, exist_ok=True)
    parts = [(f"confusion_{name}", names, metrics["tasks"][name]) for name, names in tasks] if tasks else [
        ("confusion", class_names, metrics)]
    written = []
    for stem, names, task_metrics in parts:
        write_confusion_csv(folder / f"{stem}.csv", task_metrics["confusion"], names)
        figure = confusion_figure(task_metrics["confusion"], names, **({"title": title} if title else {}))
        save_png(figure, folder / f"{stem}.png")
        written += [folder / f"{stem}.csv", folder / f"{stem}.png"]
    return written


def scoring_keys(dataset: dict) -> list:
    """The dataset keys that change what an evaluation scores (the val split's images, labels, classes, sizes,
    normalisation): all but those that only choose or make the training split."""
    training_only = {"num_train"}  # synthetic: the training scenes' count
    if dataset.get("val_fraction") is None:  # the val split is its own folder or list, not held out of train's
        training_only.add("train_split")
    if dataset.get("val_split") != "train_aug":  # VOC: converted labels of train_aug only
        training_only.add("aug_label_dir")
    return sorted(set(dataset) - training_only)


def check_ensemble(paths, ckpt, train_cfg, overrides) -> list:
    """Before any data is read: every checkpoint in `paths` was trained with the dataset settings of `ckpt` (whose
    config, with the command line's `overrides`, is `train_cfg`) in every key that changes scoring
    (scoring_keys), the same overrides applied to each member, as the members of an ensemble are scored
    together on one split, read, sized and normalised one way, against one set of classes; else one line naming
    the keys that differ. Returns the members' model names."""
    from .checkpoint import load_checkpoint
    from .config import stored_config

    if not paths:
        return []
    ours = to_plain(train_cfg.dataset)
    names = []
    for path in paths:
        member_state = load_checkpoint(path, peek=True)
        member = stored_config(member_state["config"], overrides, member_state.get("config_version", 0))
        theirs = to_plain(member.dataset)
        differing = [k for k in scoring_keys({**theirs, **ours}) if ours.get(k) != theirs.get(k)]
        if differing:
            raise SegtrainError(f"ensemble={path}: trained on other dataset settings than ckpt={ckpt}: " + ", ".join(
                f"dataset.{k} {json.dumps(theirs.get(k))} against {json.dumps(ours.get(k))}" for k in differing)
                + "; the members of an ensemble are scored together on one split, so they must share every "
                "dataset key that changes scoring (a command-line dataset.KEY= applies to every member)")
        names.append(member.model.name)
    return names


# The network's scores of the last split evaluated with a CRF, so that the next job of a sweep over CRF
# parameters (run in this same process by Hydra's launcher) only reruns the CRF.
_scored = {"key": None, "items": None}


def scored_once(key, produce, device):
    """`produce()`'s (rgb, probabilities, target) items, kept on the CPU while they fit SCORE_CACHE_BYTES and
    given again when the same `key` comes back."""
    if _scored["key"] == key:
        log.info("network scores of this split reused from the previous job (only the CRF runs)")
        return ((rgb, probs.to(device), target) for rgb, probs, target in _scored["items"])
    _scored.update(key=None, items=None)

    def keep():
        items, size = [], 0
        for rgb, probs, target in produce():
            if items is not None:
                size += probs.numel() * probs.element_size() + rgb.numel() + target.numel() * target.element_size()
                if size <= SCORE_CACHE_BYTES:
                    items.append((rgb.cpu(), probs.cpu(), target.cpu()))
                else:  # too large to keep: the next job scores the split again
                    items = None
            yield rgb, probs, target
        if items is not None:
            _scored.update(key=key, items=items)

    return keep()


def show(text: str) -> None:
    """A result on the terminal as it is, and in the evaluation's log (segtrain-eval.log) with a time stamp."""
    print(text)
    log_to_files("\n" + text if "\n" in text else text, logging.INFO)  # a table from its own line's start


def reproduction_line(state: dict, metrics: dict, inference: dict, overrides, ensemble, crf: bool):
    """Whether this evaluation gives the validation metrics training logged at the checkpoint's iteration:
    compared only where it scores as that validation did (one whole-image pass per image, the stored model and
    dataset, one network; with a CRF its network's metrics, before the CRF); otherwise "not comparable" and why.
    Overrides of trainer.* (device, batch size) and of the dataset's paths (dataset.root= of moved data) are
    compared, and named where the metrics differ. None when the
    checkpoint holds no metrics of its own iteration. Checkpoints written before mean Dice existed are compared on
    the metrics they hold."""
    from .inference import inference_name
    from .metrics import named
    from .train import PATH_KEYS

    logged = state["metrics"] if state["metrics_iteration"] == state["iteration"] else None
    if logged is None:
        return None
    head = f"training logged at iteration {state['iteration']}: "
    scoring = inference_name(**inference)
    # the device, batch size, workers and where the data now lie leave the scoring as it was
    same_scoring = [o for o in overrides if o.startswith("trainer.")
                    or o.partition("=")[0] in {f"dataset.{k}" for k in PATH_KEYS}]
    reasons = ([f"inference={scoring}"] if scoring != "whole" else []) + (
        [f"ensemble of {len(ensemble) + 1} networks"] if ensemble else []) + [
        o for o in overrides if o not in same_scoring]
    if reasons:
        return head + f"not comparable ({', '.join(reasons)})"
    logged = named(logged)
    if all(value == metrics[k] for k, value in logged.items()):
        return head + "identical" + (" (the network's metrics, before the CRF)" if crf else "")
    changed = " ".join(same_scoring)
    return head + "DIFFERENT" + (f" (with {changed})" if changed else "") + ": " + ", ".join(
        f"{k} {value:.6f}" for k, value in logged.items())


def evaluate_checkpoint(cfg, out_dir: Path) -> dict:
    """Evaluate as the composed segtrain-eval config `cfg` says, writing into `out_dir`; returns the results."""
    from .checkpoint import restore
    from .crf import crf_params, crf_refiner
    from .data import build_dataset, split_name
    from .engine import autocast_context, evaluate, evaluate_with_crf, score_for_crf
    from .inference import predict_scores
    from .metrics import named
    from .models import ProductEnsemble
    from .progress import track
    from .runtime import select_amp, select_device, val_loader_for
    from .visualize import denormalize

    if (out_dir / "metrics.json").exists():
        raise SegtrainError(f"{out_dir} already holds an evaluation (metrics.json); give another name= or "
                            "hydra.run.dir=")
    check_config(cfg)
    overrides = app_overrides(cfg)
    train_cfg, model, state = restore(cfg.ckpt, overrides)
    device = select_device(train_cfg.trainer.device)
    autocast = autocast_context(device, select_amp(train_cfg.trainer.amp, device))
    ensemble = list(cfg.ensemble)
    names = check_ensemble(ensemble, cfg.ckpt, train_cfg, overrides)
    dataset = build_dataset(train_cfg.dataset, train_cfg.dataset.val_split, evaluation=True)  # labels' own size
    if ensemble:
        model = ProductEnsemble([model, *(restore(path, input_channels=dataset.input_channels)[1]
                                          for path in ensemble)])
        show(f"ensemble: product of the class probabilities of {' x '.join([train_cfg.model.name, *names])}")
    model.to(device)
    inference = to_plain(cfg.inference)
    loader = val_loader_for(train_cfg, dataset, device)
    crf_metrics = None
    if cfg.crf.name == "none":
        metrics, _ = evaluate(model, loader, train_cfg.dataset.num_classes, device, autocast, tasks=dataset.tasks,
                              progress=lambda batches: track(batches, len(loader), "evaluating", unit="batch"),
                              predict=lambda net, images: predict_scores(net, images, **inference))
    else:
        if dataset.tasks:
            raise SegtrainError(f"crf={cfg.crf.name}: the CRF refines one task's labels; {train_cfg.dataset.name} "
                                "with several tasks is evaluated without it (crf=none)")
        ckpt = Path(cfg.ckpt).resolve()
        key = (str(ckpt), ckpt.stat().st_mtime_ns, tuple(overrides), tuple(ensemble), json.dumps(inference))
        scored = scored_once(key, lambda: score_for_crf(
            model, loader, device, autocast,
            lambda net, images: predict_scores(net, images, **inference, probabilities=True),
            lambda image: denormalize(image, dataset.mean, dataset.std).permute(1, 2, 0)), device)
        with crf_refiner(crf_params(cfg.crf), cfg.crf.backend, cfg.crf.workers, cfg.crf.batch_images) as refine:
            metrics, crf_metrics = evaluate_with_crf(
                scored, train_cfg.dataset.num_classes, refine,
                progress=lambda images: track(images, len(dataset), f"crf={cfg.crf.name}", unit="image"))

    split = split_name(train_cfg.dataset.val_split)
    show(f"{cfg.ckpt} (iteration {state['iteration']}), {train_cfg.dataset.name} {split}: {len(dataset)} images")
    if dataset.tasks:  # one table per task (SIFT Flow's semantic and geometric heads)
        report = "\n\n".join(f"[{name}]\n" + format_report(class_names, metrics["tasks"][name])
                              for name, class_names in dataset.tasks)
    else:
        report = format_report(dataset.class_names, metrics, crf_metrics)
    show(report)
    line = reproduction_line(state, metrics, inference, overrides, ensemble, crf_metrics is not None)
    if line:
        show(line)
    result = {**named(metrics), "iu": dict(zip(dataset.class_names, metrics["iu"])),
              "dice": dict(zip(dataset.class_names, metrics["dice"])),
              "acc": dict(zip(dataset.class_names, metrics["acc"])), "checkpoint": str(cfg.ckpt),
              "iteration": state["iteration"], "split": split, "overrides": overrides, "ensemble": ensemble,
              "inference": inference, **({"tasks": metrics["tasks"]} if dataset.tasks else {})}
    if crf_metrics is not None:
        result["crf"] = {**named(crf_metrics), "iu": dict(zip(dataset.class_names, crf_metrics["iu"])),
                         "dice": dict(zip(dataset.class_names, crf_metrics["dice"])), "params": to_plain(cfg.crf)}
    write_results(out_dir, result, report, cfg, train_cfg, crf_metrics or metrics, dataset)
    return result


def write_results(out_dir: Path, result: dict, report: str, cfg, train_cfg, shown_metrics, dataset) -> None:
    """metrics.json, metrics.md, config.yaml and the confusion matrix (after the CRF when there is one)."""
    from omegaconf import OmegaConf

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "metrics.json").write_text(strict_json(result, indent=2))
    title = f"# {result['checkpoint']} (iteration {result['iteration']}), {result['split']}"
    (out_dir / "metrics.md").write_text(f"{title}\n\n```\n{report}\n```\n")
    evaluated = {"evaluation": {k: v for k, v in to_plain(cfg).items() if k != "hydra"},
                 "training": to_plain(train_cfg)}
    (out_dir / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(evaluated)))
    crf = result.get("crf")
    title = None
    if crf:
        p = crf["params"]
        title = (f"confusion after the CRF, rows: ground truth (% of its pixels)\nw1 {p['w1']:g}, "
                 f"sigma_alpha {p['sigma_alpha']:g}, sigma_beta {p['sigma_beta']:g}, w2 {p['w2']:g}, "
                 f"sigma_gamma {p['sigma_gamma']:g}")
    pictures = write_confusion(out_dir, shown_metrics, dataset.class_names, dataset.tasks, title)
    show(f"wrote {out_dir}: metrics.json, metrics.md, config.yaml, {', '.join(p.name for p in pictures)}")


def remove_unfinished(out_dir: Path) -> str:
    """An evaluation stopped before its results: its folder holds only Hydra's record and the log, which
    segtrain-report would take for an evaluation. Those files go, and the folder when nothing else is in it."""
    if (out_dir / "metrics.json").exists():
        return f"its results are in {out_dir}"
    for name in ("config.yaml", "hydra.yaml", "overrides.yaml"):
        (out_dir / ".hydra" / name).unlink(missing_ok=True)
    for path in [out_dir / ".hydra", *out_dir.glob("*.log"), out_dir]:
        try:
            path.rmdir() if path.is_dir() else path.unlink()
        except OSError:  # not empty: something else is in it, left alone
            return f"nothing was evaluated; {out_dir} holds files of others and was kept"
    return "nothing was evaluated (its folder was removed)"


def evaluate(cfg, out_dir: Path) -> dict:
    """segtrain-eval's work: evaluate_checkpoint into `out_dir`; stopped before its results (Ctrl-C, SIGTERM), the
    folder is removed again (remove_unfinished says so in the stop's line)."""
    try:
        return evaluate_checkpoint(cfg, out_dir)
    except Interrupted as stop:
        stop.outcome = remove_unfinished(out_dir)
        raise


def finished_job(result: dict, out_dir: Path, overrides, sweeping: bool) -> float:
    """A finished evaluation's record in a sweep, and what the sweeper maximises: the mean IU after the CRF when
    there is one, else the network's."""
    if sweeping:
        from .sweeps import record_job

        record_job(out_dir, overrides, "finished", result={
            "mean_iu": result["mean_iu"], "crf_mean_iu": result.get("crf", {}).get("mean_iu"),
            "mean_dice": result["mean_dice"], "crf_mean_dice": result.get("crf", {}).get("mean_dice"),
            "iteration": result["iteration"]})
    return result["crf"]["mean_iu"] if "crf" in result else result["mean_iu"]
