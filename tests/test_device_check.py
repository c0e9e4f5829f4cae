"""scripts/device_check.py: its dry run (every step on the CPU at toy sizes, as CI can run it) and its step runner's
promises (a hang, a crash, an error and a missing package each reported, with the figures measured so far)."""
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "device_check.py"


def load_script():
    spec = importlib.util.spec_from_file_location("device_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_the_dry_run_runs_and_reports_every_step_without_cuda(tmp_path):
    check = load_script()
    result = subprocess.run([sys.executable, str(SCRIPT), "--dry-run", str(tmp_path)], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "device_check.json").read_text())
    assert report["dry_run"] and list(report["steps"]) == [name for name, *_ in check.STEPS]
    assert report["real_budget_s"] <= 450  # the 8 minutes, with room for starting and reporting
    log = (tmp_path / "device_check.log").read_text()
    for name, step in report["steps"].items():
        assert step["status"] in ("ok", "skipped"), f"{name}: {step['status']}: {step['error']}\n{log[-3000:]}"
        if name != "install":  # the forked steps: none of them initialised CUDA
            assert step["status"] == "ok" and step["figures"]["cuda_initialized"] is False, name
    assert report["steps"]["environment"]["figures"]["device"] == "cpu (dry run)"
    assert {row["model"] for row in report["steps"]["train_speed"]["figures"]["throughput"]} == set(
        check.SPEED_MODELS)
    markdown = (tmp_path / "device_check.md").read_text()
    for name in report["steps"]:
        assert f"\n## {name}\n" in markdown
    for wanted in check.TARGETS.values():  # each target computed, met or not (toy sizes decide nothing)
        assert any(line.startswith(f"| {wanted} |") and not line.endswith("| not measured |")
                   for line in markdown.splitlines()), wanted


def run_one(check, tmp_path, function, budget=30.0):
    log = tmp_path / "log"
    log.touch()
    return check.run_step("probe", function, budget, True, {}, tmp_path, log)


def measures_then_hangs(step):
    step.record(before_the_hang=1)
    time.sleep(600)


def fails(step):
    step.row("table", value=1)
    raise ValueError("first line\nthe last line says why")


def needs_hydra(step):
    raise ModuleNotFoundError("No module named 'hydra'", name="hydra")


def dies(step):
    os._exit(3)


def test_a_hanging_step_is_stopped_at_its_budget_and_keeps_its_figures(tmp_path):
    result = run_one(load_script(), tmp_path, measures_then_hangs, budget=2.0)
    assert result["status"] == "timeout" and result["figures"]["before_the_hang"] == 1
    assert 2.0 <= result["seconds"] < 30


@pytest.mark.parametrize("function,status,error", [
    (fails, "failed", "ValueError: the last line says why"),
    (needs_hydra, "skipped", "needs hydra-core, not installed here"),
    (dies, "failed", "its process died (exit code 3)"),
])
def test_a_step_that_fails_is_reported_in_one_line(tmp_path, function, status, error):
    result = run_one(load_script(), tmp_path, function)
    assert result["status"] == status and result["error"].startswith(error), result
    if function is fails:
        assert result["figures"]["table"] == [{"value": 1}]
