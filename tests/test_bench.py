"""The training benchmark (vit.account.bench) and the run's time breakdown (vit.report.timeline)."""
from __future__ import annotations

import json
import os

import pytest

from conftest import FORM, TINY_VIT
from vit.account import bench
from vit.logs import read_json
from vit.report import timeline
from vit.train import loop

TINY_BIT = {"arch": "bit", "layers": [1, 1, 1, 1], "channels": [8, 16, 32, 64], "groups": 4}


def settings(model: str, spec: dict, **kw) -> dict:
    return {"model": model, "model_args": spec, "img_size": 16, "batch_size": 16, "optimizer": "adam", "lr": 1e-3,
            "grad_clip": 1.0, "augment": "crop_flip", "val_split": "val", "eval_every": 5, **kw}


def test_a_run_records_where_its_time_went(digits_dir, tmp_path):
    s = loop.train(loop.Config(data=str(digits_dir), out=str(tmp_path), model_args=TINY_VIT, img_size=16, steps=10,
                               batch_size=16, val_split="val", eval_every=4, threads=1))
    assert 0 < s["train_time_s"] < s["loop_time_s"]  # the loop adds logging and two validations to the steps
    assert 0 < s["eval_time_s"] < s["loop_time_s"] - s["train_time_s"] + 1e-9
    assert s["setup_time_s"] > 0 and s["final_eval_time_s"] > 0


@pytest.mark.slow
def test_bench_times_vit_train_beside_a_plain_timm_loop(digits_dir, tmp_path):
    # keep_best (the default's pre-training setting) needs validation, which the bench turns off: it must go too
    cases = {"vit": {"data": str(digits_dir), "settings": settings("vit", TINY_VIT, keep_best=True)},
             # fp32, the rule's on every CPU: a 16 px BiT in bf16 meets oneDNN's bf16 convolution fault on AMD CPUs
             # (NaN weight gradients where the maps are 1x1; pytorch#163347, docs/cpu_performance.md)
             "bit": {"data": str(digits_dir), "settings": settings("bit", TINY_BIT, precision="fp32")},
             "mpp": {"data": str(digits_dir), "settings": settings("mpp", TINY_VIT, objective="mpp", val_split="")}}
    out = tmp_path / "bench.json"
    other = "fp32/sdpa" if str(FORM) != "fp32/sdpa" else "fp32/explicit"  # a form the session's rule does not take
    bench.bench(bench.Config(out=str(out), cases=cases, seconds=0.2, repeats=2, forms=[other]))
    result = read_json(out)
    forced = [r for r in result["cases"] if r["forced"]]  # the ViT also in a form no CPU's rule takes
    assert [(r["case"], r["form"]) for r in forced] == [("vit", other)]
    rows = {r["case"]: r for r in result["cases"] if not r["forced"]}
    assert set(rows) == {"vit", "bit"} and "mpp" in result["not_compared"]
    assert rows["bit"]["convnet"] and not rows["vit"]["convnet"]
    for r in rows.values():
        assert len(r["ours_runs"]) == len(r["plain_runs"]) == 2 and r["steps"] >= 3
        ratios = [a / b for a, b in zip(r["ours_runs"], r["plain_runs"])]
        assert r["ratio_runs"] == pytest.approx(ratios) and min(ratios) <= r["ratio"] <= max(ratios)
        assert 0 < r["ours_mfu"] < 1 and 0 < r["plain_mfu"] < 1 and r["train_flops_per_img"] > 0
    table = out.with_suffix(".md").read_text()
    assert "| vit | 16 | 16 |" in table and "Not compared: mpp" in table
    assert rows["vit"]["form"] == str(FORM) and rows["bit"]["form"] == "fp32/conv"  # the session's, the case's
    assert "| vit | 16 | 16 | " in table and f"{other} (forced)" in table


def write_job(root, rule: str, name: str, end: float, wall: float, cpu: float) -> None:
    path = root / "benchmarks" / rule / f"{name}.tsv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("s\th:m:s\tmax_rss\tcpu_time\n" f"{wall}\t0:00:00\t1.0\t{cpu}\n")
    os.utime(path, (end, end))


def test_timeline_splits_the_runs_core_seconds(tmp_path):
    t = 1_700_000_000.0
    write_job(tmp_path, "prepare", "a", t + 10, 10, 18)        # two threads: holds its CPU seconds
    write_job(tmp_path, "pretrain", "vit-a", t + 110, 100, 99)
    write_job(tmp_path, "finetune", "vit-a", t + 160, 50, 49)
    write_job(tmp_path, "report", "report", t + 170, 5, 4)
    run = tmp_path / "pretrain" / "vit" / "a"
    run.mkdir(parents=True)
    (run / "summary.json").write_text(json.dumps({"train_time_s": 60.0, "loop_time_s": 70.0, "eval_time_s": 6.0,
                                                  "setup_time_s": 3.0, "final_eval_time_s": 2.0}))
    old = tmp_path / "finetune" / "vit" / "a" / "digits"
    old.mkdir(parents=True)
    (old / "summary.json").write_text(json.dumps({"train_time_s": 30.0}))  # made before the loop's breakdown
    (tmp_path / "released").mkdir()
    (tmp_path / "released" / "summary.json").write_text(json.dumps({"model": "x"}))  # not a training run
    b = timeline.timeline(timeline.Config(results=str(tmp_path), out=str(tmp_path / "t.md"), cores=2))
    parts = {k: v["core_s"] for k, v in b["parts"].items()}
    assert b["span_s"] == pytest.approx(170) and b["runs"] == 2 and b["runs_with_breakdown"] == 1
    assert parts["timed training steps"] == pytest.approx(90)
    assert parts["evaluation (validation, final scores)"] == pytest.approx(8)
    assert parts["loop bookkeeping (logging, state saves)"] == pytest.approx(4)
    assert parts["run set-up (data, model, FLOP count)"] == pytest.approx(3)
    assert parts["rest of training jobs (start-up, imports, warm-up steps, writing)"] == pytest.approx(150 - 105)
    assert parts["job: prepare"] == pytest.approx(18) and parts["job: report"] == pytest.approx(5)
    assert parts["idle cores"] == pytest.approx(340 - 173)
    assert sum(v["share"] for v in b["parts"].values()) == pytest.approx(1)
    assert (tmp_path / "t.png").stat().st_size > 0
    assert "| timed training steps | 1.5 | 26.5 % |" in (tmp_path / "t.md").read_text()


def test_timeline_without_benchmark_records_says_so(tmp_path):
    with pytest.raises(Exception, match="no Snakemake benchmark records"):
        timeline.timeline(timeline.Config(results=str(tmp_path), out=str(tmp_path / "t.md"), cores=2))


@pytest.mark.slow
def test_input_benchmark_times_the_shards_beside_torchvision(tmp_path):
    """vit.data.bench_input on a small tree: both pipelines at one resolution with 1 core and with every core,
    and the per-core figure vit.account.cost reads."""
    from vit.data import bench_input

    cfg = bench_input.Config(root=str(tmp_path), out=str(tmp_path / "input.json"), n=160, width=80, height=60,
                             classes=4, resolutions=[32], sample=64, batch=16)
    result = bench_input.bench(cfg)
    cores = len(os.sched_getaffinity(0))
    assert {(r["pipeline"], r["workers"]) for r in result["rows"]} == {
        (p, w) for p in ("shards", "torchvision ImageFolder") for w in {0, cores}}
    assert all(r["images_per_s"] > 0 for r in result["rows"])
    assert result["per_core"] == {"32": next(r["images_per_s"] for r in result["rows"]
                                            if r["pipeline"] == "shards" and r["workers"] == 0)}
    assert read_json(tmp_path / "input.json", "")["per_core"] == result["per_core"]
    assert len(list((tmp_path / "tree" / "train").rglob("*.jpg"))) == 160 and list((tmp_path / "shards").glob("*.tar"))
