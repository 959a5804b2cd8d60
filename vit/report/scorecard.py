"""The paper's claims, checked against this run's numbers: one verdict per claim, with the evidence.

Each check reads the tidy tables vit.report builds (fine-tuned runs with labels, per-seed scores, the
resolution ablation, vit.evaluate.inspect's summaries) and returns a Claim. Verdicts are "holds", "partly",
"does not hold" or "not tested" (the preset lacks what the claim needs), decided by a rule each
function states: a difference counts when it exceeds the spread over seeds (one sd of the difference
of the two means), so seed noise is not called an effect.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import pandas as pd

from vit.plan import Plan

HOLDS, PARTLY, FAILS, UNTESTED = "holds", "partly", "does not hold", "not tested"


@dataclass
class Claim:
    key: str
    claim: str
    paper: str      # the paper's evidence (its numbers are labelled as the paper's)
    evidence: str   # this run's numbers
    verdict: str


def _diff(a: pd.Series, b: pd.Series) -> tuple[float, float]:
    """mean(a) - mean(b), and the sd of that difference over seeds (0 with a single seed)."""
    var = sum(x.var(ddof=1) / len(x) for x in (a, b) if len(x) > 1)
    return a.mean() - b.mean(), var ** 0.5


def _family(plan: Plan, model: str) -> str:
    """vit, resnet or other; models pre-trained without labels (sec. 4.6) are kept out of the supervised
    comparisons the claims make."""
    spec = plan.model_spec(model)
    if plan.self_supervised(model):
        return "self-supervised"
    if plan.is_vit(model):
        return "vit"
    name = str(spec.get("name", ""))
    return "resnet" if spec.get("arch") == "bit" or name.startswith(("BiT", "resnetv2")) else "other"


def pretraining_beats_scratch(summary: pd.DataFrame, plan: Plan) -> Claim:
    """(a) Every (task, resolution): the largest upstream's fine-tune against the same model from scratch;
    better = the mean difference exceeds its sd over seeds."""
    text = "pre-training beats training from scratch on every downstream task"
    paper = "sec. 4: every transfer result starts from a pre-trained model; training ViT on the small tasks alone is far worse"
    largest = plan.upstreams[-1] if plan.upstreams else None
    models = [m for m in plan.config["finetune"].get("from_scratch", []) if (m, largest) in plan.finetune_runs]
    if not models:
        return Claim("a", text, paper, "no model is both pre-trained and trained from scratch here", UNTESTED)
    parts, outcomes = [], []
    for m in models:
        d = summary[summary.model == m]
        lost = []
        pairs = d[d.upstream == largest].groupby(["task_label", "resolution"])
        for (task, res), g in pairs:
            s = d[(d.upstream == "scratch") & (d.task_label == task) & (d.resolution == res)]
            diff, sd = _diff(g.top1, s.top1)
            outcomes.append(diff > sd)
            if not outcomes[-1]:
                lost.append(f"{task} {res} px ({diff:+.1f} ± {sd:.1f})")
        parts.append(f"{plan.model_label(m)}: better on {pairs.ngroups - len(lost)}/{pairs.ngroups} task x resolution "
                     f"pairs" + (f", not on {', '.join(lost)}" if lost else ""))
    verdict = HOLDS if all(outcomes) else FAILS if not any(outcomes) else PARTLY
    return Claim("a", text, paper, f"pre-trained on {plan.label(largest)} vs from scratch "
                 f"(points = mean top-1 difference): " + "; ".join(parts), verdict)


def resnet_then_vit(scores: pd.DataFrame, plan: Plan, resolution: int) -> Claim:
    """(b) Mean over tasks, per seed, at `resolution`: the ResNet's lead over the ViT on the smallest and
    the largest upstream set. Holds if the ResNet leads on the smallest and the ViT leads or ties
    (within noise) on the largest; partly if the lead only shrinks beyond noise."""
    text = "with the smallest upstream set the ResNet beats the ViT; with the largest the ViT catches up or wins"
    paper = "Fig. 3 / Table 5 (paper): ViT-L/16 76.5 vs ViT-B/16 77.9 ImageNet top-1 after ImageNet pre-training, below BiT; after JFT-300M ViT-L/16 87.1, ViT-H/14 88.0, above BiT"
    ups = [u for u in plan.upstreams if plan.dataset(u).get("source") != "released"]
    fam = {m: _family(plan, m) for m in scores.model.unique()}
    vits = [m for m, f in fam.items() if f == "vit"]
    resnets = [m for m, f in fam.items() if f == "resnet"]
    s = scores[scores.resolution == resolution]
    if len(ups) < 2 or not vits or not resnets:
        return Claim("b", text, paper, "needs a ViT and a ResNet pre-trained on at least two upstream sets", UNTESTED)
    v, r = vits[0], resnets[0]
    gaps = {}
    for up in (ups[0], ups[-1]):
        gaps[up] = _diff(s[(s.model == r) & (s.upstream == up)].top1, s[(s.model == v) & (s.upstream == up)].top1)
    (g0, sd0), (g1, sd1) = gaps[ups[0]], gaps[ups[-1]]
    resnet_first = g0 > sd0
    if resnet_first and g1 <= sd1:
        verdict = HOLDS
    elif resnet_first and g0 - g1 > (sd0 ** 2 + sd1 ** 2) ** 0.5:
        verdict = PARTLY
    else:
        verdict = FAILS
    evidence = (f"{plan.model_label(r)} minus {plan.model_label(v)} (mean over tasks, {resolution} px): "
                f"{g0:+.1f} ± {sd0:.1f} points on {plan.label(ups[0])}, "
                f"{g1:+.1f} ± {sd1:.1f} on {plan.label(ups[-1])}")
    return Claim("b", text, paper, evidence, verdict)


def higher_resolution_helps(summary: pd.DataFrame, plan: Plan, ablation: pd.DataFrame | None = None) -> Claim:
    """(c) Every pre-trained ViT: mean over tasks at the highest fine-tuning resolution against the
    pre-training one. Holds if higher beats lower beyond noise for every checkpoint."""
    text = "fine-tuning above the pre-training resolution, position embeddings interpolated in 2D, beats the pre-training resolution"
    paper = "sec. 3.2 and Tables 2/5 (paper): fine-tuning at 384 px (512/518 for ImageNet) after pre-training at 224 px"
    d = summary[(summary.upstream != "scratch") & summary.model.map(lambda m: _family(plan, m) == "vit")]
    parts, outcomes = [], []
    for (m, up), g in d.groupby(["model", "upstream"]):
        lo = plan.pretrain_resolution(m, up)
        hi = g.resolution.max()
        if hi <= lo:
            continue
        per_seed = g.groupby(["resolution", "seed"]).top1.mean()
        diff, sd = _diff(per_seed[hi], per_seed[lo]) if lo in per_seed.index.get_level_values(0) else (None, None)
        if diff is None:
            continue
        outcomes.append(diff > sd)
        parts.append(f"{plan.model_label(m)} from {plan.label(up)}: {hi} px minus {lo} px "
                     f"{diff:+.1f} ± {sd:.1f}")
    if not outcomes:
        return Claim("c", text, paper, "no ViT is fine-tuned both at and above its pre-training resolution", UNTESTED)
    if ablation is not None and len(ablation):
        for mode, g in ablation.groupby("posemb_interp"):
            parts.append(f"with {mode} interpolation instead: mean {g.groupby('seed').top1.mean().mean():.1f}")
    verdict = HOLDS if all(outcomes) else FAILS if not any(outcomes) else PARTLY
    return Claim("c", text, paper, "mean top-1 over tasks, points: " + "; ".join(parts), verdict)


def compute_efficiency(scores: pd.DataFrame, plan: Plan) -> Claim:
    """(d) Take the best accuracy both families reach (the lower of their best means over upstream
    sets); the pre-training compute each needs to reach it (its cheapest run at or above it). Holds if
    the ViT needs less."""
    text = "the ViT reaches a given transfer accuracy with less pre-training compute than the ResNet"
    paper = "Fig. 5 / Table 6 (paper): ViT needs about 2-4x less compute than ResNets for the same Average-5"
    s = scores[scores.pretrain_pflops > 0]
    means = s.groupby(["model", "upstream"]).agg(top1=("top1", "mean"), pflops=("pretrain_pflops", "first")).reset_index()
    fam = means.model.map(lambda m: _family(plan, m))
    v, r = means[fam == "vit"], means[fam == "resnet"]
    if v.empty or r.empty:
        return Claim("d", text, paper, "needs pre-training runs of a ViT and a ResNet", UNTESTED)
    target = min(v.top1.max(), r.top1.max())
    need_v = v[v.top1 >= target].pflops.min()
    need_r = r[r.top1 >= target].pflops.min()
    evidence = (f"highest mean top-1 both reach: {target:.1f} %; pre-training compute to reach it: "
                f"ViT {need_v:.3g} PFLOPs, ResNet {need_r:.3g} PFLOPs (ratio ResNet/ViT {need_r / need_v:.2g})")
    return Claim("d", text, paper, evidence, HOLDS if need_v < need_r else FAILS)


def attention_distance_grows(inspect: dict | None) -> Claim:
    """(e) From vit.evaluate.inspect's summary: the per-layer mean attention distance rises from the first to the
    last layer (Spearman rho > 0 and last > first), and some head of the first layer attends at least
    as far as uniform attention would (its mean distance >= 0.9 x the uniform reference)."""
    text = "mean attention distance grows with depth, and some heads in the lowest layers already attend globally"
    paper = "Fig. 7 right (paper, ViT-L/16): distances spread widely in the lowest layers, some heads attend most of the image; all heads attend far in the deep layers"
    if not inspect:
        return Claim("e", text, paper, "no ViT checkpoint inspected in this preset", UNTESTED)
    import numpy as np

    dist = np.asarray(inspect["distance"])           # (layers, heads), pixels
    uniform = float(inspect["uniform_distance"])
    per_layer = dist.mean(axis=1)
    rho = pd.Series(per_layer).corr(pd.Series(np.arange(len(per_layer), dtype=float)), method="spearman")
    grows = rho > 0 and per_layer[-1] > per_layer[0]
    global_low = dist[0].max() >= 0.9 * uniform
    evidence = (f"{inspect['label']}: per-layer mean distance {', '.join(f'{x:.1f}' for x in per_layer)} px "
                f"(layer 1 to {len(per_layer)}; Spearman rho with depth {rho:+.2f}); layer 1 heads "
                f"{dist[0].min():.1f}-{dist[0].max():.1f} px vs {uniform:.1f} px for uniform attention")
    verdict = HOLDS if grows and global_low else PARTLY if grows or global_low else FAILS
    return Claim("e", text, paper, evidence, verdict)


def posemb_2d_structure(inspect: dict | None) -> Claim:
    """(f) From vit.evaluate.inspect's summary: 4-neighbours more similar than other pairs, same row or column
    more similar than pairs sharing neither, and similarity falls with grid distance."""
    text = "the position embeddings learn 2D structure: nearby, same-row and same-column patches are more similar"
    paper = "Fig. 7 centre (paper, ViT-L/32, 7x7 grid): closer patches have more similar embeddings, with row-column structure"
    if not inspect:
        return Claim("f", text, paper, "no ViT checkpoint inspected in this preset", UNTESTED)
    p = inspect["posemb"]
    checks = [p["neighbour"] > p["other"], p["same_row_or_col"] > p["neither"], p["distance_corr"] < 0]
    evidence = (f"{inspect['label']}: cosine similarity of 4-neighbours {p['neighbour']:.2f} vs other pairs "
                f"{p['other']:.2f}; same row or column {p['same_row_or_col']:.2f} vs neither {p['neither']:.2f}; "
                f"correlation with grid distance {p['distance_corr']:+.2f}")
    return Claim("f", text, paper, evidence, HOLDS if all(checks) else FAILS if not any(checks) else PARTLY)


def scorecard(summary, scores, plan: Plan, resolution, ablation=None, inspect=None) -> pd.DataFrame:
    claims = [pretraining_beats_scratch(summary, plan), resnet_then_vit(scores, plan, resolution),
              higher_resolution_helps(summary, plan, ablation), compute_efficiency(scores, plan),
              attention_distance_grows(inspect), posemb_2d_structure(inspect)]
    return pd.DataFrame([asdict(c) for c in claims])
