"""Checkpoints: plain tensors and Python values only, written atomically, read with weights_only=True."""
import logging
import os
import pickle
import random
from pathlib import Path

import numpy as np
import torch

from .errors import SegtrainError

log = logging.getLogger("segtrain")
CONFIG_GROUPS = ("model", "dataset", "optimizer", "schedule")  # what every stored config names, since the first


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
    config = state["config"]
    for group in CONFIG_GROUPS:
        if not isinstance(config, dict) or not isinstance(config.get(group), dict) or "name" not in config[group]:
            raise SegtrainError(f"checkpoint {path}: its config has no {group} (a {group} with its name); it was "
                                "not written by segtrain, or was edited")
    return state


TRAINING_STATE = {"iteration": int, "optimizer": dict, "scheduler": dict, "scaler": dict, "rng": dict,
                  "best_mean_iu": (int, float)}  # what resuming reads, and its type


def require_training_state(state: dict, path) -> None:
    """A checkpoint to resume from holds every entry of TRAINING_STATE with its type, else one line naming it."""
    for key, kind in TRAINING_STATE.items():
        if not isinstance(state.get(key), kind) or isinstance(state.get(key), bool):
            found = "missing" if key not in state else f"a {type(state[key]).__name__}"
            raise SegtrainError(f"checkpoint {path}: its training state is incomplete ({key!r} is {found}); it "
                                "was not written by segtrain, or was edited")


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


def find_resume_checkpoint(resume, ckpt_dir: Path):
    """trainer.resume: auto takes the newest checkpoint that holds the training state (last.pt, else a best.pt
    written with trainer.best_with_state=true; None when there is none yet), or a path."""
    if resume is None:
        return None
    if resume == "auto":
        unusable = None  # why last.pt, which is there, cannot be resumed from
        for name in ("last.pt", "best.pt"):
            path = ckpt_dir / name
            if not path.is_file():
                continue
            try:
                if "optimizer" in load_checkpoint(path, peek=True):
                    return path
            except SegtrainError as error:  # e.g. truncated by a full disk: fall back to the next one
                log.warning("trainer.resume=auto: skipping %s", error)
                unusable = unusable or (str(error) if name == "last.pt" else None)
        if (ckpt_dir / "best.pt").is_file():
            first = (f"{unusable}, and its best.pt" if unusable else f"{ckpt_dir} has no last.pt and its best.pt")
            raise SegtrainError(f"trainer.resume=auto: {first} holds only the weights (trainer.best_with_state="
                                f"false); start a new run with model.init_from={ckpt_dir / 'best.pt'} instead")
        if unusable:
            raise SegtrainError(f"trainer.resume=auto: {unusable}; nothing else in {ckpt_dir} to resume from")
        return None
    path = Path(resume)
    if not path.is_file():
        raise SegtrainError(f"trainer.resume={resume}: no such checkpoint file")
    return path


def restore(ckpt, overrides=(), input_channels=None):
    """(cfg, model, state) from a checkpoint: its stored training config with `overrides` (dotlist strings) checked
    against the training schemas, the configured network with the stored weights, on the CPU, in eval mode, and
    the whole checkpoint. `input_channels` defaults to what the checkpoint records."""
    from .config import stored_config
    from .data import checkpoint_dataset_info
    from .models import build_model_from_config

    state = load_checkpoint(ckpt)
    cfg = stored_config(state["config"], overrides, state.get("config_version", 0))
    if input_channels is None:
        input_channels = checkpoint_dataset_info(state, cfg)["input_channels"]
    model = build_model_from_config(cfg, cfg.dataset.num_classes, input_channels)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as e:  # weights of another shape than the stored config describes (an edited file)
        detail = next((line.strip() for line in str(e).splitlines()[1:] if line.strip()), str(e))
        raise SegtrainError(f"checkpoint {ckpt}: its weights do not fit the model its config describes "
                            f"({detail})") from None
    return cfg, model.eval(), state
