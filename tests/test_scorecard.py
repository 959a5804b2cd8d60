"""The claims scorecard decides each verdict from the numbers by its stated rule (vit/report/scorecard.py)."""
import math

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


def runs(acc, seeds=(0, 1)) -> pd.DataFrame:
    """Fine-tuned runs with top-1 = acc(model, upstream, task, resolution) + seed noise of +-0.1 (the same on
    every run of a seed, so it cancels in paired differences)."""
    rows = [{"model": m, "upstream": up, "task": t, "task_label": t.upper(), "resolution": r, "seed": s,
             "top1": acc(m, up, t, r) + (0.1 if s else -0.1)}
            for m in ("vit", "bit") for up in ("small", "big", "scratch") for t in ("t1", "t2")
            for r in (32, 48) for s in seeds]
    return pd.DataFrame(rows)


def gain(per_seed: list[float]) -> pd.DataFrame:
    """Runs where pre-training beats scratch by per_seed[seed] points on every task and resolution."""
    base = runs(lambda *a: 50.0, seeds=range(len(per_seed)))
    return base.assign(top1=base.top1 + (base.upstream != "scratch") * base.seed.map(dict(enumerate(per_seed))))


def leads(small: list[float], big: list[float]) -> pd.DataFrame:
    """Per-seed scores where the BiT leads the ViT by small[seed] points after the small upstream set and
    big[seed] after the big one."""
    rows = [{"model": m, "upstream": up, "seed": s, "top1": 60.0 + (lead if m == "bit" else 0.0)}
            for up, per_seed in (("small", small), ("big", big)) for s, lead in enumerate(per_seed)
            for m in ("bit", "vit")]
    return pd.DataFrame(rows).assign(resolution=48, pretrain_pflops=1.0)


def scores(summary: pd.DataFrame, pflops: dict) -> pd.DataFrame:
    s = summary[summary.upstream != "scratch"].groupby(["model", "upstream", "resolution", "seed"]).top1.mean()
    s = s.reset_index()
    return s.assign(pretrain_pflops=[pflops[(m, u)] for m, u in zip(s.model, s.upstream)])


def test_a_difference_counts_beyond_two_standard_errors_over_seeds():
    seeds = pd.Index([0, 1, 2], name="seed")
    tight = scorecard.diff_over_seeds(pd.Series([50.9, 51.0, 51.1], seeds), pd.Series([50.0] * 3, seeds))
    assert tight.counts and math.isclose(tight.se, 0.1 / math.sqrt(3)) and str(tight) == "+1.0 ± 0.1"
    # per-seed differences 0, 1, 2: SE = 1 / sqrt(3) = 0.577, 2 SE = 1.15 > 1
    loose = scorecard.diff_over_seeds(pd.Series([50.0, 51.0, 52.0], seeds), pd.Series([50.0] * 3, seeds))
    assert not loose.counts and math.isclose(loose.se, 1 / math.sqrt(3)) and str(loose) == "+1.0 ± 0.6"
    # SE, not sd: differences 0.3, 1, 1.7 have sd 0.7 (2 sd = 1.4 > 1) but 2 SE = 0.81 < 1
    wide = scorecard.diff_over_seeds(pd.Series([50.3, 51.0, 51.7], seeds), pd.Series([50.0] * 3, seeds))
    assert wide.counts
    one = scorecard.diff_over_seeds(pd.Series([60.0], [0]), pd.Series([50.0], [0]))
    assert not one.judged and not one.counts and "1 seed" in str(one)


def test_paired_only_where_both_sides_share_the_seeds():
    a, b = [1.0, 2.0, 3.0], [0.0, 1.0, 2.0]   # a leads b by exactly 1 on every seed
    paired = scorecard.diff_over_seeds(pd.Series(a, [0, 1, 2]), pd.Series(b, [0, 1, 2]))
    assert paired.se == 0 and paired.counts
    # other seeds: sqrt(1/3 + 1/3) = 0.816, 2 SE = 1.63 > 1
    unpaired = scorecard.diff_over_seeds(pd.Series(a, [0, 1, 2]), pd.Series(b, [3, 4, 5]))
    assert math.isclose(unpaired.se, math.sqrt(2 / 3)) and not unpaired.counts and unpaired.per_seed is None


def test_claims_follow_the_rule_and_one_seed_cannot_be_judged():
    assert scorecard.pretraining_beats_scratch(gain([0.9, 1.0, 1.1]), CONFIG).verdict == "holds"
    claim = scorecard.pretraining_beats_scratch(gain([0.0, 1.0, 2.0]), CONFIG)
    assert claim.verdict == "does not hold" and "T1 32 px (+1.0 ± 0.6)" in claim.evidence
    assert scorecard.pretraining_beats_scratch(gain([1.0]), CONFIG).verdict == "cannot be judged: 1 seed"
    sharper = runs(lambda m, up, t, r: 60 + (5 if r == 48 else 0), seeds=(0,))
    assert scorecard.higher_resolution_helps(sharper, CONFIG).verdict == "cannot be judged: 1 seed"
    assert scorecard.resnet_then_vit(leads([10.0], [0.0]), CONFIG, 48).verdict == "cannot be judged: 1 seed"
    assert "2 SE" in scorecard.RULE and "sqrt(n)" in scorecard.RULE


def test_resnet_lead_shrinks_judged_beside_the_crossover():
    shrinks = leads([10.0, 11.0, 9.0], [5.0, 7.0, 3.0])   # shrinks by 5, 4, 6: SE 0.58
    claim = scorecard.resnet_lead_shrinks(shrinks, CONFIG, 48)
    assert claim.key == "b'" and claim.verdict == "holds" and "shrinks by +5.0 ± 0.6" in claim.evidence
    # the ResNet still leads on the big set beyond 2 SE: the crossover only partly holds
    assert scorecard.resnet_then_vit(shrinks, CONFIG, 48).verdict == "partly"
    grows = leads([5.0, 7.0, 3.0], [10.0, 11.0, 9.0])
    assert scorecard.resnet_lead_shrinks(grows, CONFIG, 48).verdict == "does not hold"
    assert scorecard.resnet_then_vit(grows, CONFIG, 48).verdict == "does not hold"
    noisy = leads([10.0, 10.0, 10.0], [9.0, 10.0, 8.0])   # shrinks by 1, 0, 2: 2 SE = 1.15 > 1
    assert scorecard.resnet_lead_shrinks(noisy, CONFIG, 48).verdict == "does not hold"
    assert scorecard.resnet_lead_shrinks(leads([10.0], [0.0]), CONFIG, 48).verdict == "cannot be judged: 1 seed"


def test_scorecard_rows_put_b_prime_after_b():
    summary = runs(lambda m, up, t, r: 60.0)
    card = scorecard.scorecard(summary, scores(summary, {(m, u): 1.0 for m in ("vit", "bit") for u in ("small", "big")}),
                               CONFIG, 48)
    assert list(card.key) == ["a", "b", "b'", "c", "d", "e", "f"]
    assert list(card.columns) == ["key", "claim", "paper", "evidence", "verdict"]


def test_pretraining_beats_scratch_holds_partly_fails():
    good = runs(lambda m, up, t, r: 50 if up == "scratch" else 60)
    assert scorecard.pretraining_beats_scratch(good, CONFIG).verdict == "holds"
    mixed = runs(lambda m, up, t, r: 50 if up == "scratch" else (60 if m == "vit" else 40))
    claim = scorecard.pretraining_beats_scratch(mixed, CONFIG)
    assert claim.verdict == "partly" and "BiT: better on 0/4" in claim.evidence and "ViT: better on 4/4" in claim.evidence
    assert scorecard.pretraining_beats_scratch(runs(lambda *a: 50), CONFIG).verdict == "does not hold"
    # from scratch only at 32 px (finetune.higher_resolutions_for): the 48 px fine-tunes have nothing to beat
    only32 = good[(good.upstream != "scratch") | (good.resolution == 32)]
    claim = scorecard.pretraining_beats_scratch(only32, CONFIG)
    assert claim.verdict == "holds" and "better on 2/2" in claim.evidence and "48 px" not in claim.evidence


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
                                "distance_corr": -0.7, "distance_corr_null_sd": 0.05})
    assert scorecard.posemb_2d_structure(smooth).verdict == "holds"
    # every sign right, but the correlation within 2 SD of its permutation null: not all checks pass
    weak = dict(base, posemb={**smooth["posemb"], "distance_corr": -0.04})
    assert scorecard.posemb_2d_structure(weak).verdict == "partly"
    flat = dict(base, posemb={"neighbour": 0.1, "other": 0.1, "same_row_or_col": 0.0, "neither": 0.0,
                              "distance_corr": 0.1, "distance_corr_null_sd": 0.05})
    assert scorecard.posemb_2d_structure(flat).verdict == "does not hold"
    old = dict(base, posemb={k: v for k, v in smooth["posemb"].items() if k != "distance_corr_null_sd"})
    assert scorecard.posemb_2d_structure(old).verdict == "not tested"
    assert scorecard.posemb_2d_structure(None).verdict == "not tested"


def test_ladder_table_reads_train_and_val_of_the_kept_weights_and_transfer(tmp_path):
    """The size-ladder table (report): one row per ladder model and set, epochs from images seen over the
    set's size, train loss vs val loss and top-1 of the kept weights, transfer as mean ± sd over seeds;
    a model pre-trained on one set only is not a ladder; a missing val loss prints as a dash."""
    import json

    from vit.report import results, summary, tables

    paths = []
    for model, up, val in [("vit", "small", {"top1": 60.0, "loss": 1.2}), ("vit", "big", {"top1": 70.0, "loss": 1.0}),
                           ("bit", "big", {})]:
        s = {"model": model, "upstream": up, "images_seen": 2000, "steps": 10, "train_flops_per_img": 1.0,
             "train_time_s": 1.0, "config": {"threads": 1, "batch_size": 200}, "eval": {"val": val} if val else {},
             "final_train_loss": 0.5, "kept": "best" if up == "small" else "last", "params_backbone": 1,
             "fwd_flops_per_img": 1.0, "env": {},
             "history": [{"step": 5, "split": "train", "loss": 2.0}, {"step": 10, "split": "val", "loss": 1.1, "top1": 1}]}
        (tmp_path / f"{model}-{up}.json").write_text(json.dumps(s))
        paths.append(str(tmp_path / f"{model}-{up}.json"))
    pre, curves = summary.pretrain_table(paths, CONFIG)
    assert sorted(curves.split.unique()) == ["train", "val"]
    sc = pd.DataFrame([{"model": "vit", "upstream": u, "seed": s, "top1": t + s}
                       for u, t in (("small", 30.0), ("big", 40.0)) for s in (0, 1)])
    table = tables.ladder_table(pre, sc, CONFIG, results.fewshot_rows([]))
    assert list(table["pre-trained on"]) == ["Small", "Big"] and set(table.model) == {"ViT"}
    small, big = table.iloc[0], table.iloc[1]
    assert (small["epochs"], small["train loss (end)"], small["val loss"], small["weights kept"]) == ("20", "0.50", "1.20", "best")
    assert (big["upstream val top-1 (%)"], big["mean transfer (%)"]) == ("70.0", "40.5 ± 0.7")
    assert tables._num(None, ".2f") == "–"
    assert not any("shot" in c for c in table.columns)  # no probes: no few-shot columns
    # few-shot probes (vit.evaluate.fewshot's JSON, as the report loads it): mean over tasks per draw, then
    # mean ± sd over draws, for 5 and 25 shots
    probe = {"t1": [{"shots": k, "seed": d, "top1": 10.0 * k + d} for k in (1, 5, 25) for d in (0, 1)],
             "t2": [{"shots": k, "seed": d, "top1": 10.0 * k + 3 * d} for k in (1, 5, 25) for d in (0, 1)]}
    (tmp_path / "fewshot" / "vit").mkdir(parents=True)
    (tmp_path / "fewshot" / "vit" / "big.json").write_text(json.dumps(probe))
    fs = results.fewshot_rows([str(tmp_path / "fewshot" / "vit" / "big.json")])
    table = tables.ladder_table(pre, sc, CONFIG, fs)
    small, big = table.iloc[0], table.iloc[1]
    assert (big["5-shot linear (%)"], big["25-shot linear (%)"]) == ("51.0 ± 1.4", "251.0 ± 1.4")  # draws: (50+50)/2, (51+53)/2
    assert small["5-shot linear (%)"] == "–" and results.fewshot_rows([]).empty
