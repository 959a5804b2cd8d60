"""The claims scorecard decides each verdict from the numbers by its stated rule (vit/report/scorecard.py)."""
import pandas as pd

from vit import plan
from vit.report import scorecard

CONFIG = plan.load({
    "datasets": {"small": {"source": "shapes", "group": "upstream", "label": "Small", "train": 100},
                 "big": {"source": "shapes", "group": "upstream", "label": "Big", "train": 1000},
                 "t1": {"source": "digits", "group": "natural", "label": "T1"},
                 "t2": {"source": "digits", "group": "natural", "label": "T2"}},
    "models": {"vit": {"arch": "vit", "label": "ViT"}, "bit": {"arch": "bit", "label": "BiT"}},
    "pretrain": {"runs": {"vit": ["small", "big"], "bit": ["small", "big"]}, "epochs": {"small": 1, "big": 1},
                 "train": {"img_size": 32}},
    "finetune": {"tasks": ["t1", "t2"], "resolutions": [32, 48], "from_scratch": ["vit", "bit"], "train": {}},
})


def runs(acc) -> pd.DataFrame:
    """Fine-tuned runs with top-1 = acc(model, upstream, task, resolution) + seed noise of +-0.1."""
    rows = [{"model": m, "upstream": up, "task": t, "task_label": t.upper(), "resolution": r, "seed": s,
             "top1": acc(m, up, t, r) + (0.1 if s else -0.1)}
            for m in ("vit", "bit") for up in ("small", "big", "scratch") for t in ("t1", "t2")
            for r in (32, 48) for s in (0, 1)]
    return pd.DataFrame(rows)


def scores(summary: pd.DataFrame, pflops: dict) -> pd.DataFrame:
    s = summary[summary.upstream != "scratch"].groupby(["model", "upstream", "resolution", "seed"]).top1.mean()
    s = s.reset_index()
    return s.assign(pretrain_pflops=[pflops[(m, u)] for m, u in zip(s.model, s.upstream)])


def test_pretraining_beats_scratch_holds_partly_fails():
    good = runs(lambda m, up, t, r: 50 if up == "scratch" else 60)
    assert scorecard.pretraining_beats_scratch(good, CONFIG).verdict == "holds"
    mixed = runs(lambda m, up, t, r: 50 if up == "scratch" else (60 if m == "vit" else 40))
    claim = scorecard.pretraining_beats_scratch(mixed, CONFIG)
    assert claim.verdict == "partly" and "BiT: better on 0/4" in claim.evidence and "ViT: better on 4/4" in claim.evidence
    assert scorecard.pretraining_beats_scratch(runs(lambda *a: 50), CONFIG).verdict == "does not hold"


def test_resnet_then_vit():
    pf = {(m, u): 1.0 for m in ("vit", "bit") for u in ("small", "big")}
    crossing = runs(lambda m, up, t, r: {("bit", "small"): 70, ("vit", "small"): 50}.get((m, up), 70))
    assert scorecard.resnet_then_vit(scores(crossing, pf), CONFIG, 48).verdict == "holds"
    closing = runs(lambda m, up, t, r: {("bit", "small"): 70, ("vit", "small"): 50, ("vit", "big"): 65}.get((m, up), 70))
    assert scorecard.resnet_then_vit(scores(closing, pf), CONFIG, 48).verdict == "partly"
    constant = runs(lambda m, up, t, r: 70 if m == "bit" else 50)
    claim = scorecard.resnet_then_vit(scores(constant, pf), CONFIG, 48)
    assert claim.verdict == "does not hold" and "+20.0" in claim.evidence


def test_higher_resolution_and_compute_efficiency():
    sharper = runs(lambda m, up, t, r: 60 + (5 if r == 48 else 0))
    assert scorecard.higher_resolution_helps(sharper, CONFIG).verdict == "holds"
    assert scorecard.higher_resolution_helps(runs(lambda *a: 60), CONFIG).verdict == "does not hold"
    acc = runs(lambda m, up, t, r: {"small": 50, "big": 60}.get(up, 40))
    cheap_vit = {("vit", "small"): 1.0, ("vit", "big"): 2.0, ("bit", "small"): 4.0, ("bit", "big"): 8.0}
    claim = scorecard.compute_efficiency(scores(acc, cheap_vit), CONFIG)
    assert claim.verdict == "holds" and "ratio ResNet/ViT 4" in claim.evidence
    dear_vit = {k: 1 / v for k, v in cheap_vit.items()}
    assert scorecard.compute_efficiency(scores(acc, dear_vit), CONFIG).verdict == "does not hold"


def test_inspection_claims():
    base = {"label": "ViT", "uniform_distance": 10.0}
    growing = dict(base, distance=[[4.0, 9.5], [8.0, 9.0], [9.0, 9.8]])
    assert scorecard.attention_distance_grows(growing).verdict == "holds"
    local_low = dict(base, distance=[[4.0, 5.0], [8.0, 9.0], [9.0, 9.8]])
    assert scorecard.attention_distance_grows(local_low).verdict == "partly"
    shrinking = dict(base, distance=[[8.0, 7.0], [6.0, 5.0], [3.0, 2.0]])
    assert scorecard.attention_distance_grows(shrinking).verdict == "does not hold"
    smooth = dict(base, posemb={"neighbour": 0.8, "other": 0.1, "same_row_or_col": 0.5, "neither": 0.0,
                                "distance_corr": -0.7})
    assert scorecard.posemb_2d_structure(smooth).verdict == "holds"
    flat = dict(base, posemb={"neighbour": 0.1, "other": 0.1, "same_row_or_col": 0.0, "neither": 0.0,
                              "distance_corr": 0.1})
    assert scorecard.posemb_2d_structure(flat).verdict == "does not hold"
    assert scorecard.posemb_2d_structure(None).verdict == "not tested"
