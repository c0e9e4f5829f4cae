"""`segtrain-report DIR [DIR ...] [out=DIR]`: runs and whole sweeps side by side.

Each DIR is a run directory (it holds `.hydra/config.yaml`) or a folder with runs below it (a sweep, or an
`outputs/` folder). Prints one markdown table: model, dataset, the run's overrides, iterations, best and final
validation mean IU, pixel accuracy, training images/s, and for a run made with `experiment=` the published mean IU
of its recipe beside the measured one. Writes the same table as `segtrain_report.csv` and the validation mean-IU
curves (read from each run's TensorBoard events) as `segtrain_report.png` into out= (default: the current folder).
"""
import csv
import json
import sys
from pathlib import Path

from ..errors import SegtrainError
from ..processes import run_to_the_end
from . import exit_with_error

USAGE = "usage: segtrain-report DIR [DIR ...] [out=DIR]"
COLUMNS = ("run", "model", "dataset", "overrides", "iterations", "best mean IU", "final mean IU", "pixel acc.",
           "images/s", "published mean IU")


def find_runs(paths):
    """Run directories (holding .hydra/config.yaml) at or below each path, in order, each once."""
    runs = []
    for path in map(Path, paths):
        if not path.is_dir():
            raise SegtrainError(f"{path}: no such folder; {USAGE}")
        found = [path] if (path / ".hydra" / "config.yaml").is_file() else sorted(
            (p.parent.parent for p in path.rglob(".hydra/config.yaml")),
            key=lambda p: [int(s) if s.isdigit() else s for s in p.relative_to(path).parts])
        if not found:
            raise SegtrainError(f"{path}: holds no segtrain run (no .hydra/config.yaml at or below it)")
        runs += [run for run in found if run not in runs]
    return runs


def mean_iu_curve(run: Path):
    """[(iteration, validation mean IU)] from the run's TensorBoard events (empty without them)."""
    if not (run / "tb").is_dir():
        return []
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tb"), size_guidance={"scalars": 0}).Reload()
    if "val/mean_iu" not in events.Tags()["scalars"]:
        return []
    return [(e.step, e.value) for e in events.Scalars("val/mean_iu")]


def summarize(run: Path) -> dict:
    from omegaconf import OmegaConf

    config = OmegaConf.to_container(OmegaConf.load(run / ".hydra" / "config.yaml"))
    overrides_file = run / ".hydra" / "overrides.yaml"
    overrides = [o for o in (OmegaConf.to_container(OmegaConf.load(overrides_file)) if overrides_file.is_file()
                             else []) if not o.startswith(("hydra.", "trainer.device", "trainer.resume"))]
    metrics = json.loads((run / "metrics.json").read_text()) if (run / "metrics.json").is_file() else {}
    curve = mean_iu_curve(run)
    published = (config.get("published") or {}).get("mean_iu")
    best = metrics.get("best_mean_iu", max((v for _, v in curve), default=None))
    return {
        "run": str(run), "model": config["model"]["name"], "dataset": config["dataset"]["name"],
        "overrides": " ".join(overrides), "iterations": metrics.get("iteration", curve[-1][0] if curve else None),
        "best mean IU": best, "final mean IU": metrics.get("mean_iu", curve[-1][1] if curve else None),
        "pixel acc.": metrics.get("pixel_acc"), "images/s": metrics.get("train_images_per_s"),
        "published mean IU": published, "curve": curve,
    }


def cell(key: str, value) -> str:
    if value is None:
        return "-"
    if key in ("best mean IU", "final mean IU", "pixel acc."):
        return f"{100 * value:.2f}"
    if key == "images/s":
        return f"{value:.1f}"
    return str(value)


def markdown(rows) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        lines.append("| " + " | ".join(cell(k, row[k]).replace("|", "/") for k in COLUMNS) + " |")
    return "\n".join(lines)


def plot_curves(rows, path: Path) -> None:
    from ..plots import figure, save_png

    fig = figure(7.0, 4.0)
    ax = fig.add_subplot()
    for row in rows:
        if row["curve"]:
            steps, values = zip(*row["curve"])
            label = f"{Path(row['run']).name}: {row['model']} {row['overrides']}".strip()
            line = ax.plot(steps, [100 * v for v in values], marker="o", markersize=3, label=label[:60])[0]
            if row["published mean IU"] is not None:
                ax.axhline(row["published mean IU"], color=line.get_color(), linestyle="--", linewidth=0.8)
    ax.set_xlabel("iteration")
    ax.set_ylabel("validation mean IU (%)")
    ax.set_title("validation mean IU (dashed: the recipe's published figure)", fontsize=10)
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(fontsize=7, loc="lower right")
    save_png(fig, path)


def run(argv) -> list:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        sys.exit(0 if argv else 2)
    out = Path(".")
    paths = []
    for arg in argv:
        key, sep, value = arg.partition("=")
        if sep and key == "out":
            out = Path(value)
        elif sep:
            raise SegtrainError(f"unknown option {arg!r}; {USAGE}")
        else:
            paths.append(arg)
    rows = [summarize(run_dir) for run_dir in find_runs(paths)]
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
    print(markdown(rows))
    print(f"\nwrote {out / 'segtrain_report.csv'} and {out / 'segtrain_report.png'}", file=sys.stderr)
    return rows


def main(argv=None) -> None:
    try:
        run(sys.argv[1:] if argv is None else argv)
    except SegtrainError as error:
        exit_with_error("segtrain-report", error)


def cli() -> None:
    """The console script."""
    run_to_the_end("segtrain-report", main)


if __name__ == "__main__":
    cli()
