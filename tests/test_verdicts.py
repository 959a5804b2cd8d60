"""Verdicts against the paper (vit/report/verdicts.py): the rule's boundaries, which cells each paper preset
targets, and the table built from a summary of runs."""
import math

import pandas as pd
import pytest
import yaml

from conftest import REPO
from vit import plan
from vit.report import verdicts
from vit.plan.recipes import load_reference

REF = load_reference()


def preset(name: str) -> plan.Plan:
    return plan.load(yaml.safe_load((REPO / name).read_text()))


def test_judge_reproduced_including_above_the_paper_and_at_its_std():
    assert verdicts.judge([99.12], 99.15, 0.03)["verdict"] == "reproduced"       # exactly one paper std short
    assert verdicts.judge([99.5, 99.6], 99.15, 0.03)["verdict"] == "reproduced"  # above the paper counts
    j = verdicts.judge([80.0, 80.2], 80.1, None)                                  # no paper std: precision only
    assert j["verdict"] == "reproduced" and j["tol"] == 0.005 and j["n"] == 2
    assert verdicts.judge([80.095], 80.1)["verdict"] == "reproduced"              # half the last printed digit
    assert verdicts.judge([74.05], 74.1, precision=0.05)["verdict"] == "reproduced"  # Table 9: one decimal
    assert verdicts.judge([74.04], 74.1, precision=0.05)["verdict"] == "not reproduced"


def test_short_of_the_paper_is_not_reproduced_only_beyond_noise():
    # sd over two seeds 0.1414: SE 0.1, df 1, t 6.31: the shortfall's one-sided 95 % bound is 0.63
    j = verdicts.judge([79.8, 80.0], 80.1)
    assert j["verdict"] == "inconclusive" and math.isclose(j["noise"], 6.3138 * 0.1, rel_tol=1e-4)
    assert math.isclose(j["delta"], -0.2)
    assert verdicts.judge([79.3, 79.5], 80.1)["verdict"] == "not reproduced"  # -0.7 + 0.63 < -0.005
    # both terms: sd 0.05 over 3 seeds and the paper's 0.05 over 3 runs: SE 0.041, df 4, bound 0.087
    j = verdicts.judge([88.50, 88.55, 88.60], 88.62, 0.05)
    assert j["verdict"] == "inconclusive" and math.isclose(j["noise"], 2.1318 * math.sqrt(2 * 0.0025 / 3), rel_tol=1e-4)
    assert verdicts.judge([88.40, 88.45, 88.50], 88.62, 0.05)["verdict"] == "not reproduced"
    # a noisier run of the same mean gains nothing: it stays inconclusive, never a pass
    assert verdicts.judge([87.55, 88.55, 89.55], 88.62, 0.05)["verdict"] == "inconclusive"


def test_judge_one_seed_uses_the_papers_term_only():
    # paper std 0.03 over 3 runs: SE 0.0173, df 2, t 2.92: bound 0.0506
    j = verdicts.judge([99.117], 99.15, 0.03)
    assert j["verdict"] == "inconclusive" and j["n"] == 1 and "one seed" in j["note"]
    assert math.isclose(j["noise"], 2.9200 * 0.03 / math.sqrt(3), rel_tol=1e-4)
    assert verdicts.judge([99.05], 99.15, 0.03)["verdict"] == "not reproduced"
    # one seed and no paper std: nothing is noise, so just short of the precision is not reproduced
    assert verdicts.judge([80.09], 80.1, None)["verdict"] == "not reproduced"
    assert verdicts.judge([80.1, 80.2], 80.1)["note"] == ""


def test_judge_refuses_a_null_paper_cell():
    for missing in (None, float("nan")):
        with pytest.raises(ValueError):
            verdicts.judge([80.0], missing)
    with pytest.raises(ValueError):
        verdicts.judge([], 80.0)


def _rows(targets: pd.DataFrame) -> list[tuple]:
    return [(t.model, t.upstream, t.task, t.table, t.paper_row, t.paper_mean, t.paper_std)
            for t in targets.itertuples()]


def test_targets_of_paper_transfer_are_vit_l16_i21k_in_table2():
    config = yaml.safe_load((REPO / "configs/paper-transfer.yaml").read_text())
    expected = [("vit_l16", "in21k", task, "Table 2", "ViT-L/16_I21k", mean, std) for task, mean, std in [
        ("imagenet", 85.30, 0.02), ("imagenet_real", 88.62, 0.05), ("cifar10", 99.15, 0.03),
        ("cifar100", 93.25, 0.05), ("pets", 94.67, 0.15), ("flowers102", 99.61, 0.02)]]
    # vit_b16 has no Table 2 row; bit_r152x4 is BiT-M (ImageNet-21k), not Table 2's BiT-L (JFT-300M)
    assert _rows(verdicts.targets(plan.load(config), REF)) == expected
    assert set(verdicts.targets(plan.load(config), REF).precision) == {0.005}
    del config["paper_table"]
    assert verdicts.targets(plan.load(config), REF).empty


def test_targets_of_paper_i21k_are_the_vits_in_table5():
    t = verdicts.targets(preset("configs/paper-i21k.yaml"), REF)
    assert list(dict.fromkeys(t.model)) == ["vit_b32", "vit_b16", "vit_l32", "vit_l16"]  # not the BiT models
    assert len(t) == 4 * 6 and set(t.table) == {"Table 5"} and set(t.upstream) == {"imagenet21k"}
    assert ("vit_b16", "imagenet21k", "imagenet", "Table 5", "ViT-B/16, ImageNet-21k", 83.97, None) in _rows(t)
    assert ("vit_l16", "imagenet21k", "imagenet_real", "Table 5", "ViT-L/16, ImageNet-21k", 88.40, None) in _rows(t)
    assert t.paper_std.isna().all()  # Table 5 prints no std


def test_targets_skip_null_cells_and_stand_in_presets():
    task = {"source": "torchvision", "group": "natural"}
    config = {"paper_table": "table5",
              "models": {"h14": {"arch": "paper", "name": "ViT-H/14", "label": "ViT-H/14"},
                         "mine": {"arch": "vit", "label": "mine"}},
              "datasets": {"up": {"source": "imagefolder", "group": "upstream", "stands_for": "ImageNet"},
                           "imagenet": {"source": "imagenet", "group": "natural"}, "cifar10": task},
              "pretrain": {"runs": {"h14": ["up"], "mine": ["up"]}, "epochs": {"up": 1}, "train": {}},
              "finetune": {"tasks": ["imagenet", "cifar10"], "resolutions": [384], "train": {}}}
    assert verdicts.targets(plan.load(config), REF).empty  # Table 5 has no ViT-H/14 on ImageNet
    config["datasets"]["up"]["stands_for"] = "ImageNet-21k"
    assert verdicts.targets(plan.load(config), REF).task.tolist() == ["imagenet", "imagenet_real", "cifar10"]
    default = verdicts.targets(preset("config.yaml"), REF)
    assert default.empty and list(default.columns) == verdicts.TARGET_COLUMNS


def test_verdict_table_for_paper_transfer():
    config = preset("configs/paper-transfer.yaml")
    top1 = {"imagenet": [85.30, 85.32, 85.34],   # +0.02: reproduced
            "cifar10": [98.0, 98.1, 98.2],       # -1.05: not reproduced
            "cifar100": [93.25],                 # one seed, on the paper's number
            "flowers102": [99.61, 99.70, 99.65]}  # above the paper
    real = [88.50, 88.55, 88.60]                 # -0.07, tol 0.05, bound 0.087: inconclusive
    rows = [{"model": "vit_l16", "upstream": "in21k", "task": task, "resolution": 512 if task == "imagenet" else 384,
             "seed": s, "top1": v, "real_top1": real[s] if task == "imagenet" else float("nan")}
            for task, vs in top1.items() for s, v in enumerate(vs)]
    rows += [{"model": "vit_l16", "upstream": "in21k", "task": "imagenet", "resolution": 384, "seed": 0,
              "top1": 10.0, "real_top1": 10.0},  # a lower resolution is not the paper's setting
             {"model": "vit_b16", "upstream": "in21k", "task": "cifar10", "resolution": 384, "seed": 0,
              "top1": 10.0, "real_top1": float("nan")}]  # no paper row: no verdict
    table = verdicts.verdict_table(pd.DataFrame(rows), config, REF)
    assert list(table.columns) == verdicts.VERDICT_COLUMNS
    assert dict(zip(table.task, table.verdict)) == {
        "ImageNet": "reproduced", "ImageNet ReaL": "inconclusive", "CIFAR-10": "not reproduced",
        "CIFAR-100": "reproduced", "Oxford-IIIT Pets": "not run", "Oxford Flowers-102": "reproduced"}
    first = table.iloc[0].to_dict()
    assert first == {"model": "ViT-L/16", "pre-trained on": "ImageNet-21k (released)", "task": "ImageNet",
                     "paper row": "Table 2, ViT-L/16_I21k", "ours": "85.32 ± 0.02 (3 seeds)",
                     "paper": "85.30 ± 0.02", "Δ": "+0.02", "verdict": "reproduced"}
    assert table.set_index("task").loc["CIFAR-100", "ours"] == "93.25 (1 seed)"

    no_real = verdicts.verdict_table(pd.DataFrame(rows).drop(columns="real_top1"), config, REF)
    assert no_real.set_index("task").loc["ImageNet ReaL", "verdict"] == "not scored"  # run, but no ReaL labels
    empty = verdicts.verdict_table(pd.DataFrame(rows), preset("config.yaml"), REF)
    assert empty.empty and list(empty.columns) == verdicts.VERDICT_COLUMNS


def test_table2_mirror_carries_the_verdicts():
    """report.table2 on a paper-transfer run: the verdict section lists the targets with their verdicts;
    the default (no paper_table) says why there are none."""
    from vit.report import table2 as report

    config = preset("configs/paper-transfer.yaml")
    t2 = REF["table2"]["models"]["ViT-L/16_I21k"]
    rows = [{"model": "vit_l16", "upstream": "in21k", "task": task, "resolution": 512 if task == "imagenet" else 384,
             "seed": seed, "top1": t2[task]["mean"] - (1.0 if task == "pets" else 0.0),
             "real_top1": t2["imagenet_real"]["mean"] if task == "imagenet" else float("nan")}
            for task in config.finetune_tasks for seed in (0, 1, 2)]
    summary = pd.DataFrame(rows)
    compute_pre = pd.DataFrame(columns=["model", "upstream", "core_hours", "train_flops"])
    md = report.table2(summary, compute_pre, REF, config, pd.DataFrame())
    section = md.split("## Verdicts against the paper's Table 2")[1]
    lines = [line for line in section.splitlines() if line.startswith("| ViT-L/16")]
    assert len(lines) == 6 and sum("| reproduced" in line for line in lines) == 5
    assert "| not reproduced" in next(line for line in lines if "Pets" in line)
    default = preset("config.yaml")
    assert "No verdicts against the paper" in report.verdict_lines(summary, REF, default)[0]


# The paper's Table 2 as printed (as vit/reference.yaml holds it), column by column: ImageNet,
# ReaL, CIFAR-10, CIFAR-100, Pets, Flowers, VTAB (19 tasks), TPUv3-core-days.
TABLE2 = [
    ("ViT-H/14 (paper)", "JFT-300M", ["88.55 ± 0.04", "90.72 ± 0.05", "99.50 ± 0.06", "94.55 ± 0.04",
                                      "97.56 ± 0.03", "99.68 ± 0.02", "77.63 ± 0.23"], 2500),
    ("ViT-L/16 (paper)", "JFT-300M", ["87.76 ± 0.03", "90.54 ± 0.03", "99.42 ± 0.03", "93.90 ± 0.05",
                                      "97.32 ± 0.11", "99.74 ± 0.00", "76.28 ± 0.46"], 680),
    ("ViT-L/16 (paper)", "ImageNet-21k", ["85.30 ± 0.02", "88.62 ± 0.05", "99.15 ± 0.03", "93.25 ± 0.05",
                                          "94.67 ± 0.15", "99.61 ± 0.02", "72.72 ± 0.21"], 230),
    ("BiT-L R152x4 (paper)", "JFT-300M", ["87.54 ± 0.02", "90.54", "99.37 ± 0.06", "93.51 ± 0.08",
                                          "96.62 ± 0.23", "99.63 ± 0.03", "76.29 ± 1.70"], 9900),
    ("NoisyStudent EfficientNet-L2 (paper)", "ImageNet + JFT-300M unlabeled (semi-supervised)",
     ["88.40 / 88.50", "90.55", "–", "–", "–", "–", "–"], 12300),
]


def _paper_table(config: plan.Plan) -> list[tuple]:
    from vit.report import table2 as report

    t = report.paper_rows(config, REF)
    cols = [f"{name} (paper)" for name in report.PAPER_COLUMNS.values()]
    return [(r["model (paper)"], r["pre-trained on (paper)"], r["our stand-in (this preset)"], [r[c] for c in cols],
             r["TPUv3-core-days (paper)"]) for _, r in t.iterrows()]


def test_table2_mirror_prints_every_paper_column_labelled_as_the_papers():
    """All five model columns of the paper's Table 2, in its order, with its numbers (0.00 std included,
    Noisy Student's two ImageNet numbers), each labelled "(paper)", whichever models the preset has."""
    for name in ("config.yaml", "configs/paper-transfer.yaml", "configs/paper-i21k.yaml"):
        rows = _paper_table(preset(name))
        assert [(m, pre, cells, days) for m, pre, _, cells, days in rows] == TABLE2, name


def test_table2_mirror_names_our_stand_in_for_each_paper_column():
    default = preset("config.yaml")
    by_row = {}
    for m in dict.fromkeys(m for m, _ in default.finetune_runs):
        if default.config["models"][m].get("paper_row"):
            by_row.setdefault(default.config["models"][m]["paper_row"], []).append(default.model_label(m))
    keys = list(REF["table2"]["models"])
    for key, (_, _, ours, _, _) in zip(keys, _paper_table(default)):
        assert ours == ("; ".join(by_row[key]) if key in by_row else "no stand-in in this preset"), key
    assert by_row  # the default names stand-ins (its ViT, BiT and EfficientNets)

    # paper-transfer: the paper's own ViT-L/16 on ImageNet-21k is marked so, the others stand in
    stand = {(m, pre): ours for m, pre, ours, _, _ in _paper_table(preset("configs/paper-transfer.yaml"))}
    assert stand[("ViT-L/16 (paper)", "ImageNet-21k")] == (
        "ViT-B/16; ViT-L/16 (the paper's own model and pre-training set)")
    assert stand[("ViT-H/14 (paper)", "JFT-300M")] == stand[("ViT-L/16 (paper)", "JFT-300M")] == \
        "no stand-in in this preset"
    assert stand[("BiT-L R152x4 (paper)", "JFT-300M")] == "BiT-M R152x4 (for BiT-L)"
    assert "EfficientNet-L2 (Noisy Student)" in stand[(
        "NoisyStudent EfficientNet-L2 (paper)", "ImageNet + JFT-300M unlabeled (semi-supervised)")]


def test_table2_mirror_takes_any_paper_row_of_reference_yaml():
    """A model may stand in for any Table 2 key (e.g. a larger ViT for ViT-H/14_JFT); a paper_row that is
    no key is not dropped silently."""
    from vit.report import table2 as report

    cfg = yaml.safe_load((REPO / "configs/paper-transfer.yaml").read_text())
    cfg["models"]["vit_b16"]["paper_row"] = "ViT-H/14_JFT"
    cfg["models"]["effnet_l2"]["paper_row"] = "NoisyStudent_EfficientNet-L7"
    config = plan.load(cfg)
    stand = {(m, pre): ours for m, pre, ours, _, _ in _paper_table(config)}
    assert stand[("ViT-H/14 (paper)", "JFT-300M")] == "ViT-B/16"
    assert stand[("ViT-L/16 (paper)", "ImageNet-21k")] == "ViT-L/16 (the paper's own model and pre-training set)"
    assert stand[("NoisyStudent EfficientNet-L2 (paper)", "ImageNet + JFT-300M unlabeled (semi-supervised)")] == \
        "no stand-in in this preset"
    summary = pd.DataFrame([{"model": "vit_l16", "upstream": "in21k", "task": "cifar10", "resolution": 384,
                             "seed": 0, "top1": 99.0, "real_top1": float("nan")}])
    compute_pre = pd.DataFrame(columns=["model", "upstream", "core_hours", "train_flops"])
    md = report.table2(summary, compute_pre, REF, config, pd.DataFrame())
    assert "EfficientNet-L2 (Noisy Student) (NoisyStudent_EfficientNet-L7)" in md.split("Not in the table above")[1]
    paper = md.split("**Paper**")[1].split("## Verdicts")[0]
    for label, pre, cells, days in TABLE2:  # the whole paper table lands in the markdown
        line = next(x for x in paper.splitlines() if x.startswith(f"| {label} ") and f"| {pre} " in x)
        assert all(f"| {c} " in line for c in cells) and line.rstrip(" |").endswith(str(days)), label
    assert "all 5 of its model columns" in paper and "median ± std" in paper
