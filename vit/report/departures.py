"""The report's "Departures from the paper" section, generated from the config and the paper's facts
(vit/reference.yaml) so that it cannot drift from what ran: the stand-ins for the paper's data, weights
and models, the position-embedding interpolation, and every recipe value that differs from Table 3
(pre-training) and Table 4 (fine-tuning). Values that agree with the paper are left out.

`check` is torch-free (the workflow calls it while parsing); `departures` reads vit.train's defaults
for the settings a preset leaves out. It reads a preset file as written and a workflow's config after
workflow/rules/common.smk added its entries (released upstreams and Noisy Student sets as datasets).
"""
from __future__ import annotations

import dataclasses
import functools
import math
import re

from vit import data, plan
from vit.plan import recipes
from vit.cli import ConfigError

# ImageNet-21k releases and their class counts: the paper's "21k classes, 14M images" fits fall11
RELEASES = {"fall11": 21_841, "winter21": 19_167}
IMAGE_SOURCES = ("vtab1k", "imagenet", "imagefolder", "torchvision")  # real images (vit.data.prepare)
TV_TASKS = {"cifar10": "cifar10", "cifar100": "cifar100", "oxford_iiit_pet": "pets",
            "oxford_flowers102": "flowers102"}  # torchvision task -> Table 4 row
PRETRAIN_KEYS = ("optimizer", "beta2", "batch_size", "lr", "warmup_steps", "schedule", "weight_decay",
                 "grad_clip", "img_size", "epochs", "dropout")
FINETUNE_KEYS = ("optimizer", "momentum", "batch_size", "schedule", "weight_decay", "grad_clip", "resolutions",
                 "steps", "lr_grid", "dev_fraction")


def check(config: dict) -> None:
    """An ImageNet-21k release that contradicts the class count: the schema cannot cross-check them."""
    for name, d in config.get("datasets", {}).items():
        release, classes = d.get("release"), d.get("classes")
        if release is None:
            continue
        if release not in RELEASES:
            raise ConfigError(f"datasets.{name}.release={release!r}: expected one of {', '.join(RELEASES)}")
        if classes is not None and classes != RELEASES[release]:
            other = [r for r, n in RELEASES.items() if n == classes]
            raise ConfigError(f"datasets.{name}: release {release} has {RELEASES[release]:,} classes, not "
                              f"classes: {classes}; set classes: {RELEASES[release]}"
                              + (f" or release: {other[0]}" if other else ""))


def departures(config: dict, reference: dict) -> list[str]:
    """Markdown lines of the section: Data, Weights, Models, Position embeddings, then the Recipe table."""
    check(config)
    lines = ["## Departures from the paper", "",
             "Generated from this run's config and the paper's facts in `vit/reference.yaml` (`vit.report.departures`); "
             "the recipe table leaves out the values that agree with the paper.", ""]
    for title, body in (("Data", _data(config, reference)), ("Weights", _weights(config, reference)),
                        ("Models", _models(config, reference)),
                        ("Position embeddings", _posemb(config, reference))):
        if body:
            lines += [f"**{title}**", "", *body, ""]
    return lines + ["**Recipe**", "", *_recipe(config, reference)]


@functools.cache
def _defaults() -> dict:
    """vit.train.Config's defaults: what a run trains with for a setting its preset leaves out."""
    from vit.train.loop import Config

    return {f.name: f.default for f in dataclasses.fields(Config) if f.default is not dataclasses.MISSING}


# ----------------------------------------------------------------------------- formatting


def _same(ours, paper) -> bool:
    """Equal as settings: case-insensitive names, numbers by value, a tuple = any of the paper's runs
    (Table 3: ViT-L/16 for 7 or 14 epochs), a one-element list = its element."""
    if isinstance(paper, tuple):
        return any(_same(ours, p) for p in paper)
    if isinstance(ours, list) or isinstance(paper, list):
        a, b = (v if isinstance(v, list) else [v] for v in (ours, paper))
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
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


def _fmt(v) -> str:
    if isinstance(v, tuple):
        return " or ".join(map(_fmt, v))
    if isinstance(v, list):
        return ", ".join(map(_fmt, v))
    if v is None:
        return "none"
    if isinstance(v, (bool, str)):
        return str(v)
    if isinstance(v, int) or (float(v).is_integer() and abs(v) >= 1000):
        return f"{int(v):,}"
    return f"{v:g}"


def _steps(n: int) -> str:
    return f"{_fmt(n)} step{'' if n == 1 else 's'}"


def _approx(n: float) -> str:
    """The paper's rounded sizes: 303M, 14M, 1.3M, 21k, 1,000."""
    n = float(n)
    if n >= 1e6:
        return f"{n / 1e6:g}M"
    return f"{n / 1e3:g}k" if n >= 1e4 else f"{int(n):,}"


def _set_label(config: dict, up: str) -> str:
    d = config.get("datasets", {}).get(up)
    if d:
        return d.get("label", up)
    ns = {it["dataset"]: it for it in plan.noisy_student(config)}
    if up in ns:  # a raw preset: common.smk has not added the pseudo-labelled set yet
        return f"{_set_label(config, ns[up]['labelled'])} + pseudo-labels (NS iteration {ns[up]['iteration']})"
    for (_, u), spec in plan.released(config).items():
        if u == up:
            return spec.get("label", up)
    return up


def _model_label(config: dict, model: str) -> str:
    return config["models"][model].get("label", model)


# ----------------------------------------------------------------------------- paper names


def _norm(name: str) -> str:
    """One spelling for a model name in the config, Table 2 and Table 3 (BiT-R50x1 = R50x1,
    R50x1+ViT-B/16 = R50+ViT-B/16, tf_efficientnet_l2 = EfficientNet-L2)."""
    name = name.lower().replace("_", "-")
    for prefix in ("bit-l-", "bit-m-", "bit-", "tf-"):
        name = name.removeprefix(prefix)
    return name.replace("r50x1+", "r50+")


def _row_model(row_key: str) -> str:
    """The model of a Table 2 row key: ViT-L/16_JFT -> ViT-L/16, BiT-L_R152x4 -> R152x4."""
    head, _, tail = row_key.rpartition("_")
    return head if tail in ("JFT", "I21k") else tail


def _row_text(reference: dict, row_key: str) -> str:
    """ViT-L/16_JFT -> "ViT-L/16 on JFT-300M"; BiT-L_R152x4 -> "BiT-L R152x4 on JFT-300M"."""
    head, _, tail = row_key.rpartition("_")
    name = head if tail in ("JFT", "I21k") else row_key.replace("_", " ")
    pre = reference["table2"]["models"].get(row_key, {}).get("pretrain")
    return f"{name} on {pre}" if pre else name


def _paper_model(config: dict, model: str) -> str:
    """The paper's name for a model: its own `name`, else that of the Table 2 row it stands in for."""
    spec = config["models"][model]
    return spec.get("name") or (_row_model(spec["paper_row"]) if spec.get("paper_row") else "")


def _table3_row(reference: dict, model: str, dataset: str | None) -> dict | None:
    for row in reference["pretrain_hparams"]["rows"]:
        names = [_norm(n.strip()) for n in row["models"].split(",")]
        wildcard = any(n.startswith("vit-*") for n in names) and _norm(model).startswith("vit-")
        if row["dataset"] == dataset and (_norm(model) in names or wildcard):
            return row
    return None


def _paper_task(config: dict, task: str) -> str | None:
    """The Table 4 row of a downstream task (imagenet, cifar10, ..., vtab), None for a stand-in."""
    d = config.get("datasets", {}).get(task, {})
    if d.get("source") == "torchvision":
        return TV_TASKS.get(d.get("task"))
    return {"imagenet": "imagenet", "vtab1k": "vtab"}.get(d.get("source"))


# ----------------------------------------------------------------------------- sections


def _data(config: dict, reference: dict) -> list[str]:
    datasets, paper_sets = config.get("datasets", {}), reference["pretrain_hparams"]["datasets"]
    pseudo = {it["dataset"] for it in plan.noisy_student(config)}
    ups = dict.fromkeys(u for _, u in plan.pretrain_runs(config) if u not in pseudo)
    lines = []
    for up in sorted(ups, key=lambda u: (datasets.get(u, {}).get("train", 0), u)):
        d = datasets.get(up, {})
        paper = d.get("stands_for")
        size = ", ".join(f"{d[k]:,} {what}" for k, what in (("train", "training images"), ("classes", "classes"))
                         if k in d)
        ours = f"{d.get('label', up)} (`{up}`, source `{d.get('source', '?')}`{': ' + size if size else ''})"
        if not paper:
            lines.append(f"- {ours}: stands for no paper set; name it in datasets.{up}.stands_for")
            continue
        facts = paper_sets.get(paper)
        theirs = f"{paper} ({_approx(facts['images'])} images, {_approx(facts['classes'])} classes)" if facts else paper
        real = d.get("source") in IMAGE_SOURCES and paper != "JFT-300M"
        if real and paper == "ImageNet-21k":
            rel = d.get("release")
            classes = d.get("classes", RELEASES.get(rel))
            rel = (f"release {rel}" if rel else f"release not stated: set datasets.{up}.release (fall11: "
                   f"{RELEASES['fall11']:,} classes, winter21: {RELEASES['winter21']:,})")
            size = ", ".join([f"{classes:,} classes"] * bool(classes)
                             + [f"{d['train']:,} training images"] * ("train" in d))
            lines.append(f"- {d.get('label', up)} (`{up}`, source `{d['source']}`) is ImageNet-21k itself, {rel}"
                         f"{': ' + size if size else ''}; the paper names no release ({_approx(facts['classes'])} "
                         f"classes, {_approx(facts['images'])} images)")
        elif real:
            lines.append(f"- {ours} is {theirs} itself")
        else:
            lines.append(f"- {ours} stands in for {theirs}" + (", which is not public" if paper == "JFT-300M" else ""))
    ns = config.get("noisy_student")
    if ns:
        facts = reference["baselines"]["NoisyStudent"]
        pool = datasets.get(ns["pool"], {})
        jft = _approx(paper_sets["JFT-300M"]["images"])
        lines.append(f"- Noisy Student: `{ns['pool']}` ({pool.get('train', 0):,} images, labels never read) is the "
                     f"unlabelled pool in place of JFT-300M's {jft} images, "
                     f"{_set_label(config, ns['teacher']['upstream'])} the labelled set in place of ImageNet"
                     + _ns_setting("confidence threshold", ns.get("threshold", 0.3),
                                   facts["data_filtering"]["confidence_threshold"])
                     + _ns_setting("iterations", ns.get("iterations", 2), facts["iterations"]["value"]))
    tasks = config.get("finetune", {}).get("tasks", [])
    if tasks:
        stand_ins = [datasets.get(t, {}).get("label", t) for t in tasks if _paper_task(config, t) is None]
        own = [datasets.get(t, {}).get("label", t) for t in tasks if _paper_task(config, t) is not None]
        if stand_ins:
            lines.append(f"- Downstream: {', '.join(stand_ins)} are stand-ins, not the paper's tasks (ImageNet, "
                         "CIFAR-10/100, Pets, Flowers-102 and the 19 VTAB-1k tasks)")
        if own:
            lines.append(f"- Downstream: the paper's own {', '.join(own)}")
    if "vtab" in config:
        total = len(reference["vtab_tasks"]["tasks"])
        n = len(config["vtab"].get("tasks") or reference["vtab_tasks"]["tasks"])
        lines.append(f"- Downstream: {'the' if n == total else f'{n} of the'} paper's {total} VTAB-1k tasks")
    return lines


def _ns_setting(name: str, ours, paper) -> str:
    return "" if _same(ours, paper) else f"; {name} {_fmt(ours)} (NS: {_fmt(paper)})"


def _weights(config: dict, reference: dict) -> list[str]:
    lines, matching = [], []
    for (m, up), spec in plan.released(config).items():
        mspec, row = config["models"][m], config["models"][m].get("paper_row")
        on = spec.get("pretrained_on")
        ours = (f"{mspec.get('label', m)}: released `{spec['weights']}`, pre-trained on "
                + (on or f"? (set pretrain.released.{m}.{up}.pretrained_on)"))
        if row not in reference["table2"]["models"]:
            lines.append(f"- {ours}; no Table 2 row (set models.{m}.paper_row)")
            continue
        same_model = _norm(mspec.get("name", "")) == _norm(_row_model(row))
        same_data = _same(on or "", reference["table2"]["models"][row]["pretrain"])
        if same_model and same_data:
            matching.append(f"{mspec.get('label', m)} (`{spec['weights']}`)")
        elif same_data:
            lines.append(f"- {ours}; Table 2 has no {mspec.get('name', m)} row: compared with its "
                         f"{_row_text(reference, row)}")
        else:
            lines.append(f"- {ours}; stands in for Table 2's {_row_text(reference, row)}"
                         + (": BiT-L's weights are not public" if row.startswith("BiT-L") else
                            ": those weights are not public"))
    if matching:
        lines.append(f"- Released weights of Table 2's own model and pre-training set: {', '.join(matching)}")
    vtab = config.get("vtab")
    if vtab:
        row = vtab.get("paper_row")
        lines.append(f"- Fine-tunes `{vtab['checkpoint']}` (model `{vtab['model']}`), pre-trained outside this config; "
                     + (f"compared with Table 9's {row} row" if row else "no Table 9 row (set vtab.paper_row)"))
    elif not lines and not matching and plan.pretrain_runs(config):
        lines.append("- None released: every checkpoint is pre-trained here")
    return lines


def _models(config: dict, reference: dict) -> list[str]:
    used = dict.fromkeys(m for m, _ in plan.finetune_runs(config))
    by_row: dict[str, list[str]] = {}
    named, lines = [], []
    for m in used:
        spec = config["models"][m]
        if spec.get("name"):
            named.append(spec.get("label", m))
        elif spec.get("paper_row"):
            by_row.setdefault(spec["paper_row"], []).append(spec.get("label", m))
        elif plan.self_supervised(config, m):
            ssl = reference["pretrain_hparams"]["self_supervised_masked_patch"]
            lines.append(f"- {spec.get('label', m)} stands in for the paper's self-supervised {ssl['model']} "
                         f"(masked patch prediction on {ssl['dataset']}, sec. 4.6)")
        else:
            lines.append(f"- {spec.get('label', m)}: no paper counterpart (set models.{m}.paper_row)")
    lines = [f"- {'; '.join(labels)} stand{'s' if len(labels) == 1 else ''} in for Table 2's "
             f"{_row_text(reference, row)}" for row, labels in by_row.items()] + lines
    if named:
        lines.append(f"- The paper's architectures: {', '.join(named)}")
    return lines


def _posemb(config: dict, reference: dict) -> list[str]:
    stage = config.get("finetune") or config.get("vtab")
    if not stage:
        return []
    mode = stage.get("train", {}).get("posemb_interp", _defaults()["posemb_interp"])
    jax, timm = reference["pos_embed_interpolation"]["vit_jax"], reference["pos_embed_interpolation"]["timm"]
    order = re.search(r"order=\d", jax["method"])
    original = (f"`{jax['method'].split('(')[0]}`{', ' + order.group() if order else ''}, "
                f"{jax['corner_alignment'].split(' (')[0]}")
    if mode == "bilinear_corners":
        lines = [f"- Resampled with `bilinear_corners`, as the original code: {original}"]
    else:
        lines = [f"- Resampled with `{mode}` (timm's {timm['signature_defaults']['interpolation']}, antialiased, "
                 f"align_corners={timm['align_corners']}) instead of the original code's corner-aligned linear "
                 f"zoom ({original}; our `bilinear_corners`)"]
    ablation = plan.posemb_ablation_runs(config)
    if ablation:
        runs = ", ".join(f"{_model_label(config, m)} from {_set_label(config, up)}" for m, up, _ in ablation)
        lines.append(f"- The resolution ablation repeats {runs} with `{ablation[0][2]}`")
    return lines


# ----------------------------------------------------------------------------- recipe


def _recipe(config: dict, reference: dict) -> list[str]:
    rows, notes, unstated = [], [], []
    if plan.pretrain_runs(config):
        rows += _pretrain_rows(config, reference, notes, unstated)
    if config.get("finetune"):
        rows += _finetune_rows(config, reference, notes, unstated)
        rows += _hyperrule_rows(config)
    if config.get("vtab"):
        rows += _vtab_rows(config, reference, unstated)
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
        key = (d["stage"], d["setting"], _fmt(d["ours"]), _fmt(d["paper"]))
        m = merged.setdefault(key, {"units": [], "sources": []})
        m["units"].append(d["unit"])
        m["sources"] += [d["source"]] if d["source"] not in m["sources"] else []
    return [{"stage": stage + ("" if set(m["units"]) == set(units) else where(m["units"])), "setting": setting,
             "ours": ours, "paper": paper, "source": ", ".join(m["sources"])}
            for (stage, setting, ours, paper), m in merged.items()]


def _pretrain_paper(config: dict, reference: dict, model: str, up: str) -> tuple[dict, str, str]:
    """(the paper's values, their source, the Table 3 dataset or "" when no row) for one pre-training run."""
    ref = reference["pretrain_hparams"]
    common = ref["common"]
    if plan.self_supervised(config, model):  # sec. 4.6's recipe, not Table 3's; pre-trained at 224 px as all are
        ssl = ref["self_supervised_masked_patch"]
        return ({"optimizer": ssl["optimizer"], "batch_size": ssl["batch_size"], "lr": ssl["base_lr"],
                 "warmup_steps": ssl["warmup_steps"], "schedule": ssl["decay"], "epochs": ssl["approx_epochs"],
                 "img_size": common["resolution"]}, "App. B.1.2", ssl["dataset"])
    paper = {"optimizer": common["optimizer"], "beta2": common["adam_beta2"], "batch_size": common["batch_size"],
             "warmup_steps": common["warmup_steps"], "img_size": common["resolution"]}
    dataset = config.get("datasets", {}).get(up, {}).get("stands_for")
    if dataset == "ImageNet":  # Table 3's caption: clipping at global norm 1 for the ImageNet runs only
        paper["grad_clip"] = common["grad_clip_global_norm"]["value"]
    row = _table3_row(reference, _paper_model(config, model), dataset)
    if row is None:
        return paper, "Table 3", ""
    epochs = tuple(row["epochs"]) if isinstance(row["epochs"], list) else row["epochs"]
    paper.update(lr=row["base_lr"], schedule=row["decay"], weight_decay=row["weight_decay"], epochs=epochs)
    if plan.is_vit(plan.model_spec(config, model)):
        paper["dropout"] = row["dropout"]
    return paper, "Table 3", row["dataset"]


def _pretrain_rows(config: dict, reference: dict, notes: list, unstated: list) -> list[dict]:
    runs, diffs, no_row, clipped = plan.pretrain_runs(config), [], {}, []
    for m, up in runs:
        paper, source, row = _pretrain_paper(config, reference, m, up)
        ours = {**_defaults(), **plan.pretrain_settings(config, m, up),
                "dropout": config["models"][m].get("proj_drop_rate", 0.0)}
        if not row:
            no_row.setdefault(m, []).append(up)
        if "grad_clip" not in paper:
            clipped.append(ours["grad_clip"])
        for key in PRETRAIN_KEYS:
            moot = key == "beta2" and ours["optimizer"] != "adam"
            if key in paper and not moot and not _same(ours[key], paper[key]):
                diffs.append({"stage": "pre-training", "setting": key, "ours": ours[key], "paper": paper[key],
                              "source": source, "unit": (m, up)})
    diffs.sort(key=lambda d: PRETRAIN_KEYS.index(d["setting"]))
    if no_row:
        notes.append(f"Table 3 has no row for {_runs_text(config, no_row, runs)}: only its common values "
                     "(optimizer, batch size, warm-up, resolution) are compared there.")
    if clipped:
        unstated.append(f"pre-training gradient clipping at norm {_fmt(sorted(set(clipped)))} on sets other than "
                        "ImageNet's (Table 3 states it for ImageNet only)")
    unstated.append(f"pre-training augmentation `{config['pretrain']['train'].get('augment', 'none')}`")

    def where(got):  # "on <sets>" when it holds for every run on them, else the runs by model
        ups = dict.fromkeys(u for _, u in got)
        if {r for r in runs if r[1] in ups} == set(got):
            return " on " + ", ".join(_set_label(config, u) for u in ups)
        if len(ups) == 1:
            return f": {'; '.join(_model_label(config, m) for m, _ in got)} on {_set_label(config, got[0][1])}"
        by_model: dict[str, list[str]] = {}
        for m, u in got:
            by_model.setdefault(m, []).append(u)
        return ": " + _runs_text(config, by_model, runs)
    return _merge(diffs, runs, where)


def _runs_text(config: dict, by_model: dict[str, list[str]], runs: list) -> str:
    """Models with the sets they ran on, the sets left out where the model ran on all of several."""
    parts = []
    for m, ups in by_model.items():
        everywhere = len(ups) > 1 and set(ups) == {u for mm, u in runs if mm == m}
        sets = ", ".join(_set_label(config, u) for u in ups)
        parts.append(_model_label(config, m) + ("" if everywhere else f" on {sets}"))
    return "; ".join(parts)


def _table4(common: dict) -> dict:
    """Table 4's values shared by every fine-tune, under vit.train's setting names."""
    return {"optimizer": common["optimizer"], "momentum": common["momentum"], "batch_size": common["batch_size"],
            "schedule": common["lr_decay"], "weight_decay": common["weight_decay"],
            "grad_clip": common["grad_clip_global_norm"], "resolutions": common["resolution"]}


def _finetune_rows(config: dict, reference: dict, notes: list, unstated: list) -> list[dict]:
    ft, ref = config["finetune"], reference["finetune_hparams"]
    common = ref["common"]
    extra = ref["table2_imagenet_extras"]["resolution"]  # Table 2 fine-tunes ImageNet at 512 / 518 px
    diffs, no_row = [], {}
    for task in ft["tasks"]:
        own = ft.get("per_task", {}).get(task, {})
        ours = {**_defaults(), **ft["train"], **own, "resolutions": own.get("resolutions", ft["resolutions"])}
        ours["lr_grid"] = own.get("lr_grid", ft.get("lr_grid") or [ours["lr"]])
        # one learning rate: nothing to choose, so no dev split is held out
        ours["dev_fraction"] = own.get("dev_fraction", ft.get("dev_fraction")) if len(ours["lr_grid"]) > 1 else None
        row_key = _paper_task(config, task)
        paper = _table4(common)
        if row_key == "imagenet":
            paper["resolutions"] = (common["resolution"], *extra.values())
        row = ref["per_dataset"].get(row_key) if row_key else None
        if not row:
            no_row.setdefault((ours.get("steps", 0), _fmt(ours["lr_grid"])), []).append(task)
        else:
            paper.update(steps=row["steps"], lr_grid=row.get("lr_grid", [row.get("lr")]))
            if "dev_split_fraction" in row:
                paper["dev_fraction"] = row["dev_split_fraction"]
        for key in FINETUNE_KEYS:
            moot = key == "momentum" and ours["optimizer"] != "sgd"
            if key in paper and not moot and not _same(ours.get(key), paper[key]):
                diffs.append({"stage": "fine-tuning", "setting": key, "ours": ours.get(key), "paper": paper[key],
                              "source": "Table 4" if key != "resolutions" or row_key != "imagenet" else "Tables 2, 4",
                              "unit": task})
    diffs.sort(key=lambda d: FINETUNE_KEYS.index(d["setting"]))
    label = {t: config.get("datasets", {}).get(t, {}).get("label", t) for t in ft["tasks"]}
    if no_row:
        notes.append("Table 4 has no row for the stand-in tasks, so their schedules are compared with none: "
                     + "; ".join(f"{', '.join(label[t] for t in tasks)}: {_steps(steps)}, lr {lr}"
                                 for (steps, lr), tasks in no_row.items()) + ".")
    vj = ref["vit_jax_public_defaults"]
    unstated += [f"fine-tuning warm-up {_steps(ft['train'].get('warmup_steps', 0))} (the original code: "
                 f"{_steps(vj['warmup_steps'])})",
                 f"fine-tuning augmentation `{ft['train'].get('augment', 'none')}` (the original code: "
                 f"{vj['train_aug'].split(' -> ')[0]})"]
    return _merge(diffs, ft["tasks"], lambda got: " on " + ", ".join(label[t] for t in got))


def _train_examples(config: dict, task: str) -> int:
    """Examples of the split a task trains on, as the config states them: the BiT-HyperRule picks its
    schedule from it (vit.account.cost counts the same way)."""
    ft = config["finetune"]
    split = ft.get("per_task", {}).get(task, {}).get("train_split", ft["train"].get("train_split", "train"))
    try:
        return data.split_size({"name": task, "splits": plan.stated_splits(config, task, split)}, split)
    except data.DataError:  # a split the config gives no count for: the stated train count
        return config.get("datasets", {}).get(task, {}).get("train", 0)


def _hyperrule_rows(config: dict) -> list[dict]:
    """A preset's overrides of the BiT-HyperRule (finetune.hyperrule.train, .resolutions) against the rule."""
    hr = config["finetune"].get("hyperrule", {})
    if not plan.hyperrule_runs(config):
        return []
    variant, tasks, diffs = hr.get("variant", "code"), config["finetune"]["tasks"], []
    source = f"BiT-HyperRule ({variant})"
    for task in tasks:
        n = _train_examples(config, task)
        small, big = recipes.bit_hyperrule(n, (32, 32), variant), recipes.bit_hyperrule(n, (224, 224), variant)
        for key, value in hr.get("train", {}).items():
            if key in big and not _same(value, big[key]):
                diffs.append({"stage": "fine-tuning, BiT-HyperRule", "setting": key, "ours": value,
                              "paper": big[key], "source": source, "unit": task})
        if hr.get("resolutions") and not _same(hr["resolutions"], (small["img_size"], big["img_size"])):
            diffs.append({"stage": "fine-tuning, BiT-HyperRule", "setting": "resolutions (by image size)",
                          "ours": hr["resolutions"], "paper": (small["img_size"], big["img_size"]),
                          "source": source, "unit": task})
    label = {t: config.get("datasets", {}).get(t, {}).get("label", t) for t in tasks}
    return _merge(diffs, tasks, lambda got: " on " + ", ".join(label[t] for t in got))


def _vtab_rows(config: dict, reference: dict, unstated: list) -> list[dict]:
    """The VTAB-1k preset (config `vtab`): its settings and sweep against App. B.1.1's protocol."""
    vtab, ref = config["vtab"], reference["finetune_hparams"]
    common, proto = ref["common"], ref["vtab_protocol"]
    ours = {**_defaults(), **vtab["train"], "resolutions": vtab.get("resolution", 384)}
    ours["lr_grid"] = sorted({s.get("lr", ours["lr"]) for s in vtab["sweep"]}, reverse=True)
    ours["steps"] = sorted({s.get("steps", ours.get("steps", 0)) for s in vtab["sweep"]}, reverse=True)
    paper = {**_table4(common), "batch_size": proto["batch_size"], "resolutions": proto["resolution"]}
    rows = [{"stage": "fine-tuning (VTAB-1k)", "setting": key, "ours": _fmt(ours[key]), "paper": _fmt(paper[key]),
             "source": "Table 4, App. B.1.1"}
            for key in FINETUNE_KEYS if key in paper and not (key == "momentum" and ours["optimizer"] != "sgd")
            and not _same(ours[key], paper[key])]
    # the sweep only has to hold the paper's choice (lr 0.01, 2500 steps) among its settings
    for key, chosen in (("lr_grid", proto["lr"]), ("steps", proto["steps"])):
        if not any(_same(v, chosen) for v in ours[key]):
            rows.append({"stage": "fine-tuning (VTAB-1k), sweep", "setting": key, "ours": _fmt(ours[key]),
                         "paper": _fmt(chosen), "source": "App. B.1.1"})
    unstated.append(f"VTAB-1k warm-up {_steps(vtab['train'].get('warmup_steps', 0))} (the original code: "
                    f"{_steps(ref['vit_jax_public_defaults']['warmup_steps'])})")
    return rows
