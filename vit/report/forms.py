"""Which step forms (vit.train.forms) and machine kinds produced the report's numbers, and a warning
wherever a comparison mixes them: the form and the machine's kernels change rounding, and training
amplifies rounding into differences of several points (docs/forms.md measures how much)."""
from __future__ import annotations

import pandas as pd

from vit.plan import Plan

DOC = "[docs/forms.md](../docs/forms.md)"


def _pairs(summary: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, upstream, form, pre-training form, machine, pre-training machine), with its count
    of fine-tuned runs."""
    cols = ["model", "upstream", "form", "pretrain_form", "machine", "pretrain_machine"]
    s = summary.reindex(columns=cols).fillna({"pretrain_form": "", "pretrain_machine": ""})
    s.loc[s.upstream.isin(["scratch"]), ["pretrain_form", "pretrain_machine"]] = ""
    return s.groupby(cols, dropna=False).size().rename("runs").reset_index()


def form_table(summary: pd.DataFrame, plan: Plan) -> pd.DataFrame:
    """Per model: the forms its checkpoints were pre-trained in and its fine-tunes ran in, the machines, the
    count of fine-tuned runs."""
    if "form" not in summary:
        return pd.DataFrame()
    p = _pairs(summary)
    order = {m: i for i, m in enumerate(plan.config["models"])}  # the config's order of models
    rows = []
    for model, g in sorted(p.groupby("model"), key=lambda kv: order.get(kv[0], len(order))):
        rows.append({"model": plan.model_label(model),
                     "pre-training form": ", ".join(sorted(set(g.pretrain_form) - {""})) or "(from scratch only)",
                     "fine-tuning form": ", ".join(sorted(set(g.form))),
                     "machines": ", ".join(sorted(set(g.machine) | set(g.pretrain_machine) - {""})),
                     "fine-tuned runs": int(g.runs.sum())})
    return pd.DataFrame(rows)


def warnings(summary: pd.DataFrame, plan: Plan, family) -> list[str]:
    """One line per way the report's comparisons mix forms or machines; none where every number came from
    one machine kind and each model from one form. `family(plan, model)` groups models as the claims do."""
    if "form" not in summary:
        return ["- The runs do not record their step form (made before it was recorded): comparisons may mix "
                f"forms ({DOC})."]
    p = _pairs(summary)
    out = []
    machines = sorted(set(p.machine) | set(p.pretrain_machine) - {""})
    if len(machines) > 1:
        out.append(f"- **Machines of {len(machines)} kinds** trained these runs ({'; '.join(machines)}): across "
                   f"machine kinds a number is a new draw, not a repeat ({DOC}).")
    for model, g in p.groupby("model", sort=False):
        used = sorted(set(g.form) | set(g.pretrain_form) - {""})
        per_stage = [sorted(set(g.pretrain_form) - {""}), sorted(set(g.form))]
        if any(len(f) > 1 for f in per_stage):
            out.append(f"- **{plan.model_label(model)} mixes step forms** across its runs ({', '.join(used)}): "
                       f"comparisons between its checkpoints include the form's spread ({DOC}).")
    precisions = {}
    for model, g in p.groupby("model", sort=False):
        fam = family(plan, model)
        precisions.setdefault(fam, set()).update(f.split("/")[0] for f in set(g.form) | set(g.pretrain_form) - {""})
    fams = {f: ps for f, ps in precisions.items() if f in ("vit", "resnet")}
    if len(fams) == 2 and len(set().union(*fams.values())) > 1:
        out.append("- **The ViT-BiT comparisons mix precisions**: ViTs in " + ", ".join(sorted(fams["vit"]))
                   + ", BiTs in " + ", ".join(sorted(fams["resnet"])) + " (this machine kind's rule, vit.train.forms: "
                   f"bf16 only where it is faster). What the precision alone moves is measured in {DOC}.")
    return out
