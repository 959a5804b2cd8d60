"""The matmul peak that MFU is taken against, and which runs it applies to."""
import pytest

from vit.account import compute as account, peak


@pytest.mark.slow
def test_peak_is_measured_per_thread_count(tmp_path):
    result = peak.measure(peak.Config(out=str(tmp_path / "peak.json"), threads=1, repeats=2))
    assert set(result["cpu_fp32_gflops"]) == {"1"} and result["cpu_fp32_gflops"]["1"] > 1
    assert (tmp_path / "peak.json").exists() and result["env"]["host"]


def test_the_bf16_peak_is_measured_where_the_cpu_has_bf16_units(tmp_path, monkeypatch):
    from vit.train import forms

    for has_bf16 in (False, True):
        monkeypatch.setattr(forms, "bf16_units", lambda h=has_bf16: h)
        monkeypatch.setattr(peak, "matmul_peak", lambda dev, dtype, repeats: {"peak_gflops": 2.0 if "bf" in str(dtype) else 1.0})
        result = peak.measure(peak.Config(out=str(tmp_path / "peak.json"), threads=1, repeats=1))
        assert ("cpu_bf16_gflops" in result) == has_bf16 and result["cpu_fp32_gflops"] == {"1": 1.0}
    assert result["cpu_bf16_gflops"] == {"1": 2.0}


def test_a_run_gets_the_peak_of_its_own_machine_threads_and_gpus():
    p = {"cpu_fp32_gflops": {"1": 100.0, "2": 180.0}, "gpu": [{"name": "NVIDIA H100", "bf16_gflops": 700e3}],
         "env": {"host": "a", "cpu_count": 2}}
    assert peak.run_peak_gflops(p, {"device": "cpu", "host": "a", "cpu_count": 2}, 2) == 180.0
    assert peak.run_peak_gflops(p, {"device": "cpu", "host": "b", "cpu_count": 2}, 1) is None  # other machine
    assert peak.run_peak_gflops(p, {"device": "NVIDIA H100"}, 8, processes=8) == 8 * 700e3
    assert peak.run_peak_gflops(p, {"device": "NVIDIA A100"}, 8) is None
    s = {"model": "vit", "upstream": "u", "num_classes": 10, "params": 1, "steps": 5, "images_seen": 50,
         "config": {"img_size": 32, "seed": 0, "batch_size": 10, "threads": 1,
                    "model_args": {"arch": "vit", "patch_size": 8, "embed_dim": 64, "depth": 3, "num_heads": 4}},
         "fwd_flops_per_img": 1e6, "train_flops_per_img": 3e6, "train_time_s": 3600.0, "img_per_s": 10.0,
         "env": {"device": "cpu", "host": "a", "cpu_count": 2}, "peak_rss_mb": 1}
    row = account.run_row(s, "pretrain", p)
    assert row["mfu"] == 0.03 / 100.0 and row["core_hours"] == 1.0 and row["gpu_hours"] == 0.0
    p_bf16 = dict(p, cpu_bf16_gflops={"1": 400.0})  # a bf16 run is held against the bf16 peak
    assert account.run_row(dict(s, precision="bf16 autocast, fp32 weights"), "pretrain", p_bf16)["mfu"] == 0.03 / 400.0
    assert account.run_row(s, "pretrain", p_bf16)["precision"] == "fp32"
    assert row["fwd_flops_formula"] > 0
    gpu = dict(s, env={"device": "NVIDIA H100"}, processes=8)
    row = account.run_row(gpu, "pretrain", p)
    assert row["gpu_hours"] == 8.0 and row["core_hours"] == 0.0 and row["mfu"] == 0.03 / (8 * 700e3)
