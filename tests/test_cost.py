"""vit.account.cost: a preset's FLOPs, device-hours and wall time before launch, per rule and in total."""
from pathlib import Path

import pandas as pd
import pytest
import yaml

from vit import cli, plan
from vit.account import cost

REPO = Path(__file__).resolve().parent.parent


def preset(name: str) -> dict:
    return yaml.safe_load((REPO / name).read_text())


def load(name: str) -> plan.Plan:
    return plan.load(preset(name))


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
