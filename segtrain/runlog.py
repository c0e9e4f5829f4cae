"""Where a training run reports: the progress line (speed, ETA), TensorBoard (scalars, per-class IU and Dice, the
confusion matrix, image panels of the same validation items every time, and the HPARAMS tab of a sweep), and
metrics.json. Under torchrun only rank 0 writes; the others log warnings only."""
import logging
import time
from pathlib import Path

import numpy as np

from .config import flatten
from .jsonio import strict_json
from .metrics import METRIC_NAMES, format_metrics, named
from .progress import Progress
from .visualize import prediction_panels

log = logging.getLogger("segtrain")


class NullWriter:
    """SummaryWriter's calls, doing nothing: ranks other than 0 write no TensorBoard events."""

    def __getattr__(self, name):
        return lambda *args, **kwargs: None

    file_writer = property(lambda self: self)


class RunLogger:
    """The reports of one run in `run_dir` (TensorBoard in run_dir/tb) from iteration `start` of `total`, each of
    `images_per_step` images; `writes`: this process writes files (rank 0)."""

    def __init__(self, run_dir: Path, start: int, total: int, images_per_step: int, writes: bool):
        from torch.utils.tensorboard import SummaryWriter

        self.run_dir, self.writes = run_dir, writes
        # purge_step drops events a crashed run logged after its last checkpoint, so curves don't double back
        self.writer = SummaryWriter(run_dir / "tb", purge_step=start if start else None) if writes else NullWriter()
        self.progress = Progress(total, unit="it", start=start, per_step=images_per_step, quiet=not writes)
        self.loss_sum, self.loss_count = None, 0

    def step(self, iteration: int, loss, lr=None):
        """An iteration done with its loss (a tensor: summed on its device, no host sync); at a log step (`lr`
        given) the mean loss since the last one, which goes to TensorBoard and the progress line and is returned."""
        self.loss_sum = loss.detach() if self.loss_count == 0 else self.loss_sum + loss.detach()
        self.loss_count += 1
        if lr is None:
            self.progress.tick(iteration)
            return None
        mean_loss = (self.loss_sum / self.loss_count).item()  # the loop's only host sync, once per log step
        self.loss_count = 0
        self.writer.add_scalar("train/loss", mean_loss, iteration)
        self.writer.add_scalar("train/lr", lr, iteration)
        self.progress.update(iteration, mean_loss, lr)
        return mean_loss

    def message(self, text: str, level: int = logging.INFO) -> None:
        self.progress.write(text, level)

    def validation(self, iteration: int, metrics: dict, improved: bool, samples, names, dataset,
                   began: float) -> None:
        """A validation's line, its metrics, per-class IU and Dice, per-task metrics, the confusion matrix and bar
        chart, and the panels of `samples` (image, target, prediction) named `names`; the time since `began`
        (time.perf_counter() as it started) is left out of the training speed."""
        self.message(f"val @ {iteration}: {format_metrics(metrics)}" + ("  (best)" if improved else ""))
        class_names = list(dataset.class_names)
        for name in METRIC_NAMES:
            self.writer.add_scalar(f"val/{name}", metrics[name], iteration)
        for kind in ("iu", "dice"):
            for name, value in zip(class_names, metrics[kind]):
                if not np.isnan(value):
                    self.writer.add_scalar(f"val_{kind}/{name}", value, iteration)
        for task, task_metrics in metrics.get("tasks", {}).items():  # multi-task: every task's metrics
            for name in METRIC_NAMES:
                self.writer.add_scalar(f"val_{task}/{name}", task_metrics[name], iteration)
        if samples:
            self.writer.add_image("val/input_gt_pred", prediction_panels(samples, dataset.mean, dataset.std,
                                                                         dataset.palette, names), iteration)
        if self.writes:  # pictures only where they are written
            from .plots import confusion_figure, iu_bar_figure

            self.writer.add_figure("val/confusion", confusion_figure(
                metrics["confusion"], class_names[:len(metrics["confusion"])]), iteration)
            self.writer.add_figure("val/iu_per_class", iu_bar_figure(metrics["iu"], class_names[:len(metrics["iu"])]),
                                   iteration)
        self.progress.exclude(time.perf_counter() - began)

    def finish(self, metrics: dict, best: dict, iteration: int, class_names, config: dict, trained: dict) -> dict:
        """The run's result (final metrics; `best`: the best mean IU, the monitored metric's best value and its
        iteration, whether the run stopped early (at `iteration`), as Checkpointer.summary gives them; speed over
        every session) into metrics.json and TensorBoard's HPARAMS tab, which then compares the jobs of a sweep side
        by side."""
        result = {**named(metrics), **best, "iu": dict(zip(class_names, metrics["iu"])),
                  "dice": dict(zip(class_names, metrics.get("dice", []))),
                  "iteration": iteration,
                  **({"tasks": metrics["tasks"]} if "tasks" in metrics else {}),
                  "train_images_per_s": trained["images"] / max(trained["seconds"], 1e-9)}
        from torch.utils.tensorboard.summary import hparams

        hparam_values = {k: v for k, v in flatten(config).items() if isinstance(v, (int, float, str, bool))}
        for summary in hparams(hparam_values, {f"val/{k}": v for k, v in named(metrics).items()}):
            self.writer.file_writer.add_summary(summary)
        self.writer.close()
        if self.writes:
            (self.run_dir / "metrics.json").write_text(strict_json(result, indent=2))
        log.info("done: %s  best mean_iu %.4f%s  checkpoints in %s", format_metrics(metrics), best["best_mean_iu"],
                 "" if best["monitor"] == "mean_iu" else f"  best {best['monitor']} {best['best_monitored']:.4f}",
                 self.run_dir / "checkpoints")
        return result

    def close(self) -> None:
        """The bar and the TensorBoard writer's thread (also after a failure)."""
        self.progress.close()
        self.writer.close()
