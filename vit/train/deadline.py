"""The wall-clock budget of a training process: stop at a saved state before it runs out.

The budget is `--time_limit_s` counted from the process's start, else what is left of the SLURM job.
A run that stops for it raises vit.stops.Resumable (exit status 75), which Snakemake counts as a
failure; with `retries` it starts the job again and the next attempt resumes from the state.
"""
from __future__ import annotations

import os
import re
import subprocess
import time
from dataclasses import dataclass, field


def parse_slurm_time(text: str) -> float | None:
    """Seconds of a SLURM duration ("2-03:04:05", "03:04:05", "04:05", "05"); None if unlimited or unset."""
    text = text.strip()
    m = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text)
    if not m:
        return None
    days, *rest = m.groups()
    parts = [int(x) for x in rest if x is not None]
    if days is not None:  # D-H, D-H:M, D-H:M:S
        parts += [0] * (3 - len(parts))
    else:  # S, M:S, H:M:S
        parts = [0] * (3 - len(parts)) + parts
    h, mi, sec = parts
    return ((int(days or 0) * 24 + h) * 60 + mi) * 60 + sec


def slurm_time_left() -> float | None:
    """Seconds left in this process's SLURM job (`squeue -o %L`), None outside SLURM, when unlimited or
    when squeue cannot answer."""
    job = os.environ.get("SLURM_JOB_ID")
    if not job:
        return None
    try:
        out = subprocess.run(["squeue", "-h", "-j", job, "-o", "%L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return parse_slurm_time(out.stdout) if out.returncode == 0 else None


@dataclass
class Deadline:
    """When this process must be done. The stage's entry point makes one as the process starts, since
    the budget counts from the job's start, and passes it to every run it trains; the SLURM job's end
    is asked of squeue once, by the first run that needs it."""
    started: float = field(default_factory=time.monotonic)
    slurm_end: float | None = None  # time.monotonic() of the SLURM job's end; inf = none; None = not asked yet

    def at(self, time_limit_s: float) -> float | None:
        """time.monotonic() by which the process must be done, None if unlimited."""
        if time_limit_s:
            return self.started + time_limit_s
        if self.slurm_end is None:
            left = slurm_time_left()
            self.slurm_end = time.monotonic() + left if left else float("inf")
        return None if self.slurm_end == float("inf") else self.slurm_end


def too_close(deadline: float, margin_s: float, slowest_step_s: float) -> bool:
    """Whether the time left is too little for two more of the slowest steps and the margin (the margin
    leaves room for the state save)."""
    return time.monotonic() + 2 * slowest_step_s + margin_s >= deadline
