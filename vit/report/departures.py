"""The report's "Departures from the paper" section, generated from the plan and the paper's facts
(vit/reference.yaml) so that it cannot drift from what ran: the stand-ins for the paper's data, weights
and models, the position-embedding interpolation, and every recipe value that differs from Table 3
(pre-training) and Table 4 (fine-tuning) (vit.report.recipe_diff). Values that agree with the paper are
left out.
"""
from __future__ import annotations

import re

from vit.plan import IMAGE_SOURCES, Plan
from vit.plan.checks import RELEASES
from vit.report.recipe_diff import defaults, fmt, norm, paper_task, recipe, row_model, same


def departures(plan: Plan, reference: dict) -> list[str]:
    """Markdown lines of the section: Data, Weights, Models, Position embeddings, then the Recipe table."""
    lines = ["## Departures from the paper", "",
             "Generated from this run's config and the paper's facts in `vit/reference.yaml` (`vit.report.departures`); "
             "the recipe table leaves out the values that agree with the paper.", ""]
    for title, body in (("Data", _data(plan, reference)), ("Weights", _weights(plan, reference)),
                        ("Models", _models(plan, reference)), ("Position embeddings", _posemb(plan, reference))):
        if body:
            lines += [f"**{title}**", "", *body, ""]
    return lines + ["**Recipe**", "", *recipe(plan, reference)]


def _approx(n: float) -> str:
    """The paper's rounded sizes: 303M, 14M, 1.3M, 21k, 1,000."""
    n = float(n)
    if n >= 1e6:
        return f"{n / 1e6:g}M"
    return f"{n / 1e3:g}k" if n >= 1e4 else f"{int(n):,}"


def _row_text(reference: dict, row_key: str) -> str:
    """ViT-L/16_JFT -> "ViT-L/16 on JFT-300M"; BiT-L_R152x4 -> "BiT-L R152x4 on JFT-300M"."""
    head, _, tail = row_key.rpartition("_")
    name = head if tail in ("JFT", "I21k") else row_key.replace("_", " ")
    pre = reference["table2"]["models"].get(row_key, {}).get("pretrain")
    return f"{name} on {pre}" if pre else name


# ----------------------------------------------------------------------------- sections


def _data(plan: Plan, reference: dict) -> list[str]:
    datasets, paper_sets = plan.config["datasets"], reference["pretrain_hparams"]["datasets"]
    pseudo = plan.pseudo_sets
    ups = dict.fromkeys(u for _, u in plan.pretrain_runs if u not in pseudo)
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
    ns = plan.config.get("noisy_student")
    if ns:
        facts = reference["baselines"]["NoisyStudent"]
        pool = datasets.get(ns["pool"], {})
        jft = _approx(paper_sets["JFT-300M"]["images"])
        lines.append(f"- Noisy Student: `{ns['pool']}` ({pool.get('train', 0):,} images; its labels are read only to audit the pseudo-labels) is the "
                     f"unlabelled pool in place of JFT-300M's {jft} images, "
                     f"{plan.label(ns['teacher']['upstream'])} the labelled set in place of ImageNet"
                     + _ns_setting("confidence threshold", ns.get("threshold", 0.3),
                                   facts["data_filtering"]["confidence_threshold"])
                     + _ns_setting("iterations", ns.get("iterations", 2), facts["iterations"]["value"]))
    tasks = plan.finetune_tasks
    if tasks:
        stand_ins = [plan.label(t) for t in tasks if paper_task(plan, t) is None]
        own = [plan.label(t) for t in tasks if paper_task(plan, t) is not None]
        if stand_ins:
            lines.append(f"- Downstream: {', '.join(stand_ins)} are stand-ins, not the paper's tasks (ImageNet, "
                         "CIFAR-10/100, Pets, Flowers-102 and the 19 VTAB-1k tasks)")
        if own:
            lines.append(f"- Downstream: the paper's own {', '.join(own)}")
    if "vtab" in plan.config:
        total = len(reference["vtab_tasks"]["tasks"])
        n = len(plan.config["vtab"].get("tasks") or reference["vtab_tasks"]["tasks"])
        lines.append(f"- Downstream: {'the' if n == total else f'{n} of the'} paper's {total} VTAB-1k tasks")
    return lines


def _ns_setting(name: str, ours, paper) -> str:
    return "" if same(ours, paper) else f"; {name} {fmt(ours)} (NS: {fmt(paper)})"


def _weights(plan: Plan, reference: dict) -> list[str]:
    lines, matching = [], []
    for (m, up), spec in plan.released.items():
        mspec = plan.config["models"][m]
        row = mspec.get("paper_row")
        on = spec.get("pretrained_on")
        ours = (f"{mspec.get('label', m)}: released `{spec['weights']}`, pre-trained on "
                + (on or f"? (set pretrain.released.{m}.{up}.pretrained_on)"))
        if row not in reference["table2"]["models"]:
            lines.append(f"- {ours}; no Table 2 row (set models.{m}.paper_row)")
            continue
        same_model = norm(mspec.get("name", "")) == norm(row_model(row))
        same_data = same(on or "", reference["table2"]["models"][row]["pretrain"])
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
    vtab = plan.config.get("vtab")
    if vtab:
        row = vtab.get("paper_row")
        lines.append(f"- Fine-tunes `{vtab['checkpoint']}` (model `{vtab['model']}`), pre-trained outside this config; "
                     + (f"compared with Table 9's {row} row" if row else "no Table 9 row (set vtab.paper_row)"))
    elif not lines and not matching and plan.pretrain_runs:
        lines.append("- None released: every checkpoint is pre-trained here")
    return lines


def _models(plan: Plan, reference: dict) -> list[str]:
    used = dict.fromkeys(m for m, _ in plan.finetune_runs)
    by_row: dict[str, list[str]] = {}
    named, lines = [], []
    for m in used:
        spec = plan.config["models"][m]
        if spec.get("name"):
            named.append(spec.get("label", m))
        elif spec.get("paper_row"):
            by_row.setdefault(spec["paper_row"], []).append(spec.get("label", m))
        elif plan.self_supervised(m):
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


def _posemb(plan: Plan, reference: dict) -> list[str]:
    stage = plan.config.get("finetune") or plan.config.get("vtab")
    if not stage:
        return []
    mode = stage.get("train", {}).get("posemb_interp", defaults()["posemb_interp"])
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
    ablation = plan.posemb_ablation_runs
    if ablation:
        runs = ", ".join(f"{plan.model_label(m)} from {plan.label(up)}" for m, up, _ in ablation)
        lines.append(f"- The resolution ablation repeats {runs} with `{ablation[0][2]}`")
    return lines
