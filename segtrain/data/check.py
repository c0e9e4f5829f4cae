"""segtrain-data check and preview: a dataset read exactly as training reads it, summarised (dataset_report.md and
.json: images, sizes, label values, class pixel shares and images per class, classes that never occur, the train
images' per-channel mean and std, every bad file first) or drawn (preview.png: image | mask | overlay rows)."""
from pathlib import Path

def split_summary(dataset, scan, class_names) -> dict:
    """Counts, sizes, label values and per-class pixels/images of one split (single-task view: the first task)."""
    from collections import Counter

    from .labels import IGNORE_INDEX

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
    from . import build_dataset, split_name
    from .scan import scan_labels

    from ..errors import SegtrainError
    from . import shared_images

    report = {"dataset": cfg.dataset.name, "root": cfg.dataset.get("root"), "problems": [], "warnings": [],
              "splits": {}}
    class_names, train, built = [], None, {}
    for role, split in (("train", cfg.dataset.train_split), ("val", cfg.dataset.val_split)):
        try:
            dataset = build_dataset(cfg.dataset, split)
        except SegtrainError as error:  # a split that cannot be read is one of the problems, the other is still read
            if str(error) not in report["problems"]:
                report["problems"].append(str(error))
            continue
        built[role] = dataset
        class_names = list(dataset.class_names)
        scan = scan_labels(dataset, f"reading {split}", with_images=role == "train", keep_going=True)
        report["problems"] += [p for p in scan.problems if p not in report["problems"]]  # a file in both splits once
        if not scan.image_sizes:  # every file of the split is bad: nothing to summarise
            continue
        report["splits"][split_name(split)] = split_summary(dataset, scan, class_names)
        if role == "train":
            mean = scan.image_sum / scan.image_pixels
            std = np.sqrt(np.maximum(scan.image_sq / scan.image_pixels - mean ** 2, 0))
            report["mean"], report["std"] = [round(float(v), 4) for v in mean], [round(float(v), 4) for v in std]
            report["channels"] = len(mean)
            train = report["splits"][split_name(split)]
    if len(built) == 2:
        report["warnings"] += shared_images(built["train"], built["val"])
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
    lines += [f"**Warning**: {w}" for w in report.get("warnings", [])] + ([""] if report.get("warnings") else [])
    splits = list(report["splits"])
    if not splits:  # every file bad: nothing to tabulate
        return "\n".join(lines + ["No split could be read."]) + "\n"
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

    from . import build_dataset, item_name
    from .labels import IGNORE_INDEX
    from .palette import colorize
    from .scan import label_item, raw_image
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


def verify(cfg):
    """(problems, {split: (class pixels, void pixels)}): every label of both splits read with cfg's keys."""
    from . import build_dataset, split_name
    from .labels import IGNORE_INDEX
    from .scan import scan_labels

    problems, pixels = [], {}
    for split in (cfg.dataset.train_split, cfg.dataset.val_split):
        dataset = build_dataset(cfg.dataset, split)
        scan = scan_labels(dataset, f"checking {split_name(split)}", keep_going=True)
        problems += scan.problems
        void = int(scan.counts[:, 0, IGNORE_INDEX].sum())
        pixels[split_name(split)] = (scan.class_pixels(len(dataset.class_names)), void)
    return problems, pixels
