import os
import tempfile

import pytest

from segtrain.config import compose

# One thread per pytest-xdist worker (one worker per core), in its subprocesses too: two workers of two OpenMP
# threads each on two cores spin against each other, and tiny runs took twice as long.
if os.environ.get("PYTEST_XDIST_WORKER"):
    import torch

    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)

# the label-scan cache of every test run (and of its subprocesses) in a folder of its own, never ~/.cache
os.environ["SEGTRAIN_CACHE"] = tempfile.mkdtemp(prefix="segtrain-test-cache-")

# Where the tiny runs train: cpu (CI), or cuda when scripts/device_check.py runs the suite on a GPU. There they
# also take deterministic kernels, which trainer.deterministic=auto leaves off on CUDA: the suite checks bit-exact
# resumes.
TEST_DEVICE = os.environ.get("SEGTRAIN_TEST_DEVICE", "cpu")
if TEST_DEVICE not in ("cpu", "cuda"):
    raise ValueError(f"SEGTRAIN_TEST_DEVICE={TEST_DEVICE!r}: expected cpu or cuda")

# Shrinks any run to seconds on a CPU: narrow network, tiny images, a few iterations.
TINY = [
    "model.width=0.0625",
    "dataset.num_train=16",
    "dataset.num_val=4",
    "dataset.image_size=32",
    "trainer.max_iters=6",
    "trainer.batch_size=2",
    "trainer.val_batch_size=2",
    "trainer.val_interval=3",
    "trainer.ckpt_interval=2",
    "trainer.log_interval=2",
    "trainer.num_vis_images=2",
    f"trainer.device={TEST_DEVICE}",
    *(["trainer.deterministic=true"] if TEST_DEVICE == "cuda" else []),
]


def compose_config(*overrides):
    return compose(list(overrides))


@pytest.fixture
def tiny_cfg():
    """The default config shrunk by TINY, plus any extra overrides."""
    return lambda *overrides: compose_config(*TINY, *overrides)


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory):
    """One uninterrupted tiny run (6 iterations, validation at 3 and 6, checkpoints every 2)."""
    from segtrain.train import train

    run_dir = tmp_path_factory.mktemp("full")
    result = train(compose_config(*TINY), run_dir)
    return run_dir, result


def pytest_collection_modifyitems(config, items):
    """The tests marked slow first in each worker's share. `make test` runs pytest-xdist's worksteal scheduling,
    which hands each worker one contiguous part of this list and lets an idle worker take the far end of another's
    queue: each part starts with every n-th slow test, so no worker is left with all of them."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    slow = [item for item in items if item.get_closest_marker("slow") is not None]
    fast = [item for item in items if item.get_closest_marker("slow") is None]
    ordered, remaining = [], len(items)
    for worker in range(workers):  # the part sizes xdist's worksteal gives: len // workers, the rest to the last
        size = remaining // (workers - worker)
        share = slow[worker::workers]
        ordered += share + fast[:size - len(share)]
        del fast[:size - len(share)]
        remaining -= size
    items[:] = ordered + fast
