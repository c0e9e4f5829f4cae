"""Progress for long loops outside training: a tqdm bar on a terminal, elsewhere a log line every few seconds,
both with the rate and the time left."""
import logging
import sys
import time

log = logging.getLogger("segtrain")


def track(iterable, total: int, desc: str, unit: str = "file", every_s: float = 10.0):
    """Yields from `iterable` (of `total` items) while showing progress."""
    if sys.stderr.isatty():
        from tqdm import tqdm

        yield from tqdm(iterable, total=total, desc=desc, unit=unit, dynamic_ncols=True, leave=False)
        return
    units = unit + ("es" if unit.endswith(("s", "sh", "ch", "x")) else "s")
    began = last = time.perf_counter()
    done = 0
    for done, item in enumerate(iterable, 1):
        yield item
        now = time.perf_counter()
        if now - last >= every_s and done < total:
            rate = done / (now - began)
            log.info("%s: %d/%d %s  %.1f %s/s  eta %s", desc, done, total, units, rate, unit,
                     time.strftime("%H:%M:%S", time.gmtime((total - done) / max(rate, 1e-9))))
            last = now
    if total and time.perf_counter() - began >= every_s:
        log.info("%s: %d %s in %.0f s", desc, done, units, time.perf_counter() - began)
