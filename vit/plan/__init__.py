"""What a config runs, in one place: `load(config)` validates a config against its schema, fills its
defaults, adds the datasets that the config implies (VTAB-1k tasks, the upstreams of released weights,
Noisy Student's pseudo-labelled sets), checks its cross-references once, and returns a `Plan`. The
workflow (workflow/rules/common.smk), the cost estimate (vit.account.cost) and the report (vit.report)
read the plan, never the raw config. Plain dicts and functions, no torch, so that Snakemake parses the
workflow without importing it.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

LABEL_KEYS = ("label", "paper_row")  # model keys that only label a model in tables
POSEMB_INTERP = ("bicubic", "bilinear_corners")  # vit.models.resample_pos_embed's modes


def model_spec(config: dict, model: str) -> dict:
    """The model's spec for vit.models.create, without the keys that only label it."""
    return {k: v for k, v in config["models"][model].items() if k not in LABEL_KEYS}


def pretrain_runs(config: dict) -> list[tuple[str, str]]:
    """(model, upstream) pairs pre-trained here: pretrain.runs, then the Noisy Student students."""
    return ([(m, up) for m, ups in config.get("pretrain", {}).get("runs", {}).items() for up in ups]
            + [(it["student"], it["dataset"]) for it in noisy_student(config)])


def noisy_student(config: dict) -> list[dict]:
    """The Noisy Student iterations (config `noisy_student`; Xie et al. 2020): iteration i pseudo-labels
    the pool with its teacher into dataset `ns<i>_<labelled>` (labelled set + pseudo-labelled images,
    vit.data.pseudo_label) and pre-trains the student on it; the student is the next iteration's teacher.
    Iteration 1's teacher is a checkpoint of pretrain.runs."""
    ns = config.get("noisy_student")
    if not ns:
        return []
    labelled = ns["teacher"]["upstream"]
    teacher, out = (ns["teacher"]["model"], labelled), []
    for i in range(1, ns.get("iterations", 2) + 1):
        name = f"ns{i}_{labelled}"
        out.append({"iteration": i, "dataset": name, "teacher": teacher, "student": ns["student"],
                    "labelled": labelled, "pool": ns["pool"]})
        teacher = (ns["student"], name)
    return out


def released(config: dict) -> dict[tuple[str, str], dict]:
    """(model, upstream) -> released weights spec (pretrain.released), fine-tuned instead of pre-trained."""
    return {(m, up): spec for m, ups in config.get("pretrain", {}).get("released", {}).items()
            for up, spec in ups.items()}


def finetune_runs(config: dict) -> list[tuple[str, str]]:
    """(model, upstream) pairs whose fine-tuning grid runs: our checkpoints, released weights, and the
    from-scratch baselines (upstream "scratch")."""
    return (pretrain_runs(config) + list(released(config))
            + [(m, "scratch") for m in config.get("finetune", {}).get("from_scratch", [])])


def upstreams(config: dict) -> list[str]:
    """Upstream sets, pre-trained on here or behind released weights, smallest first."""
    pseudo = {it["dataset"] for it in noisy_student(config)}  # a student's set is not an upstream size
    names = {up for _, up in pretrain_runs(config) if up not in pseudo} | {up for _, up in released(config)}
    return sorted(names, key=lambda u: (config["datasets"][u].get("train", 0), u))


def pretrain_settings(config: dict, model: str, upstream: str) -> dict:
    """vit.train settings of one pre-training run: pretrain.train, the upstream's epochs, then the
    model's own values (pretrain.per_model: Table 3's per-model learning rates, epochs)."""
    pre = config["pretrain"]
    ns = {it["dataset"]: it for it in noisy_student(config)}
    own = pre.get("per_model", {}).get(model, {})
    if upstream in ns:  # a student: the labelled set's epochs, with the student's noise settings
        soft = {"soft_targets": True} if config["noisy_student"].get("labels") == "soft" else {}
        return {**pre["train"], "epochs": pre["epochs"][ns[upstream]["labelled"]], **own, **soft,
                **config["noisy_student"].get("train", {})}
    return {**pre["train"], "epochs": pre["epochs"][upstream], **own}


def stated_splits(config: dict, task: str, train_split: str) -> dict:
    """A task's split sizes as its config entry states them (datasets.<task>.train/val/test), before
    anything is prepared: `train` also counts whichever split the task trains on (Pets: trainval). What
    vit.account.cost and vit.report.departures hand to vit.data.split_size in place of a prepared manifest."""
    d = config.get("datasets", {}).get(task, {})
    counts = {k: d[k] for k in ("train", "val", "test") if d.get(k)}
    if "train" in counts:
        counts.update({name: d["train"] for name in (p.split("[")[0] for p in train_split.split("+"))
                       if name not in counts})
    return counts


def finetune_grid(config: dict) -> dict:
    """The vit.train.finetune settings shared by every fine-tuned checkpoint of the config (besides tasks)."""
    ft = config["finetune"]
    grid = {"tasks": ft["tasks"], "resolutions": ft["resolutions"], "seeds": config["seeds"]}
    grid.update({k: ft[k] for k in ("lr_grid", "dev_fraction", "per_task") if k in ft})
    return grid


def self_supervised(config: dict, model: str) -> bool:
    """Pre-trained without labels (pretrain.per_model objective other than classify; paper sec. 4.6)."""
    return config.get("pretrain", {}).get("per_model", {}).get(model, {}).get("objective", "classify") != "classify"


def is_vit(spec: dict) -> bool:
    """A plain ViT (patch tokens + learned position embeddings): what vit.evaluate.inspect can look into."""
    arch, name = spec.get("arch"), str(spec.get("name", ""))
    return (arch == "vit" or (arch == "paper" and name.startswith("ViT"))
            or (arch == "timm" and name.startswith(("vit_", "deit_")) and "_r26_" not in name and "_r50_" not in name))


def inspect_runs(config: dict) -> list[tuple[str, str]]:
    """(model, upstream) of every supervised ViT on its largest upstream set: the paper's Figs. 6-7 come
    from its biggest supervised pre-training (JFT-300M); ours from the largest set each ViT saw."""
    order = upstreams(config)
    largest: dict[str, str] = {}
    for model, up in pretrain_runs(config) + list(released(config)):
        if up not in order or self_supervised(config, model) or not is_vit(model_spec(config, model)):
            continue
        if order.index(up) >= order.index(largest.get(model, up)):
            largest[model] = up
    return sorted(largest.items())


def pretrain_resolution(config: dict, model: str, upstream: str) -> int:
    """The resolution a checkpoint was trained at (released weights: their `img_size`, 224 by default)."""
    spec = released(config).get((model, upstream))
    if spec is not None:
        return spec.get("img_size", 224)
    return pretrain_settings(config, model, upstream).get("img_size", 224)


def posemb_ablation_runs(config: dict) -> list[tuple[str, str, str]]:
    """(model, upstream, mode) of the resolution ablation (finetune.posemb_ablation: model -> upstreams):
    the same fine-tunes above the pre-training resolution with every other position-embedding
    interpolation mode than the main runs'."""
    ft = config.get("finetune", {})
    main = ft.get("train", {}).get("posemb_interp", "bicubic")
    return [(m, up, mode) for m, ups in ft.get("posemb_ablation", {}).items() for up in ups
            for mode in POSEMB_INTERP if mode != main]


def hyperrule_runs(config: dict) -> list[tuple[str, str]]:
    """(model, upstream) fine-tuned a second time with the BiT-HyperRule (finetune.hyperrule.runs):
    BiT's own recipe, behind Table 2's BiT row (App. B.1.1 runs ResNets with both setups)."""
    runs = config.get("finetune", {}).get("hyperrule", {}).get("runs", {})
    return [(m, up) for m, ups in runs.items() for up in ups]


def hyperrule_args(config: dict) -> dict:
    """vit.train.finetune settings of a HyperRule fine-tune besides --init: the main grid's tasks, seeds and
    finetune.train (splits, checkpointing), with the rule's schedule over them; finetune.hyperrule's
    `resolutions` replace the rule's resolution and its `train` settings override the rule's."""
    ft, hr = config["finetune"], config["finetune"]["hyperrule"]
    args = {"tasks": ft["tasks"], "seeds": config["seeds"], "recipe": "bit_hyperrule",
            "recipe_variant": hr.get("variant", "code"), "recipe_override": hr.get("train", {}), **ft["train"]}
    # a task's own splits still apply (Pets trains on trainval); its Table 4 schedule does not
    splits = {t: {k: v for k, v in s.items() if k.endswith("_split")} for t, s in ft.get("per_task", {}).items()}
    if any(splits.values()):
        args["per_task"] = {t: s for t, s in splits.items() if s}
    if hr.get("resolutions"):
        args["resolutions"] = hr["resolutions"]
    return args


@dataclass(frozen=True)
class Plan:
    """A config resolved by `load`: `config` is the config with its defaults filled and the datasets it
    implies added (read it, never change it); the run lists and settings below are derived from it."""
    config: dict

    @property
    def experiment(self) -> bool:
        """Whether the config runs the pre-train -> fine-tune grid (else only VTAB-1k or benchmarks)."""
        return "pretrain" in self.config and "finetune" in self.config

    def dataset(self, name: str) -> dict:
        return self.config["datasets"][name]

    def label(self, dataset: str) -> str:
        """A dataset's name in tables."""
        return self.config["datasets"].get(dataset, {}).get("label", dataset)

    def model_label(self, model: str) -> str:
        """A model's name in tables."""
        return self.config["models"].get(model, {}).get("label", model)

    # --- what runs (delegating for now; see the module functions)
    @property
    def pretrain_runs(self) -> list[tuple[str, str]]:
        return pretrain_runs(self.config)

    @property
    def finetune_runs(self) -> list[tuple[str, str]]:
        return finetune_runs(self.config)

    @property
    def released(self) -> dict[tuple[str, str], dict]:
        return released(self.config)

    @property
    def noisy_student(self) -> list[dict]:
        return noisy_student(self.config)

    @property
    def upstreams(self) -> list[str]:
        return upstreams(self.config)

    @property
    def inspect_runs(self) -> list[tuple[str, str]]:
        return inspect_runs(self.config)

    @property
    def posemb_ablation_runs(self) -> list[tuple[str, str, str]]:
        return posemb_ablation_runs(self.config)

    @property
    def hyperrule_runs(self) -> list[tuple[str, str]]:
        return hyperrule_runs(self.config)

    def model_spec(self, model: str) -> dict:
        return model_spec(self.config, model)

    def pretrain_settings(self, model: str, upstream: str) -> dict:
        return pretrain_settings(self.config, model, upstream)

    def pretrain_resolution(self, model: str, upstream: str) -> int:
        return pretrain_resolution(self.config, model, upstream)

    def finetune_grid(self) -> dict:
        return finetune_grid(self.config)

    def hyperrule_args(self) -> dict:
        return hyperrule_args(self.config)

    def self_supervised(self, model: str) -> bool:
        return self_supervised(self.config, model)

    def stated_splits(self, task: str, train_split: str) -> dict:
        return stated_splits(self.config, task, train_split)


def load(config: dict) -> Plan:
    """The plan of a config (a dict as read from YAML; not changed)."""
    resolved = copy.deepcopy(config)
    resolved.setdefault("datasets", {})
    resolved.setdefault("models", {})
    _add_implied_datasets(resolved)
    return Plan(resolved)


def _add_implied_datasets(config: dict) -> None:
    """Dataset entries that the config implies without naming them under `datasets:`."""
    datasets = config["datasets"]
    if "vtab" in config:  # every VTAB-1k task becomes a dataset prepared from {data_root}/vtab-1k
        from vit.plan.tasks import vtab_tasks

        for t in vtab_tasks(config):
            datasets[f"vtab_{t.folder}"] = {"source": "vtab1k", "task": t.folder, "group": t.group,
                                           "label": t.paper, "size": config["vtab"]["image_size"]}
    # released weights (pretrain.released) are fine-tuned like our own checkpoints; their upstream
    # becomes a dataset entry (never prepared) so that tables can label it
    for (_m, up), spec in released(config).items():
        datasets.setdefault(up, {"source": "released", "group": "upstream", "label": spec.get("label", up),
                                 "stands_for": spec.get("pretrained_on", spec.get("label", up)),
                                 "train": spec.get("examples", 0)})
    # Noisy Student: each iteration's pseudo-labelled set (made by rule pseudo_label, not prepare)
    for it in noisy_student(config):
        lab = datasets.get(it["labelled"], {})
        datasets.setdefault(it["dataset"], {
            "source": "noisy_student", "group": "upstream", "train": lab.get("train", 0),
            "label": f"{lab.get('label', it['labelled'])} + pseudo-labelled pool (NS iteration {it['iteration']})",
            "stands_for": "ImageNet + pseudo-labelled JFT-300M"})
