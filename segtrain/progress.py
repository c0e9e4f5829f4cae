"""Progress of long work, the project's one helper for it: a tqdm bar on a terminal, elsewhere (logs, CI) log lines
with the rate and the time left. Training reports at its log interval with its loss and learning rate; other loops
(`track`) every few seconds."""
import logging
import sys
import time

log = logging.getLogger("segtrain")


def _plural(unit: str) -> str:
    return unit + ("es" if unit.endswith(("s", "sh", "ch", "x")) else "s")


class Progress:
    """`total` steps from `start`, each of `per_step` items (a training step's images), with a rate in items per
    second that leaves out time spent elsewhere (`exclude`: validation). `quiet`: no bar (ranks other than 0)."""

    def __init__(self, total: int, desc: str = "", unit: str = "it", start: int = 0, per_step: int = 1,
                 quiet: bool = False):
        self.total, self.desc, self.unit, self.start, self.per_step = total, desc, unit, start, per_step
        self.began = self.last_line = time.perf_counter()
        self.done = start
        self.bar = None
        if sys.stderr.isatty() and not quiet:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=start, desc=desc or None, unit=unit, dynamic_ncols=True, leave=False)

    def exclude(self, seconds: float) -> None:
        """Leave `seconds` spent outside the work (validation) out of the rate."""
        self.began += seconds

    def trained(self):
        """(items, seconds) of this session's work."""
        return (self.done - self.start) * self.per_step, time.perf_counter() - self.began

    def rate(self) -> float:
        """Items per second."""
        items, seconds = self.trained()
        return items / max(seconds, 1e-9)

    def eta(self) -> str:
        seconds = (self.total - self.done) * self.per_step / max(self.rate(), 1e-9)
        return time.strftime("%H:%M:%S", time.gmtime(seconds))

    def tick(self, done: int, every_s=None) -> None:
        """Up to step `done`; off a terminal, a rate line when `every_s` seconds passed since the last one."""
        if self.bar is not None:
            self.bar.update(done - self.done)
        self.done = done
        now = time.perf_counter()
        if self.bar is None and every_s is not None and now - self.last_line >= every_s and done < self.total:
            self.last_line = now
            log.info("%s: %d/%d %s  %.1f %s/s  eta %s", self.desc, done, self.total, _plural(self.unit),
                     self.rate(), self.unit, self.eta())

    def update(self, done: int, loss: float, lr: float) -> None:
        """A training log step: the bar's loss and learning rate, or a line with them, the speed and the ETA."""
        self.tick(done)
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", refresh=False)
            return
        log.info("iter %d/%d  loss %.4f  lr %.2e  %.1f img/s  eta %s", done, self.total, loss, lr, self.rate(),
                 self.eta())

    def write(self, message: str, level: int = logging.INFO) -> None:
        """A log line that does not tear the bar."""
        if self.bar is not None:
            self.bar.clear()
        log.log(level, message)
        if self.bar is not None:
            self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def track(iterable, total: int, desc: str, unit: str = "file", every_s: float = 10.0):
    """Yields from `iterable` (of `total` items) while showing progress: a bar, or a line every `every_s` seconds
    and one at the end when the work took that long."""
    progress = Progress(total, desc, unit)
    done = 0
    try:
        for done, item in enumerate(iterable, 1):
            yield item
            progress.tick(done, every_s)
    finally:
        progress.close()
    seconds = time.perf_counter() - progress.began
    if progress.bar is None and total and seconds >= every_s:
        log.info("%s: %d %s in %.0f s", desc, done, _plural(unit), seconds)
