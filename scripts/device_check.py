"""Every GPU claim segtrain makes, measured in one short run on the day a GPU is lent (issue 26): the environment,
the CUDA tests, training throughput against the GPU's peak, the trainer against a bare loop, the input pipeline
against the step rate, the dense CRF on CUDA against pydensecrf, bit-exact resume and fp16 training, and the
evaluation modes. Writes OUT/device_check.md (with each target met or not), OUT/device_check.json and
OUT/device_check.log (every step's output).

    python3 scripts/device_check.py OUT                    # on a GPU machine, under 8 minutes
    python3 scripts/device_check.py --steps crf,evaluation OUT   # a rerun of some steps
    python scripts/device_check.py --dry-run OUT           # every step on the CPU at toy sizes (how it is tested)

On the device tool's GPU machine (no network, no hydra-core, omegaconf, albumentations or pydensecrf2), after
`scripts/device_wheels.sh` has filled .whl/ on a machine with a network, in one call:

    run(command="PYTHONUNBUFFERED=1 python3 scripts/device_check.py $OUT", carry=[".whl"], timeout_s=540)

The steps' budgets add up to 450 s (an sdist in .whl/sdist adds SDIST_BUILD_S to install's); 540 s leaves room
for the rest, and a 15-minute lease a few minutes for a `--steps` rerun on the still-warm machine.

The first step installs .whl/ into a folder of its own (never touching the image's torch) and puts it and this
checkout on PYTHONPATH; segtrain runs from the checkout. Each later step runs in a process of its own, forked
from this one, under its budget of seconds: a hang or a crash costs that step alone, whose figures so far are
kept. Every step is reported with its status (ok, failed, skipped, timeout), seconds, figures and the last line
of its error. A step that needs a package which is not there is skipped with one line. The exit status is 1 when
a step failed or timed out. `--install` installs .whl/ in a dry run too (for a Python 3.12 without the packages).
"""
import argparse
import importlib
import importlib.util
import json
import multiprocessing
import os
import platform
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from contextlib import nullcontext
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WHEELS = ROOT / ".whl"  # scripts/device_wheels.sh
SITE = Path(tempfile.gettempdir()) / "segtrain-device-site"
LIMIT_S = 480  # the 8 minutes
SDIST_BUILD_S = 120  # added to install's budget for each sdist in .whl/sdist (pydensecrf2 takes 30-60 s to build)

# Dense bf16 tensor-core peaks in TFLOP/s, without sparsity, from NVIDIA's datasheets (H100/H200, A100, L40S, L4,
# A10); the first pattern found in the GPU's name wins.
PEAK_BF16_TFLOPS = [
    (r"\bH200 NVL\b", 835), (r"\bG?H200\b", 989), (r"\bH100 NVL\b", 835), (r"\bH100 PCIe\b", 756),
    (r"\bH100\b", 989), (r"\bA100\b", 312), (r"\bL40S\b", 362), (r"\bL4\b", 121), (r"\bA10\b", 125),
]
PEAK_SOURCE = "NVIDIA datasheets, dense bf16 tensor-core rate without sparsity"

# The test files whose tiny runs train where SEGTRAIN_TEST_DEVICE says (tests/conftest.py), run with it set to cuda;
# in a dry run one quick test stands in for them
SUITE_ON_CUDA = ["tests/test_train.py", "tests/test_interruptions.py", "tests/test_evaluation.py"]
SUITE_DRY = ["tests/test_evaluation.py", "-k", "test_sliding_window_and_flip_match_a_whole_pass_for_a_pointwise_net"]

# The targets, in the order the report lists them
TARGETS = {
    "fcn8s_bf16_peak": "FCN-8s bf16 training at >= 45% of the GPU's peak bf16 FLOP/s",
    "trainer_vs_bare": "trainer / bare loop >= 0.98 on CUDA",
    "data_vs_gpu": "data pipeline >= 1.5x the GPU's step rate with the default workers",
    "crf_speedup": "CUDA CRF >= 20x pydensecrf on one CPU core",
    "bit_exact_resume": "bit-exact resume on CUDA with trainer.deterministic=true",
    "fp16_finite": "fp16 training, 200 iterations, no non-finite loss",
}
# import name -> package, for the one line of a step skipped for want of one
OPTIONAL_PACKAGES = {"hydra": "hydra-core", "omegaconf": "omegaconf", "albumentations": "albumentations",
                     "pydensecrf": "pydensecrf2"}


class Skipped(Exception):
    """A step (or part of one) that cannot run here; its message says why in one line."""


class Check:
    """What a step function gets: where it runs, its sizes, its deadline, the results of the steps before it, and
    where its figures go. Every record is written to disk at once, so a step stopped at its budget keeps them."""

    def __init__(self, name: str, dry: bool, deadline: float, earlier: dict, result_file: Path):
        self.name, self.dry, self.deadline, self.earlier = name, dry, deadline, earlier
        self.result_file = result_file
        self.device = "cpu" if dry else "cuda"
        self.figures, self.targets = {}, {}
        self.save()

    def size(self, real, toy):
        """`real` on a GPU, `toy` in a dry run."""
        return toy if self.dry else real

    def left(self) -> float:
        """Seconds of this step's budget left."""
        return self.deadline - time.monotonic()

    def record(self, **figures) -> None:
        self.figures.update(figures)
        self.save()

    def row(self, table: str, **row) -> None:
        """One row of a table of this step's figures (a list of dicts with the same keys)."""
        self.figures.setdefault(table, []).append(row)
        self.save()

    def target(self, key: str, measured, met) -> None:
        """One of TARGETS: what was measured (a number or a phrase) and whether it meets it (None: not measured)."""
        self.targets[key] = {"measured": measured, "met": met}
        self.save()

    def save(self, **extra) -> None:
        self.result_file.write_text(json.dumps({"figures": self.figures, "targets": self.targets, **extra},
                                               default=str))


# ---------------------------------------------------------------------------------------------------------------
# helpers shared by the steps

def compose(*overrides):
    """segtrain's training config with `overrides`."""
    from bench_train import compose_config

    return compose_config(list(overrides))


def synchronize(device) -> None:
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def run_command(command, timeout: float, env=None):
    """(exit code, output, timed out) of a command in a process group of its own, all of which a timeout ends
    (pytest's xdist workers too); its output goes to this step's log as well."""
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, start_new_session=True)
    try:
        output, _ = process.communicate(timeout=max(1.0, timeout))
        timed_out = False
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        timed_out = True
    print(output, flush=True)
    return process.returncode, output, timed_out


def short_run_overrides(check: Check) -> list:
    """A short training run of the demo's model and data (the synthetic scenes) on the check's device; in a dry
    run DeepLab-LargeFOV, which on a CPU steps ten times as fast as FCN-8s with its 100-pixel padding."""
    return [f"trainer.device={check.device}", "trainer.num_vis_images=1",
            f"model={check.size('fcn8s', 'deeplab_largefov')}", f"model.width={check.size(0.125, 0.0625)}",
            f"dataset.image_size={check.size(64, 32)}",
            f"dataset.num_train={check.size(64, 8)}", f"dataset.num_val={check.size(8, 2)}",
            f"trainer.batch_size={check.size(8, 2)}", f"trainer.val_batch_size={check.size(8, 2)}"]


def fcn8s_rate(check: Check):
    """(images/s, what it is) of the fastest FCN-8s configuration the training step measured, or (None, why)."""
    rows = [row for row in check.earlier.get("train_speed", {}).get("figures", {}).get("throughput", [])
            if row["model"] == "fcn8s" and row.get("images/s")]
    if not rows:
        return None, "not measured (the train_speed step did not run or measure FCN-8s)"
    best = max(rows, key=lambda row: row["images/s"])
    return best["images/s"], f"FCN-8s {best['config']} at {best['size']}, batch {best['batch']}"


# ---------------------------------------------------------------------------------------------------------------
# the steps, in the order they run

def step_install(check: Check) -> None:
    """Installs .whl/ into SITE without dependencies (the image's torch stays) and builds any sdist there; then
    main puts SITE on the path of this process and of every process it starts."""
    wheels = sorted(WHEELS.glob("*.whl"))
    sdists = sorted((WHEELS / "sdist").glob("*.tar.gz"))
    if not wheels and not sdists:
        raise Skipped(f"{WHEELS} is empty: run scripts/device_wheels.sh on a machine with a network and carry .whl")
    listing = "\n".join(path.name for path in wheels + sdists)
    marker = SITE / ".installed"
    if marker.is_file() and marker.read_text() == listing:
        check.record(installed="already (a rerun on the same machine)")
    else:
        shutil.rmtree(SITE, ignore_errors=True)
        trouble = pip_install(check, SITE, wheels)
        if trouble:
            raise RuntimeError(f"pip install of {len(wheels)} wheels: {trouble}")
        tools = SITE / "build-tools"  # for pydensecrf2's sdist (no Python 3.12 built its wheel): the Cython it pins
        if sdists:
            pip_install(check, tools, sorted((WHEELS / "build").glob("*.whl")))
        for sdist in sdists:
            trouble = pip_install(check, SITE, [sdist, "--no-build-isolation"],
                                  env=dict(os.environ, PYTHONPATH=f"{tools}{os.pathsep}{SITE}"))
            if trouble:
                check.record(**{f"build of {sdist.name}": trouble})
        marker.write_text(listing)
    code, output, _ = run_command([sys.executable, "-c", IMPORT_CHECK], 60, env=dict(os.environ, PYTHONPATH=str(SITE)))
    check.record(wheels=[path.name for path in wheels + sdists], site=str(SITE), imports=json.loads(
        output.strip().splitlines()[-1]) if code == 0 else output.strip().splitlines()[-1:])


def pip_install(check: Check, target: Path, arguments, env=None):
    """pip install into `target`, offline, without dependencies; None, or the last line of what went wrong."""
    code, output, timed_out = run_command(
        [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile", "--no-cache-dir",
         "--upgrade", "--target", str(target), *map(str, arguments)], check.left() - 5, env)
    if timed_out:
        return f"still running after {check.left() + 5:.0f} s"
    return None if code == 0 else (output.strip().splitlines() or [f"exit code {code}"])[-1]


IMPORT_CHECK = """import importlib, importlib.metadata as m, json
found = {}
for module, package in [("hydra", "hydra-core"), ("omegaconf", "omegaconf"), ("albumentations", "albumentations"),
                        ("pydensecrf.densecrf", "pydensecrf2")]:
    try:
        importlib.import_module(module)
        found[package] = m.version(package)
    except Exception as e:
        found[package] = f"not importable: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
print(json.dumps(found))"""


def use_site(installed: bool) -> None:
    """SITE (when this run installed it) and this checkout first on the import path, here and in every process
    started later."""
    paths = ([str(SITE)] if installed else []) + [str(ROOT)]
    sys.path[:0] = [path for path in paths if path not in sys.path]
    os.environ["PYTHONPATH"] = os.pathsep.join(paths + [p for p in os.environ.get("PYTHONPATH", "").split(
        os.pathsep) if p and p not in paths])


def step_environment(check: Check) -> None:
    """GPU, driver, torch, CUDA, cuDNN, the peak bf16 rate known for the GPU and a measured bf16 matrix product."""
    import torch

    check.record(python=platform.python_version(), torch=torch.__version__, cpu_cores=os.cpu_count(),
                 platform=platform.platform())
    if check.dry:
        size, dtype, device = 512, torch.float32, "cpu"
        check.record(device="cpu (dry run)", cpu_threads=torch.get_num_threads())
    else:
        if not torch.cuda.is_available():
            raise RuntimeError("no CUDA device is visible to torch; on a CPU use --dry-run")
        properties = torch.cuda.get_device_properties(0)
        name = torch.cuda.get_device_name(0)
        driver = "unknown"
        if shutil.which("nvidia-smi"):
            _, output, _ = run_command(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"], 20)
            driver = output.strip().splitlines()[0] if output.strip() else driver
        peak = next((value for pattern, value in PEAK_BF16_TFLOPS if re.search(pattern, name)), None)
        check.record(device=name, gpus=torch.cuda.device_count(), driver=driver, cuda=torch.version.cuda,
                     cudnn=torch.backends.cudnn.version(), capability=f"{properties.major}.{properties.minor}",
                     memory_gib=round(properties.total_memory / 2 ** 30, 1),
                     multiprocessors=properties.multi_processor_count,
                     tf32_convolutions=torch.backends.cudnn.allow_tf32,
                     tf32_matmul=torch.backends.cuda.matmul.allow_tf32,
                     peak_bf16_tflops=peak, peak_source=PEAK_SOURCE if peak else
                     f"{name} is not in PEAK_BF16_TFLOPS (scripts/device_check.py): no share of peak is computed")
        size, dtype, device = 8192, torch.bfloat16, "cuda"
    a, b = (torch.randn(size, size, dtype=dtype, device=device) for _ in range(2))
    for _ in range(3):
        a @ b
    synchronize(device)
    repeats = check.size(10, 3)
    began = time.perf_counter()
    for _ in range(repeats):
        a @ b
    synchronize(device)
    rate = 2 * size ** 3 * repeats / (time.perf_counter() - began) / 1e12
    check.record(matmul=f"{size}x{size}x{size} {str(dtype).removeprefix('torch.')}", matmul_tflops=round(rate, 2))
    if check.dry:  # no datasheet for a CPU: its fp32 matrix rate stands in, so the share-of-peak arithmetic runs
        check.record(peak_bf16_tflops=rate, peak_source="dry run: this CPU's measured fp32 matrix product")


def pytest_step(check: Check, args, test_device: str) -> None:
    """Runs pytest and records every test's outcome, parsed from its verbose output as it goes (a timeout keeps
    those); a failed test fails the step, naming the tests and their errors."""
    env = dict(os.environ, SEGTRAIN_TEST_DEVICE=test_device, COLUMNS="250")  # wide: whole error lines
    command = [sys.executable, "-m", "pytest", "-v", "-rfE", "--tb=line", "-p", "no:cacheprovider", *args]
    code, output, timed_out = run_command(command, check.left() - 5, env)
    outcomes, messages = {}, {}
    for line in output.splitlines():
        found = test_outcome(line)
        if found:
            outcomes[found[0]] = found[1]
            message = re.match(r"(?:FAILED|ERROR) \S+ - (.*)", line)  # -rfE's summary: the error's line
            if message:
                messages[found[0]] = message.group(1)
    counts = Counter(outcomes.values())
    failed = [test for test, outcome in outcomes.items() if outcome in ("FAILED", "ERROR")]
    summary = next((line.strip("= ") for line in reversed(output.splitlines())
                    if re.match(r"=+ .* in [\d.]+s", line)), "no summary line")
    check.record(command=shlex.join(command[1:]), test_device=test_device, exit_code=code,
                 **{outcome.lower(): counts[outcome] for outcome in ("PASSED", "FAILED", "ERROR", "SKIPPED")},
                 failures=[f"{test}: {messages.get(test, '')}" for test in failed], summary=summary)
    if timed_out:
        raise TimeoutError(f"pytest ran past its {check.left() + 5:.0f} s; {dict(counts)} by then")
    if failed:
        raise RuntimeError(f"{len(failed)} failed: " + ", ".join(test.split("::")[-1] for test in failed[:5]))
    if code not in (0, 5):  # 5: nothing collected
        raise RuntimeError(f"pytest exited with {code}: {summary}")


def test_outcome(line: str):
    """(test id, outcome) from a line of pytest -v's output (one process: 'ID PASSED', xdist and the summary:
    'PASSED ID'), or None."""
    outcome = r"(PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)"
    found = re.search(rf"\b{outcome}\s+(tests/\S+::\S+)", line)
    if found:
        return found.group(2), found.group(1)
    found = re.search(rf"(tests/\S+::\S+)\s+{outcome}\b", line)
    return found.groups() if found else None


def step_cuda_tests(check: Check) -> None:
    """`pytest -m cuda`: the tests written for a GPU (on a CPU they skip), collected from the files that mark any."""
    files = [str(path.relative_to(ROOT)) for path in sorted((ROOT / "tests").glob("test_*.py"))
             if "mark.cuda" in path.read_text()]
    pytest_step(check, ["-m", "cuda", *files, *([] if check.dry else xdist_workers(4))], check.device)


def step_suite_on_cuda(check: Check) -> None:
    """The tests whose tiny runs follow SEGTRAIN_TEST_DEVICE, with it set to cuda: training, resuming, stopping
    and evaluating on the GPU (pytest-xdist workers when it is there)."""
    if check.dry:
        return pytest_step(check, SUITE_DRY, "cpu")
    pytest_step(check, [*SUITE_ON_CUDA, "-m", "not cuda", *xdist_workers(8)], "cuda")


def xdist_workers(most: int) -> list:
    """pytest-xdist's -n for up to `most` workers, where it is installed (the GPU machine's image has it)."""
    return ["-n", str(min(most, os.cpu_count() or 1))] if importlib.util.find_spec("xdist") else []


# each configuration: trainer.amp, channels_last, compile
SPEED_CONFIGS = {
    "eager fp32": ("off", False, False),
    "bf16": ("bf16", False, False),
    "fp16": ("fp16", False, False),
    "bf16 + channels_last": ("bf16", True, False),
    "compile + bf16 + channels_last": ("bf16", True, True),
}
SPEED_MODELS = ("fcn8s", "deeplab_aspp", "unet")


def step_train_speed(check: Check) -> None:
    """Training steps per second of FCN-8s, DeepLab-ASPP and U-Net (published widths, 21 classes, 500x500, batch 16,
    one fixed batch on the GPU, AdamW) in each SPEED_CONFIGS configuration, and the share of the GPU's peak bf16
    rate that the FLOPs of a step (forward and backward, counted once per model by torch.utils.flop_counter) make
    at that rate. The eager configurations first (FCN-8s first), then compile, while the budget lasts."""
    import torch

    from segtrain.models import build_model_from_config
    from segtrain.runtime import resolve_deterministic, seed_everything

    device = torch.device(check.device)
    seed_everything(0, resolve_deterministic("auto", device))  # cuDNN autotuning on CUDA, as the trainer does
    size, batch, width = check.size(500, 32), check.size(16, 2), check.size(1.0, 0.03125)
    peak = check.earlier.get("environment", {}).get("figures", {}).get("peak_bf16_tflops")
    order = [(model, config) for compiled in (False, True) for model in SPEED_MODELS for config in SPEED_CONFIGS
             if SPEED_CONFIGS[config][2] == compiled]
    if check.dry:  # each configuration once (on FCN-8s) and each model once: every code path, in seconds
        order = [(model, config) for model, config in order if model == "fcn8s" or config == "eager fp32"]
    images = torch.randn(batch, 3, size, size, device=device)
    targets = torch.randint(0, 21, (batch, size, size), device=device)
    built, flops, failures = {}, {}, []  # built: the model in use, by name (one at a time: memory)
    for model_name, config in order:
        row = {"model": model_name, "config": config, "size": f"{size}x{size}", "batch": batch}
        needed = check.size(60, 10) if SPEED_CONFIGS[config][2] else check.size(10, 1)  # a guess for a GPU
        if check.left() < needed:
            check.row("throughput", **row, note=f"skipped: {check.left():.0f} s of the budget left, it needs ~{needed}")
            continue
        if device.type == "cuda":
            torch.cuda.empty_cache()  # what the last configuration left cached (after an out-of-memory error too)
        try:
            if model_name not in built:
                built.clear()
                cfg = compose("dataset=voc", f"model={model_name}", f"model.width={width}")
                built[model_name] = build_model_from_config(cfg, 21).to(device).train(), cfg
            seconds, counted, memory = time_training_steps(check, *built[model_name], images, targets, config,
                                                           count_flops=model_name not in flops)
            flops.setdefault(model_name, counted)
            rate = flops[model_name] / seconds / 1e12
            check.row("throughput", **row, **{
                "images/s": round(batch / seconds, 2), "ms/step": round(1e3 * seconds, 2), "TFLOP/s": round(rate, 2),
                "% of peak bf16": round(100 * rate / peak, 1) if peak else None,
                "GFLOP/image": round(flops[model_name] / batch / 1e9, 1), "peak memory GiB": memory})
        except Skipped as reason:
            check.row("throughput", **row, note=f"skipped: {reason}")
        except Exception as error:  # e.g. out of memory: the other configurations still run
            failures.append(f"{model_name} {config}: {last_line(error)}")
            check.row("throughput", **row, note=f"failed: {last_line(error)}")
    bf16 = [row for row in check.figures.get("throughput", [])
            if row["model"] == "fcn8s" and "bf16" in row["config"] and row.get("% of peak bf16") is not None]
    if bf16:
        best = max(bf16, key=lambda row: row["% of peak bf16"])
        check.target("fcn8s_bf16_peak", f"{best['% of peak bf16']}% ({best['config']})", best["% of peak bf16"] >= 45)
    if failures:
        raise RuntimeError("; ".join(failures[:3]))


def time_training_steps(check: Check, model, cfg, images, targets, config: str, count_flops: bool):
    """(seconds per step, FLOPs of one step or None, peak GiB allocated) of segtrain's train_step in `config`,
    after untimed warm-up steps (compile and cuDNN autotuning happen there)."""
    import torch
    import torch.nn.functional as F
    from torch.utils.flop_counter import FlopCounterMode

    from segtrain.engine import autocast_context, train_step
    from segtrain.optim import build_optimizer, build_schedule
    from segtrain.runtime import select_amp

    device = images.device
    wanted, channels_last, compiled = SPEED_CONFIGS[config]
    amp = select_amp(wanted, device)
    if amp != wanted:
        raise Skipped(f"trainer.amp={wanted} cannot run on this {device.type}")
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model.to(memory_format=memory_format)
    images = images.contiguous(memory_format=memory_format)
    # a dry run captures the graph only (backend eager): inductor's code generation takes minutes on a small CPU
    step_model = torch.compile(model, **({"backend": "eager"} if check.dry else {})) if compiled else model
    warmup, iters = check.size(3, 1), check.size(10, 1)
    optimizer = build_optimizer(model, **cfg.optimizer)
    scheduler = build_schedule(optimizer, warmup + iters + 1, **cfg.schedule)
    scaler = torch.amp.GradScaler("cuda", enabled=amp == "fp16")
    autocast = autocast_context(device, amp)

    def loss_fn(scores, labels):
        return F.cross_entropy(scores.float(), labels, ignore_index=255)

    def step():
        train_step(step_model, [(images, targets)], optimizer, scheduler, scaler, autocast, loss_fn)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    flops = None
    for index in range(warmup):
        if index == 0 and count_flops:
            with FlopCounterMode(display=False) as counter:
                step()
            flops = counter.get_total_flops()
        else:
            step()
    synchronize(device)
    began = time.perf_counter()
    for _ in range(iters):
        step()
    synchronize(device)
    seconds = (time.perf_counter() - began) / iters
    memory = round(torch.cuda.max_memory_allocated() / 2 ** 30, 2) if device.type == "cuda" else None
    model.to(memory_format=torch.contiguous_format)
    return seconds, flops, memory


def step_trainer_overhead(check: Check) -> None:
    """segtrain's trainer against scripts/bench_train.py's bare loop on the same model, files, batch and options,
    each timed over the same iterations after the same warm-up: the trainer from its own log lines' times (each
    written after a host sync, the last one before the final checkpoint), the bare loop around its steps.
    FCN-8s in bf16 with channels_last on VOC-sized JPEG/PNG files, the default DataLoader workers."""
    import logging

    from bench_data import write_images
    from bench_train import bare_loop

    from segtrain.train import train

    warmup, total, repeats = check.size(20, 1), check.size(120, 3), check.size(2, 1)
    with tempfile.TemporaryDirectory(dir=fast_temporary()) as root:
        root, data = Path(root), Path(root) / "data"
        os.environ["SEGTRAIN_CACHE"] = str(root / "cache")
        write_images(data, check.size(64, 8))
        cfg = compose("dataset=folder", f"dataset.root={data}", f"dataset.classes={data / 'classes.yaml'}",
                      "dataset.num_classes=21", "dataset.val_fraction=0.125",  # bare_loop reads num_classes
                      *([] if not check.dry else ["dataset.scale=0.125"]),
                      f"model={check.size('fcn8s', 'deeplab_largefov')}", f"model.width={check.size(1.0, 0.0625)}",
                      f"trainer.device={check.device}",
                      f"trainer.batch_size={check.size(16, 2)}", "trainer.amp=bf16", "trainer.channels_last=true",
                      f"trainer.max_iters={total}", f"trainer.log_interval={warmup}", f"trainer.val_interval={total}",
                      f"trainer.ckpt_interval={total}", "trainer.num_vis_images=1")
        logs = []

        class IterationTimes(logging.Handler):
            def emit(self, record):
                if str(record.msg).startswith("iter ") and record.args:
                    logs.append((record.args[0], record.created))

        logger = logging.getLogger("segtrain")
        handler, level = IterationTimes(), logger.level
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        trainer_rates, bare_rates = [], []
        try:
            for repeat in range(repeats):  # paired and alternated, as bench_train.py does
                logs.clear()
                train(cfg, root / f"run{repeat}")
                times = dict(logs)
                if warmup not in times or total not in times:
                    raise RuntimeError(f"the trainer logged iterations {sorted(times)}, not {warmup} and {total}")
                trainer_rates.append((total - warmup) * cfg.trainer.batch_size / (times[total] - times[warmup]))
                bare_rates.append(bare_loop(cfg, total - warmup, warmup=warmup))
                check.record(trainer_images_per_s=[round(r, 2) for r in trainer_rates],
                             bare_images_per_s=[round(r, 2) for r in bare_rates])
        finally:
            logger.removeHandler(handler)
            logger.setLevel(level)
    ratio = statistics.median(t / b for t, b in zip(trainer_rates, bare_rates))
    check.record(ratio=round(ratio, 4), conditions=f"{cfg.model.name} width {cfg.model.width}, bf16 + channels_last, "
                 f"batch {cfg.trainer.batch_size}, 500x375 JPEG/PNG files{' at 1/8 scale' if check.dry else ''}, "
                 f"iterations {warmup}-{total} timed, median of {repeats} paired runs")
    check.target("trainer_vs_bare", round(ratio, 4), ratio >= 0.98)


def fast_temporary():
    """/dev/shm where it has room (the trainer's checkpoints of a full-width FCN-8s are 2 GB), else the default."""
    try:
        return "/dev/shm" if os.access("/dev/shm", os.W_OK) and shutil.disk_usage("/dev/shm").free > 8 * 2 ** 30 \
            else None
    except OSError:
        return None


def step_data_pipeline(check: Check) -> None:
    """scripts/bench_data.py's pipeline (VOC-sized JPEGs with PNG labels, augment=deeplab: scale, pad, 321 crop,
    mirror) per DataLoader worker count, against the GPU's FCN-8s step rate from the train_speed step."""
    import torch
    from bench_data import images_per_second, write_images

    from segtrain.data import build_dataset
    from segtrain.data.augment import Augmented
    from segtrain.data.samplers import InfiniteSampler
    from segtrain.runtime import resolve_num_workers

    torch.set_num_threads(1)  # one core per pipeline process, as in DataLoader workers
    batch = check.size(16, 4)
    with tempfile.TemporaryDirectory() as root:
        root = Path(root)
        os.environ["SEGTRAIN_CACHE"] = str(root / "cache")
        write_images(root, check.size(200, 8))
        cfg = compose("dataset=folder", f"dataset.root={root}", f"dataset.classes={root / 'classes.yaml'}",
                      "augment=deeplab")
        dataset = build_dataset(cfg.dataset, "train")
        items = Augmented(dataset, cfg.augment, seed=0)
        default = resolve_num_workers("auto", dataset)
        counts = sorted({*check.size((0, 1, 2, 4, 8, 16), (0, 1)), default})
        rates = {}
        for workers in counts:
            rates[workers] = images_per_second(items, workers, check.size(2, 1), batch=batch,
                                               sampler=InfiniteSampler(len(dataset), 0, with_position=True))
            check.row("pipeline", workers=workers, **{"images/s": round(rates[workers], 1)},
                      default="yes" if workers == default else "")
    gpu, what = fcn8s_rate(check)
    check.record(default_workers=default, gpu_images_per_s=gpu, gpu_rate=what, batch=batch)
    if gpu:
        check.target("data_vs_gpu", f"{rates[default] / gpu:.2f}x ({rates[default]:.0f} against {gpu:.0f} images/s)",
                     rates[default] >= 1.5 * gpu)


def step_crf(check: Check) -> None:
    """The dense CRF (crf=deeplab's parameters): seconds per 500x500 image of 21 classes on CUDA in batches of 1
    and 8, on the CPU (torch, one thread) and in pydensecrf (one core); the share of equal labels on those images
    and on the probabilities of a checkpoint from a short training run."""
    import torch
    from bench_crf import fake_job, preset_params, timed

    params = preset_params("deeplab")
    size, classes = check.size(500, 40), check.size(21, 5)
    jobs = [fake_job(seed, size, classes) for seed in range(check.size(8, 2))]
    cpu_jobs = jobs[:check.size(3, 1)]  # a second per image there
    rates, labels = {}, {}
    for batch in (1, check.size(8, 2)):
        rates[f"torch on {check.device}, batches of {batch}"], labels[check.device] = timed(
            params, "torch", jobs, batch_images=batch, device=check.device, repeats=check.size(3, 1))
    device_best = min(rates.values())
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rates["torch on the CPU, 1 thread"], labels["CPU torch"] = timed(params, "torch", cpu_jobs)
    finally:
        torch.set_num_threads(threads)
    try:
        rates["pydensecrf, 1 core"], labels["pydensecrf"] = timed(params, "pydensecrf", cpu_jobs)
    except ImportError:
        check.record(pydensecrf="not installed here: its rows are left out")
    for name, seconds in rates.items():
        check.row("seconds", backend=name, **{"s/image": round(seconds, 4), "images/s": round(1 / seconds, 2)})
    record_agreement(check, labels, f"{len(cpu_jobs)} images {size}x{size}, {classes} classes")
    if "pydensecrf, 1 core" in rates:
        speedup = rates["pydensecrf, 1 core"] / device_best
        check.record(speedup_vs_pydensecrf=round(speedup, 1))
        check.target("crf_speedup", f"{speedup:.1f}x", speedup >= 20)
    crf_on_checkpoint(check, params)


def crf_on_checkpoint(check: Check, params: dict) -> None:
    """Labels of the three backends on a trained network's probabilities: a short synthetic run's checkpoint (the
    demo's model and data), scoring scenes rendered at 500x500."""
    import torch
    from bench_crf import timed

    from segtrain.checkpoint import restore
    from segtrain.data import build_dataset
    from segtrain.engine import score_for_crf
    from segtrain.inference import predict_scores
    from segtrain.runtime import val_loader_for
    from segtrain.train import train
    from segtrain.visualize import denormalize

    with tempfile.TemporaryDirectory() as run_dir:
        iters = check.size(100, 2)
        train(compose(*short_run_overrides(check), f"trainer.max_iters={iters}", f"trainer.val_interval={iters}",
                      f"trainer.ckpt_interval={iters}"), run_dir)
        cfg, model, _ = restore(Path(run_dir) / "checkpoints" / "last.pt",
                                [f"dataset.image_size={check.size(500, 40)}", f"dataset.num_val={check.size(3, 1)}"])
    device = torch.device(check.device)
    dataset = build_dataset(cfg.dataset, cfg.dataset.val_split, evaluation=True)
    scored = score_for_crf(model.to(device), val_loader_for(cfg, dataset, device), device, nullcontext(),
                           lambda net, images: predict_scores(net, images, probabilities=True),
                           lambda image: denormalize(image, dataset.mean, dataset.std).permute(1, 2, 0))
    jobs = [(rgb, probs, index) for index, (rgb, probs, _) in enumerate(scored)]
    labels = {check.device: timed(params, "torch", jobs, device=check.device)[1],
              "CPU torch": timed(params, "torch", jobs)[1]}
    try:
        labels["pydensecrf"] = timed(params, "pydensecrf", jobs)[1]
    except ImportError:
        pass
    record_agreement(check, labels, f"a short run's checkpoint on {len(jobs)} scenes of {check.size(500, 40)}x"
                                    f"{check.size(500, 40)}")


def record_agreement(check: Check, labels: dict, what: str) -> None:
    """One row per other backend: the share of pixels with the device's label, and the images wholly equal."""
    for name in ("CPU torch", "pydensecrf"):
        if name in labels:
            equal = [float((a == b).mean()) for a, b in zip(labels[check.device], labels[name])]
            check.row("same labels", inputs=what, compared=f"torch on {check.device} vs {name}",
                      pixels=f"{100 * sum(equal) / len(equal):.4f}%",
                      images=f"{sum(e == 1.0 for e in equal)} of {len(equal)} identical")


def step_resume_fp16(check: Check) -> None:
    """A short run with trainer.deterministic=true stopped after a checkpoint and resumed, against the same run
    uninterrupted (every weight compared); then fp16 training of 200 iterations, each iteration's loss checked
    (log_interval 1: the trainer stops on a non-finite one)."""
    import torch

    import segtrain.train as trainer
    from segtrain.checkpoint import load_checkpoint

    total, every = check.size(20, 4), check.size(5, 1)
    base = [*short_run_overrides(check), "trainer.deterministic=true", f"trainer.max_iters={total}",
            f"trainer.ckpt_interval={every}", f"trainer.val_interval={total}", f"trainer.log_interval={every}"]
    with tempfile.TemporaryDirectory() as root:
        root = Path(root)
        full = trainer.train(compose(*base), root / "full")
        real_step, calls = trainer.train_step, []

        def crash_after_the_second_checkpoint(*args, **kwargs):
            calls.append(1)
            if len(calls) == 2 * every + 1:
                raise KeyboardInterrupt
            return real_step(*args, **kwargs)

        trainer.train_step = crash_after_the_second_checkpoint
        try:
            trainer.train(compose(*base), root / "resumed")
            raise RuntimeError("the run to interrupt was not interrupted")
        except KeyboardInterrupt:
            pass
        finally:
            trainer.train_step = real_step
        resumed = trainer.train(compose(*base, "trainer.resume=auto"), root / "resumed")
        weights = [load_checkpoint(root / name / "checkpoints" / "last.pt")["model"] for name in ("full", "resumed")]
    differing = [key for key, value in weights[0].items() if not torch.equal(value, weights[1][key])]
    same_metrics = {k: v for k, v in full.items() if k != "train_images_per_s"} == {
        k: v for k, v in resumed.items() if k != "train_images_per_s"}
    check.record(resumed_from=2 * every, tensors=len(weights[0]), tensors_differing=differing[:10],
                 same_final_metrics=same_metrics)
    check.target("bit_exact_resume", f"{len(weights[0]) - len(differing)} of {len(weights[0])} tensors equal, metrics "
                 f"{'equal' if same_metrics else 'differ'}", not differing and same_metrics)

    iters = check.size(200, 2)
    with tempfile.TemporaryDirectory() as run_dir:
        result = trainer.train(compose(*short_run_overrides(check), "trainer.amp=fp16", f"trainer.max_iters={iters}",
                                       "trainer.log_interval=1", f"trainer.val_interval={iters}",
                                       f"trainer.ckpt_interval={iters}"), run_dir)
        scaler = load_checkpoint(Path(run_dir) / "checkpoints" / "last.pt")["scaler"]
    check.record(fp16_iterations=iters, fp16_mean_iu=round(result["mean_iu"], 4), fp16_loss_scale=scaler.get("scale"),
                 **({"fp16_note": "dry run: fp16 needs CUDA, so this ran in fp32"} if check.dry else {}))
    check.target("fp16_finite", f"{iters} iterations, every loss finite", True)


def step_evaluation(check: Check) -> None:
    """Seconds per image of FCN-8s (published width, 21 classes, fp32) scoring 8 VOC-sized images whole and with
    inference=multiscale (scales and flip), and a 1024x2048 image with inference=slide (512 tiles), with 1, 4, 16
    and 32 windows or mirrored copies per forward pass (inference.items_per_forward: 16 on CUDA)."""
    import torch

    from segtrain.cli import compose_app
    from segtrain.inference import items_per_forward, predict_scores
    from segtrain.models import build_model_from_config

    device = torch.device(check.device)
    modes = {name: dict(compose_app("eval", ["ckpt=unused.pt", f"inference={name}"])[0].inference)
             for name in ("whole", "multiscale", "slide")}
    modes["slide"]["tile"] = check.size(modes["slide"]["tile"], 32)
    cfg = compose("dataset=voc", f"model={check.size('fcn8s', 'deeplab_largefov')}",
                  f"model.width={check.size(1.0, 0.0625)}")
    model = build_model_from_config(cfg, 21).to(device).eval()
    voc = torch.randn(check.size(8, 1), 3, check.size(375, 30), check.size(500, 40), device=device)
    city = torch.randn(1, 3, check.size(1024, 48), check.size(2048, 96), device=device)
    default = items_per_forward(voc)
    cases = [("whole", voc, modes["whole"], [None]),
             ("multiscale + flip", voc, modes["multiscale"], [1, 4, 16, 32]),
             ("slide", city, modes["slide"], [1, 4, 16, 32])]
    for name, images, inference, per_forwards in cases:
        seconds = {}
        for per_forward in per_forwards:
            times = []
            with torch.inference_mode():
                for _ in range(check.size(3, 1)):
                    synchronize(device)
                    began = time.perf_counter()
                    predict_scores(model, images, **inference, per_forward=per_forward)
                    synchronize(device)
                    times.append(time.perf_counter() - began)
            seconds[per_forward] = min(times[1:] or times) / len(images)  # the first run warms up
            check.row("scoring", mode=name, images=f"{len(images)} x {images.shape[-2]}x{images.shape[-1]}",
                      per_forward=per_forward or "-", default="yes" if per_forward in (None, default) else "",
                      **{"s/image": round(seconds[per_forward], 4)})
        if default in seconds:
            fastest = min(seconds, key=seconds.get)
            check.record(**{f"{name}: default {default} per forward vs fastest ({fastest})":
                            f"{seconds[fastest] / seconds[default]:.2f}x the fastest's speed"})


STEPS = [  # name, function, budget in seconds on a GPU (they add up to at most 450), in a dry run
    ("install", step_install, 20, 60),
    ("environment", step_environment, 10, 20),
    ("cuda_tests", step_cuda_tests, 75, 60),
    ("suite_on_cuda", step_suite_on_cuda, 55, 60),
    ("train_speed", step_train_speed, 135, 60),
    ("trainer_overhead", step_trainer_overhead, 40, 60),
    ("data_pipeline", step_data_pipeline, 25, 60),
    ("crf", step_crf, 35, 60),
    ("resume_fp16", step_resume_fp16, 35, 60),
    ("evaluation", step_evaluation, 20, 60),
]


# ---------------------------------------------------------------------------------------------------------------
# the step runner and the report

def last_line(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[-1] if text else ''}".rstrip(": ")


def attempt(function, check: Check) -> dict:
    """Runs a step: {"status": "ok"}, or skipped or failed with the last line of why (the traceback to the log)."""
    try:
        function(check)
        return {"status": "ok"}
    except Skipped as reason:
        return {"status": "skipped", "error": str(reason)}
    except ImportError as error:
        package = OPTIONAL_PACKAGES.get((error.name or "").split(".")[0])
        if package:
            return {"status": "skipped", "error": f"needs {package}, not installed here (scripts/device_wheels.sh "
                                                  "fills .whl, which the device run carries)"}
        traceback.print_exc()
        return {"status": "failed", "error": last_line(error)}
    except BaseException as error:
        traceback.print_exc()
        return {"status": "failed", "error": last_line(error)}


def step_process(name, function, dry, deadline, earlier, result_file, log_file) -> None:
    """A step in its forked process: a process group of its own (a timeout ends its DataLoader and compile
    workers too), its output in the log, its outcome written beside its figures."""
    os.setsid()
    log = os.open(log_file, os.O_WRONLY | os.O_APPEND)
    os.dup2(log, 1)
    os.dup2(log, 2)
    print(f"\n===== {name}", flush=True)
    check = Check(name, dry, deadline, earlier, result_file)
    outcome = attempt(function, check)
    torch = sys.modules.get("torch")
    check.record(cuda_initialized=bool(torch and torch.cuda.is_initialized()))
    check.save(**outcome)
    sys.stdout.flush()
    sys.stderr.flush()


def run_step(name, function, budget: float, dry: bool, results: dict, temporary: Path, log_file: Path) -> dict:
    """Runs one step under its budget (install in this process: the later steps inherit its import path; the rest
    forked) and returns its result."""
    result_file = temporary / f"{name}.json"
    began = time.monotonic()
    if name == "install":
        check = Check(name, dry, began + budget, results, result_file)
        check.save(**attempt(function, check))
    else:
        process = multiprocessing.get_context("fork").Process(
            target=step_process, args=(name, function, dry, began + budget, results, result_file, log_file))
        process.start()
        process.join(budget)
        if process.is_alive():
            os.killpg(process.pid, signal.SIGKILL)
            process.join()
            result = json.loads(result_file.read_text()) if result_file.is_file() else {}
            result_file.write_text(json.dumps({**result, "status": "timeout",
                                               "error": f"still running after its budget of {budget:.0f} s"}))
        elif not result_file.is_file() or "status" not in json.loads(result_file.read_text()):
            figures = json.loads(result_file.read_text()) if result_file.is_file() else {}
            result_file.write_text(json.dumps({**figures, "status": "failed",
                                               "error": f"its process died (exit code {process.exitcode})"}))
    result = json.loads(result_file.read_text())
    return {"status": result["status"], "seconds": round(time.monotonic() - began, 1), "budget_s": budget,
            "error": result.get("error"), "figures": result.get("figures", {}), "targets": result.get("targets", {})}


def value_text(value) -> str:
    """A figure as the report shows it: 4 significant digits, lists joined."""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return ", ".join(map(value_text, value)) or "none"
    return str(value)


def markdown(report: dict) -> str:
    """The report: targets met or not, one line per step, then each step's figures (tables as tables)."""
    environment = report["steps"].get("environment", {}).get("figures", {})
    lines = [f"# segtrain device check{' (dry run: CPU, toy sizes)' if report['dry_run'] else ''}", "",
             f"{report['date']}, {environment.get('device', 'device unknown')}, torch {environment.get('torch', '?')}, "
             f"CUDA {environment.get('cuda', '-')}, cuDNN {environment.get('cudnn', '-')}, driver "
             f"{environment.get('driver', '-')}, Python {environment.get('python', '?')}: {report['wall_s']:.0f} s "
             f"wall; the steps' budgets add up to {report['real_budget_s']} s on a GPU (limit {LIMIT_S} s).", "",
             "## Targets (issue 26)", ""]
    if report["dry_run"]:
        lines += ["A dry run measures toy sizes on a CPU: these rows show that the check computes each target, not "
                  "whether segtrain meets it.", ""]
    lines += ["| target | measured | result |", "|---|---|---|"]
    for key, wanted in TARGETS.items():
        found = next((step["targets"][key] for step in report["steps"].values() if key in step["targets"]), None)
        verdict = "not measured" if found is None or found["met"] is None else "met" if found["met"] else "NOT MET"
        lines.append(f"| {wanted} | {value_text(found['measured']) if found else '-'} | {verdict} |")
    lines += ["", "## Steps", "", "| step | status | seconds (budget) | error |", "|---|---|---|---|"]
    for name, step in report["steps"].items():
        lines.append(f"| {name} | {step['status']} | {step['seconds']:.1f} ({step['budget_s']:.0f}) | "
                     f"{(step['error'] or '').replace('|', '/')} |")
    for name, step in report["steps"].items():
        lines += ["", f"## {name}", ""] + (["(no figures)"] if not step["figures"] else [])
        for key, value in step["figures"].items():
            if isinstance(value, list) and value and isinstance(value[0], dict):
                columns = list(dict.fromkeys(column for row in value for column in row))
                lines += ["", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
                lines += ["| " + " | ".join(value_text(row.get(column, "")).replace("|", "/") for column in columns)
                          + " |" for row in value]
                lines.append("")
            else:
                lines.append(f"- {key}: {value_text(value)}")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="folder for device_check.md, .json and .log")
    parser.add_argument("--dry-run", action="store_true", help="every step on the CPU at toy sizes")
    parser.add_argument("--install", action="store_true", help="install .whl/ in a dry run too")
    parser.add_argument("--steps", help="comma-separated step names (default: all); install always runs first")
    args = parser.parse_args()
    names = [name for name, _, _, _ in STEPS]
    chosen = names if not args.steps else ["install"] + [n for n in args.steps.split(",") if n != "install"]
    unknown = sorted(set(chosen) - set(names))
    if unknown:
        parser.error(f"--steps: unknown {', '.join(unknown)}; the steps are {', '.join(names)}")
    if args.dry_run:  # before torch is imported, here and in every process started later
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # nothing in a dry run can reach a GPU
        # toy sizes gain nothing from threads, and OpenMP threads spinning beside other work on a small CPU (CI's
        # other test worker) slowed the dry run several times over
        os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # no network there: no version check at import
    args.out.mkdir(parents=True, exist_ok=True)
    log_file = args.out / "device_check.log"
    log_file.write_text("")
    began = time.monotonic()
    report = {"dry_run": args.dry_run, "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
              "real_budget_s": sum(real for _, _, real, _ in STEPS), "steps": {}}
    with tempfile.TemporaryDirectory() as temporary:
        for name, function, real, dry in STEPS:
            if name not in chosen:
                continue
            if name == "install" and args.dry_run and not args.install:
                report["steps"][name] = {"status": "skipped", "seconds": 0.0, "budget_s": dry, "figures": {},
                                         "targets": {}, "error": "dry run: this environment's packages"}
            else:
                budget = (dry if args.dry_run else real) + (
                    SDIST_BUILD_S * len(list((WHEELS / "sdist").glob("*.tar.gz"))) if name == "install" else 0)
                report["steps"][name] = run_step(name, function, budget, args.dry_run, report["steps"],
                                                 Path(temporary), log_file)
            step = report["steps"][name]
            error = f": {step['error']}" if step["error"] else ""
            print(f"[{step['status']}] {name} {step['seconds']:.1f} s{error}", flush=True)
            if name == "install":
                use_site(installed=step["status"] == "ok")
                preload()
    report["wall_s"] = round(time.monotonic() - began, 1)
    (args.out / "device_check.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    text = markdown(report)
    (args.out / "device_check.md").write_text(text)
    print(text)
    return int(any(step["status"] in ("failed", "timeout") for step in report["steps"].values()))


def preload() -> None:
    """Imports the heavy modules once, before the steps fork, so that each starts in a fraction of a second. CUDA
    is not touched here: a process forked after that could not use it."""
    for module in ("torch", "torch.utils.flop_counter", "segtrain.train", "segtrain.crf", "segtrain.meanfield",
                   "segtrain.cli", "bench_train", "bench_data", "bench_crf"):
        try:
            importlib.import_module(module)
        except Exception:  # the step that needs it reports why
            pass


if __name__ == "__main__":
    sys.exit(main())
