"""Why a long process stops before its end, and the exit status that tells Snakemake.

- `Resumable` (exit status EXIT_RESUME = 75, EX_TEMPFAIL): the process saved where it is and the next
  attempt continues from there: a training run from its state at a step boundary, to the weights an
  unbroken run ends with (vit.train.loop); a preparation from its finished chunks (vit.data.prepare).
  Raised when the wall-clock budget is about to run out (vit.train.deadline) and when a signal asks the
  process to stop:
  SIGTERM (SLURM preemption, `scancel`, requeue; SIGKILL follows after KillWait, 30 s by default), SIGUSR1
  (SLURM's advance warning, `--signal=USR1@<seconds>`, which the SLURM profile asks for) and SIGINT
  (Ctrl-C; a second Ctrl-C stops at once, keeping the last saved state). Snakemake counts the exit as a
  failure and, with `retries` (the SLURM profile's 4), starts the job again; SLURM requeue does the same.
- `Diverged` (exit status EXIT_DIVERGED = 3): the loss or the gradient norm stopped being finite. Nothing
  more is worth training: no summary or checkpoint is written, the last resumable state is kept, and a
  marker file `diverged-<config hash>.json` makes every retry of the same settings stop at once, so that
  `retries` cost seconds, not GPU-days; changed settings are a new run (a new hash) and train.

A handler only records a signal: the training loop acts at the next step boundary, where the saved state
is exactly a checkpoint's, and under torchrun rank 0's record decides for every rank
(vit.train.distributed); the preparation acts between chunks.
"""
from __future__ import annotations

import signal
import threading
from dataclasses import dataclass

EXIT_RESUME = 75
EXIT_DIVERGED = 3
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)


class Stop(SystemExit):
    """A stop that says why: `vit.cli.main_guard` prints the message and keeps the exit status."""

    def __init__(self, code: int, message: str):
        super().__init__(code)
        self.message = message

    def __str__(self) -> str:
        return self.message


class Resumable(Stop):
    """The state is saved; the next attempt resumes (exit status EXIT_RESUME)."""

    def __init__(self, message: str):
        super().__init__(EXIT_RESUME, message)


class Diverged(Stop):
    """The loss or gradient norm is not finite; retries of the same settings stop at once."""

    def __init__(self, message: str):
        super().__init__(EXIT_DIVERGED, message)


@dataclass
class Signals:
    """The first stop signal this process received (0: none). `install` is for a stage's entry point:
    library calls (tests, notebooks) keep Python's own handlers."""
    received: int = 0

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():  # signal.signal works there only
            return
        for sig in STOP_SIGNALS:
            signal.signal(sig, self._handle)

    def _handle(self, signum, frame) -> None:
        # no printing here: the handler may interrupt tqdm mid-write to stderr, and a reentrant write raises
        if self.received == signal.SIGINT and signum == signal.SIGINT:
            raise KeyboardInterrupt  # Ctrl-C twice: the user does not want to wait for the step boundary
        self.received = self.received or signum

    @staticmethod
    def name(signum: int) -> str:
        return signal.Signals(signum).name


def for_workers() -> None:
    """A worker process's handlers (a Pool's `initializer`): its parent decides when to stop. Forked
    workers inherit `Signals`' handler, which would make them ignore the SIGTERM that Pool.terminate()
    sends, and the parent would wait for them forever: SIGTERM kills them again. Ctrl-C and SLURM's
    SIGUSR1 reach every process of the terminal's group or of the job step: the parent's stop counts."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    for sig in (signal.SIGINT, signal.SIGUSR1):
        signal.signal(sig, signal.SIG_IGN)
