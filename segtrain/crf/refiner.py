"""crf_refiner: the dense CRF over a stream of images, on the evaluating device (the torch backend, batched on a
GPU) or in CPU worker processes of one thread each, fed lazily while the network scores. This module imports torch
only when the torch backend runs, so pydensecrf's worker processes start light."""
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from itertools import chain
from multiprocessing import get_context

import numpy as np

from ..processes import worker_signals
from .backends import BACKENDS, refine_one


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
        pending.append(pool.submit(refine_one, job))
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
        return map(refine_one, on_cpu(jobs)) if pool is None else _bounded_map(pool, on_cpu(jobs), 2 * workers)

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
