"""What a preset will cost before it runs: training FLOPs, device-hours and wall time, per rule and in total.

    python -m vit.account.cost --configfile=configs/paper-i21k.yaml --device=h100 --mfu=0.4 --devices=64
    python -m vit.account.cost --configfile=config.yaml --device=cpu --measured=results/compute/compute.parquet

FLOPs per training image (forward + backward) are counted with FlopCounterMode on PyTorch's meta
device (no memory, no time; the same counter the training runs use), at each job's resolution.
Images per job follow the config the way the workflow runs it: pre-training epochs x the upstream
set's `train` size (or steps x batch; a Noisy Student's set counts its whole pool, an upper
bound); fine-tuning steps x batch for every task, resolution and seed,
plus one dev run per learning rate where a grid is chosen on a dev split (vit.train.finetune).
VTAB-1k (a `vtab:` section) counts every sweep setting once and the final fine-tunes at the sweep's
longest schedule (the setting is chosen later: an upper bound).

Device-hours = FLOPs / (peak x utilisation). GPU peaks are the vendors' dense bf16 numbers (stated);
`cpu` takes this machine's measured 1-core fp32 matmul peak (vit.account.peak's JSON, or measured on the spot),
one device = one core, as the laptop workflow runs 1-thread jobs side by side. The utilisation (MFU)
is stated (--mfu) or, with --measured (an earlier run's results/compute/compute.parquet on this
machine), the one that run achieved; the output says which. Wall time: each job on the devices its
rule gets (the SLURM profile's `gpu` for GPUs, 1 core on CPU), the whole preset on --devices at once,
bounded below by its longest chain (pre-training, then the fine-tunes of that checkpoint); on GPUs each
rule's longest job is checked against the SLURM profile's runtime x attempts (a stopped job resumes on
its next attempt, vit.train's time limit). Evaluation,
pseudo-labelling and few-shot probes are not counted. On GPUs, the CPU cores per GPU that the input pipeline
of each rule's sets stored as JPEG shards needs (vit.account.input_bound, from the input benchmark
results/bench/input_pipeline.json or --input_bench) are checked against the profile's `cpus_per_gpu`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from vit import cli, models
from vit.account import input_bound
from vit.account.peak import matmul_peak
from vit.data import DataError, tv_sources
from vit.logs import read_json, read_parquet, read_yaml, redo
from vit.models import flops
from vit.plan import RULES, Plan, load
from vit.plan.checks import read_config
from vit.train import finetune, loop, optim

# dense bf16 tensor-core peaks (FLOP/s): NVIDIA H100 SXM and A100 SXM datasheets; TPUv3 per core (paper)
PEAKS = {"h100": 989e12, "a100": 312e12, "tpuv3": 61.5e12}
DEVICES = (*PEAKS, "cpu")
# assumed utilisation when neither --mfu nor a measurement gives one: 40 % is a well-tuned large
# transformer on GPUs; 30 % is about what this workflow's small models reach on one CPU core
# (the default run: 30 % over all its timed steps, reports/report.md)
DEFAULT_MFU = {"gpu": 0.4, "cpu": 0.3}
ROOT = Path(__file__).resolve().parents[2]  # the repository (vit/account/cost.py)
SLURM_PROFILE = ROOT / "workflow/profiles/slurm/config.yaml"


@dataclass
class Config:
    configfile: str = ""    # a preset (config.yaml, configs/*.yaml)
    device: str = "h100"    # h100 | a100 | tpuv3 | cpu (this machine, measured peak)
    mfu: float = 0.0        # assumed model FLOPs utilisation (0: 0.4 on GPUs; on cpu --measured's, else 0.3)
    devices: int = 0        # devices working at once (0: one 8-GPU node; cpu: this machine's cores)
    measured: str = ""      # an earlier run's compute.parquet: its MFU, and estimate vs measured per stage
    peak_file: str = ""     # cpu: vit.account.peak's JSON (default results/compute/peak.json when present)
    model: str = ""         # vtab: a paper model (e.g. ViT-L/16) instead of the checkpoint's own
    out: str = ""           # optional CSV of the per-job table
    input_bench: str = ""   # GPUs: the input benchmark's JSON (default results/bench/input_pipeline.json when present)


def _flops_per_image(spec: dict, res: int, classes: int, cache: dict) -> float:
    """Training FLOPs per image of (model, resolution, classes), memoised in `cache`.

    Only the head sees the class count, so FLOPs are affine in it: after two counts of a (model,
    resolution), any other class count lies on the line through them. That halves the counting for a
    preset that fine-tunes on tasks of many class counts (~1 s per count; paper-transfer took 51 s), and
    it is exact, as FLOP counts are whole numbers (tests/test_flops.py compares it with direct counts)."""
    known = cache.setdefault((repr(sorted(spec.items())), res), {})
    if classes not in known:
        if len(known) >= 2:
            (k1, f1), (k2, f2) = list(known.items())[:2]
            known[classes] = f1 + (classes - k1) * (f2 - f1) / (k2 - k1)
        else:
            with torch.device("meta"):
                model = models.create(spec, classes, res)
            # batch 2: BatchNorm refuses one value per channel in train mode (EfficientNet at 32 px)
            known[classes] = flops.count(model, res, device="meta", batch=2)["train_flops_per_img"]
    return known[classes]


def jobs(plan: Plan) -> list[dict]:
    """One row per planned training job: stage, model, upstream, task, resolution, runs, images.
    Settings come from the same code the workflow and vit.train.finetune use (vit.plan, task_settings)."""
    datasets = plan.config["datasets"]
    rows = []
    # a Noisy Student's set: the labelled set plus the kept pool images, at most the whole pool (an upper bound)
    pseudo = {it["dataset"]: {"train": datasets[it["labelled"]].get("train", 0) + datasets[it["pool"]].get("train", 0),
                              "classes": datasets[it["labelled"]].get("classes", 1000)}
              for it in plan.noisy_student}
    for model, up in plan.pretrain_runs:
        s = loop.Config(**plan.pretrain_settings(model, up))
        d = pseudo.get(up) or datasets[up]
        steps = optim.to_steps(s.epochs, s.steps, d.get("train", 0), s.batch_size)
        rows.append({"stage": "pretrain", "model": model, "upstream": up, "task": up,
                     "resolution": s.img_size, "runs": 1, "images": steps * s.batch_size, "spec": plan.model_spec(model),
                     "classes": d.get("classes", 1000)})
    if "finetune" not in plan.config:
        return rows
    grid = plan.finetune_grid()
    # the fine-tuning grids, then the resolution ablation's (the grid above the checkpoint's resolution)
    ablation = [(m, up, plan.pretrain_resolution(m, up)) for m, up, _ in plan.posemb_ablation_runs]
    for model, up, skip in [(m, up, None) for m, up in plan.finetune_runs] + ablation:
        # the checkpoint's own resolutions (finetune.higher_resolutions_for), which a task's own may override
        shared = finetune.Config(**{k: v for k, v in grid.items() if k != "seeds"}
                                 | {"resolutions": plan.finetune_resolutions(model, up)})
        for task in grid["tasks"]:
            s, task_grid = finetune.task_settings(shared, loop.Config(**plan.finetune_train(model)), task)
            if not s.steps:
                raise cli.ConfigError(f"{task}: cost estimates need fine-tuning `steps` (epochs depend on data size)")
            # vit.train.finetune: one dev run per rate when a grid is chosen from, then every seed
            runs = len(grid["seeds"]) + (len(task_grid["lr_grid"]) if len(task_grid["lr_grid"]) > 1 else 0)
            for res in [r for r in task_grid["resolutions"] if r != skip]:
                rows.append({"stage": "finetune" if skip is None else "ablation", "model": model, "upstream": up,
                             "task": task, "resolution": res,
                             "runs": runs, "images": runs * s.steps * s.batch_size,
                             "spec": models.transfer_spec(plan.model_spec(model)),
                             "classes": datasets.get(task, {}).get("classes", 1000)})
    rows += hyperrule_jobs(plan)
    return rows


def hyperrule_jobs(plan: Plan) -> list[dict]:
    """The BiT-HyperRule fine-tunes (finetune.hyperrule): the rule's steps and resolution per task follow
    from its training-set size and image size, here taken from the config (datasets.<task>.train/val/test
    counts and native_size or size) as vit.train.finetune takes them from the prepared manifest."""
    runs = plan.hyperrule_runs
    if not runs:
        return []
    args = plan.hyperrule_args()
    shared = finetune.Config(**{k: args.pop(k) for k in list(args) if k in finetune.Config.__dataclass_fields__})
    datasets, rows = plan.config["datasets"], []
    for task in shared.tasks:
        d = datasets[task]
        split = shared.per_task.get(task, {}).get("train_split", args.get("train_split", "train"))
        counts = plan.stated_splits(task, split)
        native = (tv_sources.TV_DATASETS.get(d.get("task", ""), {}).get("native_size")
                  if d.get("source") == "torchvision" else None)
        manifest = {"name": task, "splits": counts, "image_size": [d.get("size", 224)] * 2,
                    "info": {"native_size": native}}
        try:
            s, grid = finetune.task_settings(shared, loop.Config(**args), task, manifest)
        except DataError as e:
            raise cli.ConfigError(f"finetune.hyperrule: the rule's schedule needs datasets.{task}'s training-set "
                                  f"size (train / val counts): {e}") from None
        for model, up in runs:
            for res in grid["resolutions"]:
                rows.append({"stage": "hyperrule", "model": model, "upstream": up, "task": task,
                             "resolution": res, "runs": len(shared.seeds), "images": len(shared.seeds) * s.steps * s.batch_size,
                             "spec": models.transfer_spec(plan.model_spec(model)),
                             "classes": d.get("classes", 1000)})
    return rows


def vtab_jobs(plan: Plan, model: str = "") -> list[dict]:
    """The VTAB-1k protocol (vtab.smk): one sweep job per setting (first seed, train800 -> val200), then
    one final job (every seed, train800+val200) counted at the sweep's longest schedule, since the
    setting is chosen later. The model is the checkpoint's, or the paper model `model` (e.g. ViT-L/16)."""
    v = plan.config["vtab"]
    if model:
        spec = {"arch": "paper", "name": model}
    else:
        path = Path(v["checkpoint"])
        if not path.exists():
            raise cli.ConfigError(f"vtab.checkpoint: {path} does not exist, and the estimate needs its model; "
                                  f"pass --model=<a paper model, e.g. ViT-B/16> instead")
        spec = models.load_checkpoint(str(path), mmap=True)["model_args"]
    spec = models.transfer_spec(spec)
    tasks = plan.vtab_tasks
    res, seeds = v.get("resolution", 384), v.get("seeds", [0])
    settings = [loop.Config(**{**v["train"], **setting}) for setting in v["sweep"]]
    if not all(s.steps for s in settings):
        raise cli.ConfigError("vtab.sweep: cost estimates need `steps` in every setting")
    longest = max(settings, key=lambda s: s.steps * s.batch_size)
    rows = []
    for job, (stage, group, runs) in enumerate([("vtab_sweep", s, 1) for s in settings]
                                               + [("vtab_final", longest, len(seeds))]):
        for t in tasks:
            rows.append({"stage": stage, "model": v["model"], "upstream": f"s{job}" if stage == "vtab_sweep" else "final",
                         "task": t.folder, "resolution": res, "runs": runs,
                         "images": runs * group.steps * group.batch_size, "spec": spec, "classes": t.classes})
    return rows


def _cpu_peak(peak_file: str) -> tuple[dict, str]:
    """vit.account.peak's record of this machine's fp32 matmul peak: its JSON when there is one, else measured
    now on one thread (the only one the estimate uses)."""
    path = Path(peak_file or "results/compute/peak.json")
    if path.exists():
        return read_json(path, redo(path, "peak rule"), dict), f"measured by vit.account.peak ({path})"
    if peak_file:
        raise cli.ConfigError(f"--peak_file={peak_file}: no such file (write one with python -m vit.account.peak)")
    torch.set_num_threads(1)
    return {"cpu_fp32_gflops": {"1": matmul_peak("cpu", torch.float32, repeats=5)["peak_gflops"]}}, \
        "measured now (1 thread)"


def throughput(device: str, peak: dict, mfu: float = 0.0, compute=None) -> tuple[float, float, str]:
    """(peak FLOP/s per device, MFU, where the MFU comes from). A GPU's peak is its datasheet's; `cpu`'s
    is one core's from vit.account.peak's record `peak`. The MFU is `mfu` when stated, else on CPU what the run
    in `compute` achieved, else DEFAULT_MFU."""
    if device not in DEVICES:
        raise cli.ConfigError(f"--device={device!r}: expected one of {', '.join(DEVICES)}")
    flops = peak["cpu_fp32_gflops"]["1"] * 1e9 if device == "cpu" else PEAKS[device]
    if mfu:
        return flops, mfu, "stated (--mfu)"
    if compute is not None and device == "cpu":
        return flops, measured_mfu(compute), "measured: what the earlier run achieved"
    return flops, DEFAULT_MFU["cpu" if device == "cpu" else "gpu"], "assumed"


def _profile(device: str) -> tuple[dict, dict, int]:
    """From the SLURM profile: rule -> devices one job uses (its `gpu`: one torchrun over them), rule ->
    runtime per attempt (minutes), and the attempts a job gets (retries + 1; each resumes the last).
    On CPU every job is one core (the laptop workflow's 1-thread jobs) with no time limit."""
    if device == "cpu" or not SLURM_PROFILE.exists():
        return {}, {}, 1
    profile = read_yaml(SLURM_PROFILE, "restore it with `git checkout workflow/profiles/slurm/config.yaml`")
    res = {rule: r for rule, r in profile.get("set-resources", {}).items() if isinstance(r, dict)}
    default = profile.get("default-resources", {}).get("runtime")
    return ({rule: int(r.get("gpu", 1)) for rule, r in res.items()},
            {rule: r.get("runtime", default) for rule, r in res.items()}, profile.get("retries", 0) + 1)


def measured_mfu(compute) -> float:
    """The utilisation an earlier run achieved over all its timed training steps (FLOPs over peak x time)."""
    ok = compute.dropna(subset=["peak_gflops"])
    return float(ok.train_flops.sum() / (ok.peak_gflops * 1e9 * ok.train_time_s).sum())


def estimate(plan: Plan, device: str, mfu: float, peak: float, model: str = ""):
    """The per-job-part table: FLOPs per image, FLOPs, device-hours at `peak` FLOP/s x `mfu` per device."""
    import pandas as pd

    if device not in DEVICES:
        raise cli.ConfigError(f"--device={device!r}: expected one of {', '.join(DEVICES)}")
    cache: dict = {}
    rows = (jobs(plan) if "pretrain" in plan.config or "finetune" in plan.config else []) + (
        vtab_jobs(plan, model) if "vtab" in plan.config else [])
    if not rows:
        raise cli.ConfigError("the config runs no training: expected pretrain/finetune or vtab sections")
    for r in rows:
        r["rule"] = RULES[r["stage"]]
        r["train_gflops_per_img"] = _flops_per_image(r.pop("spec"), r["resolution"], r.pop("classes"), cache) / 1e9
        r["flops"] = r["train_gflops_per_img"] * 1e9 * r["images"]
        r["device_hours"] = r["flops"] / (peak * mfu) / 3600
    return pd.DataFrame(rows)


def wall_hours(df, per_job: dict, devices: int, plan: Plan) -> tuple:
    """(per-job table, preset wall-clock hours). A Snakemake job is one (rule, model, upstream); it runs on
    min(its rule's devices, `devices`). The preset's wall time is the device-hours spread over `devices`,
    but never less than its longest chain: pre-training (after a Noisy Student's teachers), then the
    longest fine-tuning job of that checkpoint."""
    jobs_ = df.groupby(["rule", "model", "upstream"], sort=False).agg(
        runs=("runs", "sum"), flops=("flops", "sum"), device_hours=("device_hours", "sum")).reset_index()
    jobs_["devices"] = [min(per_job.get(rule, 1), devices) for rule in jobs_.rule]
    jobs_["wall_hours"] = jobs_.device_hours / jobs_.devices
    pre = {(m, u): h for r, m, u, h in zip(jobs_.rule, jobs_.model, jobs_.upstream, jobs_.wall_hours)
           if r == RULES["pretrain"]}
    teacher = {(it["student"], it["dataset"]): it["teacher"] for it in plan.noisy_student}

    def chain(key) -> float:
        return pre.get(key, 0.0) + (chain(teacher[key]) if key in teacher else 0.0)

    tails = jobs_[jobs_.rule != RULES["pretrain"]].groupby(["model", "upstream"]).wall_hours.max()
    paths = [chain(k) + tails.get(k, 0.0) for k in set(pre) | set(tails.index)]
    if RULES["vtab_final"] in set(jobs_.rule):  # the final fine-tunes wait for every sweep job
        sweep, final = jobs_[jobs_.rule == RULES["vtab_sweep"]], jobs_[jobs_.rule == RULES["vtab_final"]]
        paths.append(sweep.wall_hours.max() + final.wall_hours.max())
    return jobs_, max(jobs_.device_hours.sum() / devices, max(paths, default=0.0))


def _duration(hours: float) -> str:
    if hours * 3600 < 1:
        return "< 1 s"
    if hours < 1 / 60:
        return f"{hours * 3600:.0f} s"
    if hours < 1:
        return f"{hours * 60:.1f} min"
    return f"{hours:,.1f} h" if hours < 48 else f"{hours / 24:,.1f} days"


def _flops_unit(total: float) -> tuple[float, str]:
    return (1e18, "exaFLOPs") if total >= 1e18 else (1e15, "PFLOPs") if total >= 1e15 else (1e12, "TFLOPs")


def compare(df, compute):
    """Estimate vs an earlier run's measurement, per stage: FLOPs and device(core)-hours."""
    import pandas as pd

    stage_of = {"finetune": "finetune", "ablation": "finetune", "hyperrule": "finetune", "pretrain": "pretrain"}
    est = df.assign(stage=df.stage.map(stage_of)).groupby("stage")[["flops", "device_hours"]].sum()
    hours = compute.core_hours.where(compute.device == "cpu", compute.gpu_hours)
    got = compute.assign(hours=hours).groupby("stage")[["train_flops", "hours"]].sum()
    rows = []
    for stage in est.index.union(got.index):
        e, m = est.reindex([stage]).iloc[0], got.reindex([stage]).iloc[0]
        rows.append({"stage": stage, "estimated PFLOPs": e.flops / 1e15, "measured PFLOPs": m.train_flops / 1e15,
                     "FLOPs ratio": e.flops / m.train_flops, "estimated device-hours": e.device_hours,
                     "measured device-hours": m.hours, "hours ratio": e.device_hours / m.hours})
    t = pd.DataFrame(rows)
    total = t.sum(numeric_only=True)
    total["FLOPs ratio"] = total["estimated PFLOPs"] / total["measured PFLOPs"]
    total["hours ratio"] = total["estimated device-hours"] / total["measured device-hours"]
    return pd.concat([t, pd.DataFrame([{"stage": "total", **total}])], ignore_index=True)


def main(cfg: Config):
    if not cfg.configfile:
        raise cli.ConfigError("--configfile is required (config.yaml or configs/<preset>.yaml)")
    if cfg.device not in DEVICES:
        raise cli.ConfigError(f"--device={cfg.device!r}: expected one of {', '.join(DEVICES)}")
    plan = load(read_config(cfg.configfile))
    # GPUs: the input benchmark (None: not measured), read first: a missing --input_bench fails at once
    bench, bench_path = input_bound.read_bench(cfg.input_bench) if cfg.device != "cpu" else (None, "")
    compute = read_parquet(cfg.measured, redo(cfg.measured, "account rule")) if cfg.measured else None
    if cfg.device == "cpu":
        record, peak_src = _cpu_peak(cfg.peak_file)
        unit, devices = "core", cfg.devices or os.cpu_count() or 1
    else:
        record, peak_src = {}, "the vendor's dense bf16 datasheet peak (stated)"
        unit, devices = cfg.device.upper(), cfg.devices or 8
    peak, mfu, mfu_src = throughput(cfg.device, record, cfg.mfu, compute)
    if compute is not None and mfu_src.startswith("measured"):
        mfu_src += f" ({cfg.measured})"
    df = estimate(plan, cfg.device, mfu, peak, cfg.model)
    per_gpu, runtime, attempts = _profile(cfg.device)
    per_job, wall = wall_hours(df, per_gpu, devices, plan)
    scale, fl = _flops_unit(df.flops.sum())
    by_rule = per_job.groupby("rule", sort=False).agg(
        jobs=("runs", "size"), runs=("runs", "sum"), flops=("flops", "sum"), device_hours=("device_hours", "sum"),
        **{"devices per job": ("devices", "max")}, longest_job=("wall_hours", "max")).reset_index()
    by_rule[fl] = by_rule.pop("flops") / scale
    by_rule[f"{unit}-hours"] = by_rule.pop("device_hours")
    by_rule["longest job (wall)"] = by_rule.pop("longest_job").map(_duration)
    print(f"# {cfg.configfile}: {len(per_job)} training jobs, {per_job.runs.sum()} training runs\n"
          f"# assumptions: {cfg.device} peak {peak / 1e12:.3g} TFLOP/s per {unit.lower() if unit == 'core' else 'device'}, "
          f"{peak_src}; MFU {mfu:.0%}, {mfu_src}; FLOPs counted by FlopCounterMode at each job's resolution "
          f"(forward + backward); {devices} {unit.lower() if unit == 'core' else unit}s at once; "
          f"evaluation, pseudo-labelling and few-shot probes not counted\n")
    if runtime:  # does the longest job finish within the SLURM attempts the profile gives it?
        limit = by_rule.rule.map(lambda r: runtime.get(r, 0) * attempts / 60)
        by_rule["SLURM limit (attempts x runtime)"] = [
            f"{_duration(lim)}" + ("" if long <= lim else " TOO SHORT") for lim, long in
            zip(limit, per_job.groupby("rule", sort=False).wall_hours.max())]
    bound = [input_bound.NOT_MEASURED] if cfg.device != "cpu" and bench is None else []
    if bench is not None:  # can each GPU's input pipeline keep up? (vit.account.input_bound)
        cols, bound = input_bound.check(df, bench, bench_path, plan, input_bound.profile_cpus(SLURM_PROFILE))
        by_rule = by_rule.join(cols, on="rule")
    print(by_rule.to_markdown(index=False, floatfmt=".3g"))
    if bound:
        print("\n" + "\n".join(bound))
    print(f"\ntotal: {df.flops.sum() / scale:,.3g} {fl}, {df.device_hours.sum():,.3g} {unit}-hours; "
          f"wall time on {devices} {unit.lower() if unit == 'core' else unit}s: {_duration(wall)}")
    if compute is not None:
        print(f"\n# estimate vs measured ({cfg.measured}: timed training steps only)\n")
        print(compare(df, compute).to_markdown(index=False, floatfmt=".3g"))
    if cfg.out:
        df.to_csv(cfg.out, index=False)
    return df


if __name__ == "__main__":
    cli.main_guard(main, Config)
