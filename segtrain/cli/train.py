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
from ..errors import SegtrainError, one_line
from ..processes import log_to_files, run_to_the_end
from . import (exit_with_error, failed_job, hydra_job, override_values, refuse_unreadable_overrides,
               require_creatable)

register_configs()
log = logging.getLogger("segtrain")


def resume_config(cfg, task_overrides, run_dir: Path):
    """(config, checkpoint) of a run continued with trainer.resume, decided once: the checkpoint's config with
    this command line's key overrides on top, and the checkpoint to resume from (cfg as composed, and None, when
    there is none yet)."""
    from ..checkpoint import find_resume_checkpoint, load_checkpoint
    from ..config import STORED_GROUPS, stored_config
    from ..sweeps import job_overrides

    path = find_resume_checkpoint(cfg.trainer.resume, run_dir / "checkpoints")
    if path is None:
        return recorded_config(cfg, task_overrides, run_dir), None
    state = load_checkpoint(path, peek=True)
    stored = state["config"]
    keys = []
    for override in job_overrides(task_overrides):
        key, _, value = override.partition("=")
        group = key.lstrip("+~")
        if group in STORED_GROUPS and "name" in stored.get(group, {}):  # a group choice: kept on resume
            trained_with = stored[group]["name"]
            if value != trained_with:
                raise SegtrainError(f"{override}: {path} was trained with {group}={trained_with}; a resumed run "
                                    f"keeps it (set single keys such as {group}.KEY=VALUE, or start a new run with "
                                    f"model.init_from={path})")
        else:  # single keys, top-level ones too (seed: what resuming restores is then refused in one line)
            keys.append(override)
    resumed = stored_config(stored, keys, state.get("config_version", 0))
    resumed.trainer.resume = cfg.trainer.resume
    if keys:
        log.info("resuming %s with the stored config and: %s", path, " ".join(keys))
    return resumed, path


def recorded_config(cfg, task_overrides, run_dir: Path):
    """A run continued before its first checkpoint starts again from its own command: the overrides recorded in
    RUN/.hydra/overrides.yaml, then this command line's (cfg as composed for a run dir without that record)."""
    from omegaconf import OmegaConf

    from ..config import compose
    from ..sweeps import job_overrides

    record = run_dir / ".hydra" / "overrides.yaml"
    if not record.is_file():
        log.info("trainer.resume=%s: no checkpoint in %s yet; starting the run", cfg.trainer.resume, run_dir)
        return cfg
    recorded = job_overrides(OmegaConf.load(record))
    given = job_overrides(task_overrides)
    if recorded == given:  # this very command made the record (a new run started with trainer.resume=auto)
        return cfg
    try:
        started = compose(recorded + given + [f"trainer.resume={cfg.trainer.resume}"])
    except SegtrainError as e:
        raise SegtrainError(f"{record}: the run's recorded overrides no longer compose ({e}); start a new "
                            "run") from None
    log.info("trainer.resume=%s: no checkpoint in %s yet; starting it again from scratch with its recorded "
             "overrides: %s", cfg.trainer.resume, run_dir, " ".join(recorded + given) or "(none)")
    return started


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="config")
def main(cfg) -> float:
    from ..signals import TrainingInterrupted
    from ..sweeps import finished_before, record_job, score
    from ..train import train  # torch is imported only once the config is known to be valid

    run_dir, overrides, sweeping = hydra_job()
    if sweeping and cfg.trainer.resume:
        done = finished_before(run_dir, overrides)
        if done is not None:
            log.info("job already finished (best %s %s): skipped", done.get("monitor") or "mean_iu", score(done))
            return score(done)
    try:
        resume_from = None
        if cfg.trainer.resume:
            cfg, resume_from = resume_config(cfg, overrides, run_dir)
        result = train(cfg, run_dir, resume_from)
    except KeyboardInterrupt:  # before the training loop, or a second Ctrl-C inside it
        line = "segtrain: aborted by Ctrl-C (checkpoints already written are kept)"
        log_to_files(line)
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
    return result["best_monitored"]  # what a Hydra sweeper (e.g. Optuna) maximises: trainer.monitor's best


def refuse_reused_run_dir(argv) -> None:
    """Before Hydra writes into hydra.run.dir (hydra.sweep.dir for -m): it can be created; one that already holds
    checkpoints is continued only with trainer.resume; and a run (or sweep) that is continued keeps its .hydra/
    records of the original command as they are (a resume before the first checkpoint starts again from them)."""
    sweeping = "-m" in argv or "--multirun" in argv
    if any(a.startswith("-") and a not in ("-m", "--multirun") for a in argv):
        return
    key, checkpoints = ("hydra.sweep.dir", "*/checkpoints/*.pt") if sweeping else ("hydra.run.dir", "checkpoints/*.pt")
    try:
        folders, resume = override_values(argv, key), override_values(argv, "trainer.resume")
        if not folders:
            return
        folder = Path(folders[-1])
        require_creatable(folder, key)
        resuming = bool(resume) and resume[-1] not in ("None", "null")
        if any(folder.glob(checkpoints)) and not resuming:
            raise SegtrainError(f"{key}={folder} already holds checkpoints; continue {'it' if sweeping else 'that run'}"
                                f" with trainer.resume=auto or choose a new {key} (nothing was changed)")
    except SegtrainError as error:
        exit_with_error("segtrain", error)
    if resuming and (folder.is_dir() if sweeping else (folder / ".hydra").is_dir()):
        argv.append("hydra.output_subdir=null")


def refuse_overrides_that_do_not_compose(argv) -> None:
    """Before Hydra: a command line whose overrides do not compose (a key no schema has, a choice no group has, a
    value of the wrong type, a key that moved or that the model's family lacks) or whose values are out of range
    or set where the chosen options ignore them is one line naming the key, not Hydra's page."""
    from ..config import check_command_line
    from ..config.compat import refuse_moved_keys

    try:
        refuse_moved_keys(argv[1:])
        if any(a.startswith("-") for a in argv[1:]):  # -m sweeps, --help, --cfg: Hydra answers
            return
        check_command_line([a for a in argv[1:] if not a.lstrip("+~").startswith("hydra.")])
    except SegtrainError as error:
        log_to_existing_run(argv, error)
        exit_with_error("segtrain", error)


def log_to_existing_run(argv, error: SegtrainError) -> None:
    """A refusal before Hydra also ends the log of the run it would have continued (hydra.run.dir that exists, e.g.
    a resume with a bad value), as a failed job's does; a new run's folder is not created for it."""
    folders = override_values(argv, "hydra.run.dir") if "-m" not in argv and "--multirun" not in argv else []
    log = Path(folders[-1]) / "segtrain.log" if folders else None
    if log is not None and log.parent.is_dir():
        try:
            with open(log, "a") as file:
                file.write(f"segtrain: error: {one_line(error)}\n")
        except OSError:  # the line is on stderr all the same
            pass


def run() -> None:
    """The console script: under torchrun, ranks other than 0 keep Hydra's files out of the run directory that
    rank 0 owns (train() uses rank 0's directory on every rank). The exit watchdog follows (run_to_the_end)."""
    def work():
        refuse_unreadable_overrides("segtrain", sys.argv[1:])
        if int(os.environ.get("RANK", "0")) > 0:
            scratch = tempfile.mkdtemp(prefix="segtrain-rank")
            atexit.register(shutil.rmtree, scratch, ignore_errors=True)
            sys.argv += ["hydra.output_subdir=null", f"hydra.run.dir={scratch}"]
        else:
            refuse_reused_run_dir(sys.argv)
        refuse_overrides_that_do_not_compose(sys.argv)
        main()

    run_to_the_end("segtrain", work)


if __name__ == "__main__":
    run()
