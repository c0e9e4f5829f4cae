"""Fully connected CRF refinement (Krähenbühl & Koltun, NIPS 2011) of a network's class probabilities.

Energy: unary -log p, plus a Gaussian (smoothness) kernel w2 exp(-|dp|^2 / 2 sigma_gamma^2) and a bilateral
(appearance) kernel w1 exp(-|dp|^2 / 2 sigma_alpha^2 - |dI|^2 / 2 sigma_beta^2), both with Potts compatibility.
docs/reference.md section 5 holds the published parameters (configs/crf/).

Two backends compute the same mean-field inference: `torch` (segtrain.meanfield: CPU or CUDA, batched,
differentiable) and `pydensecrf` (Krähenbühl's C++ code through its Python binding, CPU only, in worker processes),
which stays as the reference the torch one is tested against. This module imports torch only when the torch backend
runs, so pydensecrf's worker processes start light."""
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from itertools import chain
from multiprocessing import get_context

import numpy as np

from .processes import worker_signals

BACKENDS = ("torch", "pydensecrf")


def dense_crf(image: np.ndarray, probs: np.ndarray, w1: float, sigma_alpha: float, sigma_beta: float, w2: float,
              sigma_gamma: float, iterations: int) -> np.ndarray:
    """pydensecrf: image (H, W, 3) uint8 RGB and probs (C, H, W) float -> (H, W) uint8 labels."""
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
    """dense_crf's keyword arguments from a `crf` config (its name, backend and parallelism dropped)."""
    return {key: crf_cfg[key] for key in ("w1", "sigma_alpha", "sigma_beta", "w2", "sigma_gamma", "iterations")}


def _refine(job):
    """One job in a CPU process: (labels, extra)."""
    image, probs, params, backend, extra = job
    if backend == "pydensecrf":
        return dense_crf(image, probs, **params), extra
    import torch

    from .meanfield import dense_crf_torch

    labels = dense_crf_torch([torch.from_numpy(image)], [torch.from_numpy(probs)], **params)[0]
    return labels.to(torch.uint8).numpy(), extra


def _worker_setup(backend: str):
    """A CPU worker's initializer. Every mean-field iteration allocates maps of tens of MB; glibc would hand each
    back to the kernel and fault it in again, page by page (a third of the time went there), so the worker keeps
    its heap (M_MMAP_MAX 0, M_TRIM_THRESHOLD 2 GiB). torch gets one thread, as pydensecrf has. Stop signals as
    for DataLoader workers (segtrain.processes.worker_signals): the parent ends the pool."""
    import ctypes
    import ctypes.util

    worker_signals()  # first: any thread started later inherits its signal mask
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        libc.mallopt(-4, 0)  # M_MMAP_MAX
        libc.mallopt(-1, 2 ** 31 - 1)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError, TypeError):  # not glibc: its default allocator then
        pass
    if backend == "torch":
        import torch

        torch.set_num_threads(1)


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


def _on_device(jobs, params: dict, batch_images: int):
    """dense_crf_torch over `batch_images` jobs at a time, on the device their probabilities are on."""
    import torch

    from .meanfield import dense_crf_torch

    def run(batch):
        probs = [torch.as_tensor(p) for _, p, _ in batch]
        images = [torch.as_tensor(image).to(p.device) for (image, _, _), p in zip(batch, probs)]
        labels = dense_crf_torch(images, probs, **params)
        return [(label.to(torch.uint8).cpu().numpy(), extra) for label, (_, _, extra) in zip(labels, batch)]

    batch = []
    for job in jobs:
        batch.append(job)
        if len(batch) == batch_images:
            yield from run(batch)
            batch = []
    if batch:
        yield from run(batch)


@contextmanager
def crf_refiner(params: dict, backend: str = "torch", workers: int = 0, batch_images: int = 1):
    """`refine(jobs)`: an iterator over (labels (H, W) uint8 array, extra) for jobs of (image (H, W, 3) uint8,
    probabilities (C, H, W), extra), arrays or tensors, in order. Jobs are consumed lazily, so the network keeps
    producing while the CRF runs.

    Probabilities on a GPU are refined there by the torch backend, `batch_images` at a time. On the CPU either
    backend runs in `workers` processes of one thread each (0: in this process, torch with all its threads): the
    CRF's sparse, memory-bound steps scale better across processes than across threads."""
    backend = str(backend)  # crf.backend's enum, pickled to workers as a plain str
    if backend not in BACKENDS:
        raise ValueError(f"crf backend {backend!r}: expected one of {BACKENDS}")

    def on_cpu(jobs):
        for image, probs, extra in jobs:
            image, probs = (a.cpu().numpy() if hasattr(a, "cpu") else a for a in (image, probs))
            yield image, probs.astype(np.float32, copy=False), params, backend, extra

    def refine_here(jobs):
        jobs = iter(jobs)
        first = next(jobs, None)
        if first is None:
            return iter(())
        jobs = chain([first], jobs)
        if backend == "torch" and getattr(first[1], "is_cuda", False):
            return _on_device(jobs, params, max(1, batch_images))
        return map(_refine, on_cpu(jobs)) if pool is None else _bounded_map(pool, on_cpu(jobs), 2 * workers)

    if workers == 0:
        pool = None
        yield refine_here
        return
    # spawn: the workers import only what their backend needs, never a forked copy of torch's thread pools
    pool = ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_worker_setup,
                               initargs=(backend,))
    try:
        yield refine_here
    except BaseException:  # an error, Ctrl-C or SIGTERM: the running CRFs are not waited for
        _end_now(pool)
        raise
    pool.shutdown(wait=True)


def _end_now(pool) -> None:
    """Cancels the queued jobs and ends the workers (SIGTERM from their parent, which worker_signals obeys), then
    joins them. ProcessPoolExecutor's shutdown alone would wait for every running job."""
    pool.shutdown(wait=False, cancel_futures=True)
    if hasattr(pool, "terminate_workers"):  # Python 3.14
        pool.terminate_workers()
        return
    processes = list((getattr(pool, "_processes", None) or {}).values())  # before 3.14: no public call
    for process in processes:
        process.terminate()
    for process in processes:
        process.join(timeout=10)
