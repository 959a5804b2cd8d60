"""The VTAB-1k protocol as a rule family: planned for all 19 tasks, and run for real on a tiny tree."""
from __future__ import annotations

import pandas as pd
import torch
import yaml

from conftest import REPO, TINY_VIT
from test_workflow import smk
from vit import datasets, models
from vtab_fixtures import make_vtab_tree

CKPT = "results/pretrain/vit/shapes_l/checkpoint.pt"  # the path configs/vtab.yaml names


def _checkpoint(workdir):
    m = models.create(TINY_VIT, 16, 32)
    path = workdir / CKPT
    path.parent.mkdir(parents=True)
    torch.save({"model": m.state_dict(), "model_args": TINY_VIT, "num_classes": 16, "img_size": 32,
                "grid_size": models.grid_size(m)}, path)


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


def test_vtab_protocol_runs_on_a_tiny_tree(tmp_path):
    tasks = [datasets.vtab_task(t) for t in ("dtd", "eurosat", "dsprites_loc")]  # one per group
    make_vtab_tree(tmp_path / "data", tasks=tasks)
    _checkpoint(tmp_path)
    cfg = yaml.safe_load((REPO / "configs" / "vtab.yaml").read_text())
    cfg["data_root"] = str(tmp_path / "data")
    cfg["vtab"].update(tasks=[t.folder for t in tasks], image_size=16, resolution=16, seeds=[0, 1],
                       sweep=[{"lr": 0.01, "steps": 2}, {"lr": 0.001, "steps": 3}])
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
    final = pd.read_json(tmp_path / "results" / "vtab" / "vit" / "final" / "runs.json")
    selected = yaml.safe_load((tmp_path / "results" / "vtab" / "vit" / "selected.json").read_text())
    # the final runs trained on all 9 examples (train800+val200) with the selected setting
    assert all(c["train_split"] == "train800+val200" and c["steps"] == selected["settings"]["steps"]
               for c in final.config)
