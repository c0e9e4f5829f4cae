"""Dense CRF time per image at 500x500 with 21 classes (docs/reference.md: about 0.5 s per VOC image on one core), and
the speed-up from running it in parallel worker processes as segtrain-eval does (crf.workers).

    python scripts/bench_crf.py [--images 8] [--workers 1 2] [--preset deeplab]
"""
import argparse
import os
import time

import numpy as np

from segtrain.crf import crf_params, crf_refiner

PRESETS = ("dense", "deeplab", "deeplab_resnet", "deconvnet")  # configs/crf/ (docs/reference.md section 5)


def preset_params(name: str) -> dict:
    """The parameters of a `crf=` preset, read from the configs segtrain-eval uses."""
    from hydra import compose, initialize_config_dir

    from segtrain.config import config_dir, register_configs

    register_configs()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return crf_params(compose("config", overrides=[f"crf={name}"]).crf)


def fake_job(seed: int, size: int = 500, classes: int = 21):
    """A blocky image and smooth class probabilities like a network's upsampled output."""
    import torch

    rng = np.random.default_rng(seed)
    image = np.kron(rng.integers(0, 255, (10, 10, 3)), np.ones((size // 10, size // 10, 1))).astype(np.uint8)
    logits = torch.from_numpy(rng.normal(0, 2, (1, classes, size // 8, size // 8)).astype(np.float32))
    probs = torch.nn.functional.interpolate(logits, size=(size, size), mode="bilinear").softmax(1)[0].numpy()
    return image, probs, seed


def timed(params, workers: int, jobs) -> float:
    with crf_refiner(params, workers) as refine:
        list(refine(iter(jobs[:workers or 1])))  # start the workers and warm up
        began = time.perf_counter()
        done = list(refine(iter(jobs)))
    assert [extra for _, extra in done] == [extra for _, _, extra in jobs]
    return (time.perf_counter() - began) / len(jobs)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--preset", choices=PRESETS, default="deeplab")
    args = parser.parse_args()
    jobs = [fake_job(seed) for seed in range(args.images)]
    params = preset_params(args.preset)
    serial = timed(params, 0, jobs)
    print(f"{args.images} images 500x500, 21 classes, crf={args.preset}, {os.cpu_count()} CPU cores")
    print(f"in-process: {serial:.3f} s per image")
    for workers in args.workers:
        per_image = timed(params, workers, jobs)
        print(f"{workers} worker(s): {per_image:.3f} s per image, {serial / per_image:.2f}x the in-process rate")


if __name__ == "__main__":
    main()
