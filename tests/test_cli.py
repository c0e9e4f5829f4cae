"""The installed console scripts, run as a user runs them: in a subprocess, from another working directory."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from .conftest import TINY

BIN = Path(sys.executable).parent


def run(*args, cwd):
    return subprocess.run([str(BIN / args[0]), *map(str, args[1:])], cwd=cwd, capture_output=True, text=True,
                          timeout=600)


def test_eval_errors_are_one_line(tmp_path):
    result = run("segtrain-eval", f"ckpt={tmp_path / 'missing.pt'}", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"segtrain-eval: error: checkpoint {tmp_path / 'missing.pt'}: "
                                                  "no such file"]
    result = run("segtrain-eval", cwd=tmp_path)
    assert result.returncode == 2 and "ckpt=PATH is required" in result.stderr
    assert not any(tmp_path.iterdir())  # refused before Hydra made any folder


@pytest.mark.parametrize("app,groups,keys", [
    ("segtrain", ["model", "dataset", "optimizer", "schedule", "loss", "augment", "trainer", "experiment"], None),
    ("segtrain-eval", ["crf", "inference", "eval_sweep"], ["ckpt=PATH", "ensemble=[]", "name=null"]),
    ("segtrain-predict", ["crf", "inference"], ["ckpt=PATH", "input=PATH", "output=FOLDER", "alpha=0.5",
                                                "skip_classes=null", "roi=null", "roi_suffix=null"]),
    ("segtrain-export", [], ["ckpt=PATH", "format=onnx", "out=null", "height=512", "width=512", "dynamic=true"])])
def test_every_app_lists_its_own_groups_keys_and_choices_in_help(app, groups, keys, tmp_path):
    result = run(app, "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    groups_part = result.stdout.partition("== Config ==")[0]
    listed = {line.partition(":")[0]: line.partition(": ")[2].split(", ") for line in groups_part.splitlines()
              if line.partition(":")[0] in ("model", "dataset", "optimizer", "schedule", "loss", "augment", "trainer",
                                            "experiment", "crf", "inference", "eval_sweep", "sweep", "launcher")}
    assert [group for group in listed if group in groups] == groups
    configs = Path(__file__).parents[1] / "configs"
    for group in groups:  # every choice, and no schema among them
        assert listed[group] == sorted(p.stem for p in (configs / group).glob("*.yaml")
                                       if not p.stem.startswith("_")), group
    assert "_schema" not in result.stdout.partition("== Config ==")[0]
    if app != "segtrain":
        assert "ckpt: ???" in result.stdout
        # a checkpoint app's own keys, one line each: KEY=DEFAULT (or its placeholder) and what it does
        section = result.stdout.partition("== Keys (key=value) ==\n")[2].partition("\n\n")[0].splitlines()
        assert [line.split()[0] for line in section] == keys, section
        assert all(len(line.split(None, 1)) == 2 for line in section), section


@pytest.mark.slow
def test_eval_sweeps_two_checkpoints_by_two_crf_settings_with_one_scoring_each(finished_run, tmp_path):
    run_dir, _ = finished_run
    ckpts = ",".join(str(run_dir / "checkpoints" / name) for name in ("best.pt", "last.pt"))
    result = run("segtrain-eval", "-m", f"ckpt={ckpts}", "crf=dense", "crf.w1=3,5", "crf.workers=0",
                 f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    jobs = sorted(p for p in (tmp_path / "sweep").iterdir() if p.is_dir())
    assert [p.name for p in jobs] == ["0", "1", "2", "3"]
    results = [json.loads((job / "metrics.json").read_text()) for job in jobs]
    assert [(Path(r["checkpoint"]).name, r["crf"]["params"]["w1"]) for r in results] == [
        ("best.pt", 3.0), ("best.pt", 5.0), ("last.pt", 3.0), ("last.pt", 5.0)]
    # the network scored each checkpoint's split once: the second CRF setting reused the scores
    reused = ["reused" in (job / "segtrain-eval.log").read_text() for job in jobs]
    assert reused == [False, True, False, True]
    summary = (tmp_path / "sweep" / "sweep_summary.md").read_text()
    assert "| mean IU | + CRF |" in summary and summary.count("| finished |") == 4
    rows = json.loads((tmp_path / "sweep" / "sweep_summary.json").read_text())
    assert [row["crf_mean_iu"] for row in rows] == [r["crf"]["mean_iu"] for r in results]


def test_multirun_sweep_gives_each_job_its_own_run(tmp_path):
    sweep_dir = tmp_path / "sweep"
    result = run("segtrain", "-m", *TINY, "trainer.max_iters=2", "schedule=fixed", "optimizer.lr=1e-3,1e-2",
                 f"hydra.sweep.dir={sweep_dir}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lrs = []
    for job in ("0", "1"):
        assert (sweep_dir / job / "checkpoints" / "last.pt").is_file()
        assert json.loads((sweep_dir / job / "metrics.json").read_text())["iteration"] == 2
        events = EventAccumulator(str(sweep_dir / job / "tb")).Reload()
        assert "_hparams_/experiment" in events.summary_metadata  # the HPARAMS tab compares the jobs
        lrs.append(events.Scalars("train/lr")[0].value)
    assert lrs == pytest.approx([1e-3, 1e-2])


@pytest.mark.slow
def test_torchrun_two_cpu_processes_take_the_single_process_steps(tmp_path):
    """DDP over gloo with the global batch split 2 + 2 ends with the weights of one process taking batches of 4,
    and only rank 0 writes into the one run directory."""
    import torch

    import tempfile

    scratch_before = set(Path(tempfile.gettempdir()).glob("segtrain-rank*"))
    args = ["model.width=0.0625", "model.batch_norm=false", "model.dropout=0", "dataset.num_train=16",
            "dataset.num_val=5", "dataset.image_size=32", "trainer.max_iters=4", "trainer.batch_size=4",
            "trainer.val_batch_size=2", "trainer.val_interval=2", "trainer.ckpt_interval=2", "trainer.log_interval=1",
            "trainer.device=cpu", "optimizer=sgd", "optimizer.lr=0.05"]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m",
                          "segtrain.cli.train", *args, f"hydra.run.dir={tmp_path / 'two'}"],
                         capture_output=True, text=True)
    assert two.returncode == 0, two.stderr[-3000:]
    one = subprocess.run([sys.executable, "-m", "segtrain.cli.train", *args, f"hydra.run.dir={tmp_path / 'one'}"],
                         capture_output=True, text=True)
    assert one.returncode == 0, one.stderr[-3000:]
    single = torch.load(tmp_path / "one" / "checkpoints" / "last.pt", weights_only=True)
    parallel = torch.load(tmp_path / "two" / "checkpoints" / "last.pt", weights_only=True)
    assert parallel["model"]["score_fr.weight"].abs().sum() > 0  # it trained (score layers start at zero)
    for key, value in single["model"].items():
        torch.testing.assert_close(parallel["model"][key], value, rtol=1e-5, atol=1e-6)
    assert parallel["metrics"] == single["metrics"]  # confusion matrices summed over the two shards of val
    assert sorted(p.name for p in (tmp_path / "two" / "checkpoints").iterdir()) == ["best.pt", "last.pt"]
    assert len(list((tmp_path / "two" / "tb").iterdir())) == 1  # one TensorBoard event file: rank 0's
    assert set(Path(tempfile.gettempdir()).glob("segtrain-rank*")) == scratch_before  # rank 1 cleaned up


EXPERIMENTS = sorted(p.stem for p in (Path(__file__).parents[1] / "configs" / "experiment").glob("*.yaml")
                     if not p.stem.startswith("_"))  # _fcn_caffe: the FCN recipes' shared solver


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_pins_a_recipe_that_composes(name):
    from .conftest import compose_config

    cfg = compose_config(f"experiment={name}")
    assert name.split("_")[0] in cfg.model.name or name.split("_")[0] == cfg.model.crf  # crfrnn_voc: FCN-8s + CRF
    assert cfg.optimizer.name == ("adamw" if name.startswith("frrn") else "sgd")  # FRRN trains with Adam
    text = (Path(__file__).parents[1] / "configs" / "experiment" / f"{name}.yaml").read_text()
    assert "Published" in text or "docs/reference.md gives no figure" in text  # what the recipe should reach


def test_fcn_and_deeplab_recipes_carry_the_papers_settings():
    from .conftest import compose_config

    fcn = compose_config("experiment=fcn32s_voc")
    assert (fcn.optimizer.lr, fcn.optimizer.momentum, fcn.optimizer.bias_lr_mult, fcn.optimizer.bias_decay) == (
        1e-10, 0.99, 2.0, False)
    assert (fcn.loss.normalize, fcn.trainer.batch_size, fcn.dataset.train_split, fcn.dataset.val_split) == (
        False, 1, "sbd_train", "seg11valid")
    aspp = compose_config("experiment=deeplab_aspp_voc")
    assert aspp.model.frozen_bn and aspp.optimizer.head_lr_mult == 10 and aspp.schedule.name == "poly"
    assert (aspp.augment.name, aspp.augment.crop_size, aspp.augment.scale_min, aspp.augment.scale_max) == (
        "deeplab", 321, 0.5, 1.5)
    assert compose_config("experiment=fcn16s_siftflow").dataset.task == "both"
    assert compose_config("experiment=fcn32s_nyud_rgb_hha").dataset.modality == "rgb_hha"


@pytest.mark.slow
def test_optuna_sweep_runs_trials_and_reports_the_best(tmp_path):
    """Optuna maximises each job's best value of trainer.monitor (here mean Dice), and the summary marks it."""
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    from omegaconf import OmegaConf

    result = subprocess.run(
        [sys.executable, "-m", "segtrain.cli.train", "-m", "sweep=optuna_lr", "hydra.sweeper.n_trials=2", *TINY,
         "trainer.max_iters=2", "trainer.monitor=mean_dice", f"hydra.sweep.dir={tmp_path}"], capture_output=True,
        text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    best = OmegaConf.load(tmp_path / "optimization_results.yaml")
    assert "optimizer.lr" in best.best_params
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["0", "1"]
    # the summary marks the best trial and shows the sampled rates short; its JSON keeps them whole
    records = json.loads((tmp_path / "sweep_summary.json").read_text())
    summary = (tmp_path / "sweep_summary.md").read_text()
    best_job = max(records, key=lambda r: r["best_monitored"])
    assert best.best_value == best_job["best_monitored"] != best_job["best_mean_iu"]
    assert summary.count("**") == 2 and f"| **{100 * best_job['best_monitored']:.2f} (mean_dice)** |" in summary
    for record in records:
        lr = next(o for o in record["overrides"] if o.startswith("optimizer.lr="))
        assert f"optimizer.lr={float(lr.partition('=')[2]):.4g} " in summary and lr not in summary
    assert f"; best: job {Path(best_job['run_dir']).name} ({100 * best_job['best_monitored']:.2f})" in result.stderr


def test_optuna_crf_search_draws_short_values_and_marks_the_best_trial(finished_run, tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    ckpt = finished_run[0] / "checkpoints" / "last.pt"
    result = run("segtrain-eval", "-m", "eval_sweep=optuna_crf", f"ckpt={ckpt}", "hydra.sweeper.n_trials=3",
                 "crf.workers=0", f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    records = json.loads((tmp_path / "sweep" / "sweep_summary.json").read_text())
    for record in records:  # on the search's steps: the values one reads are the values evaluated
        values = dict(o.split("=", 1) for o in record["overrides"] if o.startswith("crf."))
        assert float(values["crf.w1"]) * 4 % 1 == 0 and float(values["crf.sigma_beta"]) * 4 % 1 == 0
        assert float(values["crf.sigma_alpha"]) % 5 == 0 and len(values["crf.w1"]) <= 4
    best = max(records, key=lambda r: r["crf_mean_iu"])  # the first of equals, as Optuna
    summary = (tmp_path / "sweep" / "sweep_summary.md").read_text()
    row, = (line for line in summary.splitlines() if "**" in line)  # its score after the CRF in bold
    assert row.startswith(f"| {Path(best['run_dir']).name} | ") and row.count("**") == 2
    assert f" | **{100 * best['crf_mean_iu']:.2f}** | " in row
    assert f"Best: job {Path(best['run_dir']).name} (mean IU after the CRF {100 * best['crf_mean_iu']:.2f}): " \
           f"{' '.join(best['overrides'])}" in summary


def test_slurm_launcher_config_selects_submitit():
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    from segtrain.config import compose

    cfg = compose(["launcher=slurm"], hydra_keys=True)
    assert "submitit" in cfg.hydra.launcher._target_.lower() and cfg.hydra.launcher.gpus_per_node == 1
