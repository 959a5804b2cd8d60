"""vit.account.cost: a preset's FLOPs, device-hours and wall time before launch, per rule and in total."""
import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from vit import cli, plan
from vit.account import cost, input_bound

REPO = Path(__file__).resolve().parent.parent


def preset(name: str) -> dict:
    return yaml.safe_load((REPO / name).read_text())


def load(name: str) -> plan.Plan:
    return plan.load(preset(name))


_COUNTED: dict = {}  # FLOPs per image across this module's tests: paper-i21k's models take ~15 s to count


@pytest.fixture(autouse=True)
def counted_once(monkeypatch):
    """Each (model, resolution, classes) counted once for the whole module, as cost counts it once per call."""
    real = cost._flops_per_image

    def memo(spec, res, classes, cache):
        key = (json.dumps(spec, sort_keys=True, default=str), res, classes)
        if key not in _COUNTED:
            _COUNTED[key] = real(spec, res, classes, cache)
        return _COUNTED[key]
    monkeypatch.setattr(cost, "_flops_per_image", memo)


@pytest.mark.slow
def test_gpu_estimate_per_rule_and_total(capsys):
    """paper-i21k on H100s: device-hours = FLOPs / (peak x MFU); each job runs on its rule's 8 GPUs (the
    SLURM profile); the preset's wall time is the hours over the devices, at least its longest chain."""
    df = cost.main(cost.Config(configfile=str(REPO / "configs/paper-i21k.yaml"), device="h100", mfu=0.5, devices=16))
    out = capsys.readouterr().out
    assert df.device_hours.sum() == pytest.approx(df.flops.sum() / (989e12 * 0.5) / 3600)
    assert set(df.rule) == {"pretrain", "finetune"}
    assert "MFU 50%, stated (--mfu)" in out and "16 H100s at once" in out
    per_gpu, runtime, attempts = cost._profile("h100")
    jobs, wall = cost.wall_hours(df, per_gpu, 16, load("configs/paper-i21k.yaml"))
    assert (jobs.devices == 8).all() and len(jobs) == 12
    l16 = jobs.set_index(["rule", "model"]).wall_hours
    # the longest chain: a pre-training, then the fine-tuning job of its checkpoint
    chain = max(l16["pretrain", m] + l16["finetune", m] for m in jobs.model.unique())
    assert wall == pytest.approx(max(jobs.device_hours.sum() / 16, chain))
    total = [line for line in out.splitlines() if line.startswith("total:")][0]
    assert f"{df.device_hours.sum():,.3g} H100-hours" in total
    # each rule's longest job fits the profile's attempts x runtime (48 h x 5, retries: 4): no warning
    assert "TOO SHORT" not in out and attempts == 5 and runtime["pretrain"] == 2880


@pytest.mark.slow
def test_too_short_slurm_limit_is_flagged(capsys, monkeypatch):
    real = cost._profile
    monkeypatch.setattr(cost, "_profile", lambda d: (real(d)[0], {"pretrain": 60, "finetune": 60}, 1))
    cost.main(cost.Config(configfile=str(REPO / "configs/paper-i21k.yaml"), device="a100"))
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| pretrain")]
    assert "TOO SHORT" in rows[0]


@pytest.mark.slow
def test_cpu_estimate_uses_the_measured_peak_and_mfu(tmp_path, capsys):
    """--device=cpu: one core's measured fp32 peak (vit.account.peak's JSON); with --measured, the MFU that run
    achieved, and the estimate beside the measured FLOPs and core-hours per stage."""
    (tmp_path / "peak.json").write_text('{"cpu_fp32_gflops": {"1": 100.0, "2": 190.0}}')
    compute = pd.DataFrame({"stage": ["pretrain", "finetune"], "train_flops": [4e12, 6e12],
                            "train_time_s": [200.0, 400.0], "peak_gflops": [100.0, 100.0],
                            "core_hours": [200 / 3600, 400 / 3600], "gpu_hours": [0.0, 0.0], "device": ["cpu", "cpu"]})
    compute.to_parquet(tmp_path / "compute.parquet")
    assert cost.measured_mfu(compute) == pytest.approx(10e12 / (100e9 * 600))
    df = cost.main(cost.Config(configfile=str(REPO / "configs/smoke.yaml"), device="cpu", devices=2,
                               peak_file=str(tmp_path / "peak.json"), measured=str(tmp_path / "compute.parquet")))
    out = capsys.readouterr().out
    mfu = cost.measured_mfu(compute)
    assert df.device_hours.sum() == pytest.approx(df.flops.sum() / (100e9 * mfu) / 3600)
    assert "0.1 TFLOP/s per core, measured by vit.account.peak" in out and "MFU 17%, measured" in out
    cmp = cost.compare(df, compute).set_index("stage")
    assert cmp.loc["pretrain", "measured PFLOPs"] == pytest.approx(4e-3)
    assert cmp.loc["total", "FLOPs ratio"] == pytest.approx(df.flops.sum() / 10e12)
    assert "estimate vs measured" in out


@pytest.mark.slow
def test_vtab_cost_counts_sweep_and_final(tmp_path):
    """configs/vtab.yaml: 4 sweep jobs (first seed) and the final job (every seed) at the sweep's longest
    schedule; the model is a paper model (--model) or the checkpoint's, which must exist."""
    df = cost.estimate(load("configs/vtab.yaml"), "a100", 0.4, cost.PEAKS["a100"], model="ViT-B/16")
    assert df.groupby("rule").size().to_dict() == {"vtab_sweep": 4 * 19, "vtab_final": 19}
    final = df[df.rule == "vtab_final"]
    assert (final.images == 3 * 2500 * 512).all() and (final.resolution == 384).all()
    assert set(df[df.rule == "vtab_sweep"].groupby("upstream").images.first()) == {2500 * 512, 500 * 512}
    config = preset("configs/vtab.yaml")
    config["vtab"]["checkpoint"] = str(tmp_path / "none.pt")
    with pytest.raises(cli.ConfigError, match="vtab.checkpoint"):
        cost.estimate(plan.load(config), "a100", 0.4, cost.PEAKS["a100"])


@pytest.mark.slow
def test_noisy_student_chain_bounds_the_wall_time():
    """Students wait for their teachers: the wall time is at least teacher + students + a fine-tune."""
    p = load("config.yaml")
    df = cost.estimate(p, "cpu", 0.3, 100e9)
    jobs, wall = cost.wall_hours(df, {}, 1000, p)  # devices enough for everything at once
    h = jobs.set_index(["rule", "model", "upstream"]).wall_hours
    chain = (h["pretrain", "bit", "contours_l"] + h["pretrain", "bit_ns", "ns1_contours_l"]
             + h["pretrain", "bit_ns", "ns2_contours_l"] + h["finetune", "bit_ns", "ns2_contours_l"])
    assert wall >= chain - 1e-12
    assert wall == pytest.approx(max(chain, max(h["pretrain", m, u] + h["finetune", m, u]
                                                for _, m, u in h.index if (("finetune", m, u) in h.index and
                                                                          ("pretrain", m, u) in h.index))))


def test_bad_device_is_named():
    with pytest.raises(cli.ConfigError, match="--device='v100'"):
        cost.main(cost.Config(configfile=str(REPO / "config.yaml"), device="v100"))


# the input pipeline's cores per GPU (vit.account.input_bound): a tiny preset, one upstream set in JPEG shards
SHARDS_CONFIG = {
    "datasets": {
        "shapes_l": {"source": "shapes", "group": "upstream", "label": "Shapes", "train": 1000, "val": 100,
                     "test": 0, "size": 32, "classes": 16, "store": "shards"},
        "digits": {"source": "digits", "group": "natural", "label": "Digits", "train": 200, "val": 50, "test": 200}},
    "models": {"vit": {"arch": "vit", "label": "ViT", "patch_size": 8, "embed_dim": 32, "depth": 1, "num_heads": 2}},
    "pretrain": {"runs": {"vit": ["shapes_l"]}, "epochs": {"shapes_l": 2},
                 "train": {"img_size": 32, "batch_size": 64, "optimizer": "adam", "lr": 0.001}},
    "finetune": {"tasks": ["digits"], "resolutions": [32],
                 "train": {"optimizer": "sgd", "lr": 0.1, "steps": 5, "batch_size": 32}}}
PROFILE = """set-resources:
  pretrain: {gpu: 8, cpus_per_gpu: 3, runtime: 60}
  finetune: {gpu: 8, runtime: 60}
"""


def _gpu_rate(df) -> float:
    """Images/s one H100 takes in the pre-training job at MFU 40 %, from its FLOPs per image alone."""
    return cost.PEAKS["h100"] * 0.4 / (df[df.rule == "pretrain"].train_gflops_per_img.iloc[0] * 1e9)


@pytest.fixture
def shards_preset(tmp_path, monkeypatch):
    """The preset's file and a SLURM profile that gives pre-training 3 cores per GPU (none for finetune)."""
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(SHARDS_CONFIG))
    (tmp_path / "profile.yaml").write_text(PROFILE)
    monkeypatch.setattr(cost, "SLURM_PROFILE", tmp_path / "profile.yaml")
    return tmp_path / "config.yaml"


def _bench(tmp_path, per_core: dict) -> str:
    path = tmp_path / "input_pipeline.json"
    path.write_text(json.dumps({"rows": [], "per_core": per_core, "cpu": "test", "images": 10,
                                "image_size": [500, 375], "command": "python -m vit.data.bench_input"}))
    return str(path)


def test_cores_per_gpu_matches_a_hand_count(tmp_path):
    """Needed cores = ceil(GPU images/s / one core's images/s) + 1, on sharded sets only; the core's rate is
    the nearest measured resolution at or above the job's (32 px -> the 48 px row)."""
    p = plan.load(SHARDS_CONFIG)
    df = cost.estimate(p, "h100", 0.4, cost.PEAKS["h100"])
    assert set(df.task) == {"shapes_l", "digits"}
    gpu = _gpu_rate(df)  # about 2e8 images/s for this tiny ViT
    bench = {"per_core": {"16": 1e9, "48": gpu / 6.5, "64": 1.0}}
    need = input_bound.cores_per_gpu(df, bench, p)
    assert need[df.rule == "pretrain"].tolist() == [8.0]  # ceil(6.5) + 1
    assert need[df.rule == "finetune"].isna().all()  # digits: uint8 arrays in memory
    cols, lines = input_bound.check(df, bench, "b.json", p, {"pretrain": 8, "finetune": 8})
    assert cols.to_dict("index") == {"pretrain": {"cores/GPU needed": 8, "cpus_per_gpu": 8},
                                     "finetune": {"cores/GPU needed": "in memory", "cpus_per_gpu": 8}}
    assert lines == []


def test_input_bound_rule_is_named(tmp_path, shards_preset, capsys):
    """A slow core: pre-training needs 7 cores per GPU, the profile gives 3, so 2 pipeline cores feed the
    GPU at 2 / 5.5 of its rate; a fast core: no line. The table gains both columns either way."""
    df = cost.estimate(plan.load(SHARDS_CONFIG), "h100", 0.4, cost.PEAKS["h100"])
    gpu, core = _gpu_rate(df), _gpu_rate(df) / 5.5
    bench = _bench(tmp_path, {"32": core})
    cost.main(cost.Config(configfile=str(shards_preset), device="h100", mfu=0.4, input_bench=bench))
    out = capsys.readouterr().out
    assert [line for line in out.splitlines() if line.startswith("input-bound:")] == [
        f"input-bound: pretrain needs 7 cores per GPU at 32 px (the GPU takes {gpu:,.0f} img/s, a core decodes "
        f"and augments {core:,.0f} img/s; {bench}), the SLURM profile gives 3: the job runs at about 36% of "
        f"the GPU's speed; raise cpus_per_gpu in workflow/profiles/slurm/config.yaml where the nodes have the cores"]
    rows = {line.split("|")[1].strip(): line for line in out.splitlines() if line.startswith("| ")}
    assert "cores/GPU needed" in rows["rule"] and "cpus_per_gpu" in rows["rule"]
    assert [c.strip() for c in rows["pretrain"].split("|")[-3:-1]] == ["7", "3"]
    assert [c.strip() for c in rows["finetune"].split("|")[-3:-1]] == ["in memory", ""]
    cost.main(cost.Config(configfile=str(shards_preset), device="h100", mfu=0.4,
                          input_bench=_bench(tmp_path, {"32": gpu * 1.01})))  # one core keeps up: 2
    out = capsys.readouterr().out
    assert "input-bound:" not in out and "not measured" not in out
    assert [c.strip() for c in [r for r in out.splitlines() if r.startswith("| pretrain")][0].split("|")[-3:-1]] \
        == ["2", "3"]


def test_unmeasured_input_pipeline(tmp_path, shards_preset, capsys, monkeypatch):
    """No benchmark at the default path: one line says so, no columns; a missing --input_bench is an error
    naming it; on --device=cpu nothing is checked."""
    monkeypatch.chdir(tmp_path)  # no results/bench/input_pipeline.json here
    cost.main(cost.Config(configfile=str(shards_preset), device="a100"))
    out = capsys.readouterr().out
    assert ("# input pipeline: not measured (run python -m vit.data.bench_input to write "
            "results/bench/input_pipeline.json); cores per GPU not checked") in out.splitlines()
    assert "cores/GPU needed" not in out and "input-bound" not in out
    with pytest.raises(cli.ConfigError, match=f"--input_bench={tmp_path / 'none.json'}: no such file"):
        cost.main(cost.Config(configfile=str(shards_preset), device="h100", input_bench=str(tmp_path / "none.json")))
    (tmp_path / "peak.json").write_text('{"cpu_fp32_gflops": {"1": 100.0}}')
    cost.main(cost.Config(configfile=str(shards_preset), device="cpu", peak_file=str(tmp_path / "peak.json")))
    out = capsys.readouterr().out
    assert "input pipeline" not in out and "cores/GPU needed" not in out


def test_per_core_rate_at_a_resolution():
    """The measured resolution, else the nearest measured above, else the largest scaled by pixels."""
    per_core = {"224": 210.0, "384": 150.0}
    assert input_bound.per_core_at(per_core, 224) == 210.0
    assert input_bound.per_core_at(per_core, 160) == 210.0
    assert input_bound.per_core_at(per_core, 256) == 150.0
    assert input_bound.per_core_at(per_core, 512) == pytest.approx(150.0 * (384 / 512) ** 2)  # 84.4
