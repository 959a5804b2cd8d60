"""What a config runs, in one place: `load(config)` validates a config against its JSON schema
(vit/plan/config.schema.yaml), fills the schema's defaults, adds the datasets the config implies (VTAB-1k
tasks, the upstreams of released weights, Noisy Student's pseudo-labelled sets), runs the cross-checks a
schema cannot express (vit.plan.checks) and returns a `Plan`. The workflow (workflow/rules/common.smk),
the cost estimate (vit.account.cost) and the report (vit.report) read the plan, never the raw config.
Torch-free, so that Snakemake parses the workflow without importing torch.
"""
from __future__ import annotations

import copy

from vit.plan import checks
from vit.plan.runs import BENCH_VITS, DATA_ROOT_SOURCES, IMAGE_SOURCES, LABEL_KEYS, POSEMB_INTERP, RULES, Plan

__all__ = ["load", "Plan", "BENCH_VITS", "LABEL_KEYS", "POSEMB_INTERP", "IMAGE_SOURCES", "DATA_ROOT_SOURCES", "RULES"]
IMPLIED_SOURCES = ("released", "noisy_student")  # the sources of the dataset entries `load` adds


def load(config: dict) -> Plan:
    """The plan of a config (a dict as read from YAML, not changed), or of a plan's own `config` (what
    the workflow hands a stage): loading that again gives the same plan. Raises vit.errors.ConfigError,
    naming the key and the fix, where the config breaks its schema or a cross-reference."""
    resolved = copy.deepcopy(config)
    _drop_additions(resolved)
    checks.validate(resolved)  # fills the schema's defaults into the copy
    resolved.setdefault("datasets", {})
    resolved.setdefault("models", {})
    plan = Plan(resolved)
    _add_implied_datasets(plan)
    checks.cross_check(plan)  # after the additions: a task may name a VTAB-1k set
    return plan


def _drop_additions(config: dict) -> None:
    """What an earlier load added to a config (the implied datasets, empty sections), which `load`
    makes again from what implies them."""
    datasets = config.get("datasets", {})
    for name in [n for n, d in datasets.items() if d.get("source") in IMPLIED_SOURCES]:
        del datasets[name]
    for section in ("datasets", "models"):
        if config.get(section) == {}:
            del config[section]


def _add_implied_datasets(plan: Plan) -> None:
    """Dataset entries the config implies without naming them under `datasets:`: each VTAB-1k task
    (prepared from {data_root}/vtab-1k); the upstream of released weights (never prepared; tables label
    it); each Noisy Student iteration's pseudo-labelled set (made by rule pseudo_label, not prepare)."""
    datasets = plan.config["datasets"]
    for t in plan.vtab_tasks:
        datasets[f"vtab_{t.folder}"] = {"source": "vtab1k", "task": t.folder, "group": t.group,
                                       "label": t.paper, "size": plan.config["vtab"]["image_size"]}
    for (_m, up), spec in plan.released.items():
        datasets.setdefault(up, {"source": "released", "group": "upstream", "label": spec.get("label", up),
                                 "stands_for": spec.get("pretrained_on", spec.get("label", up)),
                                 "train": spec.get("examples", 0)})
    for it in plan.noisy_student:
        lab = datasets.get(it["labelled"], {})
        datasets.setdefault(it["dataset"], {
            "source": "noisy_student", "group": "upstream", "train": lab.get("train", 0),
            "label": f"{lab.get('label', it['labelled'])} + pseudo-labelled pool (NS iteration {it['iteration']})",
            "stands_for": "ImageNet + pseudo-labelled JFT-300M"})
