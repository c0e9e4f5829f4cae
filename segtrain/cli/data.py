"""`segtrain-data check|preview [out=DIR] [split=NAME] [num_images=N] [KEY=VALUE ...]`
`segtrain-data inspect ROOT [out=DIR]`

Looks at a dataset exactly as `segtrain` with the same overrides would read it (`dataset=folder dataset.root=...
dataset.classes=...`, any `dataset=`), before any training:

  check    reads every label (and image) of the train and val splits: counts, image sizes, label values, class
           pixel frequencies and images per class, classes that never occur, per-channel mean and std of the
           train images (the values for dataset.mean / dataset.std); writes dataset_report.md and .json.
  preview  a PNG grid of num_images (default 8) evenly spaced items of a split (default the train split):
           image | mask | mask over image, with a legend of the class colours.

`inspect ROOT` works out how `dataset=folder` reads a folder tree it has never seen: the photo and mask folders,
how a mask is named from its photo (same name, a suffix, part of the name replaced), regions of interest, the
splits (split files, split folders, {split} patterns, several folders per split, or a held-out fraction), the mask
encoding (class indices, 0/255, palettes by index or by colour, RGB colours, lossy masks) and void candidates.
It writes classes.yaml (class_0, class_1, ..., with the colours seen) and inspect.json, reads every mask of both
splits with the keys it found, and prints them with one line of evidence each, the choices it made (with the key
that changes each), and the `segtrain dataset=folder ...` command:

    segtrain-data inspect ~/data/retina out=retina-keys

Output goes to out= (default outputs/data-<dataset>-<date>-<time>/, for inspect outputs/inspect-<folder>-<time>/).
check reads every file and always writes its report, the bad files listed first; it then exits 2 with one line
naming how many and the first few.
"""
import sys
import time
from pathlib import Path

from ..config import check_command_line
from ..errors import SegtrainError
from ..processes import run_to_the_end
from ..data.check import check, preview, verify
from . import exit_with_error

USAGE = ("usage: segtrain-data check|preview [out=DIR] [split=NAME] [num_images=N] [KEY=VALUE ...] | "
         "segtrain-data inspect ROOT [out=DIR]")
OWN_KEYS = ("out", "split", "num_images")


def parse_args(argv):
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        sys.exit(0 if argv else 2)
    command, own, overrides = argv[0], {}, []
    if command not in ("check", "preview", "inspect"):
        raise SegtrainError(f"unknown command {command!r}; {USAGE}")
    rest = argv[1:]
    if command == "inspect":
        if not rest or "=" in rest[0] and not Path(rest[0]).is_dir():
            raise SegtrainError(f"inspect needs the folder to look at; {USAGE}")
        own["root"], rest = rest[0], rest[1:]
    for arg in rest:
        key, sep, value = arg.partition("=")
        if not sep:
            raise SegtrainError(f"argument {arg!r} is not KEY=VALUE; {USAGE}")
        (own.__setitem__(key, value) if key in OWN_KEYS else overrides.append(arg))
    if command == "inspect" and (overrides or set(own) - {"root", "out"}):
        raise SegtrainError(f"inspect takes only ROOT and out=, not {' '.join(overrides) or sorted(own)}; {USAGE}")
    return command, own, overrides


def command_line(words, width: int = 110) -> str:
    """`segtrain WORD ...` wrapped with backslashes, as a shell reads it."""
    lines, line = [], "segtrain"
    for word in words:
        if len(line) + 1 + len(word) > width and line.strip():
            lines.append(line)
            line = "   "
        line += " " + word
    return " \\\n".join(lines + [line])


def inspect_command(root: str, out: Path) -> None:
    """segtrain-data inspect: the settings found, checked by reading every mask through the printed command."""
    import shlex

    from ..config import override_argument
    from ..data.inspect import inspect_tree, report, to_json
    from ..data.scan import problems_line

    ins = inspect_tree(root, out)
    command = command_line([override_argument(key, value) for key, value in ins.overrides()])
    if not ins.problems:  # the command as a shell and Hydra read it, not the values behind it
        cfg = check_command_line(shlex.split(command.replace("\\\n", " "))[1:])
        ins.problems, pixels = verify(cfg)
    out.mkdir(parents=True, exist_ok=True)
    (out / "inspect.json").write_text(to_json(ins, command))
    print(report(ins))
    if ins.problems:
        raise SegtrainError(f"inspect: {problems_line(ins.problems)} (all in {out / 'inspect.json'})")
    print(f"\nRead every mask with these keys (wrote {ins.classes_file} and {out / 'inspect.json'}):")
    for split, (classes, void) in pixels.items():
        total = classes.sum() + void
        print(f"  {split}: " + ", ".join(f"class_{i} {100 * p / max(total, 1):.1f}%"
                                          for i, p in enumerate(classes.tolist()))
              + (f", void {100 * void / max(total, 1):.1f}%" if void else ""))
    print(f"\n{command}")


def run(argv) -> int:
    from ..data.scan import problems_line

    command, own, overrides = parse_args(argv)
    if command == "inspect":
        name = Path(own["root"]).expanduser().resolve().name
        inspect_command(own["root"], Path(own.get("out") or f"outputs/inspect-{name}-{time.strftime('%Y%m%d-%H%M%S')}"))
        return 0
    cfg = check_command_line(overrides)
    out = Path(own.get("out") or f"outputs/data-{cfg.dataset.name}-{time.strftime('%Y%m%d-%H%M%S')}")
    if command == "check":
        report = check(cfg, out)
        for split, summary in report["splits"].items():
            print(f"{split}: {summary['images']} images, label values {summary['label_values']}")
        if "mean" in report:
            print(f"train mean {report['mean']} std {report['std']}")
        for name in report["never_in_train"]:
            print(f"warning: class {name!r} never occurs in the train split", file=sys.stderr)
        for warning in report["warnings"]:
            print(f"warning: {warning}", file=sys.stderr)
        print(f"wrote {out / 'dataset_report.md'} and {out / 'dataset_report.json'}")
        if report["problems"]:
            raise SegtrainError(f"{problems_line(report['problems'])} (all listed in {out / 'dataset_report.md'})")
    else:
        try:
            num_images = int(own.get("num_images", 8))
        except ValueError:
            raise SegtrainError(f"num_images={own['num_images']}: expected a whole number") from None
        if num_images < 1:
            raise SegtrainError(f"num_images={num_images}: expected at least 1")
        print(f"wrote {preview(cfg, out, own.get('split') or cfg.dataset.train_split, num_images)}")
    return 0


def main(argv=None) -> None:
    import logging

    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(message)s")
    try:
        sys.exit(run(sys.argv[1:] if argv is None else argv))
    except SegtrainError as error:
        exit_with_error("segtrain-data", error)


def cli() -> None:
    """The console script."""
    run_to_the_end("segtrain-data", main)


if __name__ == "__main__":
    cli()
