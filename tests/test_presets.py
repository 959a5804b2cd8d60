"""The paper presets, planned with the SLURM profile (`snakemake -n`): the jobs, their resources, the
torchrun launch, and every recipe value of the planned command lines against vit/reference.yaml."""
from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from importlib import resources

import pytest
import yaml

from conftest import REPO
from vit.account import cost
from vit import plan
from vit.plan import recipes

REF = yaml.safe_load(resources.files("vit").joinpath("reference.yaml").read_text())
PRESETS = {"configs/paper-transfer.yaml": {"import_weights": 4, "prepare": 5, "finetune": 4, "finetune_hyperrule": 1,
                                           "evaluate": 1, "account": 1, "summarize": 1, "report": 1, "peak": 1,
                                           "inspect": 2},
           "configs/paper-i21k.yaml": {"prepare": 6, "pretrain": 6, "finetune": 6, "evaluate": 1, "account": 1,
                                       "summarize": 1, "report": 1, "peak": 1, "inspect": 4}}
GPU_RULES = ("pretrain", "finetune", "finetune_hyperrule")
ONE_GPU_RULES = ("peak", "inspect")  # the matmul peak of one GPU; Figs. 6-7 from one checkpoint
LOCAL_RULES = ("import_weights", "evaluate", "account", "summarize", "report")


def dry_run(preset, tmp_path) -> list[dict]:
    """The planned jobs: rule, resources and the shell command's --key=value settings.
    --cores stands in for the cluster: a dry run caps threads at --cores (1 if not given); a real
    SLURM run does not cap them."""
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "workflow" / "Snakefile"), "-n", "--cores", "64",
           "--workflow-profile", str(REPO / "workflow" / "profiles" / "slurm"), "-d", str(tmp_path),
           "--configfile", str(REPO / preset)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", proc.stdout):
        m = re.match(r"(?:local)?rule (\w+):", block)
        if not m or m.group(1) == "all":
            continue
        res = re.search(r"resources: (.*)", block).group(1)
        resources_ = dict(kv.split("=", 1) for kv in res.split(", "))
        shell = re.search(r"Shell command: (.*)", block).group(1)
        words = shlex.split(shell.split(" > ")[0])
        args = {}
        for w in words:
            if w.startswith("--") and "=" in w:
                k, v = w[2:].split("=", 1)
                try:
                    args[k] = json.loads(v)
                except json.JSONDecodeError:
                    args[k] = v
        jobs.append({"rule": m.group(1), "resources": resources_, "shell": shell, "args": args})
    return jobs


@pytest.fixture(scope="module", params=list(PRESETS))
def planned(request, tmp_path_factory):
    return request.param, dry_run(request.param, tmp_path_factory.mktemp("dry"))


@pytest.mark.slow
def test_planned_jobs_resources_and_launch(planned):
    preset, jobs = planned
    counts = {}
    for j in jobs:
        counts[j["rule"]] = counts.get(j["rule"], 0) + 1
    assert counts == PRESETS[preset]
    for j in jobs:
        if j["rule"] in GPU_RULES:
            r = j["resources"]
            assert (r["gpu"], r["cpus_per_gpu"], r["slurm_partition"]) == ("8", "8", "gpu")
            assert int(r["mem_mb"]) >= 400_000 and int(r["runtime"]) >= 24 * 60
            assert "tasks" not in r  # would become --ntasks-per-gpu and multiply the processes
            # SLURM's warning before the time limit, for a state save (docs/reliability.md)
            assert "--signal=USR1@600" in r["slurm_extra"]
            # its own devices first (vit.train.gpus), then one process per GPU; `exec`: no shell left between
            # Snakemake and the stage, for SLURM's signals to kill
            assert j["shell"].startswith(f"exec python -m vit.train.gpus --count={r['gpu']} -- "
                                         f"torchrun --standalone --nnodes=1 --nproc_per_node={r['gpu']} -m vit.")
            assert j["args"]["threads"] == 8
        elif j["rule"] in ONE_GPU_RULES:
            # inspect takes a device of its own; peak asks for every core, so nothing runs beside it
            prefix = "python -m vit.train.gpus --count=1 -- python -m vit." if j["rule"] == "inspect" else "python -m vit."
            assert j["resources"]["gpu"] == "1" and j["shell"].startswith(prefix), j["rule"]
        else:
            assert "gpu" not in j["resources"], j["rule"]
    # every image set is stored as its original files in shards and cropped as the paper's code does
    # (vit.data.shards; issue: the paper presets' input pipeline); the HyperRule's BiT crop is its recipe's
    for j in jobs:
        if j["rule"] == "prepare":
            assert j["args"]["store"] == "shards" and "size" not in j["args"], j["shell"]
        elif j["rule"] in ("pretrain", "finetune"):
            assert j["args"]["augment"] == "inception_crop", j["shell"]
    # light rules run on the login node: a dry run prints no executor, so check the rule definitions
    rules = "".join(p.read_text() for p in (REPO / "workflow" / "rules").glob("*.smk"))
    for rule in LOCAL_RULES:
        assert re.search(rf"rule {rule}:\n    localrule: True\n", rules), rule


def _table3_row(model: str, dataset: str) -> dict:
    for row in REF["pretrain_hparams"]["rows"]:
        names = [n.strip() for n in row["models"].split(",")]
        if model in names and row["dataset"] == dataset:
            return row
    raise KeyError(model)


@pytest.mark.slow
def test_pretraining_matches_table3_key_by_key(planned):
    preset, jobs = planned
    common = REF["pretrain_hparams"]["common"]
    pre = [j["args"] for j in jobs if j["rule"] == "pretrain"]
    assert bool(pre) == (preset == "configs/paper-i21k.yaml")
    for a in pre:
        assert (a["optimizer"], a["beta2"], a["batch_size"], a["warmup_steps"], a["img_size"]) == (
            common["optimizer"].lower(), common["adam_beta2"], common["batch_size"], common["warmup_steps"],
            common["resolution"])
        assert a["grad_clip"] == common["grad_clip_global_norm"]["value"]
        name = a["model_args"]["name"]
        if name.startswith("ViT"):
            row = _table3_row(name, "ImageNet-21k")
            assert (a["lr"], a["schedule"], a["weight_decay"]) == (row["base_lr"], row["decay"], row["weight_decay"])
            epochs = row["epochs"] if isinstance(row["epochs"], list) else [row["epochs"]]
            assert a["epochs"] in epochs
            assert a["model_args"]["proj_drop_rate"] == a["model_args"]["pos_drop_rate"] == row["dropout"]
            assert a["model_args"]["head"] == "tanh_mlp"
        else:  # no ImageNet-21k row for ResNets: the JFT-300M learning rate, ImageNet-21k's decay (named departure)
            jft, _ = recipes.pretrain(name, "JFT-300M")
            assert a["lr"] == jft["lr"] and a["weight_decay"] == 0.03 and a["epochs"] == 90


@pytest.mark.slow
def test_finetuning_matches_table4_key_by_key(planned):
    preset, jobs = planned
    common = REF["finetune_hparams"]["common"]
    fine = [j["args"] for j in jobs if j["rule"] == "finetune"]
    assert fine
    for a in fine:
        assert (a["optimizer"], a["momentum"], a["batch_size"], a["schedule"], a["weight_decay"], a["grad_clip"]) == (
            common["optimizer"].lower(), common["momentum"], common["batch_size"], common["lr_decay"],
            common["weight_decay"], common["grad_clip_global_norm"])
        assert a["resolutions"] == [common["resolution"]]
        assert set(a["tasks"]) == set(REF["finetune_hparams"]["per_dataset"]) - {"vtab"}
        for task, row in REF["finetune_hparams"]["per_dataset"].items():
            if task == "vtab":
                continue
            t = a["per_task"][task]
            assert t["steps"] == row["steps"]
            assert t.get("lr_grid", a["lr_grid"]) == row["lr_grid"]
            assert t["dev_fraction"] == row["dev_split_fraction"]
        imagenet = a["per_task"]["imagenet"]
        if preset == "configs/paper-transfer.yaml":  # Table 2's ImageNet fine-tune
            extras = REF["finetune_hparams"]["table2_imagenet_extras"]
            assert imagenet["resolutions"] == [extras["resolution"]["ViT-L/16"]]
            assert imagenet["polyak"] == extras["polyak_averaging_factor"]
        else:  # Table 5: 384 px, no Polyak averaging
            assert "resolutions" not in imagenet and "polyak" not in imagenet


@pytest.mark.slow
def test_bit_runs_the_hyperrule_too(tmp_path):
    """paper-transfer: the BiT stand-in is fine-tuned a second time with BiT's own recipe (App. B.1.1), the
    per-task schedule decided at run time from each task's size; Pets keeps its trainval split."""
    jobs = dry_run("configs/paper-transfer.yaml", tmp_path)
    (hr,) = [j["args"] for j in jobs if j["rule"] == "finetune_hyperrule"]
    assert (hr["recipe"], hr["recipe_variant"], hr["recipe_override"]) == ("bit_hyperrule", "code", {})
    assert "resolutions" not in hr and "lr_grid" not in hr  # the rule picks both
    assert hr["per_task"]["pets"] == {"train_split": "trainval"} and hr["per_task"]["imagenet"] == {"test_split": "val"}
    # the cost estimate follows the rule: steps by training-set size, 128 px for CIFAR's 32 px images
    rows = {r["task"]: r for r in cost.jobs(plan.load(yaml.safe_load((REPO / "configs/paper-transfer.yaml").read_text())))
            if r["stage"] == "hyperrule"}
    assert {t: (r["resolution"], r["images"] // (3 * 512)) for t, r in rows.items()} == {
        "imagenet": (480, 20_000), "cifar10": (128, 10_000), "cifar100": (128, 10_000), "pets": (480, 500),
        "flowers102": (480, 500)}


def test_cost_estimate_covers_the_default_baselines():
    """config.yaml: the Noisy Student students (their own steps: as many images as every pre-training) and
    the BiT-HyperRule fine-tunes (the config's 100 steps of batch 64 at 32 px, 3 seeds per task)."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    rows = cost.jobs(plan.load(config))
    students = [r for r in rows if r["stage"] == "pretrain" and r["model"] == "bit_ns"]
    assert [r["upstream"] for r in students] == ["ns1_contours_l", "ns2_contours_l"]
    assert all(r["images"] == 438 * 128 for r in students)
    hr = [r for r in rows if r["stage"] == "hyperrule"]
    assert len(hr) == len(config["finetune"]["tasks"])
    assert all((r["resolution"], r["images"]) == (32, 3 * 100 * 64) for r in hr)


@pytest.mark.slow
def test_cost_estimate_follows_the_plan():
    config = yaml.safe_load((REPO / "configs" / "paper-i21k.yaml").read_text())
    rows = cost.jobs(plan.load(config))
    pre = [r for r in rows if r["stage"] == "pretrain"]
    assert len(pre) == 6 and all(r["images"] == round(90 * 14197122 / 4096) * 4096 for r in pre)
    # 5 tasks x (3 seeds + 4 dev runs) x steps x 512 per upstream checkpoint
    ft = [r for r in rows if r["stage"] == "finetune" and r["model"] == "vit_l16"]
    assert sum(r["images"] for r in ft) == 7 * 512 * (20000 + 10000 + 10000 + 500 + 500)
    config["finetune"]["tasks"] = ["pets"]
    config["finetune"]["per_task"] = {"pets": config["finetune"]["per_task"]["pets"]}
    df = cost.estimate(plan.load(config), "h100", 0.4, cost.PEAKS["h100"])
    l16 = df[(df.model == "vit_l16") & (df.stage == "pretrain")].iloc[0]
    # ViT-L/16 at 224 px: vit/reference.yaml (model_flops) gives 123.1 forward GFLOPs; training = forward + backward = 3x
    assert l16.train_gflops_per_img == pytest.approx(3 * 123.1, rel=0.01)


@pytest.mark.slow
def test_the_one_gpu_cifar_preset_plans_table4_and_its_cost(tmp_path, capsys):
    """configs/paper-cifar.yaml (vision_transformer #84, #152): the released ViT-B/16 (ImageNet-21k) on
    CIFAR-10/100 at 384 px with Table 4's recipe, planned on one GPU as its header says, every recipe value
    against vit/reference.yaml; and its cost before launch."""
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "workflow" / "Snakefile"), "-n", "--cores", "16",
           "--resources", "gpu=1", "--set-resources", "finetune:gpu=1", "-d", str(tmp_path),
           "--configfile", str(REPO / "configs/paper-cifar.yaml")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    [shell] = [ln.split("Shell command: ", 1)[1] for ln in proc.stdout.splitlines()
               if "Shell command: exec python -m vit.train.gpus --count=1 -- python -m vit.train.finetune" in ln]
    args = {w[2:].split("=", 1)[0]: w[2:].split("=", 1)[1] for w in shlex.split(shell.split(" > ")[0])
            if w.startswith("--") and "=" in w}
    common, per = REF["finetune_hparams"]["common"], REF["finetune_hparams"]["per_dataset"]
    assert (args["optimizer"], float(args["momentum"]), int(args["batch_size"]), args["schedule"],
            float(args["weight_decay"]), float(args["grad_clip"]), json.loads(args["resolutions"])) == (
        common["optimizer"].lower(), common["momentum"], common["batch_size"], common["lr_decay"],
        common["weight_decay"], common["grad_clip_global_norm"], [common["resolution"]])
    assert json.loads(args["tasks"]) == ["cifar10", "cifar100"]
    for task in ("cifar10", "cifar100"):
        assert int(args["steps"]) == per[task]["steps"] and json.loads(args["lr_grid"]) == per[task]["lr_grid"]
        assert float(args["dev_fraction"]) == per[task]["dev_split_fraction"]
    assert int(args["warmup_steps"]) == REF["finetune_hparams"]["vit_jax_public_defaults"]["warmup_steps"]
    assert "import_weights" in proc.stdout and "--weights=vit_base_patch16_224.orig_in21k" in proc.stdout
    # its cost on one H100, before launch: 2 tasks x (4 dev runs + 3 seeds) of 10k steps of 512 at 384 px
    df = cost.main(cost.Config(configfile=str(REPO / "configs/paper-cifar.yaml"), device="h100", devices=1))
    assert set(df.rule) == {"finetune"} and list(df.task) == ["cifar10", "cifar100"] and list(df.runs) == [7, 7]
    assert df.flops.sum() == pytest.approx((7 * 10000 * 512 * df.train_gflops_per_img * 1e9).sum(), rel=1e-6)
    assert "wall time on 1 H100s" in capsys.readouterr().out
