"""`segtrain [KEY=VALUE ...]`: compose the config and train. `segtrain --help` lists the groups' options.

`trainer.resume=auto` (or a checkpoint path) continues with the configuration stored in the checkpoint; keys
given on the same command line apply on top and are listed in the log. In a sweep (`-m`) a failing job is
recorded and the next one runs (segtrain.sweeps)."""
import atexit
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

import hydra

from ..config import config_dir, register_configs
from ..errors import SegtrainError
from . import exit_with_error, failed_job, hydra_job, log_error_to_file

register_configs()
log = logging.getLogger("segtrain")
# group choices a checkpoint stores; a resumed run keeps them
STORED_GROUPS = ("model", "dataset", "optimizer", "schedule", "loss", "augment")


def resume_config(cfg, task_overrides, run_dir: Path):
    """The checkpoint's config with this command line's key overrides on top (cfg as composed when there is no
    checkpoint to resume from yet)."""
    from ..checkpoint import load_checkpoint
    from ..sweeps import job_overrides
    from ..checkpoint import find_resume_checkpoint
    from ..config import compose_stored_config

    path = find_resume_checkpoint(cfg.trainer.resume, run_dir / "checkpoints")
    if path is None:
        return cfg
    stored = load_checkpoint(path, peek=True)["config"]
    keys = []
    for override in job_overrides(task_overrides):
        key, _, value = override.partition("=")
        group = key.lstrip("+~")
        if group in STORED_GROUPS:
            if value != stored[group].get("name"):
                raise SegtrainError(f"{override}: {path} was trained with {group}={stored[group].get('name')}; a "
                                    f"resumed run keeps it (set single keys such as {group}.KEY=VALUE, or start a "
                                    f"new run with model.init_from={path})")
        elif "." in key:
            keys.append(override)
    resumed = compose_stored_config(stored, keys)
    resumed.trainer.resume = cfg.trainer.resume
    if keys:
        log.info("resuming %s with the stored config and: %s", path, " ".join(keys))
    return resumed


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="config")
def main(cfg) -> float:
    from ..signals import TrainingInterrupted
    from ..sweeps import finished_before, record_job
    from ..train import train  # torch is imported only once the config is known to be valid

    run_dir, overrides, sweeping = hydra_job()
    if sweeping and cfg.trainer.resume:
        done = finished_before(run_dir, overrides)
        if done is not None:
            log.info("job already finished (best mean_iu %s): skipped", done["best_mean_iu"])
            return done["best_mean_iu"]
    try:
        if cfg.trainer.resume:
            cfg = resume_config(cfg, overrides, run_dir)
        result = train(cfg, run_dir)
    except KeyboardInterrupt:  # before the training loop, or a second Ctrl-C inside it
        line = "segtrain: aborted by Ctrl-C (checkpoints already written are kept)"
        log_error_to_file(line)
        print(line, file=sys.stderr)
        sys.exit(130)
    except TrainingInterrupted as stop:  # last.pt written, the resume command logged
        if sweeping:
            record_job(run_dir, overrides, "interrupted", str(stop))
        stop.chain()
        sys.exit(stop.exit_code)
    except Exception as error:  # noqa: BLE001 - a sweep records any failure and goes on to the next job
        return failed_job("segtrain", error, run_dir, overrides, sweeping)
    if sweeping:
        record_job(run_dir, overrides, "finished", result=result)
    return result["best_mean_iu"]  # what a Hydra sweeper (e.g. Optuna) maximises


def override_value(argv, key: str):
    values = [a.partition("=")[2] for a in argv if a.partition("=")[0] == key]
    return values[-1] if values else None


def refuse_reused_run_dir(argv) -> None:
    """Before Hydra writes into hydra.run.dir: a run dir that already holds checkpoints is continued only with
    trainer.resume (and then its .hydra/ record of the original command is kept as it is)."""
    if "-m" in argv or "--multirun" in argv or any(a.startswith("-") for a in argv):
        return
    run_dir = override_value(argv, "hydra.run.dir")
    if run_dir is None or not any((Path(run_dir) / "checkpoints").glob("*.pt")):
        return
    if override_value(argv, "trainer.resume") in (None, "null"):
        exit_with_error("segtrain", SegtrainError(
            f"{Path(run_dir) / 'checkpoints'} already holds checkpoints; continue that run with trainer.resume=auto "
            "or choose a new hydra.run.dir (nothing was changed)"))
    if (Path(run_dir) / ".hydra").is_dir():
        argv.append("hydra.output_subdir=null")


def refuse_keys_that_moved_or_do_not_apply(argv) -> None:
    """Before Hydra, one line where it would report a key its schemas lack: a key that moved to another group
    (`trainer.patch_size` is `augment.crop_size`), or an option the model's family does not have
    (`model.dropout=0.5` for deeplab_aspp), saying what that network always has."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from ..config import MODEL_SCHEMAS, refuse_fixed_options, refuse_moved_keys

    try:
        refuse_moved_keys(argv[1:])
    except SegtrainError as error:
        exit_with_error("segtrain", error)
    fixed = {f"model.{key}" for schema in MODEL_SCHEMAS.values() for key in schema.always}
    named = [a for a in argv if a.lstrip("+~").partition("=")[0] in fixed]
    if not named or any(a.startswith("-") for a in argv):  # none, or -m/--help/--cfg: Hydra answers
        return
    others = [a for a in argv[1:] if a not in named and not a.startswith("hydra.")]
    try:
        with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
            model = compose("config", overrides=others).model
    except Exception:  # noqa: BLE001 - any other problem of the command line: Hydra reports it as usual
        return
    try:
        refuse_fixed_options(named, OmegaConf.get_type(model), model.name)
    except SegtrainError as error:
        exit_with_error("segtrain", error)


def run() -> None:
    """The console script: under torchrun, ranks other than 0 keep Hydra's files out of the run directory that
    rank 0 owns (train() uses rank 0's directory on every rank)."""
    if int(os.environ.get("RANK", "0")) > 0:
        scratch = tempfile.mkdtemp(prefix="segtrain-rank")
        atexit.register(shutil.rmtree, scratch, ignore_errors=True)
        sys.argv += ["hydra.output_subdir=null", f"hydra.run.dir={scratch}"]
    else:
        refuse_reused_run_dir(sys.argv)
    refuse_keys_that_moved_or_do_not_apply(sys.argv)
    main()


if __name__ == "__main__":
    run()
