"""The GPU check (`make gpu-check`, vit.account.gpu_check) at toy size on the CPU: every part runs, so that it
cannot rot between the sessions that have a GPU; and the one-GPU CIFAR preset it starts."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from conftest import REPO


@pytest.mark.slow
def test_every_part_of_the_gpu_check_runs_at_toy_size(tmp_path):
    out = tmp_path / "gpu.json"
    proc = subprocess.run([sys.executable, "-m", "vit.account.gpu_check", "--toy=true", f"--out={out}",
                           f"--work={tmp_path / 'work'}"], cwd=REPO, capture_output=True, text=True, timeout=600)
    result = json.loads(out.read_text())
    failed = {k: v["traceback"] for k, v in result["parts"].items() if not v["ok"]}
    assert proc.returncode == 0 and not failed, (failed, proc.stderr[-3000:])
    p = result["parts"]
    assert set(p) == {"step", "input", "finetune", "torchrun", "cifar"}
    assert p["step"]["ours_img_per_s"] > 0 and p["step"]["plain_img_per_s"] > 0 and 0 < p["step"]["ours_mfu_measured_peak"]
    assert p["input"]["img_per_s"] > 0 and p["input"]["input_over_step"] > 0
    # the released layout's 14x14 position grid resampled to the fine-tuning resolution's, the head replaced
    assert p["finetune"]["posemb_resampled"] and p["finetune"]["grid_size"] == [3, 3] and p["finetune"]["head_reset"]
    c = p["torchrun"]["collectives"]
    assert (c["backend"], c["world"]) == ("gloo", 2) and all(c["checks"].values())
    assert p["torchrun"]["train"]["processes"] == 2
    # the preset's own settings (SGD, its grid's first rate, 384 px in full size), cut to a few steps
    assert p["cifar"]["runs"] == 14 and p["cifar"]["projected_hours"] > 0 and p["cifar"]["steps_run"] == 2
    assert "paper-cifar:" in proc.stdout and "FAILED" not in proc.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without a GPU")
def test_the_full_check_refuses_a_machine_without_a_gpu(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "vit.account.gpu_check", f"--out={tmp_path / 'gpu.json'}"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "no GPU here" in proc.stderr and "--toy" in proc.stderr
    assert not (tmp_path / "gpu.json").exists()
