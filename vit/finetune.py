"""Fine-tune one pre-trained checkpoint on every downstream task x resolution x seed (paper sec. 3.2).

    python -m vit.finetune --init=results/pretrain/vit/shapes_l/checkpoint.pt --model=vit --upstream=shapes_l \
        "--tasks=['digits', 'dsprites_location']" --resolutions=[32,48] --seeds=[0,1] \
        --out=results/finetune/vit/shapes_l --steps=100 --lr=0.01 --optimizer=sgd ...

Every (task, resolution, seed) is its own run of `vit.train.train` with its own folder
`<out>/<task>/r<res>_s<seed>/` (summary.json, metrics.jsonl). They share one process because starting
Python with torch and timm costs ~5 s, more than a laptop-scale fine-tune itself (CPU_PERF.md).
A finished run is skipped when the job is restarted, so an interrupted grid resumes where it stopped.
Arguments this module does not know are training settings, checked by `vit.train.Config`.
Writes `<out>/runs.json`: the list of the runs' summaries, which the evaluate stage reads.
"""
from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path

from vit import cli, train
from vit.data import DataError, read_manifest
from vit.logs import read_json, write_json


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


def plan(cfg: Config, train_cfg: train.Config) -> list[train.Config]:
    model_args = cfg.model_args
    if cfg.init:
        import torch

        model_args = torch.load(cfg.init, map_location="cpu", weights_only=False)["model_args"]
    runs = []
    for task in cfg.tasks:
        data_dir = str(Path(cfg.data_root) / task)
        group = read_manifest(data_dir).get("group", "")
        for res in cfg.resolutions:
            for seed in cfg.seeds:
                runs.append(dataclasses.replace(
                    train_cfg, data=data_dir, init=cfg.init, model=cfg.model, model_args=model_args,
                    img_size=int(res), seed=int(seed), out=str(Path(cfg.out) / task / f"r{res}_s{seed}"),
                    tags={"model": cfg.model, "upstream": cfg.upstream, "task": task, "group": group}))
    return runs


def finetune(cfg: Config, train_cfg: train.Config) -> list[dict]:
    if not cfg.out or not cfg.tasks or not cfg.resolutions or not cfg.seeds:
        raise cli.ConfigError("--out, --tasks, --resolutions and --seeds are required")
    if cfg.settings_file:
        chosen = read_json(cfg.settings_file)["settings"]
        # checked like command-line settings: a hand-edited file cannot slip in an unknown key
        cli.parse(train.Config, [f"--{k}={v if isinstance(v, str) else cli.literal(v)}" for k, v in chosen.items()])
        train_cfg = dataclasses.replace(train_cfg, **chosen)
    summaries = []
    runs = plan(cfg, train_cfg)
    for i, run in enumerate(runs):
        done = Path(run.out) / "summary.json"
        if done.exists() and read_json(done).get("config_hash") == train.run_hash(run):
            summaries.append(read_json(done))
            continue
        print(f"[{i + 1}/{len(runs)}] {run.tags['task']} at {run.img_size} px, seed {run.seed}", flush=True)
        summaries.append(train.train(run))
        print(f"    {run.test_split} top-1 {summaries[-1]['eval'][run.test_split]['top1']:.2f} %", flush=True)
    write_json(Path(cfg.out) / "runs.json", summaries)
    return summaries


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    mine, rest = cli.split_known(Config, argv)
    try:
        cfg = cli.parse(Config, mine)
        train_cfg = cli.parse(train.Config, rest)
        finetune(cfg, train_cfg)
    except (cli.ConfigError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
