"""Does the input pipeline keep a GPU busy? CPU cores per GPU each training rule needs, against the SLURM
profile's `cpus_per_gpu` (vit.account.cost prints it for GPU devices).

A job whose training set is stored as JPEG shards (`store: shards` under `datasets:`) decodes, augments
and collates every image on CPU cores: its GPU takes images / device-seconds images/s (the estimate's
FLOPs / (peak x MFU)), one core delivers the input benchmark's `per_core[res]` images/s
(python -m vit.data.bench_input), so the job needs ceil(GPU rate / core rate) cores per GPU, plus one
for the training process itself. Sets kept as uint8 arrays in memory (no `store`, or `store: arrays`)
need no decoding and are not checked.
"""
from __future__ import annotations

import math
from pathlib import Path

from vit import cli
from vit.errors import DataError
from vit.logs import read_json, read_yaml, redo

BENCH = "results/bench/input_pipeline.json"
WRITER = "python -m vit.data.bench_input"
NOT_MEASURED = (f"# input pipeline: not measured (run {WRITER} to write {BENCH}); cores per GPU not checked")
PROFILE = "workflow/profiles/slurm/config.yaml"


def read_bench(path: str = "") -> tuple[dict | None, str]:
    """(the input benchmark, its path); (None, the default path) when the default file is not there. A
    path given (--input_bench) that does not exist is a ConfigError naming it."""
    p = Path(path or BENCH)
    if not p.exists():
        if path:
            raise cli.ConfigError(f"--input_bench={path}: no such file (write one with {WRITER})")
        return None, str(p)
    bench = read_json(p, redo(p, f"the input benchmark: {WRITER}"), dict, ("per_core",))
    per_core = bench["per_core"]
    if not isinstance(per_core, dict) or not per_core or not all(
            str(k).isdigit() and isinstance(v, (int, float)) and v > 0 for k, v in per_core.items()):
        raise DataError(f"{p}: damaged or not the file expected (`per_core` should map resolutions to "
                            f"images/s per core > 0); {redo(p, f'the input benchmark: {WRITER}')}")
    return bench, str(p)


def per_core_at(per_core: dict, res: int) -> float:
    """Images/s one core delivers at training resolution `res`, from the benchmark's `per_core`
    ({"224": 210.0, ...}): the measured resolution itself, else the nearest measured one above it (an
    upper bound on the work: a larger crop costs at least as much), else, above every measured one, the
    largest one's rate x (largest / res)**2: an extrapolation, assuming the resize and collate costs grow
    with the pixels (decoding the stored JPEG does not, so this errs on the slow side)."""
    rates = {int(k): float(v) for k, v in per_core.items()}
    above = [r for r in rates if r >= res]
    if above:
        return rates[min(above)]
    top = max(rates)
    return rates[top] * (top / res) ** 2


def sharded(plan) -> set[str]:
    """The datasets read through the sharded JPEG store (`store: shards`)."""
    return {name for name, d in plan.config["datasets"].items() if d.get("store") == "shards"}


def cores_per_gpu(df, bench: dict, plan):
    """Per job row of vit.account.cost.estimate's table: CPU cores per GPU its input pipeline needs,
    ceil(GPU images/s / one core's images/s) + 1 (the training process); NaN for sets read from memory.
    The GPU's rate is images / (device_hours x 3600), per device."""
    import pandas as pd

    shards = sharded(plan)
    need = []
    for ds, res, gpu in zip(df.task, df.resolution, gpu_rate(df)):
        reads = ds in shards and math.isfinite(gpu)  # a job of no images (0 device-hours) reads nothing
        need.append(math.ceil(gpu / per_core_at(bench["per_core"], int(res))) + 1 if reads else math.nan)
    return pd.Series(need, index=df.index, name="cores/GPU needed", dtype=float)


def gpu_rate(df):
    """Images/s one device takes in each job row (images over its device-seconds)."""
    return df.images / (df.device_hours * 3600)


def profile_cpus(path: str | Path = PROFILE) -> dict:
    """rule -> `cpus_per_gpu` of the SLURM profile's set-resources (rules without one are left out)."""
    path = Path(path)
    if not path.exists():
        return {}
    profile = read_yaml(path, f"restore it with `git checkout {PROFILE}`")
    return {rule: int(r["cpus_per_gpu"]) for rule, r in (profile.get("set-resources") or {}).items()
            if isinstance(r, dict) and "cpus_per_gpu" in r}


def check(df, bench: dict, bench_path: str, plan, cpus: dict):
    """(per-rule columns, input-bound lines). The columns, indexed by rule: `cores/GPU needed` (the most
    any job of the rule needs; "in memory" where no job reads shards) and `cpus_per_gpu` (the profile's;
    blank where it has none). One line per rule that needs more cores than the profile gives."""
    import pandas as pd

    d = df.assign(need=cores_per_gpu(df, bench, plan), gpu=gpu_rate(df))
    rows, lines = [], []
    for rule, g in d.groupby("rule", sort=False):
        given = cpus.get(rule)
        if g.need.isna().all():
            rows.append({"rule": rule, "cores/GPU needed": "in memory", "cpus_per_gpu": "" if given is None else given})
            continue
        worst = g.loc[g.need.idxmax()]
        n, res = int(worst.need), int(worst.resolution)
        rows.append({"rule": rule, "cores/GPU needed": n, "cpus_per_gpu": "" if given is None else given})
        if given is not None and n > given:
            core = per_core_at(bench["per_core"], res)
            # the profile's cores less the training process's, against the GPU's rate
            speed = min(1.0, (given - 1) * core / worst.gpu)
            pct = f"{speed:.0%}" if speed >= 0.01 else "under 1%"
            lines.append(f"input-bound: {rule} needs {n} cores per GPU at {res} px (the GPU takes "
                         f"{worst.gpu:,.0f} img/s, a core decodes and augments {core:,.0f} img/s; {bench_path}), "
                         f"the SLURM profile gives {given}: the job runs at about {pct} of the GPU's "
                         f"speed; raise cpus_per_gpu in {PROFILE} where the nodes have the cores")
    return pd.DataFrame(rows).set_index("rule"), lines
