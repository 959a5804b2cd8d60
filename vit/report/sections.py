"""The results sections of reports/report.md, in order: each function returns one section's Markdown lines
from the run's `Results` (the compute sections and the provenance are in vit.report.accounting)."""
from __future__ import annotations

from types import MappingProxyType

import pandas as pd

from vit.report import forms, scorecard
from vit.report.figures import number
from vit.report.recipe_diff import train_examples
from vit.report.results import Results, scores
from vit.report.table2 import table2
from vit.report.tables import (ablation_table, group_table, hyperrule_table, hyperrule_text, ladder_table,
                               ns_table, paper_groups, ssl_table, task_table)

POSEMB_INTERP_TEXT = MappingProxyType({"bicubic": "timm's bicubic with antialias",
                      "bilinear_corners": "the original code's corner-aligned linear zoom, scipy zoom(order=1)"})


def claims(r: Results) -> pd.DataFrame:
    """The claims scorecard (vit.report.scorecard) of the run."""
    return scorecard.scorecard(r.summary, scores(r), r.plan, r.common, r.ablation, r.inspect)


def table2_md(r: Results) -> str:
    """reports/table2.md."""
    return table2(r.summary, r.compute[r.compute.stage == "pretrain"], r.reference, r.plan, r.hyperrule)


def _design(r: Results) -> str:
    """What ran: pre-training runs, upstream sets, tasks, resolutions, seeds, the extra fine-tunes."""
    p, s = r.plan, r.summary
    n_seeds, n_scratch = s.seed.nunique(), int((s.upstream == "scratch").sum())
    chance = s.groupby("task").num_classes.first().map(lambda k: f"{100 / k:.1f} %")
    modes = sorted(m for m in s.posemb_interp.unique() if m)
    interp = ", ".join(f"{m} ({POSEMB_INTERP_TEXT[m]})" for m in modes) or "none needed"
    released = [u for u in p.upstreams if p.dataset(u).get("source") == "released"]
    sets = ", ".join(p.label(u) + " ~ " + p.dataset(u).get("stands_for", "?") for u in p.upstreams)
    return (f"Reproduces the design of Dosovitskiy et al. (2021): {len(r.pretrain)} pre-training runs"
            + (f" and released weights ({', '.join(p.label(u) for u in released)}, not trained here)"
               if released else "")
            + f" on upstream sets of growing size ({sets}), each fine-tuned on {len(p.config['finetune']['tasks'])} "
            f"downstream tasks at {r.lo} px (the pre-training resolution)" + _higher(r, interp)
            + f", {n_seeds} seeds each: {len(s) - n_scratch} fine-tuned runs, plus "
            f"{n_scratch} runs of the same architectures trained from scratch with the same budget"
            + (f", plus {len(r.ablation)} runs of the resolution ablation" if len(r.ablation) else "")
            + (f", plus {len(r.hyperrule)} runs with the BiT-HyperRule" if len(r.hyperrule) else "")
            + (f"; the pre-training runs include {len(p.noisy_student)} Noisy Student students"
               if p.noisy_student else "")
            + f". Numbers are test top-1 in %, mean ± sd over seeds (n = {n_seeds} unless stated). Chance level: "
            + ", ".join(f"{p.label(t)} {c}" for t, c in chance.items()) + ".")


def _higher(r: Results, interp: str) -> str:
    """Which checkpoints are also fine-tuned above the pre-training resolution (finetune.higher_resolutions_for)."""
    if r.hi == r.lo:
        return ""
    ckpts = [(m, up) for m, up in r.plan.checkpoints if r.hi in r.plan.finetune_resolutions(m, up)]
    which = ("every checkpoint" if len(ckpts) == len(r.plan.checkpoints) else
             f"{len(ckpts)} of the {len(r.plan.checkpoints)} checkpoints ("
             + ", ".join(f"{r.plan.model_label(m)} from {r.plan.label(up)}" for m, up in ckpts) + ")")
    return f"; {which} also at {r.hi} px (position embeddings resampled in 2D: {interp})"


def intro(r: Results) -> list[str]:
    c = r.compute
    hours = (f"{c.core_hours.sum():.3g} core-hours" if c.gpu_hours.sum() == 0 else
             f"{c.gpu_hours.sum():.3g} GPU-hours and {c.core_hours.sum():.3g} CPU core-hours")
    return [
        "# Results: ViT and its baselines at laptop scale", "", _design(r), "",
        "How the default preset's miniature was designed, and the pilots behind each choice (upstream corpus, "
        "models, budgets, learning rates): [docs/design.md](../docs/design.md).", "",
        f"**Total measured training compute: {c.train_flops.sum() / 1e15:.3g} PFLOPs** in "
        f"{c.train_time_s.sum() / 60:.1f} min of timed training steps summed over {len(c)} runs ({hours}; "
        f"median MFU {100 * c.mfu.median():.1f} % of the measured matmul peak). That is a sum of the runs' "
        "times, not wall time: jobs run side by side (the run's wall time and where it went: "
        "[timeline.md](timeline.md)). Snakemake's records of the whole jobs are "
        f"in [Compute accounting](#compute-accounting-paper-sec-44-table-6).", ""]


def scorecard_section(r: Results) -> list[str]:
    cards = claims(r)
    sizes = [r.plan.dataset(u)["train"] for u in r.plan.upstreams if r.plan.dataset(u).get("train")]
    scale = (f"*At this scale* means upstream sets of {min(sizes):,}-{max(sizes):,} images instead of "
             f"1.3M-300M photographs: a claim that does not hold here is not refuted for the paper's scale, "
             f"and one that holds is weak evidence." if sizes else "")
    return [
        "## Claims scorecard", "",
        "Each claim of the paper against this run's numbers. " + scorecard.RULE + " (vit/report/stats.py; "
        "vit/report/scorecard.py states how each claim applies it.) " + scale, "",
        cards.assign(claim="(" + cards.key + ") " + cards.claim, per_task=cards.per_task.replace("", "–")).rename(columns={
            "paper": "paper's evidence", "evidence": "this run", "verdict": "verdict (mean over tasks)",
            "per_task": "verdict per task"})[
            ["claim", "paper's evidence", "this run", "verdict (mean over tasks)", "verdict per task"]].to_markdown(index=False), ""
    ] + _form_warnings(r)


def _form_warnings(r: Results) -> list[str]:
    lines = forms.warnings(r.summary, r.plan, scorecard.family)
    return ["**Step forms and machines** ([Provenance](#provenance) lists them):", "", *lines, ""] if lines else []


def table2_section(r: Results) -> list[str]:
    return [table2_md(r).replace("# Table 2, mirrored", "## Table 2, mirrored")]


def transfer(r: Results) -> list[str]:
    return [
        "## Transfer, per task", "", "![transfer](figures/transfer.png)", "",
        f"*Figure {number(r, 'transfer')}. Test top-1 per task after pre-training on {r.plan.label(r.largest)} and "
        f"fine-tuning at {r.common} px, against the same architecture trained from scratch with the same fine-tuning "
        f"budget. Where the pre-trained bar stands above its scratch bar, pre-training helped (claim a).*", "",
        task_table(r.summary, r.plan).to_markdown(index=False), ""]


def vtab_aggregate(r: Results) -> list[str]:
    return [
        "## VTAB-style aggregate", "",
        "Mean over tasks, overall and per VTAB group (computed per seed, then mean ± sd over seeds).", "",
        group_table(r.vtab, r.plan).to_markdown(index=False), "",
        "The paper's group means on the real VTAB-1k (Table 9 averaged within each group, labelled as the "
        "paper's); our groups hold laptop-scale stand-ins, so compare the pattern across groups, not levels:", "",
        paper_groups(r.reference).to_markdown(index=False, floatfmt=".1f"), ""]


def size_ladder(r: Results) -> list[str]:
    return [
        "## Pre-training set size (paper Figs. 3 and 4)", "", "![size ladder](figures/size_ladder.png)", "",
        f"*Figure {number(r, 'size_ladder')}. Left, ours: mean transfer accuracy at {r.common} px against the "
        "pre-training set; dashed lines are the from-scratch baselines. Right, the paper's Table 5 (the data of its "
        "Fig. 3): ViT ImageNet top-1 after pre-training on ImageNet, ImageNet-21k and JFT-300M. The paper finds the "
        "ResNets ahead on the smallest set and the ViT catching up or overtaking on the largest (claim b); "
        "look for the gap between our lines closing from left to right.* The paper's Fig. 4 (linear 5-shot "
        "accuracy on JFT subsets) prints no numbers (`figure4_data.values: null` in reference.yaml), so it is "
        "not drawn" + ("; ours, the same measure on our sets, is in the table's few-shot columns" if not r.fewshot.empty
                       else "") + ".", ""] + _ladder(r)


def _ladder(r: Results) -> list[str]:
    """The ladder's numbers, and what a fine-tune's length does to them."""
    table = ladder_table(r.pretrain, scores(r), r.plan, r.fewshot)
    if table.empty:
        return []
    ft = r.plan.config["finetune"]["train"]
    n = pd.Series([train_examples(r.plan, t) for t in r.plan.config["finetune"]["tasks"]]).median()
    budget = (f" Each fine-tune here is {ft['steps']} steps of batch {ft['batch_size']}, "
              f"{ft['steps'] * ft['batch_size'] / n:.1f} epochs of a task's {n:,.0f} training images: transfer "
              "then measures how fast a checkpoint's features adapt as much as what they hold "
              "([docs/design.md](../docs/design.md#the-first-full-run-64k-images-seen-and-what-it-changed) "
              "compares longer fine-tunes and longer pre-training)." if ft.get("steps") and ft.get("batch_size") and n else "")
    probes = (" The few-shot columns read the frozen features without fine-tuning (paper sec. 4.1 and Fig. 4): "
              "a closed-form ridge classifier (big_vision's) on the pre-logits of k training images per class of "
              "each task, scored on its test split; mean over tasks per draw of the shots, ± sd over "
              f"{r.fewshot.seed.nunique()} draws." if not r.fewshot.empty else "")
    return ["Every set is seen for the same number of images, so the smaller sets are seen for more epochs "
            "and may be memorised (train loss below val loss); `keep_best` then keeps the best validation's "
            f"weights.{budget}{probes}", "", table.to_markdown(index=False), ""]


def _ablation(r: Results) -> list[str]:
    _, table = ablation_table(r.summary, r.ablation, r.plan)
    if table.empty:
        return []
    return [
        "![resolution ablation](figures/resolution_ablation.png)", "",
        f"*Figure {number(r, 'resolution_ablation')}. The resolution ablation: the ViT fine-tuned at its "
        f"pre-training resolution and at {r.hi} px with each way of resampling its position embeddings: "
        + "; ".join(f"{m}: {POSEMB_INTERP_TEXT[m]}" for m in POSEMB_INTERP_TEXT) + ". Bars that differ "
        "by less than their error bars say the choice of interpolation does not matter here.*", "",
        table.to_markdown(index=False), "",
        f"Without interpolation there is no run to show: at {r.hi} px the ViT has more patches than learned "
        "position embeddings, so the pre-trained table cannot be added to the sequence (loading it raises a "
        "size mismatch); the only alternatives are resampling it, as above, or discarding it, which "
        "throws away pre-training. The paper resamples (sec. 3.2).", ""]


def resolution(r: Results) -> list[str]:
    interp = r.plan.config["finetune"]["train"].get("posemb_interp", "bicubic")
    return [
        "## Fine-tuning resolution and position-embedding interpolation (paper sec. 3.2)", "",
        "![resolution](figures/resolution.png)", "",
        f"*Figure {number(r, 'resolution')}. The same checkpoints fine-tuned at {r.lo} px and at {r.hi} px. At "
        f"{r.hi} px the ViT keeps its patch size, so its sequence grows and its position embeddings are resampled "
        f"in 2D ({interp}); the convnets need no change. Where the darker bar stands higher, the higher "
        "resolution helped (claim c).*", ""] + _ablation(r)


def hyperrule(r: Results) -> list[str]:
    table = hyperrule_table(r.summary, r.hyperrule, r.plan)
    if table.empty:
        return []
    ft = r.plan.finetune_train(next(iter(r.plan.config["finetune"]["hyperrule"]["runs"])))
    return [
        "## BiT's own fine-tuning recipe (BiT-HyperRule)", "",
        f"The paper's BiT-L numbers come from BiT's recipe, and App. B.1.1 also runs ResNets with it. Here the "
        f"same checkpoint fine-tuned with the shared protocol (for this model SGD lr {ft.get('lr')}, "
        f"{ft.get('schedule')} decay, {ft.get('steps')} steps of batch {ft.get('batch_size')}) "
        f"and with the {hyperrule_text(r.plan)}.", "",
        table.to_markdown(index=False), ""]


def noisy_student(r: Results) -> list[str]:
    table = ns_table(r.summary, r.pretrain, r.plan, r.ns_info, r.common)
    if table.empty:
        return []
    return [
        "## Noisy Student (the Table 2 baseline's recipe)", "",
        ("Iteration 0 is the teacher, pre-trained on the labelled set. In each iteration the un-noised teacher "
         "pseudo-labels the unlabelled pool, confident predictions are kept and class-balanced, and a noised "
         "student (RandAugment input noise, dropout and stochastic depth) trains on labelled + pseudo-labelled "
         "images, then teaches the next iteration (`vit/data/pseudo_label.py`). Val top-1 is on the labelled "
         "set's own val split. Pseudo-label precision is the share of the kept (confidence at or above the "
         "threshold, before balancing) and of the selected (balanced, duplicated copies counted) pseudo labels "
         "that match the pool's true labels, beside the labelling teacher's top-1 over the whole pool. The "
         "pool's labels are read only for this audit, after the pseudo-labelled set is written, and never "
         "select, label or train anything (\"no labels to audit\" where the pool has none)."), "",
        table.to_markdown(index=False), ""]


def self_supervised(r: Results) -> list[str]:
    table, sentences = ssl_table(r.summary, r.plan)
    if table.empty:
        return []
    paper = r.reference.get("pretrain_hparams", {}).get("self_supervised_masked_patch", {})
    return [
        "## Self-supervised pre-training (paper sec. 4.6)", "",
        "The same ViT pre-trained on the same images without their labels, by masked patch prediction "
        "(half the patch embeddings corrupted: 80 % a learned mask token, 10 % another patch, 10 % unchanged; "
        "the model predicts each corrupted patch's 3-bit mean colour, 512 classes; `vit/models/mpp.py`), then "
        "fine-tuned exactly like the supervised checkpoints; beside it the same architecture from scratch and "
        "pre-trained with labels.", "",
        table.to_markdown(index=False), "",
        " ".join(sentences) + (
            f" The paper (sec. 4.6): ViT-B/16 pre-trained this way on JFT reaches "
            f"{paper.get('imagenet_top1_after_finetune', '?')} % ImageNet top-1 after fine-tuning, "
            f"{paper.get('vs_scratch', '?')} against training from scratch and {paper.get('vs_supervised', '?')} "
            "against supervised pre-training (paper's numbers)." if paper else ""), ""]


def learned(r: Results) -> list[str]:
    """Paper Figs. 6 and 7 from the inspected checkpoint (vit.evaluate.inspect)."""
    ins = r.inspect
    if not ins:
        return []
    pos, dist = ins["posemb"], ins["distance"]
    return [
        "## What the ViT learned (paper Figs. 6 and 7)", "",
        f"From the checkpoint of {ins['label']}, on {ins['images']} images of its `{ins['split']}` split "
        "(`results/inspect/`).", "",
        "![attention rollout](figures/attention_rollout.png)", "",
        f"*Figure {number(r, 'attention_rollout')}. Attention rollout (Abnar & Zuidema 2020, as in the paper's "
        "Fig. 6): attention averaged over heads, the identity added for the residual path, multiplied through all "
        "layers; shown is how much the class token draws from each patch. Bright regions are what the "
        "classification reads.*", "",
        "![embedding filters](figures/embedding_filters.png)", "",
        f"*Figure {number(r, 'embedding_filters')}. Principal components of the patch-embedding filters (paper "
        "Fig. 7 left): the basis the first layer projects each patch onto. The paper's look like plausible "
        "low-frequency basis functions.*", "",
        "![position embedding similarity](figures/posemb_similarity.png)", "",
        f"*Figure {number(r, 'posemb_similarity')}. Cosine similarity of each patch's position embedding (tile) "
        "with every other patch's (pixels of the tile), paper Fig. 7 centre. 2D structure shows as a bright spot at "
        f"the tile's own position with brighter row and column: here 4-neighbours {pos['neighbour']:.2f} vs "
        f"others {pos['other']:.2f}, same row or column {pos['same_row_or_col']:.2f} vs neither "
        f"{pos['neither']:.2f} (claim f).*", "",
        "![attention distance](figures/attention_distance.png)", "",
        f"*Figure {number(r, 'attention_distance')}. Mean attention distance of every head against depth (paper "
        "Fig. 7 right): the attention-weighted pixel distance between a query patch and the patches it attends to, "
        f"averaged over images. The dashed line is uniform attention ({ins['uniform_distance']:.1f} px); "
        "the paper finds distances spread in the lowest layers, some heads already global, and all heads "
        "far in the deep layers (claim e). Per-layer means here: "
        + ", ".join(f"{sum(row) / len(row):.1f}" for row in dist) + " px.*", ""]
