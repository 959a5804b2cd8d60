"""The paper's Table 2, mirrored (reports/table2.md): our models pre-trained on the largest upstream set and
fine-tuned at the one resolution every checkpoint has, then every model column of the paper's Table 2 (labelled as the paper's,
each with our stand-in where the preset has one), then the verdicts where the preset targets the paper's
numbers."""
from __future__ import annotations

from types import MappingProxyType

import pandas as pd

from vit.plan import Plan
from vit.report import verdicts
from vit.report.tables import hyperrule_fraction, hyperrule_text, task_cells

PAPER_COLUMNS = MappingProxyType({"imagenet": "ImageNet", "imagenet_real": "ImageNet ReaL", "cifar10": "CIFAR-10",
                 "cifar100": "CIFAR-100", "pets": "Oxford-IIIT Pets", "flowers102": "Oxford Flowers-102",
                 "vtab19": "VTAB (19 tasks)"})


def _cost(pre: pd.DataFrame) -> dict:
    return {"pre-training core-hours": f"{pre.core_hours.sum():.3g}",
            "pre-training PFLOPs": f"{pre.train_flops.sum() / 1e15:.3g}"}


def _ours(summary: pd.DataFrame, compute_pre: pd.DataFrame, p: Plan, hyperrule: pd.DataFrame) -> list[dict]:
    """One row per model (and one more for a model also fine-tuned with the BiT-HyperRule: the paper's
    BiT-L numbers come from BiT's own recipe), all at one resolution: the one every checkpoint is
    fine-tuned at (Plan.transfer_resolution), so that no row gains from a resolution the others lack."""
    largest, res = p.upstreams[-1], p.transfer_resolution
    rows = []
    for model, g in summary[summary.upstream == largest].groupby("model", sort=False):
        g = g[g.resolution == res]
        if g.empty:
            continue
        pre = compute_pre[(compute_pre.model == model) & (compute_pre.upstream == largest)]
        rows.append({"model (ours)": p.model_label(model), **task_cells(g, p), **_cost(pre)})
        hr = hyperrule[(hyperrule.model == model) & (hyperrule.upstream == largest)] if len(hyperrule) else hyperrule
        if len(hr):
            at = "" if set(hr.resolution) == {res} else f" at {', '.join(map(str, sorted(hr.resolution.unique())))} px"
            share = hyperrule_fraction(p)
            ran = f", {share:.1%} of its prescribed examples" if share is not None else ""
            rows.append({"model (ours)": f"{p.model_label(model)}, BiT-HyperRule{at}{ran}",
                         **task_cells(hr, p), **_cost(pre)})
    return rows


def _noisy_student(summary: pd.DataFrame, compute_pre: pd.DataFrame, p: Plan) -> list[dict]:
    """The Noisy Student baseline's row: the last student; its cost is the recipe's (first teacher + every
    student)."""
    its = p.noisy_student
    if not its:
        return []
    last = its[-1]
    res = p.transfer_resolution
    g = summary[(summary.model == last["student"]) & (summary.upstream == last["dataset"])
                & (summary.resolution == res)]
    runs = {its[0]["teacher"]} | {(it["student"], it["dataset"]) for it in its}
    pre = compute_pre[[(m, u) in runs for m, u in zip(compute_pre.model, compute_pre.upstream)]]
    return [{"model (ours)": f"{p.model_label(last['student'])} (iteration {last['iteration']})",
             **task_cells(g, p), **_cost(pre)}]


def _paper_cell(v: dict | None) -> str:
    """A Table 2 cell: mean ± std (std as printed, 0.00 included), the alternative number where the paper
    prints two (Noisy Student's ImageNet 88.4 / 88.5), "–" where it prints none."""
    if not v:
        return "–"
    return verdicts._fmt(v["mean"], v.get("std")) + (f" / {v['alt']:.2f}" if v.get("alt") is not None else "")


def _paper_name(key: str) -> str:
    """A Table 2 row key as the paper's model: ViT-H/14_JFT -> ViT-H/14 (its pre-training set has a column of
    its own), BiT-L_R152x4 -> BiT-L R152x4."""
    head, _, tail = key.rpartition("_")
    return head if tail in verdicts.ABBR.values() else key.replace("_", " ")


def _own_row(p: Plan, reference: dict, model: str) -> str | None:
    """The Table 2 row key of `model` itself, where one of its checkpoints is the paper's own model on the
    paper's pre-training set (the cells vit.report.verdicts judges it against), else None."""
    name = p.config["models"].get(model, {}).get("name")
    for up in [up for m, up in p.checkpoints if m == model] if name else []:
        pretrained = verdicts._paper_set(p, model, up)
        found = verdicts._paper_cells("table2", reference, name, pretrained) if pretrained else None
        if found:
            return found[0]
    return None


def stand_ins(p: Plan, reference: dict) -> dict[str, list[str]]:
    """Table 2 row key -> the labels of this preset's models for it: those that stand in for it
    (models.<m>.paper_row) and those that are its own model on its own pre-training set (marked so)."""
    out: dict[str, list[str]] = {}
    for m in dict.fromkeys(m for m, _ in p.finetune_runs):
        own, row = _own_row(p, reference, m), p.config["models"].get(m, {}).get("paper_row")
        if own:
            out.setdefault(own, []).append(f"{p.model_label(m)} (the paper's own model and pre-training set)")
        if row and row != own:
            out.setdefault(row, []).append(p.model_label(m))
    return out


def paper_rows(p: Plan, reference: dict) -> pd.DataFrame:
    """Every model column of the paper's Table 2 (every `table2.models` key of reference.yaml, in the paper's
    order), labelled as the paper's, each with this preset's models for it or "no stand-in in this preset"."""
    ours = stand_ins(p, reference)
    rows = []
    for key, row in reference["table2"]["models"].items():
        out = {"model (paper)": f"{_paper_name(key)} (paper)", "pre-trained on (paper)": row["pretrain"],
               "our stand-in (this preset)": "; ".join(ours.get(key, [])) or "no stand-in in this preset"}
        out.update({f"{name} (paper)": _paper_cell(row.get(col)) for col, name in PAPER_COLUMNS.items()})
        out["TPUv3-core-days (paper)"] = row["tpuv3_core_days"]
        rows.append(out)
    return pd.DataFrame(rows)


def _ours_text(p: Plan, n_seeds: int) -> str:
    largest, res = p.upstreams[-1], p.transfer_resolution
    up = p.dataset(largest)
    return ((f"**Ours** (this run): fine-tuned from released weights pre-trained on {up['label']} (not by this run), "
             if up.get("source") == "released" else
             f"**Ours** (this run): pre-trained on {up['label']} (our stand-in for {up.get('stands_for', '?')}), ")
            + f"every row fine-tuned at {res} px (the resolution every checkpoint is fine-tuned at); test top-1 in "
            f"%, mean ± sd over {n_seeds} fine-tuning seeds. "
            "Compute is measured on this machine (training steps only).")


def verdict_lines(summary: pd.DataFrame, reference: dict, p: Plan) -> list[str]:
    """Verdicts where the preset targets the paper's numbers (`paper_table`), else why there are none."""
    table = p.config.get("paper_table")
    if not table:
        return [("The two tables share a design, not datasets: our downstream tasks are laptop-scale stand-ins "
                 "(see report.md), so compare the ordering of the models, not the numbers. No verdicts against "
                 "the paper: this preset targets none of its numbers (the paper presets set `paper_table`).")]
    v = verdicts.verdict_table(summary, p, reference)
    counts = v.verdict.value_counts()
    return [f"## Verdicts against the paper's {verdicts.TABLES[table]}", "",
            (f"Each of our runs that is the paper's own model on the paper's pre-training set and task, judged: "
             f"{verdicts.RULE}. Models that only stand in for a paper row (e.g. BiT-M for BiT-L) get no verdict."), "",
            v.to_markdown(index=False) if len(v) else "(no run of this preset matches a paper cell)", "",
            ", ".join(f"{n} {k}" for k, n in counts.items()) + "." if len(v) else ""]


def table2(summary: pd.DataFrame, compute_pre: pd.DataFrame, reference: dict, p: Plan,
           hyperrule: pd.DataFrame) -> str:
    """reports/table2.md; `compute_pre`: the pre-training rows of vit.account.compute."""
    largest, res = p.upstreams[-1], max(p.config["finetune"]["resolutions"])
    n_seeds = summary[(summary.upstream == largest) & (summary.resolution == res)].seed.nunique()
    rows = _ours(summary, compute_pre, p, hyperrule) + _noisy_student(summary, compute_pre, p)
    lines = ["# Table 2, mirrored", "", _ours_text(p, n_seeds), "", pd.DataFrame(rows).to_markdown(index=False), ""]
    if len(hyperrule):
        lines += [(f"Rows marked BiT-HyperRule fine-tune the same checkpoint with BiT's own recipe instead of the "
                   f"shared protocol: {hyperrule_text(p)}."), ""]
    if p.noisy_student:
        lines += [("The Noisy Student row is the last iteration's student, pre-trained on the labelled set plus "
                   "the pool images its teacher pseudo-labelled; its compute adds the first teacher's and every "
                   "student's pre-training (the recipe's cost)."), ""]
    paper, t2 = paper_rows(p, reference), reference["table2"]
    unknown = {k: v for k, v in stand_ins(p, reference).items() if k not in t2["models"]}
    lines += [(f"**Paper** (Dosovitskiy et al. 2021, Table 2, all {len(paper)} of its model columns, one row each; "
               "numbers from `vit/reference.yaml`, not measured here): top-1 in %, mean ± std over 3 fine-tuning "
               "runs; compute in TPUv3-core-days. Beside each, this preset's stand-in for it, where it has one."), "",
              paper.to_markdown(index=False), "",
              "Paper notes: " + "; ".join(t2.get("notes", [])).replace("+-", "±") + ".", ""]
    if unknown:  # a paper_row that names no Table 2 column (a typo, or a row reference.yaml lacks)
        lines += ["Not in the table above, their `paper_row` naming no Table 2 column of `vit/reference.yaml`: "
                  + "; ".join(f"{', '.join(v)} ({k})" for k, v in unknown.items()) + ".", ""]
    return "\n".join(lines + verdict_lines(summary, reference, p)) + "\n"
