"""What a preset will cost before it runs: training FLOPs and GPU-hours of every planned job.

    python -m vit.cost --configfile=configs/paper-i21k.yaml --device=h100 --mfu=0.4

FLOPs per training image (forward + backward) are counted with FlopCounterMode on PyTorch's meta
device (no memory, no time; the same counter the training runs use), at each job's resolution.
Images per job follow the config the way the workflow runs it: pre-training epochs x the upstream
set's `train` size (or steps x batch; a Noisy Student's set counts its whole pool, an upper
bound); fine-tuning steps x batch for every task, resolution and seed,
plus one dev run per learning rate where a grid is chosen on a dev split (vit.finetune).
Device-hours = FLOPs / (peak x assumed utilisation); the peaks are the vendors' dense bf16 numbers, and
the utilisation (MFU) is an assumption the output states, not a measurement. Evaluation is not counted.
"""
from __future__ import annotations

from dataclasses import dataclass

import yaml

from vit import cli, finetune, models, optim, plan, train, tv_sources
from vit.data import DataError, parse_part

# dense bf16 tensor-core peaks (FLOP/s): NVIDIA H100 SXM and A100 SXM datasheets; TPUv3 per core (paper)
PEAKS = {"h100": 989e12, "a100": 312e12, "tpuv3": 61.5e12}


@dataclass
class Config:
    configfile: str = ""    # a preset (config.yaml, configs/*.yaml)
    device: str = "h100"    # h100 | a100 | tpuv3
    mfu: float = 0.4        # assumed model FLOPs utilisation
    out: str = ""           # optional CSV of the per-job table


def _flops_per_image(spec: dict, res: int, classes: int, cache: dict) -> float:
    import torch

    from vit import flops

    key = (repr(sorted(spec.items())), res, classes)
    if key not in cache:
        with torch.device("meta"):
            model = models.create(spec, classes, res)
        # batch 2: BatchNorm refuses one value per channel in train mode (EfficientNet at 32 px)
        cache[key] = flops.count(model, res, device="meta", batch=2)["train_flops_per_img"]
    return cache[key]


def jobs(config: dict) -> list[dict]:
    """One row per planned training job: stage, model, upstream, task, resolution, runs, images.
    Settings come from the same code the workflow and vit.finetune use (vit.plan, task_settings)."""
    datasets = config.get("datasets", {})
    rows = []
    # a Noisy Student's set: the labelled set plus the kept pool images, at most the whole pool (an upper bound)
    pseudo = {it["dataset"]: {"train": datasets[it["labelled"]].get("train", 0) + datasets[it["pool"]].get("train", 0),
                              "classes": datasets[it["labelled"]].get("classes", 1000)}
              for it in plan.noisy_student(config)}
    for model, up in plan.pretrain_runs(config):
        s = train.Config(**plan.pretrain_settings(config, model, up))
        d = pseudo.get(up) or datasets[up]
        steps = optim.to_steps(s.epochs, s.steps, d.get("train", 0), s.batch_size)
        rows.append({"stage": "pretrain", "model": model, "upstream": up, "task": up, "resolution": s.img_size,
                     "runs": 1, "images": steps * s.batch_size, "spec": plan.model_spec(config, model),
                     "classes": d.get("classes", 1000)})
    if "finetune" not in config:
        return rows
    grid = plan.finetune_grid(config)
    shared = finetune.Config(**{k: v for k, v in grid.items() if k != "seeds"})
    # the fine-tuning grids, then the resolution ablation's (the grid above the checkpoint's resolution)
    ablation = [(m, up, plan.pretrain_resolution(config, m, up)) for m, up, _ in plan.posemb_ablation_runs(config)]
    for model, up, skip in [(m, up, None) for m, up in plan.finetune_runs(config)] + ablation:
        for task in grid["tasks"]:
            s, task_grid = finetune.task_settings(shared, train.Config(**config["finetune"]["train"]), task)
            if not s.steps:
                raise cli.ConfigError(f"{task}: cost estimates need fine-tuning `steps` (epochs depend on data size)")
            # vit.finetune: one dev run per rate when a grid is chosen from, then every seed
            runs = len(grid["seeds"]) + (len(task_grid["lr_grid"]) if len(task_grid["lr_grid"]) > 1 else 0)
            for res in [r for r in task_grid["resolutions"] if r != skip]:
                rows.append({"stage": "finetune" if skip is None else "ablation", "model": model, "upstream": up,
                             "task": task, "resolution": res,
                             "runs": runs, "images": runs * s.steps * s.batch_size,
                             "spec": models.transfer_spec(plan.model_spec(config, model)),
                             "classes": datasets.get(task, {}).get("classes", 1000)})
    rows += hyperrule_jobs(config)
    return rows


def hyperrule_jobs(config: dict) -> list[dict]:
    """The BiT-HyperRule fine-tunes (finetune.hyperrule): the rule's steps and resolution per task follow
    from its training-set size and image size, here taken from the config (datasets.<task>.train/val/test
    counts and native_size or size) as vit.finetune takes them from the prepared manifest."""
    runs = plan.hyperrule_runs(config)
    if not runs:
        return []
    args = plan.hyperrule_args(config)
    shared = finetune.Config(**{k: args.pop(k) for k in list(args) if k in finetune.Config.__dataclass_fields__})
    datasets, rows = config["datasets"], []
    for task in shared.tasks:
        d = datasets[task]
        split = shared.per_task.get(task, {}).get("train_split", args.get("train_split", "train"))
        counts = {k: d[k] for k in ("train", "val", "test") if d.get(k)}
        if "train" in counts:  # `train` counts the split the task trains on (Pets: trainval)
            names = (parse_part(p)[0] for p in split.split("+"))
            counts.update({name: d["train"] for name in names if name not in counts})
        native = (tv_sources.TV_DATASETS.get(d.get("task", ""), {}).get("native_size")
                  if d.get("source") == "torchvision" else None)
        manifest = {"name": task, "splits": counts, "image_size": [d.get("size", 224)] * 2,
                    "info": {"native_size": native}}
        try:
            s, grid = finetune.task_settings(shared, train.Config(**args), task, manifest)
        except DataError as e:
            raise cli.ConfigError(f"finetune.hyperrule: the rule's schedule needs datasets.{task}'s training-set "
                                  f"size (train / val counts): {e}") from None
        for model, up in runs:
            for res in grid["resolutions"]:
                rows.append({"stage": "hyperrule", "model": model, "upstream": up, "task": task, "resolution": res,
                             "runs": len(shared.seeds), "images": len(shared.seeds) * s.steps * s.batch_size,
                             "spec": models.transfer_spec(plan.model_spec(config, model)),
                             "classes": d.get("classes", 1000)})
    return rows


def estimate(config: dict, device: str, mfu: float):
    import pandas as pd

    if device not in PEAKS:
        raise cli.ConfigError(f"--device={device!r}: expected one of {', '.join(PEAKS)}")
    cache: dict = {}
    rows = jobs(config)
    for r in rows:
        r["train_gflops_per_img"] = _flops_per_image(r.pop("spec"), r["resolution"], r.pop("classes"), cache) / 1e9
        r["exaflops"] = r["train_gflops_per_img"] * 1e9 * r["images"] / 1e18
        r[f"{device}_hours"] = r["exaflops"] * 1e18 / (PEAKS[device] * mfu) / 3600
    return pd.DataFrame(rows)


def main(cfg: Config):
    if not cfg.configfile:
        raise cli.ConfigError("--configfile is required (config.yaml or configs/<preset>.yaml)")
    with open(cfg.configfile) as f:
        config = yaml.safe_load(f)
    df = estimate(config, cfg.device, cfg.mfu)
    hours = f"{cfg.device}_hours"
    print(f"# {cfg.configfile}: {len(df)} training jobs; {df.runs.sum()} training runs\n"
          f"# assumptions: {cfg.device} dense bf16 peak {PEAKS[cfg.device] / 1e12:.0f} TFLOP/s at {cfg.mfu:.0%} MFU; "
          f"FLOPs counted at each job's resolution; evaluation not counted\n")
    print(df.round({"train_gflops_per_img": 1, "exaflops": 3, hours: 1}).to_markdown(index=False))
    by_stage = df.groupby("stage")[["runs", "exaflops", hours]].sum()
    print("\n" + by_stage.round(1).to_markdown())
    print(f"\ntotal: {df.exaflops.sum():.2f} exaFLOPs, {df[hours].sum():,.0f} {cfg.device.upper()}-hours")
    if cfg.out:
        df.to_csv(cfg.out, index=False)
    return df


if __name__ == "__main__":
    cli.main_guard(main, Config)
