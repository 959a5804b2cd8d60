"""The VTAB-1k protocol as a rule family: planned for all 19 tasks, and run for real on a tiny tree."""
from __future__ import annotations

import pandas as pd
import pytest
import torch
import yaml

from conftest import REPO, TINY_VIT
from test_workflow import smk
from vit import cli, models
from vit.data import sources as datasets
from vit.report import verdicts
from vit.report import vtab
from vit.plan.recipes import load_reference
from vtab_fixtures import make_vtab_tree, write_final_runs

CKPT = "results/pretrain/vit/shapes_l/checkpoint.pt"  # the path configs/vtab.yaml names


def _checkpoint(workdir):
    m = models.create(TINY_VIT, 16, 32)
    path = workdir / CKPT
    path.parent.mkdir(parents=True)
    torch.save({"model": m.state_dict(), "model_args": TINY_VIT, "num_classes": 16, "img_size": 32,
                "grid_size": models.grid_size(m)}, path)


@pytest.mark.slow
def test_vtab_preset_plans_the_19_task_protocol(tmp_path):
    make_vtab_tree(tmp_path / "data")
    _checkpoint(tmp_path)
    out = smk(tmp_path, "-n", "--config", f"data_root={tmp_path / 'data'}",
              configfile=REPO / "configs" / "vtab.yaml").stdout
    counts = {line.split()[0]: int(line.split()[1]) for line in out.splitlines()
              if len(line.split()) == 2 and line.split()[1].isdigit()}
    assert counts["prepare"] == 19 and counts["vtab_sweep"] == 4
    assert counts["vtab_select"] == 1 and counts["vtab_final"] == 1 and counts["vtab_report"] == 1
    assert "pretrain" not in counts  # the checkpoint is given, not trained


@pytest.mark.slow
def test_vtab_protocol_runs_on_a_tiny_tree(tmp_path):
    tasks = [datasets.vtab_task(t) for t in ("dtd", "eurosat", "dsprites_loc")]  # one per group
    make_vtab_tree(tmp_path / "data", tasks=tasks)
    _checkpoint(tmp_path)
    cfg = yaml.safe_load((REPO / "configs" / "vtab.yaml").read_text())
    cfg["data_root"] = str(tmp_path / "data")
    cfg["vtab"].update(tasks=[t.folder for t in tasks], image_size=16, resolution=16, seeds=[0, 1],
                       paper_row="ViT-L/16_I21k", sweep=[{"lr": 0.01, "steps": 2}, {"lr": 0.001, "steps": 3}])
    cfg["vtab"]["train"].update(batch_size=4, warmup_steps=0, ckpt_every=0)
    path = tmp_path / "tiny_vtab.yaml"
    path.write_text(yaml.safe_dump(cfg))
    smk(tmp_path, configfile=path)
    table = pd.read_parquet(tmp_path / "results" / "vtab" / "vit" / "vtab.parquet")
    assert table.task.tolist() == ["DTD", "EuroSAT", "dSpr-Loc"] and (table.n_seeds == 2).all()
    assert table["ViT-L/16_I21k (paper)"].tolist() == [74.1, 95.6, 74.7]
    report = (tmp_path / "reports" / "vtab.md").read_text()
    assert "Natural (1 of 7)" in report and "Specialized (1 of 4)" in report and "Structured (1 of 8)" in report
    assert "(chosen)" in report
    assert set(table.verdict) <= {"reproduced", "inconclusive", "not reproduced"}  # vtab.paper_row reached report
    assert verdicts.RULE in report
    final = pd.read_json(tmp_path / "results" / "vtab" / "vit" / "final" / "runs.json")
    selected = yaml.safe_load((tmp_path / "results" / "vtab" / "vit" / "selected.json").read_text())
    # the final runs trained on all 9 examples (train800+val200) with the selected setting
    assert all(c["train_split"] == "train800+val200" and c["steps"] == selected["settings"]["steps"]
               for c in final.config)


def _report(tmp_path, top1: dict, paper_row: str = "") -> tuple[pd.DataFrame, str]:
    runs = write_final_runs(tmp_path / "final" / "runs.json", top1)
    cfg = vtab.Config(out=str(tmp_path / "vtab.md"), table=str(tmp_path / "vtab.parquet"),
                      paper_row=paper_row, inputs=[str(runs)])
    return vtab.report(cfg), (tmp_path / "vtab.md").read_text()


def test_vtab_report_verdicts_against_a_table9_row(tmp_path):
    # ViT-L/16_I21k in Table 9: DTD 74.1, EuroSAT 95.6, dSpr-Loc 74.7 (mean 81.47)
    top1 = {("dtd", 0): 74.1, ("dtd", 1): 74.3,               # mean 74.2: at least the paper's
            ("eurosat", 0): 94.9, ("eurosat", 1): 95.5,       # 95.2: 0.4 short, bound 6.31 x 0.42 / sqrt(2) = 1.9
            ("dsprites_loc", 0): 60.0, ("dsprites_loc", 1): 61.0}
    table, md = _report(tmp_path, top1, "ViT-L/16_I21k")
    assert table.verdict.tolist() == ["reproduced", "inconclusive", "not reproduced"]
    all_row = next(line for line in md.splitlines() if line.startswith("| All (3 of 19)"))
    assert all_row.rstrip(" |").endswith("not reproduced")  # 76.6 against the paper's 81.5 over the same tasks
    assert verdicts.RULE in md and "no verdicts" not in md

    table, md = _report(tmp_path, top1)
    assert "verdict" not in table.columns and verdicts.RULE not in md
    assert "no verdicts: set vtab.paper_row to the Table 9 row this checkpoint reproduces" in md
    with pytest.raises(cli.ConfigError, match="paper_row"):
        _report(tmp_path, top1, "ViT-B/16_I21k")


def test_vtab_mean_over_19_tasks_is_judged_against_table2_with_its_std(tmp_path):
    ref = load_reference()
    row = dict(zip(ref["vtab_table9"]["task_order"], ref["vtab_table9"]["ViT-L/16_I21k"]))
    # every task 0.15 below Table 9, no spread over seeds: each task is not reproduced (tolerance 0.05),
    # but the mean, 72.56, is within Table 2's 72.72 +- 0.21
    top1 = {(t.folder, s): row[t.paper] - 0.15 for t in datasets.VTAB_TASKS for s in (0, 1)}
    table, md = _report(tmp_path, top1, "ViT-L/16_I21k")
    assert (table.verdict == "not reproduced").all() and len(table) == 19
    all_row = next(line for line in md.splitlines() if line.startswith("| All (19 of 19)"))
    assert all_row.rstrip(" |").endswith("| reproduced")
