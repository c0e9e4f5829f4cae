"""Prediction speed: the Python API (segtrain.Segmenter) against segtrain-predict on the same images, side by side
in one run, paired and alternately, with the median of the paired ratios.

    python scripts/bench_predict.py                          # the newest outputs/demo-*/checkpoints/best.pt
    python scripts/bench_predict.py --ckpt RUN/checkpoints/best.pt --images 50 --size 500 --crf dense
    python scripts/bench_predict.py --ckpt ... trainer.device=cpu    # overrides of the stored training config

What is compared, per repeat, over the same --images PNG files (synthetic scenes of --size pixels, written once):
  Segmenter.predict    a loop of predict(path) on a Segmenter loaded once before timing: each file read as the
                       training data were, scored, labelled (CRF when --crf); nothing is written.
  Segmenter.predict_batch
                       the same list in one predict_batch call (--batch-size; default 8 on a GPU, 1 on the CPU);
                       with --crf, its CRF in --crf-workers processes as segtrain-predict's (predict runs each
                       image's CRF in the calling process).
  segtrain-predict     its in-process run(argv), as the console script runs after its argument checks: the config
                       composed by Hydra, the checkpoint loaded, each file read, scored and labelled by the same
                       Segmenter, then NAME.png (palette PNG) and NAME_overlay.png (overlay with legend) written, and
                       its progress line. Writing the two PNGs and loading are part of its cost; Python's start and
                       imports are not (the console script also pays them, once per command).
The labels are checked equal before timing. The ratio is API images/s over segtrain-predict images/s."""
import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def newest_demo_checkpoint() -> Path:
    found = sorted(Path("outputs").glob("demo-*/checkpoints/best.pt"))
    if not found:
        sys.exit("bench_predict: no outputs/demo-*/checkpoints/best.pt: run `make demo` or give --ckpt")
    return found[-1]


def write_images(folder: Path, count: int, size: int) -> list:
    """`count` synthetic scenes of size x size pixels as PNG files (seeded: the same files every run)."""
    from segtrain.data.synthetic import render_scene

    rng = np.random.default_rng(0)
    paths = []
    for n in range(count):
        image, _ = render_scene(rng, size)
        paths.append(folder / f"scene{n:03d}.png")
        Image.fromarray(image).save(paths[-1])
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", type=Path, help="default: the newest outputs/demo-*/checkpoints/best.pt")
    parser.add_argument("--images", type=int, default=50)
    parser.add_argument("--size", type=int, default=500, help="image side in pixels")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=None, help="predict_batch's (default: its own)")
    parser.add_argument("--crf", default=None, help="a configs/crf option for both (dense, deeplab_resnet, ...)")
    parser.add_argument("--crf-workers", type=int, default=2, help="CRF processes for segtrain-predict and "
                        "predict_batch (segtrain-predict's default, 2; predict runs its one image's CRF in-process)")
    parser.add_argument("--inference", default=None, help="a configs/inference option for both (slide, multiscale)")
    parser.add_argument("overrides", nargs="*", help="KEY=VALUE over the stored training config, for both")
    args = parser.parse_args()

    import torch

    from segtrain import Segmenter
    from segtrain.cli.predict import run as segtrain_predict

    ckpt = args.ckpt or newest_demo_checkpoint()
    options = [f"{group}={value}" for group, value in (("crf", args.crf), ("inference", args.inference)) if value]
    crf = None
    if args.crf:
        options.append(f"crf.workers={args.crf_workers}")
        crf = {"name": args.crf, "workers": args.crf_workers}
    segmenter = Segmenter.from_checkpoint(ckpt, device=None, inference=args.inference, crf=crf,
                                          overrides=args.overrides)
    with tempfile.TemporaryDirectory(prefix="bench-predict-") as work:
        work = Path(work)
        (work / "images").mkdir()
        paths = write_images(work / "images", args.images, args.size)

        def cli(out: Path) -> float:
            began = time.perf_counter()
            segtrain_predict([f"ckpt={ckpt}", f"input={work / 'images'}", f"output={out}", *options,
                              *args.overrides])
            return len(paths) / (time.perf_counter() - began)

        def api_one_by_one() -> float:
            began = time.perf_counter()
            for path in paths:
                segmenter.predict(path)
            return len(paths) / (time.perf_counter() - began)

        def api_batch() -> float:
            began = time.perf_counter()
            segmenter.predict_batch(paths, batch_size=args.batch_size)
            return len(paths) / (time.perf_counter() - began)

        # a first pass of each (lazy initialisation, caches), which also checks that they give the same labels
        cli(work / "check")
        batch = segmenter.predict_batch(paths, batch_size=args.batch_size)
        for path, labels in zip(paths, batch):
            written = np.array(Image.open(work / "check" / f"{path.stem}.png"))
            if not (np.array_equal(segmenter.predict(path), written) and np.array_equal(labels, written)):
                sys.exit(f"bench_predict: the API and segtrain-predict label {path.name} differently")
        speeds = {"Segmenter.predict": [], "Segmenter.predict_batch": [], "segtrain-predict": []}
        for repeat in range(args.repeats):
            speeds["segtrain-predict"].append(cli(work / f"out{repeat}"))
            speeds["Segmenter.predict"].append(api_one_by_one())
            speeds["Segmenter.predict_batch"].append(api_batch())

    cfg = segmenter.train_cfg
    print(f"{ckpt}: model {cfg.model.name} width {cfg.model.get('width')}, {args.images} synthetic PNGs of "
          f"{args.size}x{args.size}, inference {args.inference or 'whole'}, crf {args.crf or 'none'}"
          f"{f' ({args.crf_workers} workers)' if args.crf else ''}, "
          f"{segmenter.device}, torch {torch.__version__}")
    cli_speeds = speeds["segtrain-predict"]
    for name, values in speeds.items():
        print(f"{name:24s} {statistics.median(values):8.2f} images/s median (runs: "
              f"{', '.join(f'{v:.2f}' for v in values)})")
    for name in ("Segmenter.predict", "Segmenter.predict_batch"):
        ratio = statistics.median(a / c for a, c in zip(speeds[name], cli_speeds))
        print(f"{name} / segtrain-predict = {ratio:.3f} (median of paired runs)")


if __name__ == "__main__":
    main()
