"""Everything the report's sections read, loaded once: the summary frame of the summarize stage, the
VTAB-style aggregate, compute records, the pre-training runs, the ablation and HyperRule fine-tunes,
the inspected checkpoint, the paper's numbers (`vit/reference.yaml`) and the plan of the config."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from vit import plan
from vit.evaluate.collect import run_rows
from vit.data import read_manifest
from vit.logs import environment, read_json, read_parquet, redo
from vit.plan import Plan
from vit.plan.recipes import load_reference
from vit.report import plots, scorecard
from vit.report.summary import pretrain_table


@dataclass
class Config:
    summary: str = ""       # results/summary.parquet (vit.report.summary)
    vtab: str = ""          # vtab.parquet of vit.evaluate.collect
    compute: str = ""       # compute.parquet of vit.account.compute
    reports: str = "reports"
    jobs: str = ""          # Snakemake benchmark records (jobs.parquet of vit.account)
    peak: str = ""          # the machine's measured matmul peak (vit.account.peak)
    reference: str = ""     # default: the copy shipped in the vit package
    mfu: float = 0.4        # assumed utilisation for the paper-scale GPU-hour estimates
    config: dict = field(default_factory=dict)  # the workflow's config (labels, groups, paper rows)
    ablation: list = field(default_factory=list)  # runs.json of the resolution ablation (vit.train.finetune)
    hyperrule: list = field(default_factory=list)  # runs.json of the BiT-HyperRule fine-tunes (vit.train.finetune)
    ns_manifests: list = field(default_factory=list)  # manifests of the Noisy Student pseudo-labelled sets
    inspect: list = field(default_factory=list)   # inspect.npz of vit.evaluate.inspect (inspect.json beside each)
    fewshot: list = field(default_factory=list)   # few-shot probes of pre-training checkpoints (vit.evaluate.fewshot):
                                                  # results/fewshot/<model>/<upstream>.json
    inputs: list = field(default_factory=list)   # pre-training summary.json files


@dataclass(frozen=True)
class Results:
    plan: Plan
    reference: dict
    summary: pd.DataFrame       # one row per evaluated run (vit.report.summary)
    vtab: pd.DataFrame          # VTAB-style aggregate per model, upstream, resolution and seed
    compute: pd.DataFrame       # one row per training run, measured (vit.account.compute)
    jobs: pd.DataFrame          # Snakemake's benchmark records (empty without them)
    peak: dict                  # the measured matmul peak ({} without it)
    pretrain: pd.DataFrame      # one row per pre-training run (vit.report.summary.pretrain_table)
    curves: pd.DataFrame        # their training loss against images seen
    ablation: pd.DataFrame      # runs of the resolution ablation (empty without it)
    hyperrule: pd.DataFrame     # runs of the BiT-HyperRule fine-tunes (empty without them)
    ns_info: dict               # Noisy Student pseudo-labelled set -> its manifest's info
    inspect: dict | None        # vit.evaluate.inspect's summary of the inspected checkpoint
    fewshot: pd.DataFrame       # few-shot probes: model, upstream, task, shots, seed, top1 (empty without them)
    here: dict                  # the report stage's environment (vit.logs.environment)
    mfu: float                  # assumed utilisation for the paper-scale estimates

    @property
    def largest(self) -> str:
        """The largest upstream set: Table 2's pre-training set."""
        return self.plan.upstreams[-1]

    @property
    def hi(self) -> int:
        return max(self.plan.config["finetune"]["resolutions"])

    @property
    def lo(self) -> int:
        return min(self.plan.config["finetune"]["resolutions"])

    @property
    def common(self) -> int:
        """The resolution comparisons across checkpoints read (Plan.transfer_resolution)."""
        return self.plan.transfer_resolution


def scores(r: Results) -> pd.DataFrame:
    """Mean over tasks per seed at the resolution every checkpoint has, with its pre-training compute:
    one point per upstream set and model (claims b and d, the compute figure)."""
    s = r.summary
    out = plots.per_seed_mean(s).merge(s[["model", "upstream", "pretrain_flops", "pretrain_core_hours"]]
                                       .drop_duplicates(["model", "upstream"]), on=["model", "upstream"])
    out = out[out.upstream.isin(r.plan.upstreams) & (out.resolution == r.common)]
    return out.assign(pretrain_pflops=out.pretrain_flops / 1e15, pretrain_core_s=out.pretrain_core_hours * 3600,
                      family=out.model.map(lambda m: scorecard.family(r.plan, m)))


def load_inspect(paths: list[str], p: Plan) -> dict | None:
    """vit.evaluate.inspect's summary of the first inspected checkpoint, in the form vit.report.scorecard reads."""
    if not paths:
        return None
    path = Path(paths[0])
    s = read_json(path.with_name("inspect.json"), redo(path.with_name("inspect.json"), "inspect rule"), dict)
    model, up = path.parent.parent.name, path.parent.name
    return {**s, "label": f"{p.model_label(model)} pre-trained on {p.label(up)}",
            "model": model, "upstream": up, "npz": str(path)}


def fewshot_rows(paths: list[str]) -> pd.DataFrame:
    """One row per (checkpoint, task, shots, draw) of vit.evaluate.fewshot's results/fewshot/<model>/<upstream>.json."""
    rows = [{"model": Path(f).parent.name, "upstream": Path(f).stem, "task": task, **r}
            for f in paths for task, runs in read_json(f, redo(f, "fewshot rule"), dict).items() for r in runs]
    return pd.DataFrame(rows, columns=["model", "upstream", "task", "shots", "seed", "top1"] if not rows else None)


def _table(path: str, rule: str) -> pd.DataFrame:
    """A Parquet table that the workflow's `rule` writes."""
    return read_parquet(path, redo(path, f"{rule} rule"))


def load(cfg: Config) -> Results:
    p = plan.load(cfg.config)
    pretrain, curves = pretrain_table(cfg.inputs, p)
    return Results(
        plan=p, reference=load_reference(cfg.reference), summary=_table(cfg.summary, "summarize"),
        vtab=_table(cfg.vtab, "evaluate"), compute=_table(cfg.compute, "account"),
        jobs=_table(cfg.jobs, "account") if cfg.jobs else pd.DataFrame(),
        peak=read_json(cfg.peak, redo(cfg.peak, "peak rule"), dict) if cfg.peak else {}, pretrain=pretrain, curves=curves,
        ablation=run_rows(cfg.ablation) if cfg.ablation else pd.DataFrame(),
        hyperrule=run_rows(cfg.hyperrule) if cfg.hyperrule else pd.DataFrame(),
        ns_info={Path(m).parent.name: read_manifest(Path(m).parent)["info"] for m in cfg.ns_manifests},
        inspect=load_inspect(cfg.inspect, p), fewshot=fewshot_rows(cfg.fewshot), here=environment(), mfu=cfg.mfu)
