"""FCN's evaluation (docs/reference.md section 2): one confusion matrix over the whole split, the metrics from it.
Dice (F1, Sørensen-Dice) comes from the same matrix: 2 TP / (2 TP + FP + FN) per class, averaged as IU is."""
import torch

from .config.schemas import MONITORS
from .errors import SegtrainError

METRIC_NAMES = ("pixel_acc", "mean_acc", "mean_iu", "mean_dice", "fw_iu")


class ConfusionMatrix:
    """hist[i, j] = pixels of true class i predicted as j, kept on the model's device.

    Pixels whose ground truth is outside [0, num_classes) (255 and anything else) are skipped; predictions are
    never masked."""

    def __init__(self, num_classes: int, device=None):
        self.num_classes = num_classes
        self.hist = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)

    def update(self, target: torch.Tensor, pred: torch.Tensor) -> None:
        n = self.num_classes
        keep = (target >= 0) & (target < n)
        index = n * target[keep].long() + pred[keep].long()
        self.hist += torch.bincount(index, minlength=n * n).reshape(n, n)

    def compute(self) -> dict:
        return metrics_from_hist(self.hist)


def metrics_from_hist(hist: torch.Tensor) -> dict:
    """pixel_acc, mean_acc, mean_iu, mean_dice, fw_iu (floats), per-class `iu` and `dice` (NaN for a class absent
    from both ground truth and prediction, 0 for one only predicted; the means skip the NaNs, FCN's nanmean) and
    `acc`, and the confusion matrix itself. Dice_c = 2 TP / (2 TP + FP + FN) = 2 IU_c / (1 + IU_c)."""
    hist = hist.double().cpu()
    diag = hist.diag()
    gt_pixels, pred_pixels = hist.sum(1), hist.sum(0)
    with torch.no_grad():
        acc = diag / gt_pixels  # NaN where the class is absent from ground truth
        iu = diag / (gt_pixels + pred_pixels - diag)  # NaN only if absent from both; 0 if only predicted
        dice = 2 * diag / (gt_pixels + pred_pixels)  # 2TP / (2TP + FP + FN): the same NaN and 0 as IU
    freq = gt_pixels / hist.sum()
    seen = freq > 0
    return {
        "pixel_acc": (diag.sum() / hist.sum()).item(),
        "mean_acc": acc.nanmean().item(),
        "mean_iu": iu.nanmean().item(),
        "mean_dice": dice.nanmean().item(),
        "fw_iu": (freq[seen] * iu[seen]).sum().item(),
        "iu": iu.tolist(),
        "dice": dice.tolist(),
        "acc": acc.tolist(),  # per class: NaN where absent from the ground truth
        "confusion": hist.long().tolist(),  # [true class][predicted class] pixels
    }


def named(metrics: dict) -> dict:
    """The metrics of METRIC_NAMES that `metrics` holds (those stored before mean_dice existed lack it)."""
    return {k: metrics[k] for k in METRIC_NAMES if k in metrics}


def format_metrics(metrics: dict) -> str:
    """The metrics of METRIC_NAMES as one line (`pixel_acc 0.9659  mean_acc ...`), each task's after a `|`; metrics
    stored before a name existed (mean_dice) are left out."""
    def line(values):
        return "  ".join(f"{k} {v:.4f}" for k, v in named(values).items())

    text = line(metrics)
    for task, task_metrics in list(metrics.get("tasks", {}).items())[1:]:
        text += f"  | {task}: " + line(task_metrics)
    return text


def check_monitor(monitor: str, class_names) -> None:
    """trainer.monitor names mean_iu, mean_dice, pixel_acc or <class>_iu of one of `class_names` (the first task's
    classes for multi-task data, whose metrics are the first task's), else one line listing the choices. The
    metric names come first: a class called "mean" is not monitored as mean_iu."""
    if monitor in MONITORS or (monitor.endswith("_iu") and monitor[:-len("_iu")] in class_names):
        return
    choices = ", ".join([*MONITORS, *(f"{name}_iu" for name in class_names)])
    raise SegtrainError(f"trainer.monitor={monitor}: expected one of {choices}")


def monitored(metrics: dict, monitor: str, class_names) -> float:
    """The value of trainer.monitor (checked by check_monitor) in `metrics`; NaN for a class absent from both the
    ground truth and the prediction, which never counts as an improvement."""
    if monitor in MONITORS:
        return metrics[monitor]
    return metrics["iu"][list(class_names).index(monitor[:-len("_iu")])]
