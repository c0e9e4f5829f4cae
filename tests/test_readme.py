"""The README's "Use" commands, run in order as written after `make demo` (its state made tiny: the demo's run is
the TINY run, and each training or sweep command gets TINY's keys appended so that it takes seconds). Only the
README's placeholders are filled in, from the table in fill(); a new placeholder in the README fails here until it
is added, so no command goes untried."""
import json
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from segtrain.data.fake import make_folder

from .conftest import TINY

BIN = Path(sys.executable).parent
README = Path(__file__).parents[1] / "README.md"


def use_commands() -> list:
    """The command lines of the code block under '## Use', comments removed, each as its list of words."""
    text = README.read_text()
    block = re.search(r"^## Use\n\n```\n(.*?)^```", text, re.S | re.M).group(1)
    return [shlex.split(line, comments=True) for line in block.splitlines() if line.strip()]


def fill(words, demo: Path, deconvnet: Path, data: Path) -> list:
    """The README's placeholders replaced by the walk's files (relative to the folder the commands run in)."""
    best, last = demo / "checkpoints" / "best.pt", demo / "checkpoints" / "last.pt"
    placeholders = {
        "ckpt=outputs/RUN/checkpoints/best.pt": f"ckpt={best}", "ckpt=...": f"ckpt={best}",
        "ckpt=DECONVNET.pt": f"ckpt={deconvnet / 'checkpoints' / 'best.pt'}",
        "ensemble=[FCN8S.pt]": f"ensemble=[{best}]", "ckpt=A.pt,B.pt": f"ckpt={best},{last}",
        "input=DIR_OR_FILE": f"input={data / 'folder' / 'images'}", "output=DIR": "output=predicted",
        "[crf=dense]": "crf=dense", "hydra.run.dir=outputs/RUN": f"hydra.run.dir={demo}",
        "DIR": str(data / "folder"), "dataset.root=DIR": f"dataset.root={data / 'folder'}",
        "dataset.classes=DIR/classes.yaml": f"dataset.classes={data / 'folder' / 'classes.yaml'}",
    }
    filled = [placeholders.get(word, word) for word in words]
    unknown = [w for w in filled if re.search(r"\bRUN\b|\.\.\.|\b[A-Z][A-Z0-9_]+\.pt\b|\bDIR\b|^\[", w)]
    assert not unknown, f"README command {' '.join(words)}: no walk value for {unknown}; add it to fill()"
    return filled


def shrunk(words) -> list:
    """TINY's keys after a training command's own (the last value of a key wins); the CRF in the evaluating process
    and a 2-trial Optuna search: the commands as written, at test size."""
    program = words[0]
    if program == "segtrain" and "--help" not in words and not any(w.startswith("trainer.resume") for w in words):
        return [*words, *TINY]
    if program == "segtrain-eval" and any(w.startswith("crf=") or w == "eval_sweep=optuna_crf" for w in words):
        return [*words, "crf.workers=0", *(["hydra.sweeper.n_trials=2"] if "eval_sweep=optuna_crf" in words else [])]
    return words


@pytest.mark.slow
def test_every_use_command_of_the_readme_runs_in_order_after_the_demo(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")

    def run(words):
        result = subprocess.run([BIN / words[0], *words[1:]], capture_output=True, text=True, cwd=tmp_path,
                                timeout=300)
        assert result.returncode == 0, f"{' '.join(words)}\n{result.stdout[-1500:]}\n{result.stderr[-1500:]}"
        return result

    # `make demo`'s state: its run and evaluation (shrunk), a DeconvNet of the same data for the EDeconvNet line, and
    # a folder dataset for the own-data lines
    demo = Path("outputs") / f"demo-{time.strftime('%Y%m%d-%H%M%S')}"
    trained = run(["segtrain", f"hydra.run.dir={demo}", *TINY])
    evaluated = run(["segtrain-eval", f"ckpt={demo / 'checkpoints' / 'best.pt'}"])
    demo_made_what_make_demo_makes(tmp_path / demo, trained, evaluated)
    deconvnet = Path("outputs") / "deconvnet"
    run(["segtrain", "model=deconvnet", f"hydra.run.dir={deconvnet}", *TINY])
    make_folder(tmp_path / "data", 48)

    commands = use_commands()
    assert len(commands) == 17 and commands[0] == ["segtrain"]
    outputs = {}
    for words in commands:
        outputs[" ".join(words)] = run(shrunk(fill(words, demo, deconvnet, Path("data")))).stdout
    # what the lines promise: sweeps in multirun/, the report reads them all, predictions written
    assert len(list((tmp_path / "multirun").glob("*/*/0/checkpoints/last.pt"))) == 1
    assert len(list((tmp_path / "predicted").glob("*_overlay.png"))) == 9
    assert (tmp_path / demo / "checkpoints" / "best.onnx").is_file()
    report = outputs["segtrain-report outputs multirun"]
    assert report.count("| training |") >= 5 and "| evaluation |" in report


def demo_made_what_make_demo_makes(run_dir: Path, trained, evaluated):
    """The run's files, and the evaluation's table, folder and log (RUN/eval/<checkpoint stem>-<time>)."""
    assert "val @ 6: pixel_acc" in trained.stdout + trained.stderr
    assert (run_dir / "checkpoints" / "last.pt").is_file() and (run_dir / ".hydra" / "config.yaml").is_file()
    logged = json.loads((run_dir / "metrics.json").read_text())
    assert "identical" in evaluated.stdout and "acc." in evaluated.stdout
    for name in ("background", "block", "disc", "wire", "dot", "mean IU", "mean Dice", "f.w. IU"):
        assert name in evaluated.stdout
    folder, = (run_dir / "eval").iterdir()
    assert folder.name.startswith("best-")
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["mean_iu"] == logged["best_mean_iu"] and set(metrics["acc"]) == set(metrics["iu"])
    confusion = (folder / "confusion.csv").read_text().splitlines()
    assert confusion[0] == "true \\ predicted,background,block,disc,wire,dot" and len(confusion) == 6
    assert (folder / "confusion.png").stat().st_size > 1000
    stored = (folder / "config.yaml").read_text()  # the training config as evaluated, and the evaluation's keys
    assert "evaluation:" in stored and "training:" in stored and "crf:" in stored
    log = (folder / "segtrain-eval.log").read_text()  # the evaluation's lines, with their time
    assert "mean IU" in log and "logged at iteration" in log and f"wrote {folder}: metrics.json" in log
