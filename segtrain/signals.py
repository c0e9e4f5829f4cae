"""Stopping a run cleanly: SIGINT (Ctrl-C), SIGTERM (SLURM, Kubernetes, `timeout`) and SIGUSR1 ask the training
loop to finish its iteration, write last.pt and exit with 128 + the signal's number; a second Ctrl-C aborts at
once. Under torchrun the ranks agree on the iteration to stop at. The DataLoader workers' side of it is
segtrain.processes.worker_signals."""
import signal
import threading

import torch

from . import distributed

# SIGUSR2: what submitit (launcher=slurm) is sent before a time limit or preemption
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)


class TrainingInterrupted(Exception):
    """Raised after the checkpoint of the iteration a stop signal arrived in has been written."""

    def __init__(self, message: str, signum: int, previous_handler=None):
        super().__init__(message)
        self.signum, self.previous_handler = signum, previous_handler
        self.exit_code = 128 + signum

    def chain(self) -> None:
        """Hands the signal to the handler that was installed before training (submitit's, which requeues the
        SLURM job and exits), now that last.pt is written."""
        handler = self.previous_handler
        if callable(handler) and handler is not signal.default_int_handler:
            handler(self.signum, None)


class StopRequests:
    """A context in which the stop signals set a flag instead of killing the process (main thread only)."""

    def __init__(self):
        self.signum = None
        self.previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                self.previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc):
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        return False

    def _handle(self, signum, frame):
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # the second Ctrl-C: abort now
        # no line here: the loop says it once, with the iteration it stopped at (or that it came too late)
        self.signum = signum

    def pending(self, device):
        """The signal to stop for, agreed by every rank (the highest number any rank received), or None."""
        if distributed.world_size() == 1:
            return self.signum
        flag = torch.tensor([self.signum or 0], dtype=torch.int64, device=device)
        distributed.all_reduce_max(flag)
        return int(flag.item()) or None
