"""The report's result tables, as DataFrames ready for Markdown and HTML, and the cell format they share:
top-1 as mean ± sd over fine-tuning seeds."""
from __future__ import annotations

import pandas as pd

from vit.plan import Plan, recipes
from vit.report.summary import label

GROUPS = ("all", "natural", "specialized", "structured")


def fmt(values: pd.Series) -> str:
    """mean ± sd (n) of a group's values."""
    if values.empty:
        return "–"
    sd = values.std(ddof=1) if len(values) > 1 else float("nan")
    return f"{values.mean():.1f} ± {sd:.1f}" if len(values) > 1 else f"{values.mean():.1f}"


def task_cells(g: pd.DataFrame, p: Plan) -> dict:
    """One table row's cells for runs `g`: each task's top-1 (mean ± sd over seeds) and the VTAB-style
    mean over tasks (per seed, then mean ± sd over seeds)."""
    cells = {p.label(t): fmt(g[g.task == t].top1) for t in p.config["finetune"]["tasks"]}
    cells["mean over tasks"] = fmt(g.groupby("seed").top1.mean())
    return cells


def _sorted(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows).sort_values(["model", "_rank", "res"]).drop(columns="_rank")


def task_table(summary: pd.DataFrame, p: Plan) -> pd.DataFrame:
    """Rows: model x upstream x resolution; columns: tasks and the VTAB-style mean (over tasks, per seed)."""
    keys = ["model_label", "upstream_label", "upstream_rank", "resolution"]
    rows = []
    for key, g in summary.groupby(keys):
        row = {"model": key[0], "pre-trained on": key[1], "res": key[3], "_rank": key[2]}
        row.update(task_cells(g, p))
        row["n seeds"] = g.seed.nunique()
        rows.append(row)
    return _sorted(rows)


def group_table(vtab: pd.DataFrame, p: Plan) -> pd.DataFrame:
    """The VTAB-style aggregate of vit.evaluate.collect, overall and per group."""
    d = label(vtab.copy(), p)
    rows = []
    for key, g in d.groupby(["model_label", "upstream_label", "upstream_rank", "resolution"]):
        row = {"model": key[0], "pre-trained on": key[1], "res": key[3], "_rank": key[2]}
        for grp in GROUPS:
            sel = g[g.group == grp]
            if len(sel):
                row[f"{grp} ({int(sel.n_tasks.iloc[0])} tasks)"] = fmt(sel.top1)
        rows.append(row)
    return _sorted(rows)


def paper_groups(reference: dict) -> pd.DataFrame:
    """The paper's VTAB-1k group means (Table 9 averaged within groups; derived in reference.yaml)."""
    rows = []
    for model, g in reference["vtab_groups"].items():
        if isinstance(g, dict) and "mean19" in g:  # the rows with numbers (others are notes or bar-chart-only)
            rows.append({"model (paper)": model.replace("_", " pre-trained on "), "natural (7 tasks)": g["natural"],
                         "specialized (4 tasks)": g["specialized"], "structured (8 tasks)": g["structured"],
                         "all (19 tasks)": g["mean19"]})
    return pd.DataFrame(rows)


def hyperrule_fraction(p: Plan, n: int = 1_000) -> float | None:
    """The share of the examples the BiT-HyperRule prescribes for an n-example task (VTAB-1k: 1,000) that
    this config's HyperRule fine-tunes see (steps x batch), where finetune.hyperrule.train shortens them."""
    over = p.config["finetune"].get("hyperrule", {}).get("train", {})
    rule = recipes.bit_hyperrule(n, (224, 224), p.config["finetune"]["hyperrule"].get("variant", "code"))
    ran = over.get("steps", rule["steps"]) * over.get("batch_size", rule["batch_size"])
    full = rule["steps"] * rule["batch_size"]
    return ran / full if ran != full else None


def hyperrule_text(p: Plan) -> str:
    """How the HyperRule fine-tunes of this config ran: the rule, and where a laptop preset departs from it."""
    hr = p.config["finetune"].get("hyperrule", {})
    variant = hr.get("variant", "code")
    small, big = (recipes.bit_hyperrule(n, (224, 224), variant) for n in (1_000, 20_000))
    over = ", ".join(f"{k} {v}" for k, v in hr.get("train", {}).items())
    share = hyperrule_fraction(p)
    return (f"BiT-HyperRule ({variant} variant, `vit.plan.recipes.bit_hyperrule`): SGD lr {small['lr']:g}, momentum "
            f"{small['momentum']:g}, batch {small['batch_size']}, steps by training-set size ({small['steps']} below "
            f"20k examples) with /10 decays at {', '.join(f'{d:.0%}' for d in small['decay_at'])}, MixUp "
            f"{big['mixup']:g} from 20k examples, no gradient clipping"
            + (f"; departures here: {over}" if over else "")
            + (f", at {', '.join(map(str, hr['resolutions']))} px instead of the rule's resolution"
               if hr.get("resolutions") else "")
            + (f"; so each fine-tune sees {share:.1%} of the examples the rule prescribes for a "
               f"1,000-example task" if share is not None else ""))


def hyperrule_table(summary: pd.DataFrame, hyperrule: pd.DataFrame, p: Plan) -> pd.DataFrame:
    """Each HyperRule checkpoint at the rule's resolution(s): the shared protocol's runs beside the
    HyperRule's, per task, and the difference of the means over tasks."""
    rows = []
    if hyperrule.empty:
        return pd.DataFrame()
    for (model, up), hr in hyperrule.groupby(["model", "upstream"], sort=False):
        for res in sorted(hr.resolution.unique()):
            main = summary[(summary.model == model) & (summary.upstream == up) & (summary.resolution == res)]
            base = {"model": p.model_label(model), "pre-trained on": p.label(up), "res": res}
            for name, g in (("shared protocol", main), ("BiT-HyperRule", hr[hr.resolution == res])):
                rows.append({**base, "fine-tuning": name, **task_cells(g, p), "n seeds": g.seed.nunique()})
            if len(main):
                diff = (hr[hr.resolution == res].groupby("seed").top1.mean()
                        - main.groupby("seed").top1.mean()).dropna()
                rows[-1]["HyperRule minus shared (mean over tasks)"] = fmt(diff)
    return pd.DataFrame(rows).fillna("")


def ablation_table(summary: pd.DataFrame, ablation: pd.DataFrame, p: Plan) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The resolution ablation for each checkpoint in it: fine-tuned at the pre-training resolution
    (nothing to interpolate), above it with the main runs' interpolation, and with the other mode.
    Returns (tidy runs for the figure, Markdown-ready table)."""
    if ablation.empty:
        return pd.DataFrame(), pd.DataFrame()
    ablation = label(ablation.copy(), p)
    main_mode = p.config["finetune"]["train"].get("posemb_interp", "bicubic")
    tidy, rows = [], []
    for (model, up), abl in ablation.groupby(["model", "upstream"]):
        lo = p.pretrain_resolution(model, up)
        main = summary[(summary.model == model) & (summary.upstream == up)]
        parts = [(f"{lo} px (pre-training resolution, no interpolation)", main[main.resolution == lo])]
        for res in sorted(abl.resolution.unique()):
            parts.append((f"{res} px, {main_mode}", main[(main.resolution == res)]))
            for mode, g in abl[abl.resolution == res].groupby("posemb_interp"):
                parts.append((f"{res} px, {mode}", g))
        for setting, g in parts:
            tidy.append(g.assign(setting=setting))
            row = {"model": p.model_label(model), "pre-trained on": p.label(up), "fine-tuned at": setting}
            row.update(task_cells(g, p))
            row["n seeds"] = g.seed.nunique()
            rows.append(row)
    return pd.concat(tidy, ignore_index=True), pd.DataFrame(rows)


def _ssl_arms(p: Plan, model: str, up: str) -> list[tuple[str, str, str, str]]:
    """(key, model, upstream, text) of one self-supervised checkpoint's comparison: from scratch, masked
    patch prediction, and supervised pre-training of the same architecture on the same set."""
    spec, name = p.model_spec(model), p.label(up)
    twin = next((m for m, u in p.pretrain_runs if u == up and m != model
                 and p.model_spec(m) == spec and not p.self_supervised(m)), None)
    scratch = next((m for m in (twin, model) if m in p.config["finetune"]["from_scratch"]), None)
    return (([("scratch", scratch, "scratch", "from scratch (no pre-training)")] if scratch else [])
            + [("mpp", model, up, f"masked patch prediction on {name} (no labels)")]
            + ([("supervised", twin, up, f"supervised on {name}")] if twin else []))


def ssl_table(summary: pd.DataFrame, p: Plan) -> tuple[pd.DataFrame, list[str]]:
    """Paper sec. 4.6: each self-supervised (masked patch prediction) checkpoint against the same
    architecture from scratch and pre-trained with labels on the same set. Returns the table and one
    sentence per resolution with the gaps, in points of mean top-1 over tasks."""
    rows, sentences = [], []
    for model, up in p.pretrain_runs:
        if not p.self_supervised(model):
            continue
        arms = _ssl_arms(p, model, up)
        for res in sorted(summary.resolution.unique()):
            means = {}
            for key, m, u, text in arms:
                g = summary[(summary.model == m) & (summary.upstream == u) & (summary.resolution == res)]
                if g.empty:
                    continue
                means[key] = g.groupby("seed").top1.mean().mean()
                rows.append({"architecture": p.model_label(m), "pre-training": text, "res": res,
                             **task_cells(g, p), "n seeds": g.seed.nunique()})
            if len(means) == 3:
                sentences.append(
                    f"At {res} px masked patch prediction is {means['mpp'] - means['scratch']:+.1f} points "
                    f"from training from scratch and {means['mpp'] - means['supervised']:+.1f} from "
                    f"supervised pre-training (mean top-1 over tasks).")
    return pd.DataFrame(rows), sentences


def _ns_steps(p: Plan, ns_info: dict) -> list[tuple[int, tuple[str, str], str, dict | None]]:
    """(iteration, (model, upstream), what it trained on, audit) of the teacher and each Noisy Student student;
    the pseudo-label counts and the audit of their precision (None for the teacher, or a manifest without one)
    come from the pseudo-labelled sets' manifests (`ns_info`: dataset -> info)."""
    its = p.noisy_student
    threshold = p.config["noisy_student"].get("threshold", 0.3)
    steps = [(0, its[0]["teacher"], p.label(its[0]["labelled"]) + " (labelled only)", None)]
    for it in its:
        info = ns_info.get(it["dataset"], {})
        c = info.get("counts", {})
        steps.append((it["iteration"], (it["student"], it["dataset"]),
                      (f"{c.get('labelled_train', '?')} labelled + {c.get('selected', '?')} pseudo-labelled "
                       f"({c.get('kept', '?')} of {c.get('pool', '?')} pool images kept at confidence >= "
                       f"{threshold}, {c.get('selected_unique', '?')} distinct after balancing)"), info.get("audit")))
    return steps


def _pct(v) -> str:
    return "–" if v is None else f"{100 * v:.1f}"


def _audit_cells(audit: dict | None) -> dict:
    """The pseudo-label audit's cells (vit.data.pseudo_label.audit_pseudo_labels: the pool's true labels,
    read after the pseudo-labelled set was written): precision of the kept / selected pseudo labels and the
    labelling teacher's top-1 on the whole pool; "no labels to audit" where the pool had none."""
    if not audit:
        return {"pseudo-label precision (kept / selected, %)": "–", "its teacher's top-1 on the pool (%)": "–"}
    if not audit.get("labels_read"):
        return {"pseudo-label precision (kept / selected, %)": "no labels to audit",
                "its teacher's top-1 on the pool (%)": "no labels to audit"}
    return {"pseudo-label precision (kept / selected, %)":
            f"{_pct(audit['kept_precision'])} / {_pct(audit['selected_precision'])}",
            "its teacher's top-1 on the pool (%)": _pct(audit["pool_top1"])}


def ns_table(summary: pd.DataFrame, pretrain: pd.DataFrame, p: Plan, ns_info: dict,
             resolution: int) -> pd.DataFrame:
    """Noisy Student, one row per iteration: who trained on what, how often its pseudo labels are right
    (an audit against the pool's true labels, which no stage trains on), accuracy on the labelled set's val
    split, and mean transfer."""
    if not p.noisy_student:
        return pd.DataFrame()
    rows = []
    for i, (model, up), trained_on, audit in _ns_steps(p, ns_info):
        pre = pretrain[(pretrain.model == model) & (pretrain.upstream == up)]
        g = summary[(summary.model == model) & (summary.upstream == up) & (summary.resolution == resolution)]
        rows.append({"iteration": i, "role": "teacher" if i == 0 else "student", "model": p.model_label(model),
                     "trained on": trained_on, **_audit_cells(audit),
                     "labelled val top-1 (%)": f"{pre.upstream_val_top1.iloc[0]:.1f}" if len(pre) else "–",
                     f"mean transfer at {resolution} px": fmt(g.groupby("seed").top1.mean()),
                     "n seeds": g.seed.nunique()})
    return pd.DataFrame(rows)


def pretrain_runs_table(pretrain: pd.DataFrame, resolution: int) -> pd.DataFrame:
    """The pre-training runs, one row each: train vs val loss (a run that overfits shows a val loss above
    its train loss), the kept weights' val top-1 and which weights were kept; FLOPs per image at the
    pre-training `resolution`."""
    return pretrain.sort_values(["model", "upstream_rank"])[
        ["model_label", "upstream_label", "pretrain_images_seen", "pretrain_steps", "pretrain_train_loss",
         "upstream_val_loss", "upstream_val_top1", "kept", "params_backbone", "fwd_flops_per_img",
         "pretrain_time_s"]].rename(columns={
            "model_label": "model", "upstream_label": "upstream", "pretrain_images_seen": "images seen",
            "pretrain_steps": "steps", "pretrain_train_loss": "train loss (end)", "upstream_val_loss": "val loss",
            "upstream_val_top1": "upstream val top-1 (%)", "kept": "weights kept",
            "params_backbone": "params (no head)", "fwd_flops_per_img": f"fwd FLOPs/img @{resolution}px",
            "pretrain_time_s": "train time (s)"})


def ladder_table(pretrain: pd.DataFrame, scores: pd.DataFrame, p: Plan, fewshot: pd.DataFrame) -> pd.DataFrame:
    """The size ladder, one row per model pre-trained on more than one upstream set and set: epochs (every
    set seen for the same images), the kept weights' upstream val top-1 and the train / val loss beside it,
    the mean transfer over tasks (per seed, then mean ± sd over seeds) that the size-ladder figure draws,
    and, where the checkpoints were probed (`fewshot`: vit.report.results.fewshot_rows), the few-shot linear top-1 (mean over tasks per draw of the
    shots, then mean ± sd over draws: paper Fig. 4's measure)."""
    shots = [k for k in (5, 25) if k in set(fewshot.shots)]
    sizes = pretrain[pretrain.upstream.isin(p.upstreams)]
    ladder = sizes.groupby("model").upstream.nunique()
    rows = []
    for _, r in sizes[sizes.model.isin(ladder[ladder > 1].index)].sort_values(["model", "upstream_rank"]).iterrows():
        t = scores[(scores.model == r.model) & (scores.upstream == r.upstream)].top1
        rows.append({"model": r.model_label, "pre-trained on": r.upstream_label,
                     "epochs": f"{r.pretrain_images_seen / r.upstream_rank:.3g}",
                     "train loss (end)": _num(r.pretrain_train_loss, ".2f"), "val loss": _num(r.upstream_val_loss, ".2f"),
                     "upstream val top-1 (%)": _num(r.upstream_val_top1, ".1f"), "weights kept": r.kept,
                     "mean transfer (%)": fmt(t)})
        probes = fewshot[(fewshot.model == r.model) & (fewshot.upstream == r.upstream)]
        rows[-1].update({f"{k}-shot linear (%)": fmt(probes[probes.shots == k].groupby("seed").top1.mean())
                         for k in shots})
    return pd.DataFrame(rows)


def _num(value, spec: str) -> str:
    """A number as `spec`, or a dash where the run has none (no val split: self-supervised)."""
    return "–" if value is None or pd.isna(value) else format(value, spec)
