"""The Snakemake workflow through the real `snakemake` command: lint, dry runs, config errors, and one
end-to-end run of configs/smoke.yaml in a temporary directory."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pandas as pd
import pytest
import yaml

from conftest import FORM, REPO

from vit.logs import sha256_file

SNAKEMAKE = [sys.executable, "-m", "snakemake", "-s", str(REPO / "workflow" / "Snakefile"),
             "--workflow-profile", "none"]


def smk(workdir, *args, configfile=None, check=True):
    cmd = SNAKEMAKE + ["-d", str(workdir), "--cores", "2", *args]  # before --configfile, which takes every word after it
    if configfile:
        cmd += ["--configfile", str(configfile)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["config.yaml", "configs/smoke.yaml"])
def test_dry_run_plans_every_stage(tmp_path, preset):
    out = smk(tmp_path, "-n", configfile=REPO / preset).stdout
    for rule in ("prepare", "pretrain", "finetune", "evaluate", "account", "report"):
        assert f"rule {rule}:" in out or f"\n{rule} " in out, rule


@pytest.mark.slow
def test_lint_passes(tmp_path):
    shutil.copy(REPO / "config.yaml", tmp_path / "config.yaml")
    proc = smk(tmp_path, "--lint", check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _bad_config(tmp_path, edit):
    cfg = yaml.safe_load((REPO / "configs" / "smoke.yaml").read_text())
    edit(cfg)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return smk(tmp_path, "-n", configfile=path, check=False)


@pytest.mark.slow
def test_misspelled_key_is_named(tmp_path):
    proc = _bad_config(tmp_path, lambda c: c["finetune"]["train"].update(learning_rate=0.1))
    assert proc.returncode != 0 and "learning_rate" in proc.stdout + proc.stderr


@pytest.mark.slow
def test_wrong_type_is_named(tmp_path):
    proc = _bad_config(tmp_path, lambda c: c["finetune"]["train"].update(steps="many"))
    assert proc.returncode != 0 and "steps" in proc.stdout + proc.stderr and "many" in proc.stdout + proc.stderr


@pytest.mark.slow
def test_undefined_dataset_is_named(tmp_path):
    proc = _bad_config(tmp_path, lambda c: c["finetune"]["tasks"].append("cifar10"))
    assert proc.returncode != 0 and "cifar10" in proc.stdout + proc.stderr


@pytest.mark.slow
def test_smoke_preset_end_to_end(tmp_path):
    """The whole DAG on tiny data, then: a second run has nothing to do, and the HTML report builds."""
    smk(tmp_path, configfile=REPO / "configs" / "smoke.yaml")
    cfg = yaml.safe_load((REPO / "configs" / "smoke.yaml").read_text())
    summary = pd.read_parquet(tmp_path / "results" / "summary.parquet")
    n_ckpts = (sum(len(v) for v in cfg["pretrain"]["runs"].values()) + len(cfg["finetune"]["from_scratch"])
               + cfg["noisy_student"]["iterations"])  # one student per Noisy Student iteration
    expected = n_ckpts * len(cfg["finetune"]["tasks"]) * len(cfg["finetune"]["resolutions"]) * len(cfg["seeds"])
    assert len(summary) == expected
    assert {"model", "upstream", "task", "resolution", "seed", "top1", "pretrain_flops",
            "finetune_flops", "finetune_config"} <= set(summary.columns)
    assert summary.top1.between(0, 100).all() and summary.loc[summary.resolution == 48, "posemb_resampled"].any()
    # provenance: every row names the data, splits, weights, packages, precision, preprocessing and code
    prov = ["dataset_version", "dataset_hash", "split_hash", "checkpoint_sha256", "packages", "precision",
            "preprocessing", "git_commit"]
    assert (summary[prov].notna() & (summary[prov] != "")).all().all()
    row = summary[(summary.model == "vit") & (summary.upstream == "shapes_l")].iloc[0]
    assert row.checkpoint_sha256 == sha256_file(tmp_path / "results/pretrain/vit/shapes_l/checkpoint.pt")
    assert set(summary[summary.upstream == "scratch"].checkpoint_sha256) == {"none (from scratch)"}
    assert (summary.groupby("task").dataset_hash.nunique() == 1).all() and summary.dataset_hash.nunique() == 3
    assert "torchvision " in row.packages and row.preprocessing.startswith("augment ")
    # each run's form is this machine's rule (or the suite's VIT_STEP_FORM) for its family, recorded with the machine
    assert row.form == str(FORM) and row.pretrain_form == str(FORM) and row.machine == row.pretrain_machine != ""
    assert row.precision == ("fp32" if FORM.precision == "fp32" else "bf16 autocast, fp32 weights")
    assert row.dataset_version.startswith(cfg["datasets"][row.task]["source"])
    report = (tmp_path / "reports" / "report.md").read_text()
    assert "| fine-tuning form " in report.split("## Provenance")[1]  # the forms table, under Provenance
    table2 = (tmp_path / "reports" / "table2.md").read_text()
    assert "| ViT-L/16 " in table2 and "| JFT-300M " in table2 and "87.76 ± 0.03" in table2 and "(paper)" in table2
    assert "## VTAB-style aggregate" in report and "figures/size_ladder.png" in report
    assert "resampled in 2D: bicubic (timm's bicubic with antialias)" in report  # the interpolation used
    for fig in ("transfer", "size_ladder", "resolution", "compute", "pretrain_curves", "resolution_ablation",
                "attention_rollout", "embedding_filters", "posemb_similarity", "attention_distance"):
        png = tmp_path / "reports" / "figures" / f"{fig}.png"
        assert png.read_bytes()[:4] == b"\x89PNG" and png.stat().st_size > 10_000, fig
        assert f"figures/{fig}.png" in report, fig
    # the scorecard: one verdict per claim (a)-(f), each decided from this run's numbers
    card = report.split("## Claims scorecard")[1].split("\n## ")[0]
    for key in "abcdef":
        line = next(row for row in card.splitlines() if row.startswith(f"| ({key})"))
        assert any(v in line for v in ("| holds", "| partly", "| not detected", "| does not hold")), line
    # the resolution ablation: the ViT at 48 px again with the other interpolation, beside the main runs
    assert "48 px, bilinear_corners" in report and "48 px, bicubic" in report and "Without interpolation" in report
    compute = pd.read_parquet(tmp_path / "results" / "compute" / "compute.parquet")
    assert (compute.train_flops > 0).all() and set(compute.stage) == {"pretrain", "finetune"}
    # MFU against the measured peak of the same machine and thread count; the formula column for ViTs
    assert compute.mfu.between(0, 1, inclusive="neither").all()
    vit = compute[compute.model == "vit"]
    assert ((vit.fwd_flops_per_img / vit.fwd_flops_formula - 1).abs() < 0.01).all()
    assert "### The paper's runs, at paper scale" in report and "- packages: python" in report
    assert "### Estimated before launch vs measured" in report and "| total " in report
    # sec. 4.6: the self-supervised ViT against the same ViT from scratch and supervised
    ssl = report.split("## Self-supervised pre-training (paper sec. 4.6)")[1].split("\n## ")[0]
    for arm in ("from scratch", "masked patch prediction on Shapes-1k (no labels)", "supervised on Shapes-1k"):
        assert arm in ssl, arm
    assert "points from training from scratch" in ssl and "79.9 %" in ssl
    # Noisy Student: teacher, then one student per iteration, each trained on labelled + pseudo-labelled images
    ns = report.split("## Noisy Student (the Table 2 baseline's recipe)")[1].split("\n## ")[0]
    rows = [r for r in ns.splitlines() if "| teacher " in r or "| student " in r]  # the role column
    assert len(rows) == 1 + cfg["noisy_student"]["iterations"] and "pseudo-labelled (" in rows[1]
    assert "(iteration 2)" in table2
    # Table 2's BiT row again with BiT's own recipe, and the report's side-by-side of the two protocols
    assert "| BiT-micro, BiT-HyperRule, " in table2 and "BiT-HyperRule (code variant" in table2
    assert "% of its prescribed examples" in table2  # the smoke's 10 steps of 16: a fraction of the rule's
    hr = report.split("## BiT's own fine-tuning recipe (BiT-HyperRule)")[1].split("\n## ")[0]
    assert "| shared protocol " in hr and "| BiT-HyperRule " in hr and "HyperRule minus shared" in hr
    hr_runs = json.loads((tmp_path / "results" / "hyperrule" / "bit" / "shapes_l" / "runs.json").read_text())
    assert len(hr_runs) == len(cfg["finetune"]["tasks"]) * len(cfg["seeds"])
    assert {(r["config"]["lr"], r["config"]["schedule"], r["steps"]) for r in hr_runs} == {(0.003, "step", 10)}
    manifest = yaml.safe_load((tmp_path / "results" / "data" / "ns2_shapes_l" / "manifest.json").read_text())
    assert manifest["source"] == "noisy_student" and manifest["info"]["teacher"].endswith("effnet_ns/ns1_shapes_l/checkpoint.pt")
    student = json.loads((tmp_path / "results" / "pretrain" / "effnet_ns" / "ns2_shapes_l" / "summary.json").read_text())
    assert "train_soft.npy" in manifest["files"] and student["config"]["soft_targets"] is True
    assert "Nothing to be done" in smk(tmp_path, configfile=REPO / "configs" / "smoke.yaml").stderr
    smk(tmp_path, "--report", "report.html", configfile=REPO / "configs" / "smoke.yaml")
    assert (tmp_path / "report.html").stat().st_size > 50_000
    _same_numbers_again(tmp_path, summary)


def _same_numbers_again(first, summary):
    """Same machine, same config, same numbers: the main ViT's and BiT's chains again from an empty folder,
    with other jobs beside them than the first run had, give every cell of the first run bit for bit (the
    step form is a rule of the machine, never a timing: vit.train.forms)."""
    again = first / "again"
    targets = [f"results/finetune/{m}/shapes_l/runs.json" for m in ("vit", "bit")]
    smk(again, *targets, configfile=REPO / "configs" / "smoke.yaml")
    for m in ("vit", "bit"):
        ckpt = f"results/pretrain/{m}/shapes_l/checkpoint.pt"
        assert sha256_file(again / ckpt) == sha256_file(first / ckpt), ckpt
    rows = [(r["model"], r["task"], r["config"]["img_size"], r["config"]["seed"], r["eval"]["test"]["top1"],
             r["eval"]["test"]["loss"]) for t in targets for r in json.loads((again / t).read_text())]
    cells = summary[summary.upstream == "shapes_l"].set_index(["model", "task", "resolution", "seed"])
    assert len(rows) == 2 * 3 * 2 * 2
    for model, task, res, seed, top1, loss in rows:
        assert (top1, loss) == tuple(cells.loc[(model, task, res, seed), ["top1", "test_loss"]]), (model, task, res, seed)


@pytest.mark.slow
def test_released_weights_preset_end_to_end(tmp_path):
    """A paper-transfer-style preset at laptop scale: released weights (a timm tag, imported from a
    local file in the hub's format), Table 4's dev-split learning-rate choice, through to the report."""
    import safetensors.torch
    import timm

    hub = timm.create_model("vit_tiny_patch16_224", num_classes=21843)
    safetensors.torch.save_file(hub.state_dict(), tmp_path / "vit_tiny.safetensors")
    config = {
        "seeds": [0],
        "datasets": {"digits": {"source": "digits", "group": "natural", "label": "Digits", "train": 200, "val": 50,
                                "test": 200}},
        "models": {"vitt": {"arch": "timm", "name": "vit_tiny_patch16_224", "label": "ViT-Ti/16",
                            "paper_row": "ViT-L/16_I21k"}},
        "pretrain": {"train": {}, "released": {"vitt": {"in21k": {
            "weights": "vit_tiny_patch16_224.augreg_in21k", "file": str(tmp_path / "vit_tiny.safetensors"),
            "label": "ImageNet-21k (released)", "examples": 14197122}}}},
        "finetune": {"tasks": ["digits"], "resolutions": [32], "lr_grid": [0.003, 0.03], "dev_fraction": 0.2,
                     "per_task": {"digits": {"steps": 4}},
                     "train": {"optimizer": "sgd", "batch_size": 32, "train_split": "train+val", "test_split": "test",
                               "save_checkpoint": False, "ckpt_every": 0}},
    }
    (tmp_path / "transfer.yaml").write_text(yaml.safe_dump(config))
    smk(tmp_path, configfile=tmp_path / "transfer.yaml")
    runs = pd.read_parquet(tmp_path / "results" / "eval" / "runs.parquet")
    assert list(runs.upstream) == ["in21k"] and runs.steps.tolist() == [4]
    assert (tmp_path / "results" / "finetune" / "vitt" / "in21k" / "digits" / "r32_dev" / "lr0.03").is_dir()
    assert "ImageNet-21k (released)" in (tmp_path / "reports" / "report.md").read_text()


@pytest.mark.slow
def test_signalled_training_job_is_retried_by_snakemake_and_resumes(tmp_path):
    """What the SLURM profile's --signal=USR1@600 does: SIGUSR1 to every process of the job (Snakemake,
    Python): Snakemake survives it, the training process saves its state and exits 75, Snakemake deletes
    the job's outputs and retries it (`retries`), and the retry continues from the state file, which is
    not a declared output and so survives the cleanup (kill -9 of a run: tests/test_faults.py)."""
    import os
    import signal
    import time
    from pathlib import Path

    cfg = yaml.safe_load((REPO / "configs" / "smoke.yaml").read_text())
    cfg["pretrain"]["epochs"]["shapes_l"] = 40  # 620 steps of the micro ViT: long enough to signal mid-way
    (tmp_path / "long.yaml").write_text(yaml.safe_dump(cfg))
    target = "results/pretrain/vit/shapes_l/checkpoint.pt"
    cmd = SNAKEMAKE + ["-d", str(tmp_path), "--cores", "2", "--configfile", str(tmp_path / "long.yaml"),
                       "--retries", "1", target]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    run_dir = tmp_path / "results" / "pretrain" / "vit" / "shapes_l"
    deadline = time.time() + 300
    while not list(run_dir.glob("state-*.pt")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    pids = [int(p.parent.name) for p in Path("/proc").glob("[0-9]*/cmdline")  # the job's python (no pgrep needed)
            if _reads(p).startswith(b"python") and b"vit.train\0--data=results/data/shapes_l\0--out=results/pretrain/vit/"
            b"shapes_l" in _reads(p)]
    assert pids, "the training process was not found running"
    os.killpg(proc.pid, signal.SIGUSR1)  # Snakemake leads its own session: the group is the whole job
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-3000:]
    log = (tmp_path / "results" / "logs" / "pretrain" / "vit-shapes_l.log").read_text()
    assert "resuming" in log and (run_dir / "summary.json").exists()
    assert "exit status 75" in out, out[-3000:]  # the first attempt's log is replaced by the retry's
    assert not list(run_dir.glob("state-*.pt"))


def _reads(path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:  # the process ended while we looked
        return b""
