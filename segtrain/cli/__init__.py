"""Console entry points. Hydra and argument parsing live here only; everything below takes plain arguments."""
import logging
import sys
from pathlib import Path

from ..errors import SegtrainError, one_line
from ..outputs import require_creatable
from ..processes import Interrupted, log_to_files, run_to_the_end, stop_signals_raise


def exit_with_error(program: str, error: BaseException):
    print(f"{program}: error: {one_line(error)}", file=sys.stderr)
    sys.exit(2)


def hydra_job():
    """(output folder, task overrides, whether it is a job of a -m sweep) of the running Hydra job."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hydra_cfg = HydraConfig.get()
    return Path(hydra_cfg.runtime.output_dir), list(hydra_cfg.overrides.task), hydra_cfg.mode == RunMode.MULTIRUN


class FolderBefore:
    """An output folder as it was before a job's work, so that a failed job leaves nothing half-made: restore()
    removes the folder when the job made it (nothing in it but Hydra's .hydra/ and the job's log), with the
    folder above when that is left empty (RUN/eval/), else only the files and folders the work added."""

    def __init__(self, folder: Path, program: str):
        self.folder, self.log = folder, f"{program}.log"
        self.existing = set(folder.rglob("*")) if folder.is_dir() else None

    def restore(self) -> None:
        import shutil

        if self.existing is None or all(".hydra" in p.relative_to(self.folder).parts or p.name == self.log
                                        for p in self.existing):
            shutil.rmtree(self.folder, ignore_errors=True)
            try:
                self.folder.parent.rmdir()  # only when empty: an eval/ folder the job made
            except OSError:
                pass
            return
        for path in sorted(set(self.folder.rglob("*")) - self.existing, reverse=True):  # files before folders
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


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
    log_to_files(line)
    if not sweeping:
        exit_with_error(program, error)
    print(line, file=sys.stderr)
    record_job(run_dir, overrides, "failed", one_line(error))
    return float("nan")


def compose_app(config_name: str, argv):
    """(config, its run folder) of a segtrain-eval/-predict/-export command line, composed as the app's
    @hydra.main would (for tests and scripts); a bad override is a one-line SegtrainError."""
    from omegaconf import OmegaConf, open_dict

    from ..config import compose

    cfg = compose(argv, config_name, hydra_keys=True)
    run_dir = Path(OmegaConf.select(cfg, "hydra.run.dir"))
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg, run_dir


def parse_argument(argument: str):
    """A KEY=VALUE as Hydra's override grammar reads it; one it cannot read (an unquoted `=` in a path, say) is a
    one-line SegtrainError that shows the argument quoted."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from ..config import override_argument

    parser = OverridesParser.create()
    try:
        return parser.parse_override(argument)
    except Exception:  # noqa: BLE001 - Hydra's grammar errors are of several kinds
        key, _, raw = argument.partition("=")
        value = raw
        if len(raw) > 1 and raw[0] == "[" and raw[-1] == "]":  # a list stays a list: each item quoted on its own
            value = [element(parser, item.strip()) for item in raw[1:-1].split(",")] if raw[1:-1].strip() else []
        raise SegtrainError(f"{argument}: Hydra's override grammar cannot read this value (characters such as = , "
                            f"[ ] {{ }} ' \" need quotes); write it as {override_argument(key, value)}") from None


def element(parser, item: str):
    """A list item of an unreadable override as Hydra reads it alone (a number stays a number), else as written."""
    try:
        value = parser.parse_override(f"key={item}").value()
    except Exception:  # noqa: BLE001 - Hydra's grammar errors are of several kinds
        return item
    return value if isinstance(value, (str, int, float, bool)) or value is None else item


def override_values(argv, key: str) -> list:
    """The values Hydra's grammar gives `key=` on the command line, quotes taken off (a -m sweep's comma list as
    its items), in order."""
    values = []
    for argument in (a for a in argv if a.partition("=")[0].lstrip("+~") == key):
        value = parse_argument(argument).value()
        values += [str(v) for v in (value.list if hasattr(value, "list") else [value])]
    return values


def refuse_unreadable_overrides(program: str, argv) -> None:
    """Before Hydra: every KEY=VALUE its grammar cannot read is one line (parse_argument), not Hydra's page."""
    try:
        for argument in (a for a in argv if "=" in a and not a.startswith("-")):
            parse_argument(argument)
    except SegtrainError as error:
        exit_with_error(program, error)


def require_checkpoints(program: str, argv) -> None:
    """Before Hydra creates any folder: every `ckpt=` on the command line (a comma list in a -m sweep) is a file,
    read as Hydra reads it (quoted paths with spaces or `=` included); without one, a one-line error (--help and
    --cfg need none). The output folder, hydra.run.dir or the checkpoint run's eval/, can be created."""
    if any(a.startswith("-") and a not in ("-m", "--multirun") for a in argv):
        return
    refuse_unreadable_overrides(program, argv)
    try:
        from ..config.checks import refuse_training_groups

        refuse_training_groups([a for a in argv if not a.startswith("-")], program)  # a -m sweep's too
        paths = override_values(argv, "ckpt")
        if not paths:
            raise SegtrainError("ckpt=PATH is required (a checkpoint, e.g. RUN/checkpoints/best.pt)")
        for path in paths:
            if not Path(path).is_file():
                raise SegtrainError(f"checkpoint {path}: no such file")
        if "-m" not in argv and "--multirun" not in argv:  # a sweep's comma lists are Hydra's to expand
            from ..config import check_command_line

            # the app's own keys (crf.*, inference.*, ...); the stored config's once the checkpoint is read
            check_command_line([a for a in argv if not a.lstrip("+~").startswith("hydra.")],
                               program.removeprefix("segtrain-"))
        run_dirs = override_values(argv, "hydra.run.dir")
        if run_dirs:
            require_creatable(Path(run_dirs[-1]), "hydra.run.dir")
        elif program == "segtrain-eval" and "-m" not in argv and "--multirun" not in argv:
            from ..config import checkpoint_run_dir

            require_creatable(Path(checkpoint_run_dir(paths[0])) / "eval", "hydra.run.dir")
    except SegtrainError as error:
        exit_with_error(program, error)


def checkpoint_command(program: str, main) -> None:
    """The console script of segtrain-eval, -predict and -export: the checkpoint paths checked before Hydra
    creates any folder, then `main` (the Hydra app). A stop signal (Ctrl-C, SIGTERM) ends it with one line and
    128 + the signal's number, its worker processes ended on the way out; the exit watchdog follows."""
    def work():
        require_checkpoints(program, sys.argv[1:])
        stop_signals_raise()
        try:
            main()
        except Interrupted as stop:
            stop_signals_raise(False)
            line = stop.line(program)
            print(line, file=sys.stderr)
            log_to_files(line)
            sys.exit(stop.exit_code)

    run_to_the_end(program, work)


def checkpoint_app(program: str, config_name: str, work, finish=None, fresh_folder: bool = False):
    """(main, run, cli) of a checkpoint command (segtrain-eval, -predict, -export) doing `work(cfg, out_dir)`:

    main  its Hydra app (configs/`config_name`.yaml): a failure is one line and exit 2, or in a sweep recorded
          while the next job runs; else `finish(result, out_dir, overrides, sweeping)` gives what it returns (a
          sweeper's objective) or ends the process with its status;
    run   run(argv): the same work for Python callers and tests, without Hydra's command line (with
          `fresh_folder`, a folder already holding results gets a numbered sibling);
    cli   the console script (checkpoint_command)."""
    import hydra

    from ..config import config_dir, register_configs

    register_configs()

    def app(cfg):
        out_dir, overrides, sweeping = hydra_job()
        before = FolderBefore(out_dir, program) if fresh_folder and not sweeping else None
        try:
            result = work(cfg, out_dir)
        except Interrupted:
            raise
        except Exception as error:  # noqa: BLE001 - a sweep records any failure and goes on to the next job
            if before:
                before.restore()
            return failed_job(program, error, out_dir, overrides, sweeping)
        return finish(result, out_dir, overrides, sweeping) if finish else None

    def run(argv):
        cfg, out_dir = compose_app(config_name, argv)
        base, number = out_dir, 1
        while fresh_folder and (out_dir / "metrics.json").exists():  # several within one second: numbered
            number += 1
            out_dir = base.with_name(f"{base.name}-{number}")
        before = FolderBefore(out_dir, program) if fresh_folder else None
        try:
            return work(cfg, out_dir)
        except Interrupted:
            raise
        except Exception:  # as the app: a failure leaves nothing half-made
            if before:
                before.restore()
            raise

    main = hydra.main(version_base="1.3", config_path=config_dir(), config_name=config_name)(app)
    return main, run, lambda: checkpoint_command(program, main)
