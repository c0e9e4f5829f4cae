"""segtrain-report's work: training runs, whole sweeps and their evaluations side by side (report(paths, out)), as a
markdown table, segtrain_report.csv and the validation mean-IU curves in segtrain_report.png."""
import csv
import json
import logging
import re
import textwrap
from pathlib import Path

from .errors import SegtrainError

COLUMNS = ("run", "kind", "model", "dataset", "settings", "iterations", "best mean IU", "mean IU", "CRF mean IU",
           "mean Dice", "CRF mean Dice", "pixel acc.", "images/s", "published mean IU")
PERCENT = ("best mean IU", "mean IU", "CRF mean IU", "mean Dice", "CRF mean Dice", "pixel acc.")


class Skipped(Exception):
    """A folder that is no report row, and why (one line)."""


def natural_order(path: Path):
    """Job folders 0, 1, ..., 10 in numeric order, names in alphabetical order after them."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", path.name) if part]


def read_yaml(path: Path, kind=dict):
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        value = OmegaConf.to_container(OmegaConf.load(path))
    except (OSError, ValueError, OmegaConfBaseException) as e:
        raise Skipped(f"{path.name} cannot be read ({type(e).__name__})") from None
    if not isinstance(value, kind):
        raise Skipped(f"{path.name} holds no {kind.__name__}")
    return value


def read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise Skipped(f"{path.name} cannot be read ({type(e).__name__}: half-written?)") from None
    if not isinstance(value, dict):
        raise Skipped(f"{path.name} holds no mapping")
    return value


def job_error(folder: Path) -> str:
    """A sweep job's recorded failure, as a clause for a skip line."""
    try:
        record = json.loads((folder / "job_status.json").read_text())
    except (OSError, ValueError):
        return ""
    return f"; the job {record.get('status')}: {record.get('error')}" if record.get("status") != "finished" else ""


def find_rows(folder: Path, rows: list, skipped: list) -> None:
    """Rows for the training runs and evaluations at or below `folder`, in order (a run's evaluations after it),
    and a line in `skipped` for every other folder that has no run below it."""
    def attempt(work):
        try:
            return work()
        except Skipped as why:
            skipped.append(f"{folder}: {why}")

    kind = attempt(lambda: folder_kind(folder))
    if kind == "evaluation":
        attempt(lambda: rows.append(summarize_evaluation(folder)))
        return
    if kind == "training":
        attempt(lambda: rows.append(summarize_training(folder)))
        evaluations = folder / "eval"  # RUN/eval/<name>-<time>/
        below = [p for p in evaluations.iterdir() if p.is_dir()] if evaluations.is_dir() else []
    elif kind is not None:
        below = [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")]
        if not below:
            skipped.append(f"{folder}: {kind}")
    for child in sorted(below, key=natural_order) if kind else []:
        find_rows(child, rows, skipped)


def folder_kind(folder: Path) -> str:
    """What `folder` is: an evaluation, a training run, or else why it holds no row itself (it may have some
    below); a record it cannot read is Skipped."""
    record = folder / ".hydra" / "config.yaml"
    if (folder / "metrics.json").is_file() and (folder / "config.yaml").is_file():
        if {"evaluation", "training"} <= set(read_yaml(folder / "config.yaml")):
            return "evaluation"
    if record.is_file():
        config = read_yaml(record)
        if "ckpt" in config:  # segtrain-eval's record: its results come last, so this one stopped or is running
            raise Skipped("an evaluation without results (no metrics.json and config.yaml: stopped, failed or "
                          f"still running{job_error(folder)})")
        if not all(isinstance(config.get(g), dict) and "name" in config[g] for g in ("model", "dataset")):
            raise Skipped("its .hydra/config.yaml is no segtrain training config")
        return "training"
    if (folder / "dataset_report.json").is_file() or (folder / "preview.png").is_file():
        return "a segtrain-data report, not a run"
    if not any(folder.iterdir()):
        return "an empty folder"
    return "holds no segtrain run or evaluation"


def mean_iu_curve(run: Path):
    """[(iteration, validation mean IU)] from the run's TensorBoard events (empty without them)."""
    if not (run / "tb").is_dir():
        return []
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    # a resumed run rewrote the steps after its checkpoint: the reader drops the first session's copies, as it
    # should, and would say so in several lines per run
    quiet, level = logging.getLogger("tensorboard"), logging.getLogger("tensorboard").level
    quiet.setLevel(logging.ERROR)
    try:
        events = EventAccumulator(str(run / "tb"), size_guidance={"scalars": 0}).Reload()
    finally:
        quiet.setLevel(level)
    if "val/mean_iu" not in events.Tags()["scalars"]:
        return []
    return [(e.step, e.value) for e in events.Scalars("val/mean_iu")]


def summarize_training(run: Path) -> dict:
    config = read_yaml(run / ".hydra" / "config.yaml")
    overrides_file = run / ".hydra" / "overrides.yaml"
    try:  # a damaged record only loses the overrides column
        overrides = [str(o) for o in read_yaml(overrides_file, list)
                     if not str(o).startswith(("hydra.", "trainer.device", "trainer.resume"))]
    except Skipped:
        overrides = []
    metrics = read_json(run / "metrics.json") if (run / "metrics.json").is_file() else {}
    curve = mean_iu_curve(run)
    if not metrics and not curve:
        raise Skipped(f"a training run with no validation yet (no metrics.json, no TensorBoard curve"
                      f"{job_error(run)})")
    best = metrics.get("best_mean_iu", max((v for _, v in curve), default=None))
    return {
        "run": str(run), "kind": "training", "model": config["model"]["name"], "dataset": config["dataset"]["name"],
        "settings": " ".join(overrides), "iterations": metrics.get("iteration", curve[-1][0] if curve else None),
        "best mean IU": best, "mean IU": metrics.get("mean_iu", curve[-1][1] if curve else None),
        "CRF mean IU": None, "mean Dice": metrics.get("mean_dice"), "CRF mean Dice": None,
        "pixel acc.": metrics.get("pixel_acc"), "images/s": metrics.get("train_images_per_s"),
        "published mean IU": (config.get("published") or {}).get("mean_iu"), "curve": curve,
    }


def evaluation_settings(evaluation: dict, result: dict) -> str:
    """What an evaluation did beyond training's validation: its checkpoint, inference, CRF, ensemble and
    overrides of the stored config, e.g. `best.pt inference=whole crf=dense(w1=4 sigma_alpha=121 ...)`."""
    from .inference import inference_name

    inference, crf = evaluation.get("inference") or {}, evaluation.get("crf") or {}
    details = [f"tile={inference.get('tile')} overlap={inference.get('overlap')}"] if inference.get(
        "mode") == "slide" else []
    if list(inference.get("scales") or [1.0]) != [1.0]:
        details.append(f"scales={','.join(f'{s:g}' for s in inference['scales'])}")
    if inference.get("flip"):
        details.append("flip")
    parts = [Path(str(result.get("checkpoint", "?"))).name,
             f"inference={inference_name(**inference)}" + (f"({' '.join(details)})" if details else "")]
    if crf.get("name", "none") == "none":
        parts.append("crf=none")
    else:
        keys = ("w1", "sigma_alpha", "sigma_beta", "w2", "sigma_gamma", "iterations")
        parts.append(f"crf={crf['name']}(" + " ".join(f"{k}={crf[k]:g}" for k in keys if k in crf) + ")")
    if result.get("ensemble"):
        parts.append(f"ensemble=[{','.join(Path(p).name for p in result['ensemble'])}]")
    return " ".join(parts + list(result.get("overrides") or []))


def summarize_evaluation(folder: Path) -> dict:
    result = read_json(folder / "metrics.json")
    stored = read_yaml(folder / "config.yaml")
    training, evaluation = stored.get("training") or {}, stored.get("evaluation") or {}
    if "mean_iu" not in result:
        raise Skipped("its metrics.json holds no mean_iu (half-written?)")
    crf = result.get("crf") or {}
    return {
        "run": str(folder), "kind": "evaluation", "model": (training.get("model") or {}).get("name"),
        "dataset": f"{(training.get('dataset') or {}).get('name')} {result.get('split', '')}".strip(),
        "settings": evaluation_settings(evaluation, result), "iterations": result.get("iteration"),
        "best mean IU": None, "mean IU": result["mean_iu"], "CRF mean IU": crf.get("mean_iu"),
        "mean Dice": result.get("mean_dice"), "CRF mean Dice": crf.get("mean_dice"),
        "pixel acc.": result.get("pixel_acc"), "images/s": None,
        "published mean IU": (training.get("published") or {}).get("mean_iu"), "curve": [],
        "checkpoint": result.get("checkpoint"),
    }


def cell(key: str, value) -> str:
    if value is None:
        return "-"
    if key in PERCENT:
        return f"{100 * value:.2f}"
    if key == "images/s":
        return f"{value:.1f}"
    return str(value)


def markdown(rows) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        lines.append("| " + " | ".join(cell(k, row[k]).replace("|", "/") for k in COLUMNS) + " |")
    return "\n".join(lines)


def training_run_of(row) -> str:
    """The training run a row belongs to: an evaluation's checkpoint's run (RUN for RUN/eval/NAME, or when its
    checkpoint RUN/checkpoints/NAME.pt is found from here), else the row's own folder."""
    folder = Path(row["run"]).resolve()
    if row["kind"] == "evaluation" and folder.parent.name == "eval":
        return str(folder.parent.parent)
    checkpoint = Path(str(row.get("checkpoint"))).resolve()
    if row["kind"] == "evaluation" and checkpoint.is_file() and checkpoint.parent.name == "checkpoints":
        return str(checkpoint.parent.parent)
    return str(folder)


def short_name(row) -> str:
    """A row's folder as the legend names it: RUN, RUN/NAME for an evaluation, SWEEP/N for a sweep's job."""
    folder = Path(row["run"])
    if folder.parent.name == "eval":
        return f"{folder.parent.parent.name}/{folder.name}"
    return f"{folder.parent.name}/{folder.name}" if folder.name.isdigit() else folder.name


def plot_curves(rows, path: Path):
    """Validation mean IU over iterations, one line per training run, each evaluation a point (x: the network,
    star: after the CRF) in its run's colour; the legend below the axes, every label whole (wrapped)."""
    from .plots import figure, save_png

    entries = [row for row in rows if row["curve"] or row["kind"] == "evaluation" and row["iterations"] is not None]
    labels = [textwrap.fill(f"{short_name(row)}: {row['model']} {row['settings']}".strip(), 110,
                            subsequent_indent="    ") for row in entries]
    legend_lines = sum(label.count("\n") + 1 for label in labels)
    fig = figure(8.0, 4.0 + 0.17 * legend_lines)
    ax = fig.add_subplot()
    colours = {}
    for row, label in zip(entries, labels):
        colour = colours.get(training_run_of(row))
        if row["curve"]:
            steps, values = zip(*row["curve"])
            line = ax.plot(steps, [100 * v for v in values], marker="o", markersize=3, label=label, color=colour)[0]
        else:
            line = ax.plot([row["iterations"]], [100 * row["mean IU"]], marker="x", markersize=8, linestyle="none",
                           label=label, color=colour)[0]
            if row["CRF mean IU"] is not None:
                ax.plot([row["iterations"]], [100 * row["CRF mean IU"]], marker="*", markersize=9, linestyle="none",
                        color=line.get_color())
        colours.setdefault(training_run_of(row), line.get_color())
        if row["published mean IU"] is not None and row["curve"]:
            ax.axhline(row["published mean IU"], color=line.get_color(), linestyle="--", linewidth=0.8)
    ax.set_xlabel("iteration")
    ax.set_ylabel("validation mean IU (%)")
    ax.set_title("validation mean IU (dashed: the recipe's published figure; x: an evaluation, *: with its CRF)",
                 fontsize=9)
    ax.grid(alpha=0.3)
    if entries:
        fig.legend(loc="outside lower left", fontsize=7, frameon=False)
    save_png(fig, path)
    return fig


def report(paths, out: Path):
    """(rows, skipped): a row per training run and per evaluation found at or below `paths`, the table and the
    curves written into `out`; `skipped` holds a line per folder that is neither (and per path that is no folder).
    Nothing found is a SegtrainError."""
    rows, skipped = [], []
    for path in map(Path, paths):
        if path.is_dir():
            find_rows(path, rows, skipped)
        else:
            skipped.append(f"{path}: no such folder")
    if not rows:
        raise SegtrainError(f"no segtrain run or evaluation found ({'; '.join(skipped[:3])})")
    rows = list({Path(row["run"]).resolve(): row for row in rows}.values())  # a folder given twice: one row
    try:
        out.mkdir(parents=True, exist_ok=True)
        with open(out / "segtrain_report.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(COLUMNS)
            for row in rows:
                writer.writerow(["" if row[k] is None else row[k] for k in COLUMNS])
        plot_curves(rows, out / "segtrain_report.png")
    except OSError as e:
        raise SegtrainError(f"out={out}: cannot write the report there ({e.strerror})") from None
    return rows, skipped
