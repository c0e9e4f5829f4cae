"""How segtrain's processes end: the signal policy of its helper processes (DataLoader and CRF workers), shutting
DataLoaders down, stop signals as exceptions in the evaluation commands, and a watchdog that never lets a command
hang after its final line. Imports neither torch nor Hydra, so spawned CRF workers and the console scripts start
light."""
import logging
import os
import signal
import sys
import threading
import time

log = logging.getLogger("segtrain")

# The signals a terminal (Ctrl-C) or a scheduler sends to the whole process group, which the main process turns
# into a clean stop. SIGUSR2: what submitit (launcher=slurm) is sent before a time limit or preemption.
GROUP_STOP_SIGNALS = (signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2)
PARENT_CHECK_S = 1.0  # how often a helper looks whether its parent is still there


def worker_signals(worker_id: int = 0) -> None:
    """DataLoader `worker_init_fn` and CRF pool initializer: how a helper process meets the stop signals.

    - SIGINT, SIGUSR1, SIGUSR2 are ignored. Ctrl-C in a terminal (and a scheduler's warning) reaches the whole
      process group; the main process stops the run cleanly on it and then ends its helpers itself. A helper
      killed by it would end the run mid-iteration with a traceback instead.
    - SIGTERM ends the helper when its parent sent it: multiprocessing's exit handler (`terminate()` at exit)
      and DataLoader's shutdown do. Ignoring it outright made helpers unkillable, and multiprocessing's exit
      handler then waited for them forever after the run's last line (issue 21). A SIGTERM from anyone else
      (`timeout`, `kill -- -PGID`, a scheduler) went to the parent too, which stops cleanly after its iteration
      and ends the helpers; the helper keeps serving it until then.
    - A helper whose parent is gone (killed with SIGKILL) ends within PARENT_CHECK_S.
    SIGTERM's sender is known only to sigtimedwait (Linux); elsewhere SIGTERM keeps its default action."""
    parent = os.getppid()
    for signum in GROUP_STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    if not hasattr(signal, "sigtimedwait"):
        return
    # blocked in this (main) thread, and so in every thread started from it, and taken by the watcher
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    threading.Thread(target=_end_with_parent, args=(parent,), name="segtrain-worker-signals", daemon=True).start()


def _end_with_parent(parent: int) -> None:
    while True:
        info = signal.sigtimedwait({signal.SIGTERM}, PARENT_CHECK_S)
        if os.getppid() != parent or (info is not None and info.si_pid == parent):
            os._exit(0)  # exit status 0: the DataLoader of a parent still watching its workers takes it as clean


def shutdown_workers(*loaders) -> None:
    """Ends and joins the worker processes of DataLoaders (persistent ones keep theirs until then) or of their
    iterators; anything else is passed over. torch has no public call for this: garbage collection runs the
    same `_shutdown_workers`, but only when the last reference goes, which an exception's traceback delays."""
    for loader in loaders:
        iterator = getattr(loader, "_iterator", loader)  # a DataLoader's persistent iterator, or the iterator
        shutdown = getattr(iterator, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()


class Interrupted(BaseException):
    """A stop signal in a command that has no iteration to finish (segtrain-eval, -predict, -export): raised where
    the main thread is, so that every `finally` and context exit (CRF pools, DataLoaders) runs. A BaseException, as
    KeyboardInterrupt is: `except Exception` (a sweep's job failure) does not take it."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.exit_code = 128 + signum
        self.outcome = None  # what the command had done, set on the way out (e.g. "12 of 50 images written")

    def line(self, program: str) -> str:
        name = "Ctrl-C (SIGINT)" if self.signum == signal.SIGINT else signal.Signals(self.signum).name
        return f"{program}: stopped by {name}" + (f"; {self.outcome}" if self.outcome else "")


def _raise_interrupted(signum, frame):
    raise Interrupted(signum)


def stop_signals_raise(enabled: bool = True) -> None:
    """In the main thread of an evaluation command: SIGINT and SIGTERM raise Interrupted (enabled=False: back to
    their default actions, so that a further Ctrl-C while the command exits ends it at once)."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _raise_interrupted if enabled else signal.SIG_DFL)


def log_to_files(line: str, level: int = logging.ERROR) -> None:
    """A line in the run's log file (e.g. segtrain.log) only, not again on the console that already shows it."""
    record = logging.LogRecord("segtrain", level, __file__, 0, line, None, None)
    for handler in logging.getLogger().handlers + log.handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)
            handler.flush()


def exit_grace_seconds() -> float:
    """How long a command may take to exit after its final line: 30 s (SEGTRAIN_EXIT_GRACE_S for tests)."""
    return float(os.environ.get("SEGTRAIN_EXIT_GRACE_S", "30"))


def child_processes() -> list:
    """(pid, command line) of this process's living children, from /proc (empty where there is none)."""
    me, children = str(os.getpid()), []
    try:
        entries = [e for e in os.listdir("/proc") if e.isdigit()]
    except OSError:
        return children
    for pid in entries:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if fields[1] != me or fields[0] == "Z":  # parent pid; zombies hold nothing
                continue
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                command = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except (OSError, IndexError):
            continue
        children.append((int(pid), command[:160]))
    return children


def _watch_the_end(program: str, code: int, grace: float) -> None:
    time.sleep(grace)
    me = threading.current_thread()
    children = child_processes()
    holders = [f"thread {t.name} ({'daemon' if t.daemon else 'non-daemon'})" for t in threading.enumerate()
               if t is not me and t is not threading.main_thread() and not t.daemon]
    holders += [f"child process {pid} (ended now): {command}" for pid, command in children]
    lines = [f"{program}: still running {grace:g} s after its final line; exiting with status {code}. Left over:"]
    lines += [f"{program}:   {holder}" for holder in holders or ["(nothing visible: an exit handler waits)"]]
    for line in lines:
        print(line, file=sys.stderr, flush=True)
        log_to_files(line, logging.WARNING)
    end_processes([pid for pid, _ in children])  # an orphan would go on holding its GPU memory and files
    os._exit(code)


def end_processes(pids, patience: float = 2.0) -> None:
    """SIGTERM (which segtrain's workers take from their parent), then SIGKILL for those still there."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except OSError:  # already gone
                pass
        deadline = time.time() + patience
        while time.time() < deadline and any(pid in dict(child_processes()) for pid in pids):
            time.sleep(0.05)


def exit_status(error: BaseException) -> int:
    if isinstance(error, SystemExit):
        if error.code is None or isinstance(error.code, int):
            return error.code or 0
        return 1  # sys.exit("message")
    if isinstance(error, Interrupted):
        return error.exit_code
    return 130 if isinstance(error, KeyboardInterrupt) else 1


def run_to_the_end(program: str, main) -> None:
    """Runs a console script's `main()`, then arms the exit watchdog: if anything (a thread, a child process, an
    exit handler waiting for one) still holds the process exit_grace_seconds() after main() has returned or raised,
    the watchdog names what remains, one line each, and exits with main's exit status. A process never hangs
    silently after its work; on a cluster a hung process would hold its GPU until the time limit."""
    code = 0
    try:
        main()
    except BaseException as error:
        code = exit_status(error)
        raise
    finally:
        threading.Thread(target=_watch_the_end, args=(program, code, exit_grace_seconds()),
                         name="segtrain-exit-watchdog", daemon=True).start()
