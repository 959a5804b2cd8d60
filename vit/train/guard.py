"""When a run stops early, and what it says: a stop signal or the time limit at a step boundary (it saves
its state and resumes), or a loss or gradient norm that is no longer finite (it diverged). The exceptions
and exit statuses: vit.stops."""
from __future__ import annotations

import math
import time
from pathlib import Path

from vit.logs import read_json
from vit.stops import EXIT_DIVERGED, EXIT_RESUME, Diverged, Resumable, Signals
from vit.train.deadline import too_close

TIME_LIMIT = -1  # stop_code's code for the wall-clock budget; a signal's code is its number


def stop_code(signals: Signals, deadline: float | None, margin_s: float, slowest_step_s: float,
              progressed: bool) -> int:
    """Why to stop before the next step: a stop signal's number, TIME_LIMIT, or 0 to go on. For the time
    limit the first step of an attempt always runs (`progressed` false), so that every attempt makes
    progress; a signal stops at once."""
    if signals.received:
        return signals.received
    if deadline is not None and progressed and too_close(deadline, margin_s, slowest_step_s):
        return TIME_LIMIT
    return 0


def resumable(out: str, step: int, steps: int, why: int, deadline: float | None) -> Resumable:
    reason = (f"{max(0.0, deadline - time.monotonic()):.0f} s before the time limit" if why == TIME_LIMIT
              else f"on {Signals.name(why)}")
    return Resumable(f"{out}: stopped before step {step + 1}/{steps}, {reason}; the state is saved and the next "
                     f"attempt resumes (exit status {EXIT_RESUME})")


def divergence(step: int, steps: int, lr: float, loss: float, grad_norm: float | None, last_loss: float | None,
               chash: str) -> dict:
    """The record of a divergence before `step` + 1, for metrics.jsonl and the marker."""
    strict = lambda v: v if v is None or math.isfinite(v) else str(v)  # noqa: E731  JSON has no NaN or inf
    return {"step": step + 1, "steps": steps, "lr": lr, "loss": strict(loss), "grad_norm": strict(grad_norm),
            "last_finite_loss": last_loss, "config_hash": chash}


def diverged(out: str, record: dict, state_path: Path, marker: Path) -> Diverged:
    step, grad_norm = record["step"], record["grad_norm"]
    last = (f"the last finite loss {record['last_finite_loss']:.4g} (step {step - 1})"
            if record["last_finite_loss"] is not None else "no finite loss in this attempt")
    saved = f"the resumable state {state_path.name} is kept" if state_path.exists() else "no state was saved"
    return Diverged(f"{out}: diverged at step {step}/{record['steps']}: loss {_num(record['loss'])}"
                    + (f", gradient norm {_num(grad_norm)}" if grad_norm is not None else "")
                    + f", learning rate {record['lr']:.4g}; {last}. No summary or checkpoint was written and "
                    f"{saved}. Lower --lr (or lengthen --warmup_steps, or set --grad_clip) and run again; retries "
                    f"of these settings stop at once ({marker.name}; exit status {EXIT_DIVERGED}).")


def refuse_diverged(out: Path, marker: Path) -> None:
    """A retry of settings that diverged before stops at once, on every rank."""
    if marker.exists():
        record = read_json(marker, "delete it to train these settings again", dict)
        raise Diverged(f"{out}: these settings diverged before, at step {record.get('step')} ({marker}); "
                       f"training them again would diverge again. Change them (a lower --lr, a longer "
                       f"--warmup_steps, --grad_clip) or delete {marker.name} to retry.")


def _num(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)  # "nan", "inf": the record keeps them as text
