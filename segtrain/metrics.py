"""FCN's evaluation (docs/reference.md section 2): one confusion matrix over the whole split, four metrics from it."""
import torch

METRIC_NAMES = ("pixel_acc", "mean_acc", "mean_iu", "fw_iu")


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
    """pixel_acc, mean_acc, mean_iu, fw_iu (floats), per-class `iu` (NaN for a class absent from both) and `acc`,
    and the confusion matrix itself."""
    hist = hist.double().cpu()
    diag = hist.diag()
    gt_pixels, pred_pixels = hist.sum(1), hist.sum(0)
    with torch.no_grad():
        acc = diag / gt_pixels  # NaN where the class is absent from ground truth
        iu = diag / (gt_pixels + pred_pixels - diag)  # NaN only if absent from both; 0 if only predicted
    freq = gt_pixels / hist.sum()
    seen = freq > 0
    return {
        "pixel_acc": (diag.sum() / hist.sum()).item(),
        "mean_acc": acc.nanmean().item(),
        "mean_iu": iu.nanmean().item(),
        "fw_iu": (freq[seen] * iu[seen]).sum().item(),
        "iu": iu.tolist(),
        "acc": acc.tolist(),  # per class: NaN where absent from the ground truth
        "confusion": hist.long().tolist(),  # [true class][predicted class] pixels
    }


def format_metrics(metrics: dict) -> str:
    line = "  ".join(f"{k} {metrics[k]:.4f}" for k in METRIC_NAMES)
    for task, task_metrics in list(metrics.get("tasks", {}).items())[1:]:
        line += f"  | {task}: " + "  ".join(f"{k} {task_metrics[k]:.4f}" for k in METRIC_NAMES)
    return line
