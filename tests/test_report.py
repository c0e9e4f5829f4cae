"""segtrain-report over tiny runs and a tiny sweep."""
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from segtrain.data.fake import make_siftflow

from .conftest import TINY

BIN = Path(sys.executable).parent


def run(program, *args, cwd, env=None):
    result = subprocess.run([BIN / program, *map(str, args)], capture_output=True, text=True, cwd=cwd,
                            env={**os.environ, **(env or {})})
    assert result.returncode == 0, result.stderr[-2000:]


def segtrain(*args, cwd, env=None):
    run("segtrain", *args, cwd=cwd, env=env)


@pytest.mark.slow
def test_report_puts_runs_sweeps_and_the_published_figure_side_by_side(tmp_path):
    short = ["trainer.max_iters=4", "trainer.val_interval=2", "trainer.ckpt_interval=2"]
    segtrain(*TINY, *short, f"hydra.run.dir={tmp_path / 'runs' / 'a'}", cwd=tmp_path)
    segtrain(*TINY, *short, "model=fcn32s", f"hydra.run.dir={tmp_path / 'runs' / 'b'}", cwd=tmp_path)
    segtrain("-m", *TINY, "trainer.max_iters=2", "optimizer.lr=1e-3,1e-2", f"hydra.sweep.dir={tmp_path / 'sweep'}",
             cwd=tmp_path)
    # a published recipe, shrunk: FCN-16s on (fake) SIFT Flow, whose paper reports 39.5
    make_siftflow(tmp_path / "data", 32)
    segtrain("experiment=fcn16s_siftflow", "model.pretrained=null", "model.width=0.0625", "optimizer.lr=1e-6",
             "trainer.max_iters=2", "trainer.val_interval=2", "trainer.device=cpu",
             f"hydra.run.dir={tmp_path / 'runs' / 'paper'}", cwd=tmp_path, env={"SEGTRAIN_DATA": tmp_path / "data"})

    # evaluations: one of run a (RUN/eval/<name>-<time>/), an eval sweep over run b; and what is no run
    best = tmp_path / "runs" / "a" / "checkpoints" / "best.pt"
    run("segtrain-eval", f"ckpt={best}", "inference=multiscale", "inference.scales=[1.0,1.5]", "crf=dense",
        "crf.workers=0", cwd=tmp_path)
    run("segtrain-eval", "-m", f"ckpt={tmp_path / 'runs' / 'b' / 'checkpoints' / 'last.pt'}", "crf.w1=3,5",
        "crf=dense", "crf.workers=0", f"hydra.sweep.dir={tmp_path / 'evals'}", cwd=tmp_path)
    run("segtrain-data", "check", "dataset.num_train=2", "dataset.num_val=2", "dataset.image_size=32",
        f"out={tmp_path / 'runs' / 'data-check'}", cwd=tmp_path)
    (tmp_path / "runs" / "empty").mkdir()
    (tmp_path / "evals" / "2" / ".hydra").mkdir(parents=True)  # an evaluation stopped before its results
    (tmp_path / "evals" / "2" / ".hydra" / "config.yaml").write_text(f"ckpt: {best}\n")

    result = subprocess.run([BIN / "segtrain-report", tmp_path / "runs", tmp_path / "sweep", tmp_path / "evals",
                             f"out={tmp_path / 'r'}"], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("| run | kind | model | dataset | settings | iterations | best mean IU | mean IU | "
                               "CRF mean IU |")
    rows = list(csv.DictReader(open(tmp_path / "r" / "segtrain_report.csv")))
    evaluation, = (p.name for p in (tmp_path / "runs" / "a" / "eval").iterdir())
    assert [Path(r["run"]).name for r in rows] == ["a", evaluation, "b", "paper", "0", "1", "0", "1"]
    assert [r["kind"] for r in rows] == ["training", "evaluation"] + ["training"] * 4 + ["evaluation"] * 2
    assert [r["model"] for r in rows] == ["fcn8s", "fcn8s", "fcn32s", "fcn16s", "fcn8s", "fcn8s", "fcn32s", "fcn32s"]
    assert rows[0]["iterations"] == "4" and rows[4]["iterations"] == "2" and "optimizer.lr=0.01" in rows[5]["settings"]
    assert rows[3]["published mean IU"] == "39.5" and rows[0]["published mean IU"] == ""
    assert 0 <= float(rows[2]["best mean IU"]) <= 1 and float(rows[0]["images/s"]) > 0
    assert any("| 39.5 |" in line and "fcn16s" in line for line in lines)
    # each evaluation with its checkpoint, inference and CRF settings and both scores
    evaluated = json.loads((tmp_path / "runs" / "a" / "eval" / evaluation / "metrics.json").read_text())
    assert rows[1]["settings"].startswith(
        "best.pt inference=multiscale(scales=1,1.5 flip) crf=dense(w1=4 sigma_alpha=121")
    assert float(rows[1]["mean IU"]) == evaluated["mean_iu"] and float(rows[1]["CRF mean IU"]) == evaluated["crf"][
        "mean_iu"] and rows[1]["best mean IU"] == "" and rows[1]["iterations"] == str(evaluated["iteration"])
    assert float(rows[1]["mean Dice"]) == evaluated["mean_dice"] and float(rows[1]["CRF mean Dice"]) == evaluated[
        "crf"]["mean_dice"]
    assert float(rows[0]["mean Dice"]) == json.loads((tmp_path / "runs" / "a" / "metrics.json").read_text())[
        "mean_dice"] and rows[0]["CRF mean Dice"] == ""
    assert "crf=dense(w1=3 " in rows[6]["settings"] and "crf=dense(w1=5 " in rows[7]["settings"]
    assert rows[6]["settings"].startswith("last.pt inference=whole ")
    skipped = [line for line in result.stderr.splitlines() if line.startswith("segtrain-report: skipped")]
    assert sorted(skipped) == sorted([
        f"segtrain-report: skipped {tmp_path / 'runs' / 'data-check'}: a segtrain-data report, not a run",
        f"segtrain-report: skipped {tmp_path / 'runs' / 'empty'}: an empty folder",
        f"segtrain-report: skipped {tmp_path / 'evals' / '2'}: an evaluation without results (no metrics.json and "
        "config.yaml: stopped, failed or still running)"])
    picture = Image.open(tmp_path / "r" / "segtrain_report.png")
    assert picture.width == 800 and picture.height > 400  # taller: the legend below the axes, a line per entry

    failed = subprocess.run([BIN / "segtrain-report", tmp_path / "nothing"], capture_output=True, text=True)
    assert failed.returncode == 2 and failed.stderr.count("\n") == 1 and "no such folder" in failed.stderr


def test_report_legend_keeps_every_label_whole_inside_the_picture(tmp_path):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from segtrain.report import plot_curves

    settings = " ".join(f"optimizer.lr=0.00{i} schedule.warmup_iters={i}00 augment=deeplab" for i in range(1, 5))
    rows = [{"run": str(tmp_path / "sweep" / str(job)), "kind": "training", "model": "fcn8s", "settings": settings,
             "curve": [(3, 0.2 + job / 10), (6, 0.3 + job / 10)], "published mean IU": None, "iterations": 6,
             "mean IU": 0.3, "CRF mean IU": None} for job in range(3)]
    rows.append({**rows[0], "run": str(tmp_path / "a" / "eval" / "best-1"), "kind": "evaluation", "curve": [],
                 "iterations": 6, "mean IU": 0.4, "CRF mean IU": 0.45, "checkpoint": str(tmp_path / "a" / "best.pt")})
    figure = plot_curves(rows, tmp_path / "report.png")
    legend, = figure.legends
    texts = [text.get_text().replace("\n    ", " ") for text in legend.get_texts()]
    assert texts == [f"sweep/{job}: fcn8s {settings}" for job in range(3)] + [f"a/best-1: fcn8s {settings}"]
    canvas = FigureCanvasAgg(figure)  # laid out as the PNG was
    canvas.draw()
    renderer = canvas.get_renderer()
    inside = figure.bbox
    for text in legend.get_texts():  # not cut off at the figure's edges
        box = text.get_window_extent(renderer)
        assert inside.x0 <= box.x0 and box.x1 <= inside.x1 and inside.y0 <= box.y0 and box.y1 <= inside.y1


def test_sweep_summaries_show_mean_dice_and_score_trainings_by_their_monitored_metric(tmp_path):
    from segtrain.sweeps import record_job, summarize

    for job, (best_iu, dice, monitor, best, stopped) in enumerate([(0.70, 0.80, "mean_iu", 0.70, False),
                                                                   (0.65, 0.85, "mean_dice", 0.90, True),
                                                                   (0.72, 0.81, "mean_dice", 0.86, False)]):
        (tmp_path / "train" / str(job)).mkdir(parents=True)
        record_job(tmp_path / "train" / str(job), [f"trainer.monitor={monitor}"], "finished", result={
            "best_mean_iu": best_iu, "mean_dice": dice, "monitor": monitor, "best_monitored": best,
            "stopped_early": stopped, "iteration": 4})
    records, markdown = summarize(tmp_path / "train")
    lines = markdown.splitlines()
    assert lines[0] == ("| job | overrides | status | best mean IU | final mean Dice | best monitored | iterations "
                        "| error |")
    assert lines[3] == ("| 1 | trainer.monitor=mean_dice | finished | 65.00 | 85.00 | **90.00 (mean_dice)** | "
                        "4 (stopped early) |  |")  # the best by what it monitored, not by mean IU (job 2)
    assert lines[2].startswith("| 0 | trainer.monitor=mean_iu | finished | 70.00 | 80.00 | 70.00 (mean_iu) | 4 |")
    assert "Best: job 1 (best validation mean_dice 90.00): trainer.monitor=mean_dice" in markdown

    for job, (iu, crf_iu, dice, crf_dice) in enumerate([(0.5, 0.6, 0.55, 0.65), (0.5, None, 0.55, None)]):
        (tmp_path / "eval" / str(job)).mkdir(parents=True)
        record_job(tmp_path / "eval" / str(job), [f"crf.w1={job}"], "finished", result={
            "mean_iu": iu, "crf_mean_iu": crf_iu, "mean_dice": dice, "crf_mean_dice": crf_dice, "iteration": 6})
    _, markdown = summarize(tmp_path / "eval")
    assert markdown.splitlines()[0] == ("| job | overrides | status | mean IU | + CRF | mean Dice | + CRF | "
                                        "iterations | error |")
    assert "| 0 | crf.w1=0 | finished | 50.00 | **60.00** | 55.00 | 65.00 | 6 |  |" in markdown
