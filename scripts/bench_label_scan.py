"""The label scan that runs before training (segtrain.data.scan): a cold scan in worker processes and a cached one,
side by side with a plain loop that opens each mask and counts its values in this process.

    python scripts/bench_label_scan.py                 # 1000 VOC-sized (500x375) index masks
    python scripts/bench_label_scan.py --count 5000

Writes the masks (and 8x8 stand-in images; only their headers are read) to a temporary folder first."""
import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from segtrain.config import compose
from segtrain.data import build_dataset
from segtrain.data.scan import scan_labels


def plain_loop(masks):
    for path in masks:
        label = np.array(Image.open(path))
        np.bincount(label.ravel(), minlength=256)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=1000)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as root:
        root = Path(root)
        os.environ["SEGTRAIN_CACHE"] = str(root / "cache")
        (root / "images").mkdir()
        (root / "masks").mkdir()
        rng = np.random.default_rng(0)
        for n in range(args.count):
            label = np.zeros((375, 500), np.uint8)
            for _ in range(4):  # a few rectangles of classes, like VOC's objects
                y, x = rng.integers(0, 300), rng.integers(0, 400)
                label[y:y + 75, x:x + 100] = rng.integers(1, 21)
            Image.fromarray(label).save(root / "masks" / f"{n:05d}.png")
            Image.new("RGB", (500, 375)).save(root / "images" / f"{n:05d}.jpg")
        (root / "classes.yaml").write_text("classes: [" + ", ".join(f"c{i}" for i in range(21)) + "]\n")
        cfg = compose(["dataset=folder", f"dataset.root={root}",
                       f"dataset.classes={root / 'classes.yaml'}"]).dataset
        dataset = build_dataset(cfg, "train")
        masks = [mask for _, mask in dataset.items]
        began = time.perf_counter()
        plain_loop(masks)
        plain = time.perf_counter() - began
        began = time.perf_counter()
        cold = scan_labels(dataset, "cold scan")
        cold_s = time.perf_counter() - began
        began = time.perf_counter()
        cached = scan_labels(build_dataset(cfg, "train"), "cached scan")
        cached_s = time.perf_counter() - began
        assert cached.cached == args.count and np.array_equal(cold.counts, cached.counts)
        print(f"{args.count} masks of 500x375, {os.cpu_count()} cores")
        print(f"plain loop (open + count, one process): {plain:.2f} s  ({args.count / plain:.0f} masks/s)  1.00x")
        print(f"segtrain scan, cold (decode + check + sizes, workers): {cold_s:.2f} s  ({args.count / cold_s:.0f} "
              f"masks/s)  {plain / cold_s:.2f}x")
        print(f"segtrain scan, cached: {cached_s:.2f} s  {plain / cached_s:.1f}x")


if __name__ == "__main__":
    main()
