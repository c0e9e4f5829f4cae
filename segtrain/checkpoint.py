"""Checkpoints: plain tensors and Python values only, written atomically, read with weights_only=True."""
import logging
import math
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


def init_from_checkpoint(model, path: str, strict: bool = True) -> None:
    """Copies every weight of a segtrain checkpoint whose name and shape match (FCN-16s from a trained FCN-32s:
    all but the new skip layers and the final upsampling), as the FCN paper trains its finer nets; CRF-as-RNN
    takes its network's weights from a run of that network, as the paper starts from a trained FCN-8s. A trainable
    weight of the same name and another shape (another width, another class count) is an error unless
    `strict` is false; fixed buffers of another shape (e.g. a bilinear upsampling kernel) are left as built."""
    from .models import CRFasRNN

    source = load_checkpoint(path)["model"]
    target = model.state_dict()
    if isinstance(model, CRFasRNN) and not any(k.startswith("network.") for k in source):
        source = {f"network.{k}": v for k, v in source.items()}  # CRF-as-RNN from the plain network's run
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    matched = {k: v for k, v in source.items() if k in target and target[k].shape == v.shape}
    mismatched = [k for k in source if k in target and k not in matched]
    if strict and any(k in trainable for k in mismatched):
        shown = ", ".join(f"{k} {tuple(source[k].shape)} -> {tuple(target[k].shape)}"
                          for k in mismatched if k in trainable)
        raise SegtrainError(f"model.init_from={path}: {len(mismatched)} weights have other shapes ({shown[:300]}"
                            f"{'...' if len(shown) > 300 else ''}); is it another width or class count? "
                            "model.init_from_strict=false copies only the weights that fit")
    if not matched:
        raise SegtrainError(f"model.init_from={path}: none of its weights fits {type(model).__name__}")
    model.load_state_dict(matched, strict=False)
    left = [k for k in target if k not in matched]
    log.info("initialised %d of %d tensors from %s; kept as built: %s", len(matched), len(target), path,
             ", ".join(left[:12]) + (f" and {len(left) - 12} more" if len(left) > 12 else "") if left else "none")


# what resuming restores from the checkpoint: a different value on the command line would be recorded but ignored
RESTORED_ON_RESUME = ("model.", "optimizer.", "schedule.", "dataset.name", "dataset.num_classes", "seed")


class Checkpointer:
    """A run's checkpoints: what they hold, when they are written, and resuming from one.

    last.pt (everything resuming needs) every trainer.ckpt_interval iterations, at a stop and at the end, always
    before that iteration's validation so a failing validation cannot lose it; best.pt (what evaluation and
    prediction need, the training state too with `best_with_state`) whenever a validation improves the best value
    of the `monitor`ed metric (trainer.monitor, its value in a validation's metrics `score(metrics)`; NaN never
    improves). After `patience` validations in a row without an improvement (trainer.early_stop_patience) the run
    stops early: last.pt is written at that validation. Each checkpoint records whether its iteration's validation
    ran (`validated`): a run resumed from one whose validation did not run runs it first. Only the process that
    `writes` (rank 0) writes. The run's carried-over state (iteration, best mean IU, best monitored value and its
    iteration, validations since, last metrics, images and seconds trained) lives here."""

    def __init__(self, folder: Path, model, optimizer, scheduler, scaler, config: dict, extra: dict,
                 writes: bool = True, best_with_state: bool = False, monitor: str = "mean_iu", score=None,
                 patience=None):
        self.folder, self.writes, self.best_with_state = folder, writes, best_with_state
        self.model, self.optimizer, self.scheduler, self.scaler = model, optimizer, scheduler, scaler
        self.config, self.extra = config, extra  # extra: class names, data facts, class weights
        self.monitor, self.score, self.patience = monitor, score or (lambda metrics: metrics[monitor]), patience
        self.iteration, self.best_mean_iu = 0, -1.0  # the best mean IU is kept whatever is monitored
        self.best, self.best_iteration, self.stale = -math.inf, None, 0  # stale: validations since the best
        self.stopped_early = False
        self.metrics, self.metrics_iteration = None, None
        self.carried = {"images": 0, "seconds": 0.0}  # trained in earlier sessions of the run

    def trained(self, session) -> dict:
        """Images and seconds of training (validation left out) over every session, `session` (images, seconds)
        being this one's."""
        images, seconds = session
        return {"images": self.carried["images"] + images, "seconds": self.carried["seconds"] + seconds}

    def state(self, iteration: int, session, training_state: bool = True) -> dict:
        from .config import CONFIG_VERSION

        state = {"model": self.model.state_dict(), "iteration": iteration, "metrics": self.metrics,
                 "metrics_iteration": self.metrics_iteration, "validated": self.metrics_iteration == iteration,
                 **self.summary(), **self.extra, "config": self.config,
                 "config_version": CONFIG_VERSION, "trained": self.trained(session)}
        if training_state:
            state.update(optimizer=self.optimizer.state_dict(), scheduler=self.scheduler.state_dict(),
                         scaler=self.scaler.state_dict(), rng=rng_states())
        return state

    def save_last(self, iteration: int, session) -> None:
        if self.writes:
            save_checkpoint(self.state(iteration, session), self.folder / "last.pt")

    def summary(self) -> dict:
        """The best values so far and whether the run stopped early, as checkpoints and metrics.json hold them."""
        return {"best_mean_iu": self.best_mean_iu, "monitor": self.monitor, "best_monitored": self.best,
                "best_iteration": self.best_iteration, "stale_validations": self.stale,
                "stopped_early": self.stopped_early}

    def improves(self, metrics: dict) -> bool:
        return self.score(metrics) > self.best

    def patience_spent(self) -> bool:
        """The last `patience` validations (or more) did not improve the monitored metric."""
        return self.patience is not None and self.stale >= self.patience

    def validated(self, iteration: int, metrics: dict, session, final: bool) -> bool:
        """Records a validation; best.pt when it improved the monitored metric; `stopped_early` when the patience
        is spent before the `final` iteration; then, and at the end, last.pt again (these metrics with it).
        Whether it improved."""
        improved = self.improves(metrics)
        self.metrics, self.metrics_iteration = metrics, iteration
        self.best_mean_iu = max(self.best_mean_iu, metrics["mean_iu"])
        if improved:
            self.best, self.best_iteration, self.stale = self.score(metrics), iteration, 0
        else:
            self.stale += 1
        self.stopped_early = not final and self.patience_spent()
        if improved and self.writes:
            save_checkpoint(self.state(iteration, session, self.best_with_state), self.folder / "best.pt")
        if final or self.stopped_early:
            self.save_last(iteration, session)
        return improved

    def validation_missing(self) -> bool:
        """Resumed from a checkpoint whose iteration's validation did not run (stopped or killed between them)."""
        return self.iteration > 0 and self.metrics_iteration != self.iteration

    def kept(self) -> str:
        """Which checkpoint a failed run leaves to go back to, as the end of an error line."""
        last = self.folder / "last.pt"
        if last.is_file():
            return f"the last good checkpoint is {last} (iteration {load_checkpoint(last, peek=True)['iteration']})"
        return "no checkpoint had been written yet"

    def resume(self, path: Path, device) -> int:
        """The checkpoint's training state into the model, optimizer, schedule, scaler and RNGs, and the run's
        carried-over state into this object; the iteration to continue after. A config that changes what resuming
        restores, and weights that do not fit, are one-line errors."""
        from .config import flatten, stored_config, to_plain

        state = load_checkpoint(path, map_location=device)
        require_training_state(state, path)
        monitor = state.get("monitor", "mean_iu")  # checkpoints older than trainer.monitor: mean IU chose best.pt
        if monitor != self.monitor:  # its best value would be another metric's
            raise SegtrainError(f"trainer.monitor={self.monitor}: {path} chose its best.pt by {monitor}, and a resumed "
                                f"run goes on comparing with that best value; resume with trainer.monitor={monitor}, "
                                f"or start a new run (model.init_from={path}) to choose by {self.monitor}")
        # a checkpoint of an older version, as this one reads it
        stored = flatten(to_plain(stored_config(state["config"], version=state.get("config_version", 0))))
        wanted = flatten(self.config)
        changed = sorted(k for k, v in wanted.items() if k != "trainer.resume" and k in stored and stored[k] != v)
        frozen = [k for k in changed if k.startswith(RESTORED_ON_RESUME)]
        if frozen:  # before the weights are loaded: another width would otherwise be a page of shape mismatches
            raise SegtrainError(f"{frozen[0]}={wanted[frozen[0]]}: {path} was trained with {stored[frozen[0]]}, and "
                                "a resumed run restores the model, optimizer and schedule as they were; start a new "
                                f"run (model.init_from={path}) to change it")
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError) as e:  # an edited or foreign file
            detail = next((line.strip() for line in str(e).splitlines()[1:] if line.strip()), str(e).strip())
            raise SegtrainError(f"checkpoint {path}: its weights do not fit the model its config describes "
                                f"({detail[:200]})") from None
        try:
            self.scheduler.load_state_dict(state["scheduler"])
            self.scaler.load_state_dict(state["scaler"])
            set_rng_states(state["rng"])
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise SegtrainError(f"checkpoint {path}: its training state does not load ({type(e).__name__}: "
                                f"{str(e).strip().splitlines()[0][:160] if str(e).strip() else ''})") from None
        if changed:
            log.warning("resuming with a config that differs from the checkpoint's in: %s", ", ".join(changed))
        log.info("resumed from %s at iteration %d", path, state["iteration"])
        self.iteration, self.best_mean_iu = state["iteration"], state["best_mean_iu"]
        self.best = state.get("best_monitored", state["best_mean_iu"])
        self.best_iteration, self.stale = state.get("best_iteration"), state.get("stale_validations", 0)
        self.metrics, self.metrics_iteration = state["metrics"], state["metrics_iteration"]
        self.carried = state.get("trained") or {"images": 0, "seconds": 0.0}  # newer than some checkpoints
        return self.iteration
