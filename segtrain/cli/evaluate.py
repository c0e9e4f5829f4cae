"""`segtrain-eval ckpt=PATH [ensemble=PATH[,PATH...]] [crf=dense|deeplab|deeplab_resnet|deconvnet]
[inference=whole|slide|multiscale] [out=FILE.json] [KEY=VALUE ...]`

Rebuilds the model and dataset from the config stored in the checkpoint, evaluates on the validation split and
prints a per-class table and the four metrics. Any other KEY=VALUE overrides the stored training config and is
checked against its schema (e.g. `dataset.val_split=train`, `trainer.device=cpu`, `trainer.val_batch_size=1`).

`ensemble=` adds more checkpoints trained on the same dataset and scores the product of all the networks' class
probabilities: `ckpt=DECONVNET.pt ensemble=FCN8S.pt` is the DeconvNet paper's EDeconvNet.

`crf=...` refines the probabilities with a fully connected CRF (crf.workers CPU processes) and reports the metrics
without and with it side by side; `inference=slide` scores tiles (inference.tile, inference.overlap),
`inference=multiscale` averages scales and flips (inference.scales, inference.flip).
"""
import sys
from pathlib import Path

from ..config import strict_json, to_plain
from ..errors import SegtrainError
from . import exit_with_error, parse_key_values

EVAL_GROUPS = ("crf", "inference")
USAGE = "usage: segtrain-eval ckpt=PATH [ensemble=PATH[,PATH...]] [out=FILE.json] [KEY=VALUE ...]"


def parse_args(argv):
    own, overrides = parse_key_values(argv, ("ckpt", "out", "ensemble"), USAGE, __doc__)
    ensemble = [path for path in own.get("ensemble", "").split(",") if path]
    return own["ckpt"], ensemble, own.get("out"), overrides


def compose_stored_config(stored: dict, overrides):
    """The stored config re-validated by the same schemas `segtrain` composes with, then the overrides."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from ..config import config_dir, register_configs

    register_configs()
    choices = [f"{group}={stored[group]['name']}" for group in ("model", "dataset", "optimizer", "schedule")]
    # evaluation-only groups are picked on this command line (crf=deeplab, inference=multiscale), never stored
    group_choices = [o for o in overrides if o.partition("=")[0] in EVAL_GROUPS]
    dotlist = [o for o in overrides if o not in group_choices]
    stored = {k: v for k, v in stored.items() if k not in EVAL_GROUPS}
    try:
        if GlobalHydra.instance().is_initialized():  # inside `segtrain` (resuming): its Hydra composes
            cfg = compose("config", overrides=choices + group_choices)
        else:
            with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
                cfg = compose("config", overrides=choices + group_choices)
        cfg = OmegaConf.merge(cfg, stored)
        return OmegaConf.merge(cfg, OmegaConf.from_dotlist(dotlist))
    except (HydraException, OmegaConfBaseException) as e:
        raise SegtrainError(f"config override {' '.join(overrides)}: {str(e).splitlines()[0]}") from None


def require_writable_file(path: Path) -> None:
    existed = path.exists()
    try:
        with open(path, "a"):
            pass
    except OSError as e:
        raise SegtrainError(f"out={path}: cannot write there ({e.strerror})") from None
    if not existed:
        path.unlink()


def format_report(class_names, metrics, crf_metrics=None) -> str:
    """Per-class IU and accuracy and the four metrics in percent; with `crf_metrics`, the same after the CRF."""
    width = max(12, max(len(n) for n in class_names))
    columns = [metrics] + ([crf_metrics] if crf_metrics else [])

    def cell(value):
        return f"{'-' if value != value else f'{100 * value:6.2f}':>7}"

    header = f"  {'IU':>7}  {'acc.':>7}"
    lines = [f"{'class':<{width}}{header}" + (f"  {'+CRF IU':>7}  {'acc.':>7}" if crf_metrics else "")]
    for index, name in enumerate(class_names):
        lines.append(f"{name:<{width}}  " + "  ".join(f"{cell(m['iu'][index])}  {cell(m['acc'][index])}"
                                                      for m in columns))
    lines.append("")
    for key, label in (("pixel_acc", "pixel accuracy"), ("mean_acc", "mean accuracy"), ("mean_iu", "mean IU"),
                       ("fw_iu", "f.w. IU")):
        lines.append(f"{label:<{width}}  " + "  ".join(f"{cell(m[key])}  {'':>7}" for m in columns))
    return "\n".join(lines)


def write_confusion(folder: Path, metrics: dict, class_names, tasks=None) -> list:
    """confusion.csv and confusion.png (one pair per task, confusion_<task>.*, for multi-task data)."""
    from ..plots import confusion_figure, save_png, write_confusion_csv

    folder.mkdir(parents=True, exist_ok=True)
    parts = [(f"confusion_{name}", names, metrics["tasks"][name]) for name, names in tasks] if tasks else [
        ("confusion", class_names, metrics)]
    written = []
    for stem, names, task_metrics in parts:
        write_confusion_csv(folder / f"{stem}.csv", task_metrics["confusion"], names)
        save_png(confusion_figure(task_metrics["confusion"], names), folder / f"{stem}.png")
        written += [folder / f"{stem}.csv", folder / f"{stem}.png"]
    return written


def load_ensemble_member(path: str, cfg, input_channels):
    """The network of another checkpoint, which must have been trained on the same dataset and classes."""
    from ..checkpoint import load_checkpoint
    from ..train import build_model_from_config

    state = load_checkpoint(path)
    member_cfg = compose_stored_config(state["config"], [])
    for key in ("name", "num_classes"):
        if member_cfg.dataset[key] != cfg.dataset[key]:
            raise SegtrainError(f"ensemble={path}: trained with dataset.{key}={member_cfg.dataset[key]}, but ckpt "
                                f"has {cfg.dataset[key]}; ensemble members must share the dataset")
    model = build_model_from_config(member_cfg, cfg.dataset.num_classes, input_channels)
    model.load_state_dict(state["model"])
    return model, member_cfg.model.name


def run(argv) -> dict:
    ckpt, ensemble, out, overrides = parse_args(argv)
    from ..checkpoint import load_checkpoint
    from ..crf import crf_params, crf_refiner
    from ..data import build_dataset
    from ..engine import autocast_context, evaluate, evaluate_with_crf
    from ..inference import predict_scores
    from ..models import ProductEnsemble
    from ..progress import track
    from ..train import METRIC_NAMES, build_model_from_config, select_amp, select_device, val_loader_for
    from ..visualize import denormalize

    state = load_checkpoint(ckpt)
    out_path = Path(out) if out else Path(ckpt).with_name(f"{Path(ckpt).stem}_eval.json")
    require_writable_file(out_path)  # before the evaluation, not after it
    cfg = compose_stored_config(state["config"], overrides)
    device = select_device(cfg.trainer.device)
    autocast = autocast_context(device, select_amp(cfg.trainer.amp, device))
    dataset = build_dataset(cfg.dataset, cfg.dataset.val_split, evaluation=True)  # metrics at the labels' size
    model = build_model_from_config(cfg, cfg.dataset.num_classes, dataset.input_channels)
    model.load_state_dict(state["model"])
    if ensemble:
        members, names = zip(*[load_ensemble_member(path, cfg, dataset.input_channels) for path in ensemble])
        model = ProductEnsemble([model, *members])
        print(f"ensemble: product of the class probabilities of {' x '.join([cfg.model.name, *names])}")
    model.to(device)
    inference = to_plain(cfg.inference)
    loader = val_loader_for(cfg, dataset, device)
    crf_metrics = None
    if cfg.crf.name == "none":
        metrics, _ = evaluate(model, loader, cfg.dataset.num_classes, device, autocast, tasks=dataset.tasks,
                              progress=lambda batches: track(batches, len(loader), "evaluating", unit="batch"),
                              predict=lambda net, images: predict_scores(net, images, **inference))
    else:
        if dataset.tasks:
            raise SegtrainError(f"crf={cfg.crf.name}: the CRF refines one task's labels; {cfg.dataset.name} with "
                                f"several tasks is evaluated without it (crf=none)")
        params = crf_params(cfg.crf)
        with crf_refiner(params, cfg.crf.backend, cfg.crf.workers, cfg.crf.batch_images) as refine:
            metrics, crf_metrics = evaluate_with_crf(
                model, loader, cfg.dataset.num_classes, device, autocast,
                lambda net, images: predict_scores(net, images, **inference, probabilities=True), refine,
                lambda image: denormalize(image, dataset.mean, dataset.std).permute(1, 2, 0),
                progress=lambda images: track(images, len(dataset), f"crf={cfg.crf.name}", unit="image"))

    print(f"{ckpt} (iteration {state['iteration']}), {cfg.dataset.name} {cfg.dataset.val_split}: "
          f"{len(dataset)} images")
    if dataset.tasks:  # one table per task (SIFT Flow's semantic and geometric heads)
        for name, class_names in dataset.tasks:
            print(f"\n[{name}]\n" + format_report(class_names, metrics["tasks"][name]))
    else:
        print(format_report(dataset.class_names, metrics, crf_metrics))
    logged = state["metrics"] if state["metrics_iteration"] == state["iteration"] else None
    if logged is not None and not overrides and not ensemble:
        same = all(logged[k] == metrics[k] for k in METRIC_NAMES)
        print(f"training logged at iteration {state['iteration']}: "
              + ("identical" if same else "DIFFERENT: " + ", ".join(f"{k} {logged[k]:.6f}" for k in METRIC_NAMES)))
    result = {**{k: metrics[k] for k in METRIC_NAMES}, "iu": dict(zip(dataset.class_names, metrics["iu"])),
              "acc": dict(zip(dataset.class_names, metrics["acc"])), "checkpoint": str(ckpt),
              "iteration": state["iteration"], "split": cfg.dataset.val_split,
              "overrides": overrides, "ensemble": ensemble,
              **({"tasks": metrics["tasks"]} if dataset.tasks else {})}
    if crf_metrics is not None:
        result["crf"] = {**{k: crf_metrics[k] for k in METRIC_NAMES}, "iu": dict(zip(dataset.class_names,
                                                                                   crf_metrics["iu"])),
                         "params": to_plain(cfg.crf)}
    out_path.write_text(strict_json(result, indent=2))
    # the confusion matrix beside it: <out without .json>/confusion.csv and .png (after the CRF when there is one)
    pictures = write_confusion(out_path.with_suffix(""), crf_metrics or metrics, dataset.class_names,
                               dataset.tasks) if out_path.is_file() else []  # not for out=/dev/null
    print(f"wrote {', '.join(str(p) for p in [out_path, *pictures])}")
    return result


def main(argv=None) -> None:
    import logging

    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(message)s")  # progress lines off a terminal
    try:
        run(sys.argv[1:] if argv is None else argv)
    except SegtrainError as error:
        exit_with_error("segtrain-eval", error)


if __name__ == "__main__":
    main()
