"""Dense CRF seconds per image, the torch backend side by side with pydensecrf in one run, on the same images and
the same number of cores: each backend in N worker processes of one thread (as segtrain-eval runs them with
crf.workers=N), and torch on CUDA when there is a GPU. Also the share of pixels where they
agree.

    python scripts/bench_crf.py [--images 8] [--size 500] [--classes 21] [--cores 1 2] [--preset deeplab]
                                [--repeats 3]
"""
import argparse
import os
import time

import numpy as np
import torch

from segtrain.crf import crf_params, crf_refiner

PRESETS = ("dense", "deeplab", "deeplab_v2_vgg", "deeplab_resnet", "deconvnet")  # configs/crf/


def preset_params(name: str) -> dict:
    """The parameters of a `crf=` preset, read from the configs segtrain-eval uses."""
    from segtrain.cli import compose_app

    return crf_params(compose_app("eval", ["ckpt=unused.pt", f"crf={name}"])[0].crf)


def fake_job(seed: int, size: int, classes: int):
    """A photo-like image (flat regions, texture noise) and noisy class probabilities like a network's upsampled
    output: smooth logits at 1/8 resolution, bilinearly upsampled."""
    rng = np.random.default_rng(seed)
    image = np.kron(rng.integers(0, 255, (10, 10, 3)), np.ones((size // 10 + 1, size // 10 + 1, 1)))[:size, :size]
    image = np.clip(image + rng.normal(0, 8, image.shape), 0, 255).astype(np.uint8)
    logits = torch.from_numpy(rng.normal(0, 2, (1, classes, size // 8, size // 8)).astype(np.float32))
    probs = torch.nn.functional.interpolate(logits, size=(size, size), mode="bilinear").softmax(1)[0]
    return torch.from_numpy(image), probs, seed


def timed(params, backend: str, jobs, workers: int = 0, batch_images: int = 1, device="cpu", repeats: int = 1):
    """(seconds per image, labels): the best of `repeats` passes over `jobs`, after a warm-up on the first job."""
    jobs = [(image.to(device), probs.to(device), extra) for image, probs, extra in jobs]
    best = float("inf")
    with crf_refiner(params, backend, workers, batch_images) as refine:
        list(refine(iter(jobs[:max(1, workers)])))  # start the workers, warm up
        for _ in range(repeats):
            if device != "cpu":
                torch.cuda.synchronize()
            began = time.perf_counter()
            done = list(refine(iter(jobs)))
            best = min(best, (time.perf_counter() - began) / len(jobs))
    assert [extra for _, extra in done] == [extra for _, _, extra in jobs]
    return best, [labels for labels, _ in done]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--size", type=int, default=500)
    parser.add_argument("--classes", type=int, default=21)
    parser.add_argument("--cores", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--preset", choices=PRESETS, default="deeplab")
    parser.add_argument("--repeats", type=int, default=3, help="passes per backend; the best is reported")
    args = parser.parse_args()
    jobs = [fake_job(seed, args.size, args.classes) for seed in range(args.images)]
    params = preset_params(args.preset)
    print(f"{args.images} images {args.size}x{args.size}, {args.classes} classes, crf={args.preset}, "
          f"{os.cpu_count()} CPU cores, torch {torch.__version__}")
    reference = None
    for cores in args.cores:
        torch.set_num_threads(cores)
        plain, labels = timed(params, "pydensecrf", jobs, workers=cores, repeats=args.repeats)
        reference = reference or labels
        ours, torch_labels = timed(params, "torch", jobs, workers=cores, repeats=args.repeats)
        agree = np.mean([(a == b).mean() for a, b in zip(labels, torch_labels)])
        print(f"crf.workers={cores}: pydensecrf {plain:.3f} s/image, torch {ours:.3f} s/image: "
              f"torch {plain / ours:.2f}x as fast; same label on {agree:.4%} of pixels")
    if torch.cuda.is_available():
        for batch in (1, 4):
            ours, torch_labels = timed(params, "torch", jobs, batch_images=batch, device="cuda", repeats=args.repeats)
            agree = np.mean([(a == b).mean() for a, b in zip(reference, torch_labels)])
            print(f"CUDA ({torch.cuda.get_device_name()}), batches of {batch}: torch {ours:.4f} s/image, "
                  f"{plain / ours:.1f}x pydensecrf on {cores} core(s); same label on {agree:.4%} of pixels")


if __name__ == "__main__":
    main()
