"""Checkpoints: plain tensors and Python values only, written atomically, read with weights_only=True."""
import os
import pickle
import random
from pathlib import Path

import numpy as np
import torch

from .errors import SegtrainError


def save_checkpoint(state: dict, path: Path) -> None:
    """Write to a temporary file in the same folder, then rename: a kill mid-save leaves the old file whole. A
    write that fails (disk full, read-only, no permission) removes its temporary file and says which file is
    intact."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:  # torch.save reports ENOSPC as a RuntimeError from its zip writer
        tmp.unlink(missing_ok=True)
        cause = e.strerror if isinstance(e, OSError) and e.strerror else str(e).strip().splitlines()[-1]
        if isinstance(e, RuntimeError) and "unexpected pos" in str(e):
            cause = "the disk is full (the write stopped short)"
        intact = f"the previous {path.name} is intact" if path.is_file() else f"no earlier {path.name} exists"
        raise SegtrainError(f"{path}: cannot write the checkpoint ({cause}); {intact}") from None


def remove_stale_temporaries(folder: Path) -> None:
    """Partial `.NAME.pt.tmp` files a killed save left behind (they can fill a disk)."""
    for tmp in folder.glob(".*.pt.tmp") if folder.is_dir() else []:
        tmp.unlink(missing_ok=True)


def load_checkpoint(path, map_location="cpu", peek: bool = False) -> dict:
    """A checkpoint's state; with `peek` memory-mapped, so looking at its keys or config reads no tensor data."""
    path = Path(path)
    if not path.is_file():
        raise SegtrainError(f"checkpoint {path}: no such file")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True, mmap=peek)
    except pickle.UnpicklingError as e:
        if "unsupported global" in str(e).lower():  # it holds objects: not ours, and not safe to unpickle
            raise SegtrainError(f"checkpoint {path}: not a safe segtrain checkpoint (it holds objects other than "
                                "tensors and plain values)") from None
        raise SegtrainError(f"checkpoint {path}: not a readable segtrain checkpoint ({type(e).__name__})") from None
    except Exception as e:  # noqa: BLE001 - a damaged file makes the unpickler fail in many ways
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise SegtrainError(f"checkpoint {path}: not a readable segtrain checkpoint ({first_line})") from None
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        raise SegtrainError(f"checkpoint {path}: not a segtrain checkpoint (no 'model' and 'config' entries)")
    return state


def rng_states() -> dict:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": random.getstate(),
    }


def set_rng_states(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    name, keys, *rest = states["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
