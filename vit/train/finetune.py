r"""Fine-tune one pre-trained checkpoint on every downstream task x resolution x seed (paper sec. 3.2).

    python -m vit.train.finetune --init=results/pretrain/vit/shapes_l/checkpoint.pt --model=vit --upstream=shapes_l \
        "--tasks=['digits', 'dsprites_location']" --resolutions=[32,48] --seeds=[0,1] \
        --out=results/finetune/vit/shapes_l --steps=100 --lr=0.01 --optimizer=sgd ...

Every (task, resolution, seed) is its own run of `vit.train.loop.train` with its own folder
`<out>/<task>/r<res>_s<seed>/` (summary.json, metrics.jsonl). They share one process because starting
Python with torch and timm costs ~5 s, more than a laptop-scale fine-tune itself (docs/cpu_performance.md).
A finished run is skipped when the job is restarted, so an interrupted grid resumes where it stopped.

Table 4's learning-rate choice: with `--lr_grid` of several rates and `--dev_fraction`, each (task,
resolution) first trains once per rate on the training split minus a held-out dev part (`train[:98%]`,
scored on `train[98%:]`, first seed), then every seed trains on the whole training split with the best
rate. `--per_task` gives a task its own steps, grid, dev fraction or resolutions (ImageNet: 20k steps,
512 px and Polyak averaging in Table 2; Pets: 500 steps).

`--recipe=bit_hyperrule` fine-tunes with the BiT-HyperRule instead (the BiT baseline's own recipe, and
App. B.1.1's second setup for ResNets): each task's steps, decays, MixUp and resolution follow from its
training-split size and native image size (vit.plan.recipes.bit_hyperrule); `--recipe_override` keeps
settings over the rule's (a laptop preset's smaller batch) and `--resolutions`, when given, replaces
the rule's resolution.
Arguments this module does not know are training settings, checked by `vit.train.loop.Config`.
Writes `<out>/runs.json`: the list of the runs' summaries, which the evaluate stage reads.
"""
from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from vit import cli, models
from vit.data import read_manifest, split_size
from vit.errors import ConfigError, DataError
from vit.logs import read_json, redo, write_json
from vit.plan import recipes
from vit.train import loop


@dataclass
class Config:
    init: str = ""            # pre-training checkpoint ("" = train from scratch, the paper's baseline)
    model: str = ""           # short model name (records)
    model_args: dict = field(default_factory=dict)  # only needed from scratch; else read from the checkpoint
    upstream: str = "scratch"  # the pre-training dataset (records)
    tasks: list = field(default_factory=list)
    resolutions: list = field(default_factory=list)
    seeds: list = field(default_factory=list)
    data_root: str = "results/data"
    out: str = ""
    settings_file: str = ""   # JSON {"settings": {...}} of training settings chosen earlier (VTAB-1k select step)
    lr_grid: list = field(default_factory=list)  # learning rates to choose from on a dev split ([] = use --lr)
    dev_fraction: float = 0.0  # the dev split: this fraction of the training split, held out (Table 4: 0.01-0.1)
    per_task: dict = field(default_factory=dict)  # {task: {setting: value}}: Table 4's per-dataset steps,
                                                  # grids, dev fractions, resolutions; overrides the above
    recipe: str = ""          # "" = the settings given; bit_hyperrule = the BiT-HyperRule per task
    recipe_variant: str = "code"  # bit_hyperrule: the released code's rule, or the paper text's ("paper")
    recipe_override: dict = field(default_factory=dict)  # settings kept over the recipe's (e.g. batch_size)


RECIPES = ("bit_hyperrule",)


GRID_KEYS = ("resolutions", "lr_grid", "dev_fraction")  # per_task keys that are not training settings


def check_settings(settings: dict) -> None:
    """Training settings from a file or per_task, checked like command-line ones: an unknown key or a
    wrong type is an error that names it."""
    cli.parse(loop.Config, [f"--{k}={v if isinstance(v, str) else cli.literal(v)}" for k, v in settings.items()])


def native_hw(manifest: dict) -> tuple[int, int]:
    """The images' size before preparation resized them (info.native_size), else their stored size:
    the HyperRule picks its resolution from the original images (CIFAR's 32 px, not a 384 px copy)."""
    native = manifest.get("info", {}).get("native_size")
    return (int(native), int(native)) if native else tuple(manifest["image_size"])


def recipe_settings(cfg: Config, train_split: str, manifest: dict) -> dict:
    """The recipe's settings for one task (see the module doc), before --recipe_override."""
    if cfg.recipe not in RECIPES:
        raise ConfigError(f"--recipe={cfg.recipe!r}: expected one of {', '.join(RECIPES)} (or none)")
    rule = recipes.bit_hyperrule(split_size(manifest, train_split), native_hw(manifest), variant=cfg.recipe_variant)
    rule.pop("resize")  # bit_crop takes the same precrop from img_size (vit.data.augment.BIT_PRECROP)
    return rule


def task_settings(cfg: Config, train_cfg: loop.Config, task: str,
                  manifest: dict | None = None) -> tuple[loop.Config, dict]:
    """The training settings of `task` and its grid (resolutions, lr_grid, dev_fraction). A recipe needs
    the task's `manifest` (its split sizes and image size)."""
    over = dict(cfg.per_task.get(task, {}))
    grid = {"resolutions": cfg.resolutions, "lr_grid": cfg.lr_grid, "dev_fraction": cfg.dev_fraction}
    if cfg.recipe:
        if manifest is None:
            raise ConfigError(f"task {task}: --recipe={cfg.recipe} needs the prepared dataset's manifest")
        check_settings(cfg.recipe_override)
        rule = {**recipe_settings(cfg, over.get("train_split", train_cfg.train_split), manifest),
                **cfg.recipe_override}
        if not cfg.resolutions:
            grid["resolutions"] = [rule["img_size"]]
        train_cfg = dataclasses.replace(train_cfg, **rule)
    grid.update({k: over.pop(k) for k in GRID_KEYS if k in over})
    check_settings(over)
    if not grid["resolutions"]:
        raise ConfigError(f"task {task}: no fine-tuning resolution (give --resolutions or per_task resolutions)")
    if len(grid["lr_grid"]) > 1 and not 0 < grid["dev_fraction"] < 1:
        raise ConfigError(f"task {task}: lr_grid {grid['lr_grid']} needs dev_fraction in (0, 1) to hold out "
                              f"a dev split for the choice (Table 4: 0.01 ImageNet, 0.02 CIFAR, 0.1 Pets/Flowers)")
    return dataclasses.replace(train_cfg, **over), grid


def dev_splits(split: str, fraction: float) -> tuple[str, str]:
    """("train[:98%]", "train[98%:]") for split "train" and fraction 0.02; each part of "a+b" alike."""
    cut = f"{100 * (1 - fraction):g}"
    parts = split.split("+")
    if any("[" in p for p in parts):
        raise ConfigError(f"train_split={split!r} is already sliced; give the whole split and dev_fraction")
    return "+".join(f"{p}[:{cut}%]" for p in parts), "+".join(f"{p}[{cut}%:]" for p in parts)


def _run(run: loop.Config, process: loop.Process) -> dict:
    """Train one run, or read its summary when it already finished with the same settings."""
    done = Path(run.out) / "summary.json"
    fix = redo(done, delete=run.out)  # a damaged summary: the run trains again
    finished = read_json(done, fix, kind=dict) if done.exists() else {}
    if finished.get("config_hash") == loop.run_hash(run):
        return finished
    # under torchrun only rank 0 returns the summary; it wrote it before the run's final barrier
    return loop.train(run, process) or read_json(done, fix, kind=dict)


def select_lr(base: loop.Config, grid: dict, seed: int, process: loop.Process) -> tuple[float, dict]:
    """Paper App. B.1.1: train on the training split minus a held-out dev part with each rate of the
    grid, keep the rate with the best dev top-1 (ties: the first in the grid). A rate whose run diverges
    loses (dev top-1 None) instead of stopping the grid: a sweep's top rates are meant to find the edge."""
    fit, dev = dev_splits(base.train_split, grid["dev_fraction"])
    scores = {}
    for lr in grid["lr_grid"]:
        run = dataclasses.replace(base, lr=float(lr), seed=seed, train_split=fit, test_split=dev, val_split="",
                                  out=f"{base.out}_dev/lr{lr:g}",
                                  tags=dict(base.tags, stage="lr_selection"))
        try:
            scores[f"{lr:g}"] = _run(run, process)["eval"][dev]["top1"]
            print(f"    dev lr {lr:g}: top-1 {scores[f'{lr:g}']:.2f} %", flush=True)
        except loop.Diverged as e:  # its marker makes a rerun of the grid reach the same choice at once
            scores[f"{lr:g}"] = None
            print(f"    dev lr {lr:g}: diverged ({e.message})", flush=True)
    finite = [lr for lr in grid["lr_grid"] if scores[f"{lr:g}"] is not None]
    if not finite:
        raise loop.Diverged(f"{base.out}: every learning rate of the grid {grid['lr_grid']} diverged on the dev "
                            f"split; give lower rates")
    best = max(finite, key=lambda lr: scores[f"{lr:g}"])
    return float(best), {"dev_split": dev, "fit_split": fit, "dev_top1": scores, "lr": float(best)}


def finetune(cfg: Config, train_cfg: loop.Config, process: loop.Process | None = None) -> list[dict]:
    """Train every run of the grid (see the module doc) in this process; returns their summaries."""
    process = process or loop.Process()
    if not cfg.out or not cfg.tasks or not cfg.seeds:
        raise ConfigError("--out, --tasks and --seeds are required (and --resolutions or per_task resolutions)")
    if cfg.settings_file:
        chosen = read_json(cfg.settings_file, redo(cfg.settings_file, "vtab_select rule"), dict,
                           keys=("settings",))["settings"]
        check_settings(chosen)
        train_cfg = dataclasses.replace(train_cfg, **chosen)
    model_args = cfg.model_args
    if cfg.init:
        model_args = models.load_checkpoint(cfg.init)["model_args"]
    summaries = []
    for task in cfg.tasks:
        data_dir = str(Path(cfg.data_root) / task)
        manifest = read_manifest(data_dir)
        settings, grid = task_settings(cfg, train_cfg, task, manifest)
        group = manifest.get("group", "")
        for res in grid["resolutions"]:
            base = dataclasses.replace(settings, data=data_dir, init=cfg.init, model=cfg.model, model_args=model_args,
                                       img_size=int(res), out=str(Path(cfg.out) / task / f"r{res}"),
                                       tags={"model": cfg.model, "upstream": cfg.upstream, "task": task, "group": group,
                                             **({"recipe": cfg.recipe} if cfg.recipe else {})})
            selection = {}
            if len(grid["lr_grid"]) > 1:
                print(f"{task} at {res} px: choosing the learning rate on {grid['dev_fraction']:g} of "
                      f"{base.train_split}", flush=True)
                lr, selection = select_lr(base, grid, int(cfg.seeds[0]), process)
                base = dataclasses.replace(base, lr=lr)
            elif grid["lr_grid"]:
                base = dataclasses.replace(base, lr=float(grid["lr_grid"][0]))
            for seed in cfg.seeds:
                run = dataclasses.replace(base, seed=int(seed), out=f"{base.out}_s{seed}",
                                          tags=dict(base.tags, lr_selection=selection) if selection else base.tags)
                print(f"{task} at {res} px, seed {seed}, lr {run.lr:g}", flush=True)
                summaries.append(_run(run, process))
                print(f"    {run.test_split} top-1 {summaries[-1]['eval'][run.test_split]['top1']:.2f} %", flush=True)
    if int(os.environ.get("RANK", "0")) == 0:
        write_json(Path(cfg.out) / "runs.json", summaries)
    return summaries


def main(argv: list[str] | None = None) -> None:
    process = loop.Process()  # first: the time limit counts from the process's start
    process.signals.install()
    argv = sys.argv[1:] if argv is None else argv
    if any(a in cli.HELP for a in argv):  # its own keys, then the training settings it passes on
        print(cli.usage(Config) + "\n\ntraining settings (vit.train):\n" + cli.usage(loop.Config).split("settings:\n", 1)[1])
        raise SystemExit(0)
    mine, rest = cli.split_known(Config, argv)
    try:
        cfg = cli.parse(Config, mine)
        train_cfg = cli.parse(loop.Config, rest)
        finetune(cfg, train_cfg, process)
    except (ConfigError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    except loop.Stop as e:  # Resumable: the grid resumes on the next attempt (finished runs are skipped)
        print(e.message, file=sys.stderr, flush=True)
        raise


if __name__ == "__main__":
    main()
