"""The recipe table of the report's "Departures from the paper" section (vit.report.departures): every
vit.train setting of this config that differs from the paper's recipe, with its source: Table 3
(pre-training), Table 4 (fine-tuning), App. B.1.2 (masked patch prediction), the BiT-HyperRule and App.
B.1.1's VTAB-1k protocol. Values that agree with the paper are left out; values the paper does not state
become a note. Also the comparison and formatting helpers the section shares.
"""
from __future__ import annotations

import dataclasses
import math

from vit import data
from vit.plan import Plan, recipes
from vit.train.config import Config

TV_TASKS = {"cifar10": "cifar10", "cifar100": "cifar100", "oxford_iiit_pet": "pets",
            "oxford_flowers102": "flowers102"}  # torchvision task -> Table 4 row
PRETRAIN_KEYS = ("optimizer", "beta2", "batch_size", "lr", "warmup_steps", "schedule", "weight_decay",
                 "grad_clip", "img_size", "epochs", "dropout")
FINETUNE_KEYS = ("optimizer", "momentum", "batch_size", "schedule", "weight_decay", "grad_clip", "resolutions",
                 "steps", "lr_grid", "dev_fraction")

ORIGINAL_AUGMENT = "inception_crop"  # the paper's code (vit_jax input_pipeline.py): inception crop, then a flip


def defaults() -> dict:
    """vit.train's Config defaults: what a run trains with for a setting its preset leaves out."""
    return {f.name: f.default for f in dataclasses.fields(Config) if f.default is not dataclasses.MISSING}


# ----------------------------------------------------------------------------- formatting


def same(ours, paper) -> bool:
    """Equal as settings: case-insensitive names, numbers by value, a tuple = any of the paper's runs
    (Table 3: ViT-L/16 for 7 or 14 epochs), a one-element list = its element."""
    if isinstance(paper, tuple):
        return any(same(ours, p) for p in paper)
    if isinstance(ours, list) or isinstance(paper, list):
        a, b = (v if isinstance(v, list) else [v] for v in (ours, paper))
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    a, b = _number(ours), _number(paper)
    if a is None or b is None:
        return str(ours).lower() == str(paper).lower()
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def _number(v) -> float | None:
    """v as a number, None for a name (PyYAML reads 1.3e6, without the exponent's sign, as a string)."""
    try:
        return None if v is None or isinstance(v, bool) else float(v)
    except ValueError:
        return None


def fmt(v) -> str:
    if isinstance(v, tuple):
        return " or ".join(map(fmt, v))
    if isinstance(v, list):
        return ", ".join(map(fmt, v))
    if v is None:
        return "none"
    if isinstance(v, (bool, str)):
        return str(v)
    if isinstance(v, int) or (float(v).is_integer() and abs(v) >= 1000):
        return f"{int(v):,}"
    return f"{v:g}"


def steps_text(n: int) -> str:
    return f"{fmt(n)} step{'' if n == 1 else 's'}"


# ----------------------------------------------------------------------------- paper names


def norm(name: str) -> str:
    """One spelling for a model name in the config, Table 2 and Table 3 (BiT-R50x1 = R50x1,
    R50x1+ViT-B/16 = R50+ViT-B/16, tf_efficientnet_l2 = EfficientNet-L2)."""
    name = name.lower().replace("_", "-")
    for prefix in ("bit-l-", "bit-m-", "bit-", "tf-"):
        name = name.removeprefix(prefix)
    return name.replace("r50x1+", "r50+")


def row_model(row_key: str) -> str:
    """The model of a Table 2 row key: ViT-L/16_JFT -> ViT-L/16, BiT-L_R152x4 -> R152x4."""
    head, _, tail = row_key.rpartition("_")
    return head if tail in ("JFT", "I21k") else tail


def _paper_model(plan: Plan, model: str) -> str:
    """The paper's name for a model: its own `name`, else that of the Table 2 row it stands in for."""
    spec = plan.config["models"][model]
    return spec.get("name") or (row_model(spec["paper_row"]) if spec.get("paper_row") else "")


def _table3_row(reference: dict, model: str, dataset: str | None) -> dict | None:
    for row in reference["pretrain_hparams"]["rows"]:
        names = [norm(n.strip()) for n in row["models"].split(",")]
        wildcard = any(n.startswith("vit-*") for n in names) and norm(model).startswith("vit-")
        if row["dataset"] == dataset and (norm(model) in names or wildcard):
            return row
    return None


def paper_task(plan: Plan, task: str) -> str | None:
    """The Table 4 row of a downstream task (imagenet, cifar10, ..., vtab), None for a stand-in."""
    d = plan.config["datasets"].get(task, {})
    if d.get("source") == "torchvision":
        return TV_TASKS.get(d.get("task"))
    return {"imagenet": "imagenet", "vtab1k": "vtab"}.get(d.get("source"))


# ----------------------------------------------------------------------------- recipe


def recipe(plan: Plan, reference: dict) -> list[str]:
    """Markdown lines: the table of the values that differ, its notes, and what the paper leaves unstated."""
    rows, notes, unstated = [], [], []
    if plan.pretrain_runs:
        rows += _pretrain_rows(plan, reference, notes, unstated)
    if plan.config.get("finetune"):
        rows += _finetune_rows(plan, reference, notes, unstated)
        rows += _hyperrule_rows(plan)
    if plan.config.get("vtab"):
        rows += _vtab_rows(plan, reference, unstated)
    out = (["| stage | setting | ours | paper | source |", "|:--|:--|:--|:--|:--|"]
           + [f"| {r['stage']} | {r['setting']} | {r['ours']} | {r['paper']} | {r['source']} |" for r in rows]
           if rows else ["No recipe value differs from the paper's Tables 3 and 4."])
    for note in notes:
        out += ["", note]
    if unstated:
        out += ["", f"Not stated in the paper, so not in the table: {'; '.join(unstated)}."]
    return out + [""]


def _merge(diffs: list[dict], units: list, where) -> list[dict]:
    """One table row per (stage, setting, ours, paper), whatever the paper's source: `where(units it holds
    for)` names the runs or tasks when not all of them."""
    merged: dict[tuple, dict] = {}
    for d in diffs:
        key = (d["stage"], d["setting"], fmt(d["ours"]), fmt(d["paper"]))
        m = merged.setdefault(key, {"units": [], "sources": []})
        m["units"].append(d["unit"])
        m["sources"] += [d["source"]] if d["source"] not in m["sources"] else []
    return [{"stage": stage + ("" if set(m["units"]) == set(units) else where(m["units"])), "setting": setting,
             "ours": ours, "paper": paper, "source": ", ".join(m["sources"])}
            for (stage, setting, ours, paper), m in merged.items()]


def _pretrain_paper(plan: Plan, reference: dict, model: str, up: str) -> tuple[dict, str, str]:
    """(the paper's values, their source, the Table 3 dataset or "" when no row) for one pre-training run."""
    ref = reference["pretrain_hparams"]
    common = ref["common"]
    if plan.self_supervised(model):  # sec. 4.6's recipe, not Table 3's; pre-trained at 224 px as all are
        ssl = ref["self_supervised_masked_patch"]
        return ({"optimizer": ssl["optimizer"], "batch_size": ssl["batch_size"], "lr": ssl["base_lr"],
                 "warmup_steps": ssl["warmup_steps"], "schedule": ssl["decay"], "epochs": ssl["approx_epochs"],
                 "img_size": common["resolution"]}, "App. B.1.2", ssl["dataset"])
    paper = {"optimizer": common["optimizer"], "beta2": common["adam_beta2"], "batch_size": common["batch_size"],
             "warmup_steps": common["warmup_steps"], "img_size": common["resolution"]}
    dataset = plan.config["datasets"].get(up, {}).get("stands_for")
    if dataset == "ImageNet":  # Table 3's caption: clipping at global norm 1 for the ImageNet runs only
        paper["grad_clip"] = common["grad_clip_global_norm"]["value"]
    row = _table3_row(reference, _paper_model(plan, model), dataset)
    if row is None:
        return paper, "Table 3", ""
    epochs = tuple(row["epochs"]) if isinstance(row["epochs"], list) else row["epochs"]
    paper.update(lr=row["base_lr"], schedule=row["decay"], weight_decay=row["weight_decay"], epochs=epochs)
    if plan.is_vit(model):
        paper["dropout"] = row["dropout"]
    return paper, "Table 3", row["dataset"]


def _pretrain_rows(plan: Plan, reference: dict, notes: list, unstated: list) -> list[dict]:
    runs, diffs, no_row, clipped = plan.pretrain_runs, [], {}, []
    for m, up in runs:
        paper, source, row = _pretrain_paper(plan, reference, m, up)
        ours = {**defaults(), **plan.pretrain_settings(m, up),
                "dropout": plan.model_spec(m).get("proj_drop_rate", 0.0)}
        if not row:
            no_row.setdefault(m, []).append(up)
        if "grad_clip" not in paper:
            clipped.append(ours["grad_clip"])
        for key in PRETRAIN_KEYS:
            moot = key == "beta2" and ours["optimizer"] != "adam"
            if key in paper and not moot and not same(ours[key], paper[key]):
                diffs.append({"stage": "pre-training", "setting": key, "ours": ours[key], "paper": paper[key],
                              "source": source, "unit": (m, up)})
    diffs.sort(key=lambda d: PRETRAIN_KEYS.index(d["setting"]))
    if no_row:
        notes.append(f"Table 3 has no row for {_runs_text(plan, no_row, runs)}: only its common values "
                     "(optimizer, batch size, warm-up, resolution) are compared there.")
    if clipped:
        unstated.append(f"pre-training gradient clipping at norm {fmt(sorted(set(clipped)))} on sets other than "
                        "ImageNet's (Table 3 states it for ImageNet only)")
    augment = plan.config['pretrain']['train'].get('augment', 'none')
    if augment != ORIGINAL_AUGMENT:  # the original code's inception crop + flip is no departure
        unstated.append(f"pre-training augmentation `{augment}` (the original code: inception crop + flip)")

    def where(got):  # "on <sets>" when it holds for every run on them, else the runs by model
        ups = dict.fromkeys(u for _, u in got)
        if {r for r in runs if r[1] in ups} == set(got):
            return " on " + ", ".join(plan.label(u) for u in ups)
        if len(ups) == 1:
            return f": {'; '.join(plan.model_label(m) for m, _ in got)} on {plan.label(got[0][1])}"
        by_model: dict[str, list[str]] = {}
        for m, u in got:
            by_model.setdefault(m, []).append(u)
        return ": " + _runs_text(plan, by_model, runs)
    return _merge(diffs, runs, where)


def _runs_text(plan: Plan, by_model: dict[str, list[str]], runs: list) -> str:
    """Models with the sets they ran on, the sets left out where the model ran on all of several."""
    parts = []
    for m, ups in by_model.items():
        everywhere = len(ups) > 1 and set(ups) == {u for mm, u in runs if mm == m}
        sets = ", ".join(plan.label(u) for u in ups)
        parts.append(plan.model_label(m) + ("" if everywhere else f" on {sets}"))
    return "; ".join(parts)


def _table4(common: dict) -> dict:
    """Table 4's values shared by every fine-tune, under vit.train's setting names."""
    return {"optimizer": common["optimizer"], "momentum": common["momentum"], "batch_size": common["batch_size"],
            "schedule": common["lr_decay"], "weight_decay": common["weight_decay"],
            "grad_clip": common["grad_clip_global_norm"], "resolutions": common["resolution"]}


def _finetune_rows(plan: Plan, reference: dict, notes: list, unstated: list) -> list[dict]:
    ft, ref = plan.config["finetune"], reference["finetune_hparams"]
    common = ref["common"]
    extra = ref["table2_imagenet_extras"]["resolution"]  # Table 2 fine-tunes ImageNet at 512 / 518 px
    diffs, no_row = [], {}
    for task in ft["tasks"]:
        own = ft.get("per_task", {}).get(task, {})
        ours = {**defaults(), **ft["train"], **own, "resolutions": own.get("resolutions", ft["resolutions"])}
        # no grid: the rates in use, finetune.train's and the models' own (finetune.per_model)
        rates = sorted({ours["lr"], *(m["lr"] for m in ft.get("per_model", {}).values() if "lr" in m)})
        ours["lr_grid"] = own.get("lr_grid", ft.get("lr_grid") or rates)
        # one learning rate: nothing to choose, so no dev split is held out
        ours["dev_fraction"] = own.get("dev_fraction", ft.get("dev_fraction")) if len(ours["lr_grid"]) > 1 else None
        row_key = paper_task(plan, task)
        paper = _table4(common)
        if row_key == "imagenet":
            paper["resolutions"] = (common["resolution"], *extra.values())
        row = ref["per_dataset"].get(row_key) if row_key else None
        if not row:
            no_row.setdefault((ours.get("steps", 0), fmt(ours["lr_grid"])), []).append(task)
        else:
            paper.update(steps=row["steps"], lr_grid=row.get("lr_grid", [row.get("lr")]))
            if "dev_split_fraction" in row:
                paper["dev_fraction"] = row["dev_split_fraction"]
        for key in FINETUNE_KEYS:
            moot = key == "momentum" and ours["optimizer"] != "sgd"
            if key in paper and not moot and not same(ours.get(key), paper[key]):
                diffs.append({"stage": "fine-tuning", "setting": key, "ours": ours.get(key), "paper": paper[key],
                              "source": "Table 4" if key != "resolutions" or row_key != "imagenet" else "Tables 2, 4",
                              "unit": task})
    diffs.sort(key=lambda d: FINETUNE_KEYS.index(d["setting"]))
    label = {t: plan.label(t) for t in ft["tasks"]}
    if no_row:
        notes.append("Table 4 has no row for the stand-in tasks, so their schedules are compared with none: "
                     + "; ".join(f"{', '.join(label[t] for t in tasks)}: {steps_text(n)}, lr {lr}"
                                 for (n, lr), tasks in no_row.items()) + ".")
    vj = ref["vit_jax_public_defaults"]
    augments = {}  # augmentation -> the tasks fine-tuned with it (finetune.per_task may set a task's own)
    for t in ft["tasks"]:
        augments.setdefault(ft.get("per_task", {}).get(t, {}).get("augment", ft["train"].get("augment", "none")),
                            []).append(label[t])
    used = "; ".join(f"`{a}`" + (f" on {', '.join(ts)}" if len(augments) > 1 else "") for a, ts in augments.items())
    unstated.append(f"fine-tuning warm-up {steps_text(ft['train'].get('warmup_steps', 0))} (the original code: "
                    f"{steps_text(vj['warmup_steps'])})")
    if set(augments) != {ORIGINAL_AUGMENT}:
        unstated.append(f"fine-tuning augmentation {used} (the original code: {vj['train_aug'].split(' -> ')[0]})")
    return _merge(diffs, ft["tasks"], lambda got: " on " + ", ".join(label[t] for t in got))


def train_examples(plan: Plan, task: str) -> int:
    """Examples of the split a task trains on, as the config states them: the BiT-HyperRule picks its
    schedule from it (vit.account.cost counts the same way)."""
    ft = plan.config["finetune"]
    split = ft.get("per_task", {}).get(task, {}).get("train_split", ft["train"].get("train_split", "train"))
    try:
        return data.split_size({"name": task, "splits": plan.stated_splits(task, split)}, split)
    except data.DataError:  # a split the config gives no count for: the stated train count
        return plan.config["datasets"].get(task, {}).get("train", 0)


def _hyperrule_rows(plan: Plan) -> list[dict]:
    """A preset's overrides of the BiT-HyperRule (finetune.hyperrule.train, .resolutions) against the rule."""
    hr = plan.config["finetune"].get("hyperrule", {})
    if not plan.hyperrule_runs:
        return []
    variant, tasks, diffs = hr.get("variant", "code"), plan.finetune_tasks, []
    source = f"BiT-HyperRule ({variant})"
    for task in tasks:
        n = train_examples(plan, task)
        small, big = recipes.bit_hyperrule(n, (32, 32), variant), recipes.bit_hyperrule(n, (224, 224), variant)
        for key, value in hr.get("train", {}).items():
            if key in big and not same(value, big[key]):
                diffs.append({"stage": "fine-tuning, BiT-HyperRule", "setting": key, "ours": value,
                              "paper": big[key], "source": source, "unit": task})
        if hr.get("resolutions") and not same(hr["resolutions"], (small["img_size"], big["img_size"])):
            diffs.append({"stage": "fine-tuning, BiT-HyperRule", "setting": "resolutions (by image size)",
                          "ours": hr["resolutions"], "paper": (small["img_size"], big["img_size"]),
                          "source": source, "unit": task})
    label = {t: plan.label(t) for t in tasks}
    return _merge(diffs, tasks, lambda got: " on " + ", ".join(label[t] for t in got))


def _vtab_rows(plan: Plan, reference: dict, unstated: list) -> list[dict]:
    """The VTAB-1k preset (config `vtab`): its settings and sweep against App. B.1.1's protocol."""
    vtab, ref = plan.config["vtab"], reference["finetune_hparams"]
    common, proto = ref["common"], ref["vtab_protocol"]
    ours = {**defaults(), **vtab["train"], "resolutions": vtab.get("resolution", 384)}
    ours["lr_grid"] = sorted({s.get("lr", ours["lr"]) for s in vtab["sweep"]}, reverse=True)
    ours["steps"] = sorted({s.get("steps", ours.get("steps", 0)) for s in vtab["sweep"]}, reverse=True)
    paper = {**_table4(common), "batch_size": proto["batch_size"], "resolutions": proto["resolution"]}
    rows = [{"stage": "fine-tuning (VTAB-1k)", "setting": key, "ours": fmt(ours[key]), "paper": fmt(paper[key]),
             "source": "Table 4, App. B.1.1"}
            for key in FINETUNE_KEYS if key in paper and not (key == "momentum" and ours["optimizer"] != "sgd")
            and not same(ours[key], paper[key])]
    # the sweep only has to hold the paper's choice (lr 0.01, 2500 steps) among its settings
    for key, chosen in (("lr_grid", proto["lr"]), ("steps", proto["steps"])):
        if not any(same(v, chosen) for v in ours[key]):
            rows.append({"stage": "fine-tuning (VTAB-1k), sweep", "setting": key, "ours": fmt(ours[key]),
                         "paper": fmt(chosen), "source": "App. B.1.1"})
    unstated.append(f"VTAB-1k warm-up {steps_text(vtab['train'].get('warmup_steps', 0))} (the original code: "
                    f"{steps_text(ref['vit_jax_public_defaults']['warmup_steps'])})")
    return rows
