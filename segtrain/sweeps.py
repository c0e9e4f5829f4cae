"""Sweeps that finish (segtrain's and segtrain-eval's): each job records its outcome in <job dir>/job_status.json (finished, failed with its error
line, or interrupted), a failing job does not end the sweep, and at the end SweepSummary (a Hydra callback,
configs/config.yaml) writes sweep_summary.md and .json into the sweep dir and exits 1 if any job failed.
Re-running the same `-m` command with `hydra.sweep.dir=SAME trainer.resume=auto` skips the jobs that finished
with the same overrides and resumes the others from their last.pt."""
import json
import logging
import math
import re
import sys
from pathlib import Path

from hydra.experimental.callback import Callback

log = logging.getLogger("segtrain")
STATUS_FILE = "job_status.json"


def job_overrides(task_overrides) -> list:
    """The overrides that define a job (Hydra's own and trainer.resume left out)."""
    return [o for o in task_overrides if not o.lstrip("+~").startswith(("hydra.", "trainer.resume="))]


def record_job(run_dir: Path, overrides, status: str, error: str = None, result: dict = None) -> None:
    from .jsonio import strict_json

    result = result or {}
    iteration = result.get("iteration")
    if iteration is None and (run_dir / "checkpoints" / "last.pt").is_file():
        from .checkpoint import load_checkpoint

        iteration = load_checkpoint(run_dir / "checkpoints" / "last.pt")["iteration"]
    record = {"status": status, "overrides": job_overrides(overrides), "error": error,
              "best_mean_iu": result.get("best_mean_iu"), "iteration": iteration, "run_dir": str(run_dir)}
    if "crf_mean_iu" in result:  # segtrain-eval's jobs: the network's mean IU and Dice, and after the CRF (or None)
        record.update({k: result.get(k) for k in ("mean_iu", "crf_mean_iu", "mean_dice", "crf_mean_dice")})
    elif result:  # a training's: its final mean Dice, and what trainer.monitor chose best.pt by
        record.update({k: result.get(k) for k in ("mean_dice", "monitor", "best_monitored", "stopped_early")})
    try:
        (run_dir / STATUS_FILE).write_text(strict_json(record, indent=2))
    except OSError as e:
        log.warning("%s: cannot record the job's status (%s)", run_dir / STATUS_FILE, e.strerror)


def finished_before(run_dir: Path, overrides):
    """The recorded result of this job when it already finished with these overrides, else None."""
    path = run_dir / STATUS_FILE
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if record.get("status") == "finished" and record.get("overrides") == job_overrides(overrides):
        return record
    return None


# what a sweep maximises for a job, by its key in the job's record
OBJECTIVES = {"crf_mean_iu": "mean IU after the CRF", "mean_iu": "mean IU", "best_mean_iu": "best validation mean IU",
              "best_monitored": "best validation {monitor}"}


def objective(record: dict) -> str:
    """The key of a job's score: an evaluation's mean IU after its CRF (else its network's), a training's best
    validation value of trainer.monitor (the mean IU, unless it monitors another metric)."""
    if "crf_mean_iu" in record:  # segtrain-eval's job
        return "mean_iu" if record["crf_mean_iu"] is None else "crf_mean_iu"
    return "best_mean_iu" if record.get("monitor", "mean_iu") == "mean_iu" else "best_monitored"


def score(record: dict):
    """A job's score (OBJECTIVES), or None where it has none."""
    value = record.get(objective(record))
    return value if isinstance(value, (int, float)) and math.isfinite(value) else None


def best_job(records):
    """The finished job with the highest score (the first of equals, as Optuna picks), or None."""
    scored = [r for r in records if r["status"] == "finished" and score(r) is not None]
    return max(scored, key=score) if scored else None


def shown(override: str) -> str:
    """An override as the summary shows it: a number a sampler drew with more than 6 significant digits
    (crf.w1=4.646440511781974) to 4 (crf.w1=4.646); sweep_summary.json keeps it whole."""
    key, _, value = override.partition("=")
    try:
        number = float(value)
    except ValueError:
        return override
    digits = re.sub(r"\D", "", value.lower().split("e")[0]).strip("0")
    return f"{key}={number:.4g}" if len(digits) > 6 else override


def summarize(sweep_dir: Path):
    """(rows, markdown) over every job status under the sweep dir, in job order; the best job's score in bold
    and its overrides repeated below the table."""
    records = []
    for path in sorted(Path(sweep_dir).rglob(STATUS_FILE), key=lambda p: [int(s) if s.isdigit() else s
                                                                            for s in p.parent.name.split("_")]):
        try:
            records.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    def percent(value):
        return f"{100 * value:.2f}" if isinstance(value, (int, float)) and math.isfinite(value) else "-"

    evaluation = any("crf_mean_iu" in record for record in records)  # segtrain-eval's sweep, else segtrain's
    if evaluation:
        columns = {"mean_iu": "mean IU", "crf_mean_iu": "+ CRF", "mean_dice": "mean Dice", "crf_mean_dice": "+ CRF"}
    else:  # the final validation's mean Dice; a column for trainer.monitor where a job monitors another metric
        columns = {"best_mean_iu": "best mean IU", "mean_dice": "final mean Dice"}
        if any(objective(record) == "best_monitored" for record in records):
            columns["best_monitored"] = "best monitored"
    lines = [f"| job | overrides | status | {' | '.join(columns.values())} | iterations | error |",
             "|---|---|---|" + "---|" * len(columns) + "---|---|"]
    best = best_job(records)
    for record in records:
        cells = []
        for k in columns:
            cell = percent(record.get(k))
            if k == "best_monitored" and record.get("monitor"):
                cell += f" ({record['monitor']})"
            cells.append(f"**{cell}**" if record is best and k == objective(best) else cell)  # its score in bold
        job = Path(record["run_dir"]).name
        iterations = f"{record.get('iteration') or '-'}" + (" (stopped early)" if record.get("stopped_early") else "")
        lines.append(f"| {job} | {' '.join(map(shown, record['overrides'])) or '(defaults)'} | "
                     f"{record['status']} | {' | '.join(cells)} | {iterations} | "
                     f"{(record.get('error') or '').replace('|', '/')} |")
    if best is not None:
        lines.append(f"\nBest: job {Path(best['run_dir']).name} "
                     f"({OBJECTIVES[objective(best)].format(monitor=best.get('monitor'))} {percent(score(best))}): "
                     f"{' '.join(map(shown, best['overrides'])) or '(defaults)'}")
    if any(shown(o) != o for record in records for o in record["overrides"]):
        lines.append("\nNumbers drawn by the sweeper are shown to 4 significant digits; sweep_summary.json and each "
                     "job's .hydra/overrides.yaml hold them whole.")
    return records, "\n".join(lines) + "\n"


class SweepSummary(Callback):
    """Hydra callback: after a multirun, the summary table, and a non-zero exit when a job did not finish."""

    def on_multirun_end(self, config, **kwargs) -> None:
        from .jsonio import strict_json

        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.is_dir():
            return
        records, markdown = summarize(sweep_dir)
        (sweep_dir / "sweep_summary.json").write_text(strict_json(records, indent=2))
        (sweep_dir / "sweep_summary.md").write_text(f"# Sweep {sweep_dir}\n\n{markdown}")
        failed = [r for r in records if r["status"] != "finished"]
        best = best_job(records)
        print(f"sweep: {len(records) - len(failed)} of {len(records)} jobs finished"
              + (f"; best: job {Path(best['run_dir']).name} ({100 * score(best):.2f})" if best else "")
              + f"; summary in {sweep_dir / 'sweep_summary.md'}", file=sys.stderr)
        if failed:
            for record in failed:
                print(f"segtrain: job {Path(record['run_dir']).name} ({' '.join(record['overrides'])}) "
                      f"{record['status']}: {record['error']}", file=sys.stderr)
            sys.exit(1)
