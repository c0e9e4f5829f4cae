"""Fully connected CRF refinement (Krähenbühl & Koltun) of a network's class probabilities, with pydensecrf.

Energy: unary -log p, plus a Gaussian (smoothness) kernel w2 exp(-|dp|^2 / 2 sigma_gamma^2) and a bilateral
(appearance) kernel w1 exp(-|dp|^2 / 2 sigma_alpha^2 - |dI|^2 / 2 sigma_beta^2), both with Potts compatibility.
docs/reference.md section 5 holds the published parameters (configs/crf/)."""
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from multiprocessing import get_context

import numpy as np


def dense_crf(image: np.ndarray, probs: np.ndarray, w1: float, sigma_alpha: float, sigma_beta: float, w2: float,
              sigma_gamma: float, iterations: int) -> np.ndarray:
    """image (H, W, 3) uint8 RGB and probs (C, H, W) float -> (H, W) uint8 labels after mean-field inference."""
    import pydensecrf.densecrf as dcrf
    from pydensecrf.utils import unary_from_softmax

    classes, height, width = probs.shape
    crf = dcrf.DenseCRF2D(width, height, classes)
    crf.setUnaryEnergy(np.ascontiguousarray(unary_from_softmax(probs.astype(np.float32))))
    crf.addPairwiseGaussian(sxy=sigma_gamma, compat=w2)
    crf.addPairwiseBilateral(sxy=sigma_alpha, srgb=sigma_beta, rgbim=np.ascontiguousarray(image), compat=w1)
    q = np.array(crf.inference(iterations)).reshape(classes, height, width)
    return q.argmax(0).astype(np.uint8)


def crf_params(crf_cfg) -> dict:
    """dense_crf's keyword arguments from a `crf` config (its name and worker count dropped)."""
    return {key: crf_cfg[key] for key in ("w1", "sigma_alpha", "sigma_beta", "w2", "sigma_gamma", "iterations")}


def _refine(job):
    image, probs, params, extra = job
    return dense_crf(image, probs, **params), extra


def _bounded_map(pool, jobs, window: int):
    """pool.map in order, but with at most `window` jobs in flight (Executor.map would take them all at once,
    and a split's probability maps do not fit in memory)."""
    pending = deque()
    for job in jobs:
        pending.append(pool.submit(_refine, job))
        if len(pending) >= window:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


@contextmanager
def crf_refiner(params: dict, workers: int):
    """`refine(jobs)`: an iterator over (labels, extra) for jobs of (image, probs, extra), in order, computed by
    `workers` processes (0: in this process). Jobs are consumed lazily, so the network keeps producing while
    the CRF runs."""
    def with_params(jobs):
        return ((image, probs, params, extra) for image, probs, extra in jobs)

    if workers == 0:
        yield lambda jobs: map(_refine, with_params(jobs))
        return
    # spawn: the workers import only numpy and pydensecrf, never a forked copy of torch's thread pools
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        yield lambda jobs: _bounded_map(pool, with_params(jobs), 2 * workers)
