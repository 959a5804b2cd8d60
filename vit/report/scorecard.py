"""The paper's claims, checked against this run's numbers: one verdict per claim, with the evidence.

Each check reads the tidy tables vit.report builds (fine-tuned runs with labels, per-seed scores, the
resolution ablation, vit.evaluate.inspect's summaries) and returns a Claim. Verdicts are "holds", "partly",
"does not hold", "not tested" (the preset lacks what the claim needs) or "cannot be judged" (a difference
rests on fewer than 2 seeds), decided by a rule each function states. Every difference over seeds goes
through one helper, `diff_over_seeds`, and one rule, RULE, which the report prints above the scorecard.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import pandas as pd

from vit.plan import Plan

HOLDS, PARTLY, FAILS, UNTESTED, UNJUDGED = "holds", "partly", "does not hold", "not tested", "cannot be judged"
RULE = ("A difference counts only where it exceeds twice its standard error over seeds (2 SE): "
        "SE = sd of the per-seed differences / sqrt(n) where both sides ran the same n seeds (paired), "
        "sqrt(sd_a²/n_a + sd_b²/n_b) where they did not (sd with ddof=1); a difference that rests on fewer "
        "than 2 seeds cannot be judged. Differences are quoted as mean difference ± SE.")


@dataclass
class Claim:
    key: str
    claim: str
    paper: str      # the paper's evidence (its numbers are labelled as the paper's)
    evidence: str   # this run's numbers
    verdict: str


@dataclass(frozen=True, eq=False)  # eq=False: per_seed is a Series
class Diff:
    """A difference of two means over seeds, with its standard error (nan below 2 seeds)."""
    mean: float
    se: float
    n: int                      # seeds behind it (the fewer of the two sides when unpaired)
    per_seed: pd.Series | None  # the per-seed differences where the sides are paired, else None

    @property
    def judged(self) -> bool:
        return self.n >= 2

    @property
    def counts(self) -> bool:
        """RULE: the difference is positive beyond 2 SE (never with fewer than 2 seeds)."""
        return self.judged and self.mean > 2 * self.se

    def __str__(self) -> str:
        if self.judged:
            return f"{self.mean:+.1f} ± {self.se:.1f}"
        return f"{self.mean:+.1f} ({_seeds(self.n)}, no SE)"


def _as_diff(x: pd.Series | Diff) -> Diff:
    """Per-seed values (indexed by seed) as a Diff against zero, so values and differences combine alike."""
    if isinstance(x, Diff):
        return x
    n = len(x)
    return Diff(x.mean(), x.std(ddof=1) / math.sqrt(n) if n > 1 else math.nan, n, x)


def diff_over_seeds(a: pd.Series | Diff, b: pd.Series | Diff) -> Diff:
    """a - b under RULE. a and b are per-seed values indexed by seed, or Diffs (then a difference of
    differences). Paired where both sides hold the same seeds, because what a seed shares across the two
    sides (data order, initialisation) then cancels; unpaired otherwise."""
    a, b = _as_diff(a), _as_diff(b)
    pa, pb = a.per_seed, b.per_seed
    if (pa is not None and pb is not None and pa.index.is_unique and pb.index.is_unique
            and set(pa.index) == set(pb.index)):
        return _as_diff(pa - pb)
    return Diff(a.mean - b.mean, math.hypot(a.se, b.se), min(a.n, b.n), None)


def _seeds(n: int) -> str:
    return f"{n} seed" + ("" if n == 1 else "s")


def _per_seed(d: pd.DataFrame) -> pd.Series:
    """top-1 indexed by seed (the mean where a seed has several rows), the form diff_over_seeds pairs on."""
    return d.groupby("seed").top1.mean()


def _unjudged(diffs: list[Diff]) -> str | None:
    """The verdict where any difference rests on fewer than 2 seeds (its seed noise is unknown, so it can
    be called neither an effect nor its absence); None where all can be judged."""
    n = min(d.n for d in diffs)
    return f"{UNJUDGED}: {_seeds(n)}" if n < 2 else None


def _judge(diffs: list[Diff]) -> str:
    """holds if every difference counts under RULE, does not hold if none does, else partly."""
    outcomes = [d.counts for d in diffs]
    return _unjudged(diffs) or (HOLDS if all(outcomes) else FAILS if not any(outcomes) else PARTLY)


def family(plan: Plan, model: str) -> str:
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
    """(a) Every (task, resolution) that both ran: the largest upstream's fine-tune against the same model
    from scratch (finetune.higher_resolutions_for may train the two at different resolutions); better = the
    mean difference counts under RULE (beyond 2 SE over seeds)."""
    text = "pre-training beats training from scratch on every downstream task"
    paper = "sec. 4: every transfer result starts from a pre-trained model; training ViT on the small tasks alone is far worse"
    largest = plan.upstreams[-1] if plan.upstreams else None
    models = [m for m in plan.config["finetune"].get("from_scratch", []) if (m, largest) in plan.finetune_runs]
    if not models:
        return Claim("a", text, paper, "no model is both pre-trained and trained from scratch here", UNTESTED)
    parts, diffs = [], []
    for m in models:
        d = summary[summary.model == m]
        lost = []
        scratch = dict(list(d[d.upstream == "scratch"].groupby(["task_label", "resolution"])))
        pairs = [(key, g) for key, g in d[d.upstream == largest].groupby(["task_label", "resolution"])
                 if key in scratch]
        for (task, res), g in pairs:
            diffs.append(diff_over_seeds(_per_seed(g), _per_seed(scratch[task, res])))
            if not diffs[-1].counts:
                lost.append(f"{task} {res} px ({diffs[-1]})")
        parts.append(f"{plan.model_label(m)}: better on {len(pairs) - len(lost)}/{len(pairs)} task x resolution "
                     f"pairs" + (f", not on {', '.join(lost)}" if lost else ""))
    verdict = _judge(diffs)
    return Claim("a", text, paper, f"pre-trained on {plan.label(largest)} vs from scratch "
                 f"(points = mean top-1 difference ± SE): " + "; ".join(parts), verdict)


@dataclass(frozen=True)
class Leads:
    """The ResNet's lead over the ViT on the smallest and the largest upstream set: what (b) and (b') read."""
    first: Diff
    last: Diff
    evidence: str


def _leads(scores: pd.DataFrame, plan: Plan, resolution: int) -> Leads | None:
    """The ResNet minus the ViT, mean over tasks per seed at `resolution`, after pre-training on the smallest
    and on the largest upstream set trained on here (released weights are left out: their data is not one
    of our sizes); None where a ViT, a ResNet or a second upstream set is missing."""
    ups = [u for u in plan.upstreams if plan.dataset(u).get("source") != "released"]
    fam = {m: family(plan, m) for m in scores.model.unique()}
    vits = [m for m, f in fam.items() if f == "vit"]
    resnets = [m for m, f in fam.items() if f == "resnet"]
    if len(ups) < 2 or not vits or not resnets:
        return None
    r, v = resnets[0], vits[0]
    at = scores[scores.resolution == resolution]

    def lead(up: str) -> Diff:
        s = at[at.upstream == up]
        return diff_over_seeds(_per_seed(s[s.model == r]), _per_seed(s[s.model == v]))

    first, last = lead(ups[0]), lead(ups[-1])
    return Leads(first, last, f"{plan.model_label(r)} minus {plan.model_label(v)} (mean over tasks, {resolution} px, "
                              f"± SE): {first} points on {plan.label(ups[0])}, {last} on {plan.label(ups[-1])}")


NO_LEADS = "needs a ViT and a ResNet pre-trained on at least two upstream sets"


def resnet_then_vit(scores: pd.DataFrame, plan: Plan, resolution: int) -> Claim:
    """(b) Mean over tasks, per seed, at `resolution`: the ResNet's lead over the ViT on the smallest and
    the largest upstream set. Holds if the lead counts (RULE) on the smallest and not on the largest (the
    ViT leads or ties within 2 SE); partly if it counts on the smallest and only shrinks beyond 2 SE."""
    text = "with the smallest upstream set the ResNet beats the ViT; with the largest the ViT catches up or wins"
    paper = "Fig. 3 / Table 5 (paper): ViT-L/16 76.5 vs ViT-B/16 77.9 ImageNet top-1 after ImageNet pre-training, below BiT; after JFT-300M ViT-L/16 87.1, ViT-H/14 88.0, above BiT"
    leads = _leads(scores, plan, resolution)
    if leads is None:
        return Claim("b", text, paper, NO_LEADS, UNTESTED)
    g0, g1 = leads.first, leads.last
    verdict = _unjudged([g0, g1]) or (HOLDS if g0.counts and not g1.counts else
                                      PARTLY if g0.counts and diff_over_seeds(g0, g1).counts else FAILS)
    return Claim("b", text, paper, leads.evidence, verdict)


def resnet_lead_shrinks(scores: pd.DataFrame, plan: Plan, resolution: int) -> Claim:
    """(b') The weaker half of (b), judged on its own: the ResNet-minus-ViT lead on the smallest upstream set
    minus that on the largest (per seed, mean over tasks at `resolution`) counts under RULE. It can hold
    where (b) does not: the lead may shrink with data without the ViT catching up at this scale."""
    text = "the ResNet's lead shrinks as data grows"
    paper = "Fig. 3 (paper): BiT leads after ImageNet pre-training, the two are similar after ImageNet-21k, ViT leads after JFT-300M"
    leads = _leads(scores, plan, resolution)
    if leads is None:
        return Claim("b'", text, paper, NO_LEADS, UNTESTED)
    shrink = diff_over_seeds(leads.first, leads.last)
    return Claim("b'", text, paper, f"{leads.evidence}; the lead shrinks by {shrink}", _judge([shrink]))


def higher_resolution_helps(summary: pd.DataFrame, plan: Plan, ablation: pd.DataFrame | None = None) -> Claim:
    """(c) Every pre-trained ViT: mean over tasks at the highest fine-tuning resolution against the
    pre-training one, per seed. Holds if higher beats lower under RULE (beyond 2 SE) for every checkpoint."""
    text = "fine-tuning above the pre-training resolution, position embeddings interpolated in 2D, beats the pre-training resolution"
    paper = "sec. 3.2 and Tables 2/5 (paper): fine-tuning at 384 px (512/518 for ImageNet) after pre-training at 224 px"
    d = summary[(summary.upstream != "scratch") & summary.model.map(lambda m: family(plan, m) == "vit")]
    parts, diffs = [], []
    for (m, up), g in d.groupby(["model", "upstream"]):
        lo = plan.pretrain_resolution(m, up)
        hi = g.resolution.max()
        if hi <= lo or lo not in set(g.resolution):
            continue
        diffs.append(diff_over_seeds(_per_seed(g[g.resolution == hi]), _per_seed(g[g.resolution == lo])))
        parts.append(f"{plan.model_label(m)} from {plan.label(up)}: {hi} px minus {lo} px {diffs[-1]}")
    if not diffs:
        return Claim("c", text, paper, "no ViT is fine-tuned both at and above its pre-training resolution", UNTESTED)
    if ablation is not None and len(ablation):
        for mode, g in ablation.groupby("posemb_interp"):
            parts.append(f"with {mode} interpolation instead: mean {g.groupby('seed').top1.mean().mean():.1f}")
    return Claim("c", text, paper, "mean top-1 over tasks, points ± SE: " + "; ".join(parts), _judge(diffs))


def compute_efficiency(scores: pd.DataFrame, plan: Plan) -> Claim:
    """(d) Take the best accuracy both families reach (the lower of their best means over upstream
    sets); the pre-training compute each needs to reach it (its cheapest run at or above it). Holds if
    the ViT needs less."""
    text = "the ViT reaches a given transfer accuracy with less pre-training compute than the ResNet"
    paper = "Fig. 5 / Table 6 (paper): ViT needs about 2-4x less compute than ResNets for the same Average-5"
    s = scores[scores.pretrain_pflops > 0]
    means = s.groupby(["model", "upstream"]).agg(top1=("top1", "mean"), pflops=("pretrain_pflops", "first")).reset_index()
    fam = means.model.map(lambda m: family(plan, m))
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
    more similar than pairs sharing neither, and similarity falls with grid distance beyond noise: the
    (Spearman) correlation is below -2 SD of its permutation null (a Mantel test; RULE's 2 SE, for a
    statistic that has no seeds)."""
    text = "the position embeddings learn 2D structure: nearby, same-row and same-column patches are more similar"
    paper = "Fig. 7 centre (paper, ViT-L/32, 7x7 grid): closer patches have more similar embeddings, with row-column structure"
    if not inspect:
        return Claim("f", text, paper, "no ViT checkpoint inspected in this preset", UNTESTED)
    p = inspect["posemb"]
    if "distance_corr_null_sd" not in p:
        return Claim("f", text, paper, f"{inspect['label']}: its inspection predates the permutation null; delete "
                     "results/inspect and rerun the `inspect` rule", UNTESTED)
    checks = [p["neighbour"] > p["other"], p["same_row_or_col"] > p["neither"],
              p["distance_corr"] < -2 * p["distance_corr_null_sd"]]
    evidence = (f"{inspect['label']}: cosine similarity of 4-neighbours {p['neighbour']:.2f} vs other pairs "
                f"{p['other']:.2f}; same row or column {p['same_row_or_col']:.2f} vs neither {p['neither']:.2f}; "
                f"correlation with grid distance {p['distance_corr']:+.2f} (2 SD of its permutation null: "
                f"{2 * p['distance_corr_null_sd']:.2f})")
    return Claim("f", text, paper, evidence, HOLDS if all(checks) else FAILS if not any(checks) else PARTLY)


def scorecard(summary, scores, plan: Plan, resolution, ablation=None, inspect=None) -> pd.DataFrame:
    """One row per claim, (b') beside (b), with the columns key, claim, paper, evidence, verdict; the rule
    the verdicts follow is RULE."""
    claims = [pretraining_beats_scratch(summary, plan), resnet_then_vit(scores, plan, resolution),
              resnet_lead_shrinks(scores, plan, resolution), higher_resolution_helps(summary, plan, ablation), compute_efficiency(scores, plan),
              attention_distance_grows(inspect), posemb_2d_structure(inspect)]
    return pd.DataFrame([asdict(c) for c in claims])
