"""Where and how a run computes: device, mixed precision, determinism and seeds, DataLoader workers. Training and
the evaluation commands share these."""
import contextlib
import logging
import os
import random
import re
import warnings

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from .data import pad_collate
from .data.files import FileDataset
from .errors import SegtrainError
from .processes import worker_signals

log = logging.getLogger("segtrain")


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(deterministic, warn_only=True)  # set both ways: sweep jobs share a process
    torch.backends.cudnn.benchmark = not deterministic


# torch's warning for an op it has no deterministic kernel for, which warn_only=True runs anyway
NONDETERMINISTIC_WARNING = re.compile(r"(\S+) does not have a deterministic implementation, but you set "
                                      r"'torch\.use_deterministic_algorithms\(True, warn_only=True\)'")


@contextlib.contextmanager
def nondeterministic_ops_named(deterministic: bool):
    """While a deterministic run trains, torch's warning for an op without a deterministic kernel (DeconvNet's
    max_unpool2d; on CUDA, some backward passes), repeated at every call, becomes one log line the first time each
    op runs: "deterministic kernels except max_unpooling2d_forward_out (torch has none for it)". Other warnings
    are shown as before."""
    if not deterministic:
        yield
        return
    named = []
    with warnings.catch_warnings():
        warnings.filterwarnings("always", message=NONDETERMINISTIC_WARNING.pattern)
        shown = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None):
            op = NONDETERMINISTIC_WARNING.match(str(message))
            if op is None:
                shown(message, category, filename, lineno, file, line)
            elif op[1] not in named:
                named.append(op[1])
                log.info("deterministic kernels except %s (torch has none for %s)", ", ".join(named),
                         "it" if len(named) == 1 else "them")

        warnings.showwarning = show
        yield


def select_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise SegtrainError("trainer.device=cuda but no CUDA device is available; use trainer.device=cpu or auto")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def cpu_has_bf16() -> bool:
    """Native bfloat16 arithmetic (AVX512-BF16, AMX): without it bf16 autocast on a CPU is slower than fp32."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def select_amp(amp: str, device: torch.device) -> str:
    """trainer.amp as it can run here: fp16 needs CUDA; bf16 needs a GPU or a CPU with bfloat16 instructions."""
    amp = str(amp)
    if device.type == "cpu" and amp == "bf16" and cpu_has_bf16():
        return amp
    if amp != "off" and device.type != "cuda":
        log.warning("trainer.amp=%s needs %s; training in fp32 on %s", amp,
                    "CUDA or a CPU with bfloat16 instructions" if amp == "bf16" else "CUDA", device.type)
        return "off"
    if amp == "bf16" and not torch.cuda.is_bf16_supported():
        raise SegtrainError("trainer.amp=bf16 but this GPU has no bf16 support; use trainer.amp=fp16")
    return amp


def resolve_deterministic(setting, device: torch.device) -> bool:
    """trainer.deterministic=auto: deterministic kernels on a CPU, where they cost nothing measurable; on CUDA
    cuDNN's autotuned (non-deterministic) kernels, much faster for convolutions."""
    return device.type == "cpu" if setting == "auto" else bool(setting)


def resolve_num_workers(setting, dataset) -> int:
    """trainer.num_workers=auto: generated data (the synthetic scenes) renders faster in the training process
    than it travels from a worker; files are read and decoded by up to 8 workers per training process."""
    if setting != "auto":
        return int(setting)
    if not isinstance(dataset, FileDataset):
        return 0
    processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return min(8, max(1, (os.cpu_count() or 1) // processes))


def val_loader_for(cfg, dataset, device) -> DataLoader:
    """The validation/evaluation batches in order. Its own generator: iter() draws the workers' base seed from
    it, which from the global RNG would shift every later dropout mask of a training run (and differently in a
    resumed one, whose persistent workers start at another validation)."""
    workers = resolve_num_workers(cfg.trainer.num_workers, dataset.dataset if isinstance(dataset, Subset)
                                  else dataset)
    return DataLoader(dataset, batch_size=cfg.trainer.val_batch_size, shuffle=False, collate_fn=pad_collate,
                      num_workers=workers, persistent_workers=workers > 0, pin_memory=device.type == "cuda",
                      worker_init_fn=worker_signals, generator=torch.Generator().manual_seed(cfg.seed))
