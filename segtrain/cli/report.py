"""`segtrain-report DIR [DIR ...] [out=DIR]`: runs, whole sweeps and their evaluations side by side.

Each DIR is a training run (it holds `.hydra/config.yaml`), an evaluation (segtrain-eval's folder: metrics.json and
a config.yaml of its `evaluation` and `training`), or a folder with them below it (a sweep, an eval sweep, an
`outputs/` folder); a run's evaluations (RUN/eval/<name>-<time>/) are reported after it. Prints one markdown table,
a row per training run (model, dataset, its overrides, iterations, best and final validation mean IU, final mean
Dice, pixel accuracy, training images/s) and per evaluation (the checkpoint, its inference and CRF settings, mean
IU and mean Dice without and with the CRF); for a run made with `experiment=` the published mean IU of its recipe
stands beside the measured one. Anything else below DIR (a segtrain-data report, an empty folder, a run or
evaluation that has no results yet) is skipped with one line on stderr. Writes the same table as
`segtrain_report.csv` and the validation mean-IU curves (read from each run's TensorBoard events, evaluations as
points) as `segtrain_report.png` into out= (default: the current folder).
"""
import sys
from pathlib import Path

from ..errors import SegtrainError
from ..processes import run_to_the_end
from ..report import markdown, report
from . import exit_with_error

USAGE = "usage: segtrain-report DIR [DIR ...] [out=DIR]"


def run(argv) -> list:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        sys.exit(0 if argv else 2)
    out, paths = Path("."), []
    for arg in argv:
        key, sep, value = arg.partition("=")
        if sep and key == "out":
            out = Path(value)
        elif sep:
            raise SegtrainError(f"unknown option {arg!r}; {USAGE}")
        else:
            paths.append(arg)
    try:
        rows, skipped = report(paths, out)
    except SegtrainError as error:
        raise SegtrainError(f"{error}; {USAGE}" if str(error).startswith("no segtrain run") else str(error)) from None
    for line in skipped:
        print(f"segtrain-report: skipped {line}", file=sys.stderr)
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
