"""The paper's claims, checked against this run's numbers: one verdict per claim, with the evidence.

Each check reads the fine-tuned runs (one row per run: model, upstream, task, resolution, seed, and
pretrain_seed where checkpoints have several), the resolution ablation and vit.evaluate.inspect's summary,
and returns a Claim: a verdict on the mean over tasks (the headline) and one per task beside it. Every
verdict follows vit.report.stats' rule (RULE, printed above the scorecard): a one-sided 95 % test at its
degrees of freedom over independent units, "not detected" where no effect is beyond noise, "does not hold"
where the opposite is. tests/test_scorecard.py feeds every claim data with no effect and with a planted one.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from vit.plan import Plan
from vit.evaluate.nulls import permutation_p
from vit.report import stats
from vit.report.frontier import DRAWS, compute_to_reach, frontier_gap, log_ratio, nearest_pair
from vit.report.stats import FAILS, HOLDS, NOT_DETECTED, PARTLY, UNJUDGED, UNTESTED, Test

RULE = stats.rule_text()


@dataclass
class Claim:
    key: str
    claim: str
    paper: str      # the paper's evidence (its numbers are labelled as the paper's)
    evidence: str   # this run's numbers
    verdict: str    # on the mean over tasks
    per_task: str = ""  # the verdict on each task, where the claim reads tasks


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


def _labels(runs: pd.DataFrame) -> dict[str, str]:
    """task -> its label, in order of first appearance."""
    label = runs["task_label"] if "task_label" in runs else runs["task"]
    return dict(zip(runs["task"], label))


def _split(runs: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The runs of each task (one groupby: the synthetic tests call the claims thousands of times)."""
    return {t: g for t, g in runs.groupby("task", sort=False)}


def _each(labels: dict[str, str], tests: dict[str, Test]) -> str:
    """" (per task: Task +1.0 ± 0.5 (p 0.03); ...)", or "" without tasks."""
    return " (per task: " + "; ".join(f"{labels[t]} {d}" for t, d in tests.items()) + ")" if tests else ""


def _per_task(labels: dict[str, str], verdicts: dict[str, str]) -> str:
    """"Task: verdict; ..." in the tasks' order."""
    return "; ".join(f"{labels[t]}: {verdicts[t]}" for t in labels if t in verdicts)


def _arm(runs: pd.DataFrame, model: str, upstream: str, resolution: int | None = None) -> pd.DataFrame:
    s = runs[(runs.model == model) & (runs.upstream == upstream)]
    return s if resolution is None else s[s.resolution == resolution]


def _one_draw(runs: pd.DataFrame) -> str:
    """A note where pre-trained checkpoints in `runs` have one pre-training seed each: their error bars then
    hold the fine-tuning seeds only, and another pre-training draw can move them by more (docs/forms.md)."""
    pre = runs[runs.upstream != "scratch"]
    if pre.empty:
        return ""
    seeds = pre.groupby(["model", "upstream"])["pretrain_seed"].nunique() if "pretrain_seed" in pre else pd.Series([1])
    return "" if seeds.min() >= 2 else (" Error bars over fine-tuning seeds only: one pre-training seed per "
                                        "checkpoint, so the pre-training variation is not in them.")


def pretraining_beats_scratch(summary: pd.DataFrame, plan: Plan, tasks: bool = True) -> Claim:
    """(a) Each model trained from scratch: its fine-tunes from the largest upstream set against the scratch
    runs, mean over tasks at every resolution both ran (Welch: different initialisations). Holds where
    every such test counts, partly where one counts at ALPHA / k (stats.combine)."""
    text = "pre-training beats training from scratch on every downstream task"
    paper = "sec. 4: every transfer result starts from a pre-trained model; training ViT on the small tasks alone is far worse"
    largest = plan.upstreams[-1] if plan.upstreams else None
    models = [m for m in plan.config["finetune"].get("from_scratch", []) if (m, largest) in plan.finetune_runs]
    if not models:
        return Claim("a", text, paper, "no model is both pre-trained and trained from scratch here", UNTESTED)
    parts, tests, per_task = [], [], []
    for m in models:
        pre, scratch = _arm(summary, m, largest), _arm(summary, m, "scratch")
        for res in sorted(set(pre.resolution) & set(scratch.resolution)):
            a, b = pre[pre.resolution == res], scratch[scratch.resolution == res]
            tests.append(stats.difference(a, b))
            at, bt, labels = _split(a), _split(b), _labels(a)
            each = {t: stats.difference(at[t], bt[t]) for t in at if t in bt} if tasks else {}
            parts.append(f"{plan.model_label(m)} at {res} px: {tests[-1]}" + _each(labels, each))
            if each:
                per_task.append(f"{plan.model_label(m)}: " + _per_task(labels, {t: stats.single(d) for t, d in each.items()}))
    if not tests:
        return Claim("a", text, paper, "no resolution has both pre-trained and from-scratch fine-tunes", UNTESTED)
    return Claim("a", text, paper, f"pre-trained on {plan.label(largest)} minus from scratch, mean top-1 over tasks "
                 f"(points ± SE, one-sided p): " + "; ".join(parts) + _one_draw(summary[summary.model.isin(models)]),
                 stats.combine(tests), " | ".join(per_task))


@dataclass(frozen=True)
class Leads:
    """The ResNet's lead over the ViT on the smallest and the largest upstream set: what (b) and (b') read."""
    resnet: str
    vit: str
    first: str   # the smallest upstream set
    last: str    # the largest
    runs: pd.DataFrame  # both models' runs at the resolution, on those two sets
    by_task: dict       # the same runs split by task
    _memo: dict = field(default_factory=dict, repr=False)

    def lead(self, upstream: str, task: str | None = None) -> Test:
        if (upstream, task) not in self._memo:
            r = self.runs if task is None else self.by_task[task]
            self._memo[upstream, task] = stats.difference(_arm(r, self.resnet, upstream), _arm(r, self.vit, upstream))
        return self._memo[upstream, task]

    def shrink(self, task: str | None = None) -> Test:
        """The lead on the smallest set minus that on the largest (independent checkpoints)."""
        return stats.welch(self.lead(self.first, task), self.lead(self.last, task))


def _leads(summary: pd.DataFrame, plan: Plan, resolution: int) -> Leads | None:
    """The first ResNet and ViT pre-trained on the smallest and the largest upstream set trained on here
    (released weights are left out: their data is not one of our sizes), at `resolution`; None where a
    ViT, a ResNet or a second upstream set is missing."""
    ups = [u for u in plan.upstreams if plan.dataset(u).get("source") != "released"]
    if len(ups) < 2:
        return None
    at = summary[(summary.resolution == resolution) & summary.upstream.isin([ups[0], ups[-1]])]
    both = [m for m in dict.fromkeys(at.model) if set(at[at.model == m].upstream) == {ups[0], ups[-1]}]
    vits = [m for m in both if family(plan, m) == "vit"]
    resnets = [m for m in both if family(plan, m) == "resnet"]
    if not vits or not resnets:
        return None
    runs = at[at.model.isin([resnets[0], vits[0]])]
    return Leads(resnets[0], vits[0], ups[0], ups[-1], runs, _split(runs))


def _leads_text(leads: Leads, plan: Plan, resolution: int) -> str:
    return (f"{plan.model_label(leads.resnet)} minus {plan.model_label(leads.vit)}, mean over tasks at {resolution} px "
            f"(± SE, one-sided p): {leads.lead(leads.first)} on {plan.label(leads.first)}, {leads.lead(leads.last)} "
            f"on {plan.label(leads.last)}")


NO_LEADS = "needs a ViT and a ResNet pre-trained on the smallest and the largest upstream set"


def _crossover(l0: Test, l1: Test, shrink: Test) -> str:
    """(b)'s verdict from the leads on the smallest (l0) and the largest set (l1): holds where the ResNet
    leads on the smallest and on the largest the ViT leads or the two are equivalent within MARGIN;
    partly where it leads on the smallest and the lead shrinks; does not hold where the ViT leads on the
    smallest, or the ResNet still leads on the largest without a shrink; else not detected."""
    if not (l0.judged and l1.judged):
        return f"{UNJUDGED}: {min(l0.n, l1.n)} seed{'s' * (min(l0.n, l1.n) != 1)}"
    if l0.counts():
        if (-l1).counts() or l1.within():
            return HOLDS
        if shrink.counts():
            return PARTLY
    if l0.against() or (l1.counts() and not shrink.counts()):
        return FAILS
    return NOT_DETECTED


def resnet_then_vit(summary: pd.DataFrame, plan: Plan, resolution: int, tasks: bool = True) -> Claim:
    """(b) The ResNet's lead over the ViT (Welch over units), mean over tasks at `resolution`, after the
    smallest and the largest upstream set; verdict by `_crossover`. "Holds" or "partly" needs the lead on
    the smallest set to count, so on data with no effect they come up in at most ALPHA of runs."""
    text = "with the smallest upstream set the ResNet beats the ViT; with the largest the ViT catches up or wins"
    paper = "Fig. 3 / Table 5 (paper): ViT-L/16 76.5 vs ViT-B/16 77.9 ImageNet top-1 after ImageNet pre-training, below BiT; after JFT-300M ViT-L/16 87.1, ViT-H/14 88.0, above BiT"
    leads = _leads(summary, plan, resolution)
    if leads is None:
        return Claim("b", text, paper, NO_LEADS, UNTESTED)
    lo, hi = leads.lead(leads.last).interval()
    evidence = (f"{_leads_text(leads, plan, resolution)}; on {plan.label(leads.last)} the lead's 90 % interval is "
                f"{lo:+.1f} to {hi:+.1f} (equivalence margin ±{stats.MARGIN:g})" + _one_draw(leads.runs))
    labels = _labels(leads.runs) if tasks else {}
    per_task = _per_task(labels, {t: _crossover(leads.lead(leads.first, t), leads.lead(leads.last, t), leads.shrink(t))
                                  for t in labels})
    return Claim("b", text, paper, evidence,
                 _crossover(leads.lead(leads.first), leads.lead(leads.last), leads.shrink()), per_task)


def resnet_lead_shrinks(summary: pd.DataFrame, plan: Plan, resolution: int, tasks: bool = True) -> Claim:
    """(b') The weaker half of (b), judged on its own: the ResNet-minus-ViT lead on the smallest upstream set
    minus that on the largest (Welch: four independent arms), mean over tasks at `resolution`. It can hold
    where (b) does not: the lead may shrink with data without the ViT catching up at this scale."""
    text = "the ResNet's lead shrinks as data grows"
    paper = "Fig. 3 (paper): BiT leads after ImageNet pre-training, the two are similar after ImageNet-21k, ViT leads after JFT-300M"
    leads = _leads(summary, plan, resolution)
    if leads is None:
        return Claim("b'", text, paper, NO_LEADS, UNTESTED)
    labels = _labels(leads.runs) if tasks else {}
    per_task = _per_task(labels, {t: stats.single(leads.shrink(t)) for t in labels})
    return Claim("b'", text, paper, f"{_leads_text(leads, plan, resolution)}; the lead shrinks by {leads.shrink()}"
                 + _each(labels, {t: leads.shrink(t) for t in labels}) + _one_draw(leads.runs), stats.single(leads.shrink()),
                 per_task)


def higher_resolution_helps(summary: pd.DataFrame, plan: Plan, ablation: pd.DataFrame | None = None,
                            tasks: bool = True) -> Claim:
    """(c) Every pre-trained ViT checkpoint fine-tuned above its pre-training resolution: the highest
    resolution minus the pre-training one, mean over tasks, paired (the same checkpoints fine-tuned two
    ways). Holds where every checkpoint's test counts (stats.combine)."""
    text = "fine-tuning above the pre-training resolution, position embeddings interpolated in 2D, beats the pre-training resolution"
    paper = "sec. 3.2 and Tables 2/5 (paper): fine-tuning at 384 px (512/518 for ImageNet) after pre-training at 224 px"
    d = summary[(summary.upstream != "scratch") & summary.model.map(lambda m: family(plan, m) == "vit")]
    parts, tests, per_task = [], [], []
    for (m, up), g in d.groupby(["model", "upstream"], sort=False):
        lo = plan.pretrain_resolution(m, up)
        hi = g.resolution.max()
        if hi <= lo or lo not in set(g.resolution):
            continue
        a, b = g[g.resolution == hi], g[g.resolution == lo]
        tests.append(stats.difference(a, b, paired=True))
        at, bt, labels = _split(a), _split(b), _labels(a)
        each = {t: stats.difference(at[t], bt[t], paired=True) for t in at if t in bt} if tasks else {}
        parts.append(f"{plan.model_label(m)} from {plan.label(up)}: {hi} px minus {lo} px {tests[-1]}" + _each(labels, each))
        if each:
            per_task.append(_per_task(labels, {t: stats.single(d) for t, d in each.items()}))
    if not tests:
        return Claim("c", text, paper, "no ViT is fine-tuned both at and above its pre-training resolution", UNTESTED)
    if ablation is not None and len(ablation):
        for mode, g in ablation.groupby("posemb_interp"):
            parts.append(f"with {mode} interpolation instead: mean {g.groupby('seed').top1.mean().mean():.1f}")
    return Claim("c", text, paper, "mean top-1 over tasks, points ± SE (one-sided p): " + "; ".join(parts)
                 + _one_draw(d), stats.combine(tests), " | ".join(per_task))


def compute_efficiency(summary: pd.DataFrame, scores: pd.DataFrame, plan: Plan, resolution: int,
                       tasks: bool = True) -> Claim:
    """(d) Judged on one upstream set, the largest, as the paper's Fig. 5 is on JFT-300M: each family's models
    (sizes) as points of pre-training compute and mean transfer. The verdict is a one-sided t test of the
    ViT family's accuracy above the ResNet's at equal compute (`frontier_gap`): a family that is more
    accurate at equal compute reaches a given accuracy with less. The evidence adds the compute each needs
    for the accuracy both reach (`compute_to_reach`) and their ratio, with a 90 % interval from a
    parametric bootstrap over the arms' means (`log_ratio`, fixed seed)."""
    text = "the ViT reaches a given transfer accuracy with less pre-training compute than the ResNet"
    paper = "Fig. 5 / Table 6 (paper): ViT needs about 2-4x less compute than ResNets for the same Average-5"
    largest = plan.upstreams[-1] if plan.upstreams else None
    pf = scores[scores.pretrain_pflops > 0].drop_duplicates(["model", "upstream"]).set_index(["model", "upstream"]).pretrain_pflops
    at = summary[(summary.upstream == largest) & (summary.resolution == resolution)]
    fams = {"vit": [], "resnet": []}
    for m in dict.fromkeys(at.model):
        if family(plan, m) in fams and (m, largest) in pf.index:
            fams[family(plan, m)].append(m)
    if not fams["vit"] or not fams["resnet"]:
        return Claim("d", text, paper, f"needs a ViT and a ResNet pre-trained on {plan.label(largest)}", UNTESTED)

    def judge(runs: pd.DataFrame, bootstrap: bool) -> tuple[str, Test | None, np.ndarray, dict, str]:
        """The verdict, the gap test, the bootstrap's log ratios, the arms (compute, Test) of one task or the
        mean, and what the gap compares."""
        arms = {f: [(float(pf[m, largest]), stats.one_arm(*stats.units(runs[runs.model == m]))) for m in ms]
                for f, ms in fams.items()}
        if not all(t.judged for v in arms.values() for _, t in v):
            return f"{UNJUDGED}: fewer than 2 seeds", None, np.array([]), arms, ""
        gap, cheaper, how = frontier_gap(arms), True, "at equal compute"
        if gap is None:  # no overlap: the nearest models of the two families, by dominance
            gap, cheaper = nearest_pair(arms)
            how = f"nearest models, the ViT on {'no more' if cheaper else 'more'} compute"
        verdict = stats.single(gap) if cheaper else FAILS if gap.against() else NOT_DETECTED
        if not bootstrap:
            return verdict, gap, np.array([]), arms, how
        rng = np.random.default_rng(0)  # a parametric bootstrap: each arm's mean drawn from its Student t
        draws = log_ratio({f: [(c, t.mean + t.se * rng.standard_t(t.df, DRAWS)) for c, t in v] for f, v in arms.items()})
        return verdict, gap, draws, arms, how

    verdict, gap, draws, arms, how = judge(at, bootstrap=tasks)
    point = {f: [(c, np.array([t.mean])) for c, t in v] for f, v in arms.items()}
    target = min(max(t.mean for _, t in v) for v in arms.values())
    need = {f: float(compute_to_reach([c for c, _ in v], np.stack([a for _, a in v], axis=1), np.array([target]))[0])
            for f, v in point.items()}
    spread = (f"; 90 % interval {math.exp(np.quantile(draws, 0.05)):.2g}-{math.exp(np.quantile(draws, 0.95)):.2g}, "
              f"parametric bootstrap" if len(draws) else "")
    models = ", ".join(f"{plan.model_label(m)} {t.mean:.1f} ± {t.se:.1f} % at {c:.3g} PFLOPs"
                       for f in fams for m, (c, t) in zip(fams[f], arms[f]))
    evidence = (f"on {plan.label(largest)}, mean over tasks at {resolution} px: {models}. ViT minus ResNet ({how}): "
                f"{gap if gap is not None else 'not judged'}. Highest accuracy both reach {target:.1f} %; "
                f"compute to reach it: ViT {need['vit']:.3g}, ResNet {need['resnet']:.3g} PFLOPs (ratio ResNet/ViT "
                f"{need['resnet'] / need['vit']:.2g}{spread})" + _one_draw(at))
    per_task = _per_task(_labels(at), {t: judge(g, False)[0] for t, g in _split(at).items()}) if tasks else ""
    return Claim("d", text, paper, evidence, verdict, per_task)


PERMUTATIONS = 2000  # (e)'s permutation null of the depth trend
LOCAL = 0.8          # (e): a "local" head attends within 0.8 x the distance of uniform attention


def _corr(x: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Pearson correlation of x with every row of ys (0 where a row is constant)."""
    xc, yc = x - x.mean(), ys - ys.mean(axis=1, keepdims=True)
    den = np.sqrt((yc**2).sum(axis=1) * (xc**2).sum())
    return np.divide(yc @ xc, den, out=np.zeros(len(ys)), where=den > 0)


def attention_distance_grows(inspect: dict | None) -> Claim:
    """(e) From vit.evaluate.inspect's summary, two checks, each against a null:
    - grows with depth: the Spearman correlation of every head's mean attention distance with its layer,
      against its permutation null (heads shuffled over layers, fixed seed);
    - the lowest layer mixes local and global heads (Fig. 7: some layer-1 heads attend most of the image,
      others locally): its nearest head attends closer than untrained networks' nearest layer-1 head (the
      null: the same architecture at random initialisations, on the same images; p over those draws) and
      within LOCAL x uniform attention's distance, while its farthest head stays beyond that. Uniform
      attention, which is as global as attention gets, passes neither half of this check."""
    text = "mean attention distance grows with depth, and the lowest layers mix local and global heads"
    paper = "Fig. 7 right (paper, ViT-L/16): distances spread widely in the lowest layers, some heads attend most of the image; all heads attend far in the deep layers"
    if not inspect:
        return Claim("e", text, paper, "no ViT checkpoint inspected in this preset", UNTESTED)
    if "untrained_distance" not in inspect:
        return Claim("e", text, paper, f"{inspect['label']}: its inspection predates the untrained-network null; "
                     "delete results/inspect and rerun the `inspect` rule", UNTESTED)
    from scipy.stats import rankdata

    dist = np.asarray(inspect["distance"], dtype=float)           # (layers, heads), pixels
    uniform = float(inspect["uniform_distance"])
    depth = rankdata(np.repeat(np.arange(dist.shape[0]), dist.shape[1]))
    ranks = rankdata(dist.ravel())
    rng = np.random.default_rng(0)
    shuffled = ranks[np.argsort(rng.random((PERMUTATIONS, ranks.size)), axis=1)]  # heads shuffled over layers
    rho, null = _corr(depth, ranks[None])[0], _corr(depth, shuffled)  # Spearman = Pearson of ranks
    grows = (permutation_p(rho, null), permutation_p(-rho, -null))
    untrained_min = np.asarray(inspect["untrained_distance"], dtype=float)[:, 0].min(axis=1)  # (inits,)
    nearest, farthest = dist[0].min(), dist[0].max()
    p_local = permutation_p(-nearest, -untrained_min)
    mixed = p_local if nearest <= LOCAL * uniform < farthest else 1.0
    verdict = stats.combine_p([grows, (mixed, 1.0)])
    per_layer = dist.mean(axis=1)
    evidence = (f"{inspect['label']}: per-layer mean distance {', '.join(f'{x:.1f}' for x in per_layer)} px (layer 1 to "
                f"{len(per_layer)}); Spearman rho of head distance with depth {rho:+.2f} (permutation p {grows[0]:.3f}); "
                f"layer 1 heads {nearest:.1f}-{farthest:.1f} px, uniform attention {uniform:.1f} px (local: within "
                f"{LOCAL * uniform:.1f} px), untrained networks' nearest layer-1 head {untrained_min.min():.1f}-"
                f"{untrained_min.max():.1f} px over {len(untrained_min)} initialisations (p {p_local:.3f})")
    return Claim("e", text, paper, evidence, verdict)


def posemb_2d_structure(inspect: dict | None) -> Claim:
    """(f) From vit.evaluate.inspect's summary, three checks, each against the permutation null of the
    patches' grid positions (a Mantel test: vit.evaluate.inspect.posemb_stats): 4-neighbours more similar
    than other pairs, same row or column more similar than pairs sharing neither, similarity falling with
    grid distance (Spearman). stats.combine_p over the three."""
    text = "the position embeddings learn 2D structure: nearby, same-row and same-column patches are more similar"
    paper = "Fig. 7 centre (paper, ViT-L/32, 7x7 grid): closer patches have more similar embeddings, with row-column structure"
    if not inspect:
        return Claim("f", text, paper, "no ViT checkpoint inspected in this preset", UNTESTED)
    p = inspect["posemb"]
    if "p" not in p:
        return Claim("f", text, paper, f"{inspect['label']}: its inspection predates the permutation nulls; delete "
                     "results/inspect and rerun the `inspect` rule", UNTESTED)
    checks = [(p["p"][k], p["p_against"][k]) for k in ("neighbour", "line", "distance")]
    evidence = (f"{inspect['label']}: cosine similarity of 4-neighbours {p['neighbour']:.2f} vs other pairs "
                f"{p['other']:.2f} (permutation p {p['p']['neighbour']:.3f}); same row or column {p['same_row_or_col']:.2f} "
                f"vs neither {p['neither']:.2f} (p {p['p']['line']:.3f}); Spearman correlation with grid distance "
                f"{p['distance_corr']:+.2f} (p {p['p']['distance']:.3f}); {p['permutations']} permutations")
    return Claim("f", text, paper, evidence, stats.combine_p(checks))


def scorecard(summary, scores, plan: Plan, resolution, ablation=None, inspect=None) -> pd.DataFrame:
    """One row per claim, (b') beside (b), with the columns key, claim, paper, evidence, verdict, per_task;
    the rule the verdicts follow is RULE. `scores` gives each checkpoint's pre-training compute (d)."""
    claims = [pretraining_beats_scratch(summary, plan), resnet_then_vit(summary, plan, resolution),
              resnet_lead_shrinks(summary, plan, resolution), higher_resolution_helps(summary, plan, ablation),
              compute_efficiency(summary, scores, plan, resolution), attention_distance_grows(inspect),
              posemb_2d_structure(inspect)]
    return pd.DataFrame([asdict(c) for c in claims])
