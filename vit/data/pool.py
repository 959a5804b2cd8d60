"""Worker pools for preparation (arrays and shards alike): results as they come, until a stop signal."""
from __future__ import annotations

import multiprocessing

from vit.stops import Signals


def finished(results, signals: Signals | None):
    """The decoded chunks as they come, until a stop signal: then the loop ends between two chunks, and
    leaving the pool's `with` terminates the workers (their chunks in flight are redone next time). It
    waits at most a second at a time, since a SIGTERM that reaches every process of a SLURM step kills
    workers whose chunks then never come."""
    while not (signals is not None and signals.received):
        try:
            yield results.next(timeout=1.0)
        except StopIteration:
            return
        except multiprocessing.TimeoutError:
            continue


class Serial:
    """The Pool interface without processes (workers <= 1)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def imap_unordered(self, fn, items):
        return SerialResults(map(fn, items))


class SerialResults:
    """Pool.imap_unordered's iterator interface: next(timeout)."""

    def __init__(self, it):
        self._it = it

    def next(self, timeout=None):
        return next(self._it)
