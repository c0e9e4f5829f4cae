"""Runs that meet real life: stop signals, bad values, failed writes, checkpoints that must stay usable."""
import json
import logging
import math
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from segtrain.checkpoint import load_checkpoint
from segtrain.jsonio import strict_json
from segtrain.errors import SegtrainError
from segtrain.train import train

from .conftest import TINY

# the real console entry point, with a hook that parks the run inside iteration 5 until the test says go
PAUSING_RUN = """
import os, sys, time, pathlib
import segtrain.train as train_module
real_step, calls = train_module.train_step, []
def step(*args, **kwargs):
    calls.append(1)
    loss = real_step(*args, **kwargs)
    if len(calls) == 5:
        pathlib.Path(os.environ["READY"]).write_text("")
        while not pathlib.Path(os.environ["GO"]).exists():
            time.sleep(0.02)
    return loss
train_module.train_step = step
from segtrain.cli.train import run
sys.argv = ["segtrain", *sys.argv[1:]]
run()
"""


@pytest.mark.parametrize("signum,process_group", [(signal.SIGINT, False), (signal.SIGTERM, False),
                                                   (signal.SIGUSR1, False), (signal.SIGINT, True)])
@pytest.mark.slow
def test_a_stop_signal_saves_the_iteration_and_the_run_resumes_bit_exact(signum, process_group, finished_run,
                                                                         tiny_cfg, tmp_path):
    """process_group: Ctrl-C in a terminal reaches the DataLoader workers too; they must not die of it."""
    run_dir = tmp_path / "run"
    env = {**os.environ, "READY": str(tmp_path / "ready"), "GO": str(tmp_path / "go")}
    workers = ["trainer.num_workers=1"] if process_group else []
    process = subprocess.Popen([sys.executable, "-c", PAUSING_RUN, *TINY, *workers, f"hydra.run.dir={run_dir}"],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    deadline = time.time() + 120
    while not (tmp_path / "ready").exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    if process_group:
        os.killpg(process.pid, signum)
    else:
        process.send_signal(signum)
    time.sleep(0.2)
    (tmp_path / "go").write_text("")
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 128 + signum, output[-2000:]
    assert "Traceback" not in output
    stop_lines = [line for line in output.splitlines() if signal.Signals(signum).name in line]
    assert len(stop_lines) == 1, output[-2000:]  # one line per stop
    assert stop_lines[0].endswith(f"received {signal.Signals(signum).name}: interrupted at iteration 5; resume "
                                  f"with: segtrain hydra.run.dir={run_dir} trainer.resume=auto")
    assert load_checkpoint(run_dir / "checkpoints" / "last.pt")["iteration"] == 5
    assert "interrupted at iteration 5" in (run_dir / "segtrain.log").read_text()

    train(tiny_cfg("trainer.resume=auto"), run_dir)
    full = load_checkpoint(finished_run[0] / "checkpoints" / "last.pt")
    resumed = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    for key, value in full["model"].items():
        assert torch.equal(value, resumed["model"][key]), key
    assert resumed["metrics"] == full["metrics"]


@pytest.mark.parametrize("override,message", [
    ("trainer.val_interval=0", "trainer.val_interval=0: expected a whole number of iterations >= 1"),
    ("trainer.max_iters=0", "trainer.max_iters=0: expected a whole number of iterations >= 1"),
    ("trainer.batch_size=0", "trainer.batch_size=0: expected a whole number >= 1"),
    ("optimizer.lr=-1", "optimizer.lr=-1.0: expected a learning rate > 0"),
    ("model.width=0", "model.width=0.0: expected a channel multiplier in (0, 16]"),
    ("loss.sample_rate=1.5", "loss.sample_rate=1.5: expected a probability in (0, 1]"),
    ("augment.crop_size=0", "augment.crop_size=0: expected a whole number of pixels in [8, 8192]"),
    ("+dataset.ignore_index=11", "dataset.ignore_index: not a key of the dataset schema"),
])
def test_values_out_of_range_and_unknown_keys_are_one_line_errors(override, message, tiny_cfg, tmp_path):
    with pytest.raises(SegtrainError) as info:
        train(tiny_cfg(override), tmp_path)
    assert str(info.value).startswith(message) and "\n" not in str(info.value)
    assert not (tmp_path / "checkpoints").exists()


def test_fatal_error_is_the_last_line_of_the_log_too(tmp_path):
    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "segtrain.cli.train", *TINY, "trainer.max_iters=0", f"hydra.run.dir={run_dir}"]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 2
    expected = "segtrain: error: trainer.max_iters=0: expected a whole number of iterations >= 1"
    assert result.stderr.strip().splitlines() == [expected]
    assert not run_dir.exists()  # refused before any work: no folder for a run that never started
    run_dir.mkdir()  # the folder of a run that is continued: its log ends with the refusal, earlier lines kept
    (run_dir / "segtrain.log").write_text("[earlier] step 10\n")
    result = subprocess.run(command + ["trainer.resume=auto"], capture_output=True, text=True)
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [expected]
    assert (run_dir / "segtrain.log").read_text().splitlines() == ["[earlier] step 10", expected]


@pytest.mark.slow
def test_best_pt_holds_no_optimizer_unless_asked_and_resume_auto_falls_back(finished_run, tiny_cfg, tmp_path):
    run_dir, _ = finished_run
    best = load_checkpoint(run_dir / "checkpoints" / "best.pt")
    assert "optimizer" not in best and {"model", "config", "data", "metrics"} <= set(best)
    assert (run_dir / "checkpoints" / "best.pt").stat().st_size < (run_dir / "checkpoints" / "last.pt").stat().st_size

    train(tiny_cfg("trainer.max_iters=3", "trainer.best_with_state=true"), tmp_path)
    assert "optimizer" in load_checkpoint(tmp_path / "checkpoints" / "best.pt")
    (tmp_path / "checkpoints" / "last.pt").unlink()  # e.g. killed during the first last.pt write
    (tmp_path / "checkpoints" / ".last.pt.tmp").write_bytes(b"partial")
    train(tiny_cfg("trainer.max_iters=4", "trainer.best_with_state=true", "trainer.resume=auto"), tmp_path)
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["iteration"] == 4
    assert not (tmp_path / "checkpoints" / ".last.pt.tmp").exists()  # stale temporaries are removed

    other = tmp_path / "weights_only"
    train(tiny_cfg("trainer.max_iters=3"), other)
    (other / "checkpoints" / "last.pt").unlink()
    with pytest.raises(SegtrainError, match="its best.pt holds only the weights"):
        train(tiny_cfg("trainer.resume=auto"), other)


def test_nan_before_the_first_checkpoint_says_so(tiny_cfg, tmp_path):
    with pytest.raises(SegtrainError, match="no checkpoint had been written yet"):
        train(tiny_cfg("optimizer=sgd", "optimizer.lr=1e12", "trainer.log_interval=1", "trainer.ckpt_interval=100",
                       "trainer.val_interval=100"), tmp_path)


def test_init_from_another_width_is_an_error_unless_not_strict(finished_run, tiny_cfg, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="segtrain")
    ckpt = finished_run[0] / "checkpoints" / "last.pt"
    with pytest.raises(SegtrainError, match=r"weights have other shapes \(backbone.body.0.weight"):
        train(tiny_cfg("model.width=0.125", f"model.init_from={ckpt}", "trainer.max_iters=1"), tmp_path / "a")
    train(tiny_cfg("model.width=0.125", f"model.init_from={ckpt}", "model.init_from_strict=false",
                   "trainer.max_iters=1"), tmp_path / "b")
    assert "kept as built: backbone.body.0.weight" in caplog.text


def test_json_is_strict(finished_run):
    assert strict_json({"iu": [float("nan"), 1.0], "x": float("inf")}) == '{"iu": [null, 1.0], "x": null}'

    def refuse(constant):
        raise ValueError(constant)

    json.loads((finished_run[0] / "metrics.json").read_text(), parse_constant=refuse)
    assert not math.isnan(json.loads((finished_run[0] / "metrics.json").read_text())["mean_iu"])


def segtrain(*args, cwd):
    return subprocess.run([sys.executable, "-m", "segtrain.cli.train", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd)


@pytest.mark.slow
def test_the_readme_resume_line_continues_a_run_made_with_many_overrides(tmp_path):
    run_dir = tmp_path / "run"
    made = [*TINY, "model=fcn16s", "optimizer=sgd", "optimizer.lr=0.01", "schedule=step", "schedule.step_size=3"]
    result = segtrain(*made, "trainer.max_iters=4", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    hydra_files = {p.name: p.read_bytes() for p in (run_dir / ".hydra").iterdir()}
    checkpoints = {p.name: p.read_bytes() for p in (run_dir / "checkpoints").iterdir()}

    # a rerun without resume is refused before Hydra writes anything: every byte stays
    rejected = segtrain(*made, f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert rejected.returncode == 2 and "already holds checkpoints" in rejected.stderr
    assert {p.name: p.read_bytes() for p in (run_dir / ".hydra").iterdir()} == hydra_files
    assert {p.name: p.read_bytes() for p in (run_dir / "checkpoints").iterdir()} == checkpoints

    # another model on resume is refused; the README's line, with one key on top, continues the stored config
    refused = segtrain(f"hydra.run.dir={run_dir}", "trainer.resume=auto", "model=fcn8s", cwd=tmp_path)
    assert refused.returncode == 2 and "was trained with model=fcn16s" in refused.stderr
    refused = segtrain(f"hydra.run.dir={run_dir}", "trainer.resume=auto", "optimizer.lr=0.1", cwd=tmp_path)
    assert refused.returncode == 2 and "optimizer.lr" in refused.stderr and refused.stderr.count("\n") == 1
    resumed = segtrain(f"hydra.run.dir={run_dir}", "trainer.resume=auto", "trainer.max_iters=6", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed from" in resumed.stdout and "with the stored config and: trainer.max_iters=6" in resumed.stdout
    state = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert state["iteration"] == 6 and state["config"]["model"]["name"] == "fcn16s"
    assert state["config"]["schedule"]["step_size"] == 3 and state["config"]["optimizer"]["lr"] == 0.01
    assert {p.name: p.read_bytes() for p in (run_dir / ".hydra").iterdir()} == hydra_files  # the original record


@pytest.mark.slow
def test_a_sweep_with_a_failing_job_finishes_summarises_and_resumes(tmp_path):
    sweep_dir = tmp_path / "sweep"
    args = ["-m", *TINY, "trainer.max_iters=2", "trainer.log_interval=1", "optimizer=sgd", "optimizer.lr=1e30,0.01",
            f"hydra.sweep.dir={sweep_dir}"]
    result = segtrain(*args, cwd=tmp_path)
    assert result.returncode == 1, result.stderr[-2000:]
    assert "segtrain: error: the weights became non-finite by iteration 2" in result.stderr
    assert "1 of 2 jobs finished" in result.stderr
    summary = json.loads((sweep_dir / "sweep_summary.json").read_text())
    assert [(r["status"], r["overrides"][-1]) for r in summary] == [("failed", "optimizer.lr=1e+30"),
                                                                    ("finished", "optimizer.lr=0.01")]
    assert summary[1]["iteration"] == 2 and 0 <= summary[1]["best_mean_iu"] <= 1
    assert "non-finite" in summary[0]["error"] and summary[0]["run_dir"].endswith("0")
    assert "| 1 | " in (sweep_dir / "sweep_summary.md").read_text()
    finished = (sweep_dir / "1" / "checkpoints" / "last.pt").read_bytes()

    again = segtrain(*args, "trainer.resume=auto", cwd=tmp_path)
    assert again.returncode == 1 and "job already finished" in again.stdout + again.stderr
    assert (sweep_dir / "1" / "checkpoints" / "last.pt").read_bytes() == finished  # skipped, not retrained


@pytest.mark.slow
def test_slurm_preemption_saves_then_hands_over_to_submitits_requeue(finished_run, tiny_cfg, tmp_path):
    """submitit's SIGUSR2 handler (requeue and exit) runs after last.pt is written; the requeued job, with the
    launcher's trainer.resume=auto, continues bit-exact."""
    assert compose_launcher_resume() == "auto"
    run_dir = tmp_path / "run"
    requeue_hook = ("import signal, pathlib, os\n"
                    "def requeue(signum, frame):\n"
                    "    pathlib.Path(os.environ['READY']).with_name('requeued').write_text('')\n"
                    "    os._exit(0)\n"
                    "signal.signal(signal.SIGUSR2, requeue)\n")
    env = {**os.environ, "READY": str(tmp_path / "ready"), "GO": str(tmp_path / "go")}
    process = subprocess.Popen([sys.executable, "-c", requeue_hook + PAUSING_RUN, *TINY, f"hydra.run.dir={run_dir}"],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    while not (tmp_path / "ready").exists() and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGUSR2)
    time.sleep(0.2)
    (tmp_path / "go").write_text("")
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 0 and (tmp_path / "requeued").exists(), output[-2000:]
    assert load_checkpoint(run_dir / "checkpoints" / "last.pt")["iteration"] == 5
    train(tiny_cfg("trainer.resume=auto"), run_dir)
    full = load_checkpoint(finished_run[0] / "checkpoints" / "last.pt")["model"]
    resumed = load_checkpoint(run_dir / "checkpoints" / "last.pt")["model"]
    assert all(torch.equal(v, resumed[k]) for k, v in full.items())


def compose_launcher_resume():
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    from .conftest import compose_config

    return compose_config("launcher=slurm").trainer.resume


def test_an_unsafe_pickle_is_refused_in_one_line(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"model": {}, "config": {}, "payload": SegtrainError("x")}, path)
    with pytest.raises(SegtrainError) as info:
        load_checkpoint(path)
    assert str(info.value) == (f"checkpoint {path}: not a safe segtrain checkpoint (it holds objects other than "
                               "tensors and plain values)")


class _BadItem(torch.utils.data.Dataset):
    def __len__(self):
        return 2

    def __getitem__(self, index):
        raise SegtrainError("masks/x.png: mask values 9 are outside the 5 classes")


def test_an_error_in_a_dataloader_worker_is_the_same_one_line():
    from segtrain.errors import one_line

    with pytest.raises(SegtrainError) as info:
        next(iter(torch.utils.data.DataLoader(_BadItem(), num_workers=1)))
    assert "Traceback" in str(info.value)  # what PyTorch makes of it
    assert one_line(info.value) == "masks/x.png: mask values 9 are outside the 5 classes"


def test_predict_never_writes_over_its_inputs_or_foreign_files(finished_run, tmp_path):
    from PIL import Image

    from segtrain.cli.predict import run as predict

    ckpt = f"ckpt={finished_run[0] / 'checkpoints' / 'best.pt'}"
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.new("RGB", (16, 12), (200, 10, 10)).save(photos / "b.png")
    before = (photos / "b.png").read_bytes()
    with pytest.raises(SegtrainError, match="is the input folder"):
        predict([ckpt, f"input={photos}", f"output={photos}"])
    assert (photos / "b.png").read_bytes() == before
    out = tmp_path / "out"
    out.mkdir()
    (out / "b_overlay.png").write_bytes(b"mine")
    with pytest.raises(SegtrainError, match="already holds b_overlay.png, which segtrain-predict did not write"):
        predict([ckpt, f"input={photos}", f"output={out}"])
    (out / "b_overlay.png").unlink()
    assert predict([ckpt, f"input={photos}", f"output={out}"]) == 0
    assert predict([ckpt, f"input={photos}", f"output={out}"]) == 0  # its own files it may replace
    Image.new("RGB", (16, 12)).save(photos / "b.jpg")
    with pytest.raises(SegtrainError, match="images share the names b"):
        predict([ckpt, f"input={photos}", f"output={tmp_path / 'other'}"])


@pytest.mark.slow
def test_resume_auto_skips_a_damaged_last_pt_for_a_best_pt_with_state(tiny_cfg, tmp_path):
    train(tiny_cfg("trainer.max_iters=3", "trainer.best_with_state=true"), tmp_path)
    (tmp_path / "checkpoints" / "last.pt").write_bytes(b"truncated")
    train(tiny_cfg("trainer.max_iters=4", "trainer.best_with_state=true", "trainer.resume=auto"), tmp_path)
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["iteration"] == 4


def test_an_unwritable_run_dir_fails_before_any_work(tiny_cfg, tmp_path, monkeypatch):
    from pathlib import Path

    def refuse(self, data):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "write_bytes", refuse)  # root ignores file modes, so the refusal is simulated
    with pytest.raises(SegtrainError, match=r"hydra.run.dir=.*: cannot write there \(Permission denied\)"):
        train(tiny_cfg(), tmp_path)
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.slow
def test_a_second_ctrl_c_aborts_at_once(tmp_path):
    run_dir = tmp_path / "run"
    env = {**os.environ, "READY": str(tmp_path / "ready"), "GO": str(tmp_path / "never")}
    process = subprocess.Popen([sys.executable, "-c", PAUSING_RUN, *TINY, f"hydra.run.dir={run_dir}"], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while not (tmp_path / "ready").exists() and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    time.sleep(0.3)
    process.send_signal(signal.SIGINT)  # the run is still inside iteration 5: the second one does not wait
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130 and stderr.strip().splitlines() == [
        "segtrain: aborted by Ctrl-C (checkpoints already written are kept)"]
    assert load_checkpoint(run_dir / "checkpoints" / "last.pt")["iteration"] == 4


@pytest.mark.parametrize("failure,cause", [
    (OSError(28, "No space left on device"), "No space left on device"),
    (OSError(30, "Read-only file system"), "Read-only file system"),
    (RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 123 vs 456"),
     "the disk is full (the write stopped short)"),
])
def test_a_failed_checkpoint_write_is_one_line_and_leaves_no_partial_file(failure, cause, tmp_path, monkeypatch):
    from segtrain.checkpoint import save_checkpoint

    def fail(state, f):
        f.write(b"partial")
        raise failure

    monkeypatch.setattr(torch, "save", fail)
    with pytest.raises(SegtrainError) as info:
        save_checkpoint({"model": {}}, tmp_path / "best.pt")
    assert str(info.value) == (f"{tmp_path / 'best.pt'}: cannot write the checkpoint ({cause}); "
                               "no earlier best.pt exists")
    assert list(tmp_path.iterdir()) == []


# each rank parks in iteration 5 and writes its pid to READY<rank>
RANK_PAUSING_RUN = PAUSING_RUN.replace(
    'pathlib.Path(os.environ["READY"]).write_text("")',
    'pathlib.Path(os.environ["READY"] + os.environ["RANK"]).write_text(str(os.getpid()))')


@pytest.mark.slow
def test_under_torchrun_a_signal_to_one_rank_stops_every_rank_at_the_same_iteration(tmp_path):
    script = tmp_path / "pausing_run.py"
    script.write_text(RANK_PAUSING_RUN)
    run_dir = tmp_path / "run"
    env = {**os.environ, "READY": str(tmp_path / "ready"), "GO": str(tmp_path / "go")}
    args = ["model.width=0.0625", "model.batch_norm=false", "model.dropout=0", "dataset.num_train=16",
            "dataset.num_val=4", "dataset.image_size=32", "trainer.max_iters=8", "trainer.batch_size=4",
            "trainer.val_batch_size=2", "trainer.val_interval=4", "trainer.ckpt_interval=4", "trainer.log_interval=1",
            "trainer.device=cpu", f"hydra.run.dir={run_dir}"]
    process = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                                str(script), *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    deadline = time.time() + 180
    while not all((tmp_path / f"ready{r}").exists() for r in (0, 1)) and process.poll() is None \
            and time.time() < deadline:
        time.sleep(0.05)
    os.kill(int((tmp_path / "ready1").read_text()), signal.SIGTERM)  # rank 1 only: rank 0 hears nothing
    time.sleep(0.3)
    (tmp_path / "go").write_text("")
    output, _ = process.communicate(timeout=180)
    assert process.returncode != 0  # torchrun reports its workers' exit 143
    assert "interrupted at iteration 5" in output, output[-3000:]
    assert load_checkpoint(run_dir / "checkpoints" / "last.pt")["iteration"] == 5  # written by rank 0
