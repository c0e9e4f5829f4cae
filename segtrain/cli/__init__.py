"""Console entry points. Hydra and argument parsing live here only; everything below takes plain arguments."""
import logging
import sys
from pathlib import Path

from ..errors import SegtrainError


def one_line(error: BaseException) -> str:
    """An error as one line; a SegtrainError re-raised from a DataLoader worker (whose message carries the
    worker's traceback) as its original message."""
    text = str(error).strip()
    if "SegtrainError: " in text:
        text = text.rsplit("SegtrainError: ", 1)[1]
    first = text.splitlines()[0] if text else ""
    return first if isinstance(error, SegtrainError) else f"{type(error).__name__}: {first}"


def exit_with_error(program: str, error: BaseException):
    print(f"{program}: error: {one_line(error)}", file=sys.stderr)
    sys.exit(2)


def log_error_to_file(line: str) -> None:
    """The fatal error as the last line of the run's log file (segtrain.log), not again on the console."""
    record = logging.LogRecord("segtrain", logging.ERROR, __file__, 0, line, None, None)
    for handler in logging.getLogger().handlers + logging.getLogger("segtrain").handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def hydra_job():
    """(output folder, task overrides, whether it is a job of a -m sweep) of the running Hydra job."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hydra_cfg = HydraConfig.get()
    return Path(hydra_cfg.runtime.output_dir), list(hydra_cfg.overrides.task), hydra_cfg.mode == RunMode.MULTIRUN


def failed_job(program: str, error: Exception, run_dir: Path, overrides, sweeping: bool) -> float:
    """A job's error, as one line on stderr and at the end of its log. Alone: exit 2 (an error that is not a
    SegtrainError, a bug, propagates with its traceback). In a sweep: recorded in its job_status.json and NaN
    returned (Optuna marks the trial failed), so the next job runs."""
    from ..sweeps import record_job

    if not sweeping and not isinstance(error, SegtrainError):
        raise error
    line = f"{program}: error: {one_line(error)}"
    if not isinstance(error, SegtrainError):  # a bug or the machine (e.g. out of memory): keep the details
        logging.getLogger("segtrain").exception("job failed")
    log_error_to_file(line)
    if not sweeping:
        exit_with_error(program, error)
    print(line, file=sys.stderr)
    record_job(run_dir, overrides, "failed", one_line(error))
    return float("nan")


def stored_overrides(cfg) -> list:
    """The command line's overrides of the training config stored in a checkpoint (segtrain-eval, -predict and
    -export collect them in open nodes named after the training groups), as dotlist strings."""
    import json

    from omegaconf import OmegaConf

    from ..config import STORED_GROUPS

    def flatten(prefix, value):
        if isinstance(value, dict):
            return [item for key, child in value.items() for item in flatten(f"{prefix}.{key}", child)]
        return [f"{prefix}={json.dumps(value)}"]  # JSON is YAML: strings stay strings ("null", "{split}annot")

    plain = OmegaConf.to_container(cfg, resolve=True)
    return [item for group in STORED_GROUPS for item in flatten(group, plain.get(group) or {})]


def compose_app(config_name: str, argv):
    """(config, its run folder) of a segtrain-eval/-predict/-export command line, composed as the app's
    @hydra.main would (for tests and scripts); a bad override is a one-line SegtrainError."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf, open_dict
    from omegaconf.errors import OmegaConfBaseException

    from ..config import config_dir, register_configs

    register_configs()
    try:
        with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
            cfg = compose(config_name, overrides=list(argv), return_hydra_config=True)
        run_dir = Path(OmegaConf.select(cfg, "hydra.run.dir"))
    except (HydraException, OmegaConfBaseException) as e:
        raise SegtrainError(f"{' '.join(argv)}: {str(e).strip().splitlines()[0]}") from None
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg, run_dir


def require_checkpoints(program: str, argv) -> None:
    """Before Hydra creates any folder: every `ckpt=` on the command line (a comma list in a -m sweep) is a file;
    without one, a one-line error (--help and --cfg need none)."""
    if any(a.startswith("-") and a not in ("-m", "--multirun") for a in argv):
        return
    values = [a.partition("=")[2] for a in argv if a.partition("=")[0] == "ckpt"]
    if not values:
        exit_with_error(program, SegtrainError("ckpt=PATH is required (a checkpoint, e.g. RUN/checkpoints/best.pt)"))
    sweeping = "-m" in argv or "--multirun" in argv
    for path in (p for value in values for p in (value.split(",") if sweeping else [value])):
        if not Path(path).is_file():
            exit_with_error(program, SegtrainError(f"checkpoint {path}: no such file"))
