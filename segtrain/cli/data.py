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
encoding (class indices, 0/255, palettes by index or by colour, RGB colours, lossy JPEG masks) and void candidates.
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


def split_summary(dataset, scan, class_names) -> dict:
    """Counts, sizes, label values and per-class pixels/images of one split (single-task view: the first task)."""
    from collections import Counter

    from ..data.labels import IGNORE_INDEX

    counts = scan.counts[:, 0]
    pixels = counts[:, :len(class_names)].sum(0)
    labelled = int(pixels.sum())
    sizes = Counter(f"{w}x{h}" for h, w in scan.image_sizes)
    return {
        "images": len(dataset),
        "image_sizes": {"most_common": dict(sizes.most_common(5)), "distinct": len(sizes),
                        "min": "x".join(map(str, min(scan.image_sizes, key=lambda s: s[0] * s[1])[::-1])),
                        "max": "x".join(map(str, max(scan.image_sizes, key=lambda s: s[0] * s[1])[::-1]))},
        "label_values": [int(v) for v in (counts.sum(0) > 0).nonzero()[0]],
        "ignored_pixels": int(counts[:, IGNORE_INDEX].sum()),
        "labelled_pixels": labelled,
        "classes": {name: {"pixels": int(p), "frequency": float(p) / max(labelled, 1), "images": int(n)}
                    for name, p, n in zip(class_names, pixels, scan.images_with(len(class_names)))},
    }


def check(cfg, out: Path) -> dict:
    import numpy as np

    from ..jsonio import strict_json
    from ..data import build_dataset, split_name
    from ..data.scan import scan_labels

    report = {"dataset": cfg.dataset.name, "root": cfg.dataset.get("root"), "problems": [], "splits": {}}
    class_names, train = None, None
    for role, split in (("train", cfg.dataset.train_split), ("val", cfg.dataset.val_split)):
        dataset = build_dataset(cfg.dataset, split)
        class_names = list(dataset.class_names)
        scan = scan_labels(dataset, f"reading {split}", with_images=role == "train", keep_going=True)
        report["problems"] += scan.problems
        if not scan.image_sizes:  # every file of the split is bad: nothing to summarise
            continue
        report["splits"][split_name(split)] = split_summary(dataset, scan, class_names)
        if role == "train":
            mean = scan.image_sum / scan.image_pixels
            std = np.sqrt(np.maximum(scan.image_sq / scan.image_pixels - mean ** 2, 0))
            report["mean"], report["std"] = [round(float(v), 4) for v in mean], [round(float(v), 4) for v in std]
            report["channels"] = len(mean)
            train = report["splits"][split_name(split)]
    report["class_names"] = class_names
    report["never_in_train"] = [n for n in class_names if train and train["classes"][n]["pixels"] == 0]
    out.mkdir(parents=True, exist_ok=True)
    (out / "dataset_report.json").write_text(strict_json(report, indent=2))
    (out / "dataset_report.md").write_text(report_markdown(report))
    return report


def report_markdown(report: dict) -> str:
    lines = [f"# Dataset report: {report['dataset']}", "", f"root: {report['root']}", ""]
    if report["problems"]:  # first: they are what a check is for
        lines += [f"## {len(report['problems'])} problem(s)", ""] + [f"- {p}" for p in report["problems"]] + [""]
    splits = list(report["splits"])
    lines += ["| | " + " | ".join(splits) + " |", "|---|" + "---|" * len(splits)]
    for label, get in (("images", lambda s: s["images"]),
                       ("image sizes (WxH)", lambda s: ", ".join(f"{k} ({v})" for k, v in
                                                                 s["image_sizes"]["most_common"].items())),
                       ("smallest / largest", lambda s: f"{s['image_sizes']['min']} / {s['image_sizes']['max']}"),
                       ("label values", lambda s: ", ".join(map(str, s["label_values"]))),
                       ("ignored pixels", lambda s: f"{s['ignored_pixels']:,}")):
        lines.append(f"| {label} | " + " | ".join(str(get(report["splits"][s])) for s in splits) + " |")
    lines += ["", "| class | " + " | ".join(f"{s} pixels % | {s} images" for s in splits) + " |",
              "|---|" + "---|---|" * len(splits)]
    for name in report["class_names"]:
        cells = [f"{100 * report['splits'][s]['classes'][name]['frequency']:.2f} | "
                 f"{report['splits'][s]['classes'][name]['images']}" for s in splits]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if "mean" in report:
        lines += ["", f"Train images, per channel in 0..1: mean {report['mean']}, std {report['std']} "
                  f"(dataset.mean / dataset.std)."]
    if report["never_in_train"]:
        lines += ["", f"**Warning**: never in the train split: {', '.join(report['never_in_train'])}."]
    return "\n".join(lines) + "\n"


def preview(cfg, out: Path, split: str, num_images: int) -> Path:
    """image | mask | overlay rows for evenly spaced items, each labelled with its name, and a legend of the
    classes present."""
    import numpy as np
    import torch
    from PIL import Image, ImageDraw

    from ..data import build_dataset, item_name
    from ..data.labels import IGNORE_INDEX
    from ..data.palette import colorize
    from ..data.scan import label_item, raw_image
    from ..visualize import overlay_with_legend, stack_legend, evenly_spaced

    dataset = build_dataset(cfg.dataset, split)
    picks = evenly_spaced(num_images, len(dataset))
    palette, names = dataset.palette, list(dataset.class_names)
    rows, present = [], set()
    for index in picks:
        label = torch.from_numpy(label_item(dataset, index)[0][0].astype(np.int64))
        image = raw_image(dataset, index)
        image = np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image[..., :3]
        rgb = torch.from_numpy((np.clip(image, 0, 1) * 255).round().astype(np.uint8)).permute(2, 0, 1)
        present.update(c for c in [*range(len(names)), IGNORE_INDEX] if (label == c).any())
        # black (background in most palettes) is left unpainted, so the overlay does not darken the image
        black = {c for c in range(len(names)) if not palette[c].any()}
        drawn = overlay_with_legend(rgb, label, palette, names, skip=black).crop((0, 0, rgb.shape[-1], rgb.shape[-2]))
        rows.append((item_name(dataset, index), [Image.fromarray(rgb.permute(1, 2, 0).numpy()),
                                                 Image.fromarray(colorize(label, palette).permute(1, 2, 0).numpy()),
                                                 drawn]))
    tile = max(160, max(row[0].height for _, row in rows))  # small images are enlarged to be seen
    gap, text = 4, 14
    scaled = [(name, [t.resize((round(t.width * tile / t.height), tile), Image.NEAREST) for t in row])
              for name, row in rows]
    width = max(sum(t.width for t in row) + gap * 2 for _, row in scaled)
    grid = Image.new("RGB", (max(width, 200), len(scaled) * (tile + text + gap) + 18), "white")
    draw = ImageDraw.Draw(grid)
    y = 0
    for name, row in scaled:
        draw.text((2, y), name, fill="black")
        x = 0
        for t in row:
            grid.paste(t, (x, y + text))
            x += t.width + gap
        y += tile + text + gap
    draw.text((4, y + 2), f"{cfg.dataset.name} {split}: image | mask | overlay", fill="black")
    legend = [(tuple(int(v) for v in palette[c]), f"{c}: {names[c] if c < len(names) else 'ignored'}")
              for c in sorted(present)]
    out.mkdir(parents=True, exist_ok=True)
    path = out / "preview.png"
    stack_legend(grid, legend).save(path)
    return path


def command_line(words, width: int = 110) -> str:
    """`segtrain WORD ...` wrapped with backslashes, as a shell reads it."""
    lines, line = [], "segtrain"
    for word in words:
        if len(line) + 1 + len(word) > width and line.strip():
            lines.append(line)
            line = "   "
        line += " " + word
    return " \\\n".join(lines + [line])


def verify(cfg):
    """(problems, {split: (class pixels, void pixels)}): every label of both splits read with cfg's keys."""
    from ..data import build_dataset, split_name
    from ..data.scan import scan_labels

    problems, pixels = [], {}
    for split in (cfg.dataset.train_split, cfg.dataset.val_split):
        dataset = build_dataset(cfg.dataset, split)
        scan = scan_labels(dataset, f"checking {split_name(split)}", keep_going=True)
        problems += scan.problems
        pixels[split_name(split)] = (scan.class_pixels(len(dataset.class_names)), int(scan.counts[:, 0, 255].sum()))
    return problems, pixels


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
