"""Every process ends when its work ends (issue 21): worker errors, sweeps, interrupted evaluations and
predictions, the exit watchdog; resumes that finish what a stop left undone; commands that never write over a
result. A hang fails by the subprocess timeout; the watchdog is set far beyond it so that it cannot hide one."""
import hashlib
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import segtrain.train as train_module
from segtrain.checkpoint import load_checkpoint, save_checkpoint
from segtrain.data.fake import make_folder
from segtrain.errors import SegtrainError
from segtrain.runlog import RunLogger
from segtrain.train import train

from .conftest import TINY

NO_WATCHDOG = {**os.environ, "SEGTRAIN_EXIT_GRACE_S": "3600"}
WATCHDOG_LINE = "after its final line"
TINY_FOLDER = ["model.width=0.0625", "trainer.max_iters=4", "trainer.val_interval=2", "trainer.ckpt_interval=2",
               "trainer.log_interval=2", "trainer.batch_size=2", "trainer.val_batch_size=2",
               "trainer.num_vis_images=1", "trainer.device=cpu"]


@pytest.fixture(scope="module")
def binary_folder(tmp_path_factory):
    """The README's binary-mask layout (NAME_mask.png, 0/255), 9 images of 48 px."""
    out = tmp_path_factory.mktemp("fake")
    make_folder(out, 48)
    root = out / "folder_binary"
    return root, ["dataset=folder", f"dataset.root={root}", f"dataset.classes={root / 'classes.yaml'}",
                  "dataset.mask_suffix=_mask.png", "dataset.label_values=[0,255]", "dataset.val_fraction=0.2"]


def children_of(pid: int) -> list:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "stat").read_text().rsplit(")", 1)[1].split()[1] == str(pid):
                found.append(int(entry.name))
        except (OSError, IndexError):
            continue
    return found


def alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def segtrain_command(*args, timeout=120, **kwargs):
    return subprocess.run([sys.executable, "-m", "segtrain.cli.train", *args], capture_output=True, text=True,
                          timeout=timeout, env=NO_WATCHDOG, **kwargs)


@pytest.fixture(scope="module")
def truncated_folder(binary_folder, tmp_path_factory):
    """binary_folder with img003.png cut in half: only decoding it (in a DataLoader worker) finds out."""
    root, _ = binary_folder
    broken = tmp_path_factory.mktemp("broken") / "folder_binary"
    subprocess.run(["cp", "-r", str(root), str(broken)], check=True)
    png = broken / "images" / "img003.png"
    png.write_bytes(png.read_bytes()[:len(png.read_bytes()) // 2])
    return broken, png


def test_an_error_in_a_dataloader_worker_ends_the_run_with_the_file_named(binary_folder, truncated_folder,
                                                                         tmp_path):
    root, data = binary_folder
    broken, png = truncated_folder
    data = [d.replace(str(root), str(broken)) for d in data]
    began = time.time()
    result = segtrain_command(*data, *TINY_FOLDER, "trainer.num_workers=2", f"hydra.run.dir={tmp_path / 'run'}",
                              timeout=20)
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1] == f"segtrain: error: {png}: cannot read the image (image file " \
                                                     "is truncated)"
    assert WATCHDOG_LINE not in result.stderr and time.time() - began < 20


@pytest.mark.slow
def test_the_readme_binary_masks_command_ends_after_done(binary_folder, tmp_path):
    _, data = binary_folder
    result = segtrain_command(*data, "loss=dice_ce", "trainer.monitor=mean_dice", *TINY_FOLDER,
                              f"hydra.run.dir={tmp_path / 'run'}")  # default workers: auto (files: > 0)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "DataLoader worker(s)" in result.stdout and "0 DataLoader worker(s)" not in result.stdout
    assert "done:" in result.stdout and WATCHDOG_LINE not in result.stderr


@pytest.mark.slow
def test_a_sweep_whose_middle_job_fails_in_a_worker_ends_with_its_summary(binary_folder, truncated_folder,
                                                                          tmp_path):
    root, data = binary_folder
    broken, png = truncated_folder
    data = [d for d in data if not d.startswith("dataset.root=")]
    sweep = tmp_path / "sweep"
    result = segtrain_command("-m", *data, f"dataset.root={root},{broken},{root}", *TINY_FOLDER,
                              "trainer.max_iters=2", "trainer.num_workers=2", f"hydra.sweep.dir={sweep}",
                              timeout=240, cwd=tmp_path)
    assert result.returncode == 1, result.stderr[-2000:]
    summary = json.loads((sweep / "sweep_summary.json").read_text())
    assert [r["status"] for r in summary] == ["finished", "failed", "finished"]
    assert summary[1]["error"] == f"{png}: cannot read the image (image file is truncated)"
    assert "2 of 3 jobs finished" in result.stderr and WATCHDOG_LINE not in result.stderr


def test_an_augmentation_error_names_the_file_and_the_group(binary_folder, tmp_path):
    from .conftest import compose_config

    _, data = binary_folder
    with pytest.raises(SegtrainError, match=r"img\d+.png: augment=deeplab failed on it \(cv2.error: OpenCV.*\); "
                                            r"check the augment.\* values$"):
        train(compose_config(*data, *TINY_FOLDER, "trainer.num_workers=0", "augment=deeplab",
                             "augment.scale_min=0.01", "augment.scale_max=0.02"), tmp_path)


# A segtrain-eval / -predict command whose CRF pauses, with its 2 workers started, until the test signals it.
PAUSING_CRF = """
import os, sys, time, pathlib
import segtrain.crf.refiner as crf
real = crf._bounded_map
def gated(pool, jobs, window):
    def held():
        for n, job in enumerate(jobs):
            if n == 3:
                pathlib.Path(os.environ["READY"]).write_text("")
                while True:
                    time.sleep(0.05)
            yield job
    yield from real(pool, held(), window)
crf._bounded_map = gated
import importlib
module = importlib.import_module(sys.argv[1])
sys.argv = [sys.argv[1], *sys.argv[2:]]
module.cli()
"""


@pytest.mark.parametrize("command", ["eval", "predict"])
@pytest.mark.slow
def test_sigterm_ends_a_crf_evaluation_and_its_workers_in_one_line(command, finished_run, tmp_path):
    from PIL import Image

    ckpt = finished_run[0] / "checkpoints" / "best.pt"
    args = ["crf=dense", "crf.workers=2", "crf.backend=pydensecrf", f"ckpt={ckpt}"]
    if command == "eval":
        module, out = "segtrain.cli.evaluate", tmp_path / "eval"
        args += [f"hydra.run.dir={out}"]
    else:
        module, out = "segtrain.cli.predict", tmp_path / "labels"
        (tmp_path / "photos").mkdir()
        for n in range(6):
            Image.new("RGB", (24, 20), (40 * n, 90, 200)).save(tmp_path / "photos" / f"p{n}.png")
        args += [f"input={tmp_path / 'photos'}", f"output={out}"]
    env = {**NO_WATCHDOG, "READY": str(tmp_path / "ready")}
    process = subprocess.Popen([sys.executable, "-c", PAUSING_CRF, module, *args], env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not (tmp_path / "ready").exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    helpers = children_of(process.pid)
    assert len(helpers) >= 2  # the CRF workers (and the resource tracker)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 143
    name = f"segtrain-{command}"
    assert stderr.strip().splitlines() == [stderr.strip().splitlines()[-1]], stderr  # one line, no tracebacks
    assert stderr.startswith(f"{name}: stopped by SIGTERM")
    deadline = time.time() + 10
    while any(alive(pid) for pid in helpers) and time.time() < deadline:
        time.sleep(0.1)
    assert not any(alive(pid) for pid in helpers)
    if command == "eval":
        assert not out.exists() and "its folder was removed" in stderr  # no eval folder for segtrain-report
    else:
        assert "of 6 images were labelled" in stderr


WATCHED = """
import sys, threading, multiprocessing, time
from segtrain.processes import run_to_the_end
def main():
    print("final line", flush=True)
    if sys.argv[1] == "thread":
        threading.Thread(target=time.sleep, args=(3600,), name="stuck-writer").start()
    else:
        multiprocessing.get_context("spawn").Process(target=time.sleep, args=(3600,), name="stuck-child").start()
    sys.exit(3)
run_to_the_end("segtrain-x", main)
"""


@pytest.mark.parametrize("holder", ["thread", "child"])
def test_the_exit_watchdog_names_what_holds_the_process_and_exits_with_its_status(holder):
    result = subprocess.run([sys.executable, "-c", WATCHED, holder], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "SEGTRAIN_EXIT_GRACE_S": "2"})
    assert result.returncode == 3
    lines = result.stderr.strip().splitlines()
    assert lines[0] == "segtrain-x: still running 2 s after its final line; exiting with status 3. Left over:"
    wanted = "thread stuck-writer (non-daemon)" if holder == "thread" else "child process "
    assert any(line.startswith(f"segtrain-x:   {wanted}") for line in lines[1:]), lines


DATALOADER_PARENT = """
import os, sys, time, torch
from torch.utils.data import DataLoader, Dataset
from segtrain.processes import shutdown_workers, worker_signals
class Slow(Dataset):
    def __len__(self): return 10 ** 6
    def __getitem__(self, i): return os.getpid()
loader = DataLoader(Slow(), batch_size=None, num_workers=2, persistent_workers=True, worker_init_fn=worker_signals)
batches = iter(loader)
print(sorted({next(batches) for _ in range(8)}), flush=True)
sys.stdin.readline()  # the test sends the workers signals of its own meanwhile
print("alive", next(batches) > 0, flush=True)
if sys.argv[1] == "shutdown":
    shutdown_workers(batches)
    print("shut down", flush=True)
    sys.stdin.readline()
else:
    time.sleep(3600)  # the test kills this process with SIGKILL
"""


def test_workers_ignore_others_signals_but_end_on_their_parents_and_with_it():
    for how in ("shutdown", "parent killed"):
        parent = subprocess.Popen([sys.executable, "-c", DATALOADER_PARENT, how], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        workers = json.loads(parent.stdout.readline())
        assert len(workers) == 2
        for pid in workers:  # Ctrl-C and a stray SIGTERM (e.g. `timeout`'s, to the group): the parent decides
            os.kill(pid, signal.SIGINT)
            os.kill(pid, signal.SIGTERM)
        time.sleep(0.5)
        assert all(alive(pid) for pid in workers)
        parent.stdin.write("\n")
        parent.stdin.flush()
        assert parent.stdout.readline().strip() == "alive True"
        if how == "shutdown":
            assert parent.stdout.readline().strip() == "shut down"  # DataLoader's own SIGTERM ended them
            assert not any(alive(pid) for pid in workers)
            parent.stdin.write("\n")
            parent.stdin.close()
            assert parent.wait(timeout=30) == 0
        else:
            parent.kill()
            parent.wait(timeout=30)
            deadline = time.time() + 10
            while any(alive(pid) for pid in workers) and time.time() < deadline:
                time.sleep(0.1)
            assert not any(alive(pid) for pid in workers)


def _result_without_speed(result: dict) -> dict:
    return {k: v for k, v in result.items() if k != "train_images_per_s"}


@pytest.mark.parametrize("where", ["sigterm in the final iteration", "killed in the final validation"])
@pytest.mark.slow
def test_a_run_stopped_at_its_end_resumes_to_the_true_final_metrics(where, finished_run, tiny_cfg, tmp_path_factory,
                                                                    monkeypatch):
    tmp_path = tmp_path_factory.mktemp("stopped") / "my run"
    from segtrain.signals import TrainingInterrupted

    full_dir, full_result = finished_run
    real_step, real_validate, steps = train_module.train_step, RunLogger.validation, []

    def step(*args, **kwargs):
        steps.append(1)
        if len(steps) == 6 and where.startswith("sigterm"):
            os.kill(os.getpid(), signal.SIGTERM)  # arrives inside the final iteration
        return real_step(*args, **kwargs)

    def validate(self, iteration, *args, **kwargs):
        if iteration == 6 and where.startswith("killed"):
            raise KeyboardInterrupt  # killed: last.pt of iteration 6 was written, its validation never finished
        return real_validate(self, iteration, *args, **kwargs)

    monkeypatch.setattr(train_module, "train_step", step)
    monkeypatch.setattr(RunLogger, "validation", validate)
    with pytest.raises(TrainingInterrupted if where.startswith("sigterm") else KeyboardInterrupt) as info:
        train(tiny_cfg(), tmp_path)
    if where.startswith("sigterm"):  # a hint the shell and Hydra give back as the run dir
        assert str(info.value) == (f"received SIGTERM: interrupted at iteration 6; resume with: segtrain "
                                   f"'hydra.run.dir={tmp_path}' trainer.resume=auto")
    stopped = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert stopped["iteration"] == 6 and not stopped["validated"] and stopped["metrics_iteration"] == 3
    monkeypatch.setattr(RunLogger, "validation", real_validate)

    resumed = train(tiny_cfg("trainer.resume=auto"), tmp_path)
    assert _result_without_speed(resumed) == _result_without_speed(full_result)
    assert resumed["train_images_per_s"] > 0
    assert json.loads((tmp_path / "metrics.json").read_text())["mean_iu"] == full_result["mean_iu"]
    for name in ("last.pt", "best.pt"):
        ours, theirs = (load_checkpoint(d / "checkpoints" / name) for d in (tmp_path, full_dir))
        assert (ours["iteration"], ours["metrics"]) == (theirs["iteration"], theirs["metrics"]), name
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["validated"]


def test_a_stop_during_the_final_validation_says_it_came_too_late(finished_run, tiny_cfg, tmp_path, monkeypatch,
                                                                   caplog):
    real_validate = RunLogger.validation

    def validate(self, iteration, *args, **kwargs):
        if iteration == 6:
            os.kill(os.getpid(), signal.SIGTERM)
        return real_validate(self, iteration, *args, **kwargs)

    monkeypatch.setattr(RunLogger, "validation", validate)
    result = train(tiny_cfg(), tmp_path)
    assert _result_without_speed(result) == _result_without_speed(finished_run[1])
    assert "received SIGTERM during the final validation: too late to stop, the run has finished" in caplog.text


@pytest.mark.slow
def test_a_folder_run_with_two_workers_resumes_bit_exact(binary_folder, tmp_path, monkeypatch):
    from .conftest import compose_config

    _, data = binary_folder
    settings = [*data, *TINY_FOLDER, "trainer.max_iters=6", "trainer.num_workers=2"]
    full = train(compose_config(*settings), tmp_path / "full")
    real_step, steps = train_module.train_step, []

    def crash_at_iteration_3(*args, **kwargs):
        steps.append(1)
        if len(steps) == 3:
            raise KeyboardInterrupt  # killed after last.pt of iteration 2
        return real_step(*args, **kwargs)

    monkeypatch.setattr(train_module, "train_step", crash_at_iteration_3)
    with pytest.raises(KeyboardInterrupt):
        train(compose_config(*settings), tmp_path / "resumed")
    monkeypatch.setattr(train_module, "train_step", real_step)
    resumed = train(compose_config(*settings, "trainer.resume=auto"), tmp_path / "resumed")
    a, b = (load_checkpoint(tmp_path / d / "checkpoints" / "last.pt")["model"] for d in ("full", "resumed"))
    assert [k for k in a if not torch.equal(a[k], b[k])] == []
    assert _result_without_speed(resumed) == _result_without_speed(full)


# the console entry point, killed (SIGKILL) inside iteration 1, before its first checkpoint
KILLED_EARLY = """
import os, signal, sys
import segtrain.train as train_module
def step(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)
train_module.train_step = step
from segtrain.cli.train import run
sys.argv = ["segtrain", *sys.argv[1:]]
run()
"""


@pytest.mark.slow
def test_a_run_killed_before_its_first_checkpoint_resumes_with_its_own_overrides(tmp_path):
    run_dir = tmp_path / "my run"
    first = subprocess.run([sys.executable, "-c", KILLED_EARLY, *TINY, "trainer.max_iters=2", "model.width=0.125",
                            f"hydra.run.dir={run_dir}"], capture_output=True, text=True, timeout=120)
    assert first.returncode == -signal.SIGKILL and not (run_dir / "checkpoints").exists()
    recorded = (run_dir / ".hydra" / "overrides.yaml").read_bytes()
    again = segtrain_command(f"hydra.run.dir={run_dir}", "trainer.resume=auto")
    assert again.returncode == 0, again.stderr[-2000:]
    assert "with its recorded overrides" in again.stdout
    stored = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert stored["iteration"] == 2 and stored["config"]["model"]["width"] == 0.125
    assert stored["config"]["dataset"]["image_size"] == 32  # TINY's, not the default
    assert (run_dir / ".hydra" / "overrides.yaml").read_bytes() == recorded


def test_resume_problems_are_one_line_each(finished_run, tiny_cfg, tmp_path):
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(finished_run[0] / "checkpoints", run_dir / "checkpoints")
    last = run_dir / "checkpoints" / "last.pt"
    with pytest.raises(SegtrainError, match=r"^model.width=0.125: .*was trained with 0.0625, and a resumed run "):
        train(tiny_cfg("trainer.resume=auto", "model.width=0.125"), run_dir)
    state = load_checkpoint(last)
    name = next(k for k, v in state["model"].items() if v.dim() == 4)
    state["model"][name] = torch.zeros(1, 1, 1, 1)
    save_checkpoint(state, last)
    with pytest.raises(SegtrainError) as info:
        train(tiny_cfg("trainer.resume=auto", "trainer.max_iters=8"), run_dir)
    assert str(info.value).startswith(f"checkpoint {last}: its weights do not fit") and "\n" not in str(info.value)
    del state["config"]["model"]
    save_checkpoint(state, last)
    with pytest.raises(SegtrainError, match=r"^checkpoint .*last.pt: its config has no model"):
        train(tiny_cfg(f"trainer.resume={last}"), run_dir)


def test_what_would_train_on_nothing_is_named_before_training(binary_folder, tiny_cfg, tmp_path):
    from .conftest import compose_config

    _, data = binary_folder
    for extra, message in ((["dataset.std=[0,0,0]"],
                            r"dataset.std=\[0.0,0.0,0.0\]: expected a list of 1 or more standard deviations > 0"),
                           (["dataset.scale=1e-9"], r"dataset.scale=1e-09 shrinks .*img000.png \(48x48\) to 1x1"),
                           (["dataset.label_values=null", "dataset.ignore_values=[0,255]"],
                            r"every pixel of the 7 train label files is void")):
        with pytest.raises(SegtrainError, match=message):
            train(compose_config(*data, *TINY_FOLDER, *extra), tmp_path / extra[0])
        assert not (tmp_path / extra[0] / "checkpoints").exists()


def test_a_batch_without_labelled_pixels_adds_nothing_to_the_loss():
    from segtrain.losses import segmentation_loss

    logits = torch.randn(2, 3, 5, 5, requires_grad=True)
    loss = segmentation_loss(logits, torch.full((2, 5, 5), 255), 3, 255)
    loss.backward()
    assert loss.item() == 0 and torch.isfinite(logits.grad).all()
    targets = torch.randint(0, 3, (2, 5, 5))
    assert torch.equal(segmentation_loss(logits, targets, 3, 255), torch.nn.functional.cross_entropy(logits, targets))


def test_worker_errors_name_their_real_cause():
    from segtrain.errors import one_line

    class Broken(torch.utils.data.Dataset):
        def __len__(self):
            return 1

        def __getitem__(self, index):
            raise OSError("image file is truncated (5 bytes not processed)")

    with pytest.raises(OSError) as info:
        next(iter(torch.utils.data.DataLoader(Broken(), num_workers=1)))
    assert one_line(info.value) == "in a DataLoader worker: OSError: image file is truncated (5 bytes not processed)"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
def test_export_never_writes_over_a_checkpoint_or_a_foreign_file(finished_run, tmp_path, monkeypatch):
    from segtrain.export import check_output
    from segtrain.cli.export import run as export

    ckpt = finished_run[0] / "checkpoints" / "best.pt"
    before = sha256(ckpt)
    for out in (ckpt, tmp_path / "other.pt"):
        with pytest.raises(SegtrainError, match="would write the ONNX file over a checkpoint"):
            export([f"ckpt={ckpt}", f"out={out}", "height=32", "width=32"])
    foreign = tmp_path / "model.onnx"
    foreign.write_bytes(b"someone's model")
    with pytest.raises(SegtrainError, match="exists and segtrain-export did not write it"):
        export([f"ckpt={ckpt}", f"out={foreign}", "height=32", "width=32"])
    assert foreign.read_bytes() == b"someone's model" and sha256(ckpt) == before
    failed = tmp_path / "failed"
    failed.mkdir()

    def exporter_fails(model, args, path, **kwargs):
        Path(path).write_bytes(b"half an onnx file")
        Path(f"{path}.data").write_bytes(b"weights")
        raise RuntimeError("the exporter gave up")

    with monkeypatch.context() as patch:
        patch.setattr(torch.onnx, "export", exporter_fails)
        with pytest.raises(SegtrainError, match=r"cannot export fcn8s to ONNX \(RuntimeError: the exporter gave up"):
            export([f"ckpt={ckpt}", f"out={failed / 'm.onnx'}", "height=32", "width=32"])
    assert list(failed.iterdir()) == []  # nothing left behind
    written = export([f"ckpt={ckpt}", f"out={tmp_path / 'ours.onnx'}", "height=32", "width=32", "dynamic=false"])
    check_output(written, str(ckpt))  # its own file it may replace
    assert sha256(ckpt) == before


def test_export_onto_its_own_checkpoint_is_refused_by_the_console_script(finished_run):
    ckpt = finished_run[0] / "checkpoints" / "best.pt"
    before = sha256(ckpt)
    result = subprocess.run([sys.executable, "-m", "segtrain.cli.export", f"ckpt={ckpt}", f"out={ckpt}"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [
        f"segtrain-export: error: out={ckpt}: would write the ONNX file over a checkpoint; give an out= ending in "
        ".onnx"]
    assert sha256(ckpt) == before and not Path(f"{ckpt}.data").exists()


def test_paths_hydra_must_read_quoted_and_run_dirs_that_are_files(finished_run, tmp_path, capsys):
    import shutil

    from segtrain.cli import require_checkpoints
    from segtrain.cli.train import refuse_reused_run_dir

    odd = tmp_path / "a run" / "optimizer.lr=0.01"
    shutil.copytree(finished_run[0] / "checkpoints", odd / "checkpoints")
    ckpt = odd / "checkpoints" / "best.pt"
    quoted = subprocess.run([sys.executable, "-m", "segtrain.cli.evaluate", f"ckpt='{ckpt}'", "name=quoted"],
                            capture_output=True, text=True, timeout=120)
    assert quoted.returncode == 0, quoted.stderr[-2000:]
    assert list((odd / "eval").glob("quoted-*/metrics.json"))
    with pytest.raises(SystemExit) as exit_info:
        require_checkpoints("segtrain-eval", [f"ckpt={ckpt}"])
    assert exit_info.value.code == 2 and capsys.readouterr().err.strip().splitlines() == [
        f"segtrain-eval: error: ckpt={ckpt}: Hydra's override grammar cannot read this value (characters such as "
        f"= , [ ] {{ }} ' \" need quotes); write it as \"ckpt='{ckpt}'\""]
    # a list stays a list: each path quoted on its own (the whole list quoted would be one string)
    from segtrain.cli import parse_argument

    with pytest.raises(SegtrainError) as info:
        parse_argument(f"ensemble=[{ckpt}, {ckpt}]")
    advice = str(info.value).rpartition("write it as ")[2]
    assert advice == f"\"ensemble=['{ckpt}','{ckpt}']\""
    assert parse_argument(shlex.split(advice)[0]).value() == [str(ckpt), str(ckpt)]
    (tmp_path / "file").write_text("")
    for run_dir in (tmp_path / "file", tmp_path / "file" / "run"):
        with pytest.raises(SystemExit):
            refuse_reused_run_dir(["segtrain", *TINY, f"hydra.run.dir={run_dir}"])
        assert capsys.readouterr().err.strip().splitlines() == [
            f"segtrain: error: hydra.run.dir={run_dir}: {tmp_path / 'file'} is a file, not a folder; choose "
            "another hydra.run.dir"]


def test_resume_refuses_a_new_seed_and_unusable_checkpoints_in_one_line(finished_run, tiny_cfg, tmp_path):
    import shutil

    from segtrain.checkpoint import find_resume_checkpoint
    from segtrain.cli.train import resume_config

    run_dir = tmp_path / "run"
    shutil.copytree(finished_run[0] / "checkpoints", run_dir / "checkpoints")
    given = ["trainer.resume=auto", "seed=3", "trainer.max_iters=8"]
    resumed, path = resume_config(tiny_cfg(*given), given, run_dir)  # a top-level key is applied, not dropped
    with pytest.raises(SegtrainError, match=r"^seed=3: .*last.pt was trained with 0, and a resumed run restores"):
        train(resumed, run_dir, path)
    last = run_dir / "checkpoints" / "last.pt"
    state = load_checkpoint(last)
    del state["rng"]
    save_checkpoint(state, last)
    with pytest.raises(SegtrainError, match=r"last.pt: its training state is incomplete \('rng' is missing\)"):
        train(tiny_cfg("trainer.resume=auto", "trainer.max_iters=8"), run_dir)
    last.write_bytes(last.read_bytes()[:5000])  # cut short; best.pt holds only the weights
    with pytest.raises(SegtrainError) as info:
        find_resume_checkpoint("auto", run_dir / "checkpoints")
    assert str(info.value).startswith(f"trainer.resume=auto: checkpoint {last}: not a readable segtrain checkpoint")
    assert "holds only the weights" in str(info.value) and "has no last.pt" not in str(info.value)


def test_command_lines_that_do_not_compose_are_one_line_before_any_folder(tmp_path, capsys):
    from segtrain.cli.train import refuse_overrides_that_do_not_compose, refuse_reused_run_dir

    for argument, line in (("trainer.max_iter=5", "trainer.max_iter=5: trainer has no key 'max_iter'; did you mean "
                                                  "trainer.max_iters?"),
                           ("trainer.max_iters=abc",
                            "trainer.max_iters=abc: expected a whole number of iterations >= 1")):
        with pytest.raises(SystemExit) as exit_info:
            refuse_overrides_that_do_not_compose(["segtrain", *TINY, argument, f"hydra.run.dir={tmp_path / 'r'}"])
        error = capsys.readouterr().err.strip().splitlines()
        assert exit_info.value.code == 2 and error == [f"segtrain: error: {line}"]
    with pytest.raises(SystemExit):
        refuse_overrides_that_do_not_compose(["segtrain", "model=fcn9s"])
    assert "model has no choice 'fcn9s'; model: deconvnet, deeplab_aspp" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
    sweep = tmp_path / "sweep"
    (sweep / "0" / "checkpoints").mkdir(parents=True)
    (sweep / "0" / "checkpoints" / "last.pt").write_bytes(b"")
    with pytest.raises(SystemExit):
        refuse_reused_run_dir(["segtrain", "-m", "optimizer.lr=1e-3,1e-2", f"hydra.sweep.dir={sweep}"])
    assert "already holds checkpoints; continue it with trainer.resume=auto" in capsys.readouterr().err
    argv = ["segtrain", "-m", "optimizer.lr=1e-3,1e-2", f"hydra.sweep.dir={sweep}", "trainer.resume=auto"]
    refuse_reused_run_dir(argv)
    assert argv[-1] == "hydra.output_subdir=null"  # the jobs it continues keep their .hydra/ records
