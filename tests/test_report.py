"""segtrain-report over tiny runs and a tiny sweep."""
import csv
import os
import subprocess
import sys
from pathlib import Path

from PIL import Image

from segtrain.data.fake import make_siftflow

from .conftest import TINY

BIN = Path(sys.executable).parent


def segtrain(*args, cwd, env=None):
    result = subprocess.run([BIN / "segtrain", *map(str, args)], capture_output=True, text=True, cwd=cwd,
                            env={**os.environ, **(env or {})})
    assert result.returncode == 0, result.stderr[-2000:]


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

    result = subprocess.run([BIN / "segtrain-report", tmp_path / "runs", tmp_path / "sweep", f"out={tmp_path / 'r'}"],
                            capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("| run | model | dataset | overrides | iterations | best mean IU")
    rows = list(csv.DictReader(open(tmp_path / "r" / "segtrain_report.csv")))
    assert [Path(r["run"]).name for r in rows] == ["a", "b", "paper", "0", "1"]
    assert [r["model"] for r in rows] == ["fcn8s", "fcn32s", "fcn16s", "fcn8s", "fcn8s"]
    assert rows[0]["iterations"] == "4" and rows[3]["iterations"] == "2" and "optimizer.lr=0.01" in rows[4]["overrides"]
    assert rows[2]["published mean IU"] == "39.5" and rows[0]["published mean IU"] == ""
    assert 0 <= float(rows[1]["best mean IU"]) <= 1 and float(rows[0]["images/s"]) > 0
    assert any("| 39.5 |" in line and "fcn16s" in line for line in lines)
    assert Image.open(tmp_path / "r" / "segtrain_report.png").size == (700, 400)

    failed = subprocess.run([BIN / "segtrain-report", tmp_path / "nothing"], capture_output=True, text=True)
    assert failed.returncode == 2 and failed.stderr.count("\n") == 1 and "no such folder" in failed.stderr
