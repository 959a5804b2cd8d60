"""Batch-invariant execution: the same global batch split over accumulation steps or over torchrun
processes (gloo on CPU) gives the update a single process computes on the whole batch."""
from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest
import torch

from conftest import ATOL, FORM_ARGS, RTOL, TINY_VIT
from vit import cli
from vit.train import loop as train

# SGD: Adam divides by the gradient's running RMS, which turns float noise on parameters whose true
# gradient is zero (the attention key bias: softmax ignores a shift) into full-size steps.
ARGS = ["--steps=3", "--batch_size=16", "--lr=0.1", "--optimizer=sgd", "--augment=crop_flip", "--img_size=32", "--threads=1",
        "--log_every=1", "--ckpt_every=0", "--val_split=val", "--model=vit", f"--model_args={cli.literal(TINY_VIT)}",
        *FORM_ARGS]  # the same form for every split compared (vit.train.forms)


def _weights(run_dir):
    return torch.load(run_dir / "checkpoint.pt", weights_only=False)["model"]


def _close(a, b):
    return all(torch.allclose(a[k], b[k], atol=ATOL, rtol=RTOL) for k in a)


@pytest.mark.form_dependent
def test_gradient_accumulation_matches_the_full_batch(digits_dir, tmp_path):
    full = train.train(cli.parse(train.Config, ARGS + [f"--data={digits_dir}", f"--out={tmp_path / 'full'}"]))
    acc = train.train(cli.parse(train.Config, ARGS + [f"--data={digits_dir}", f"--out={tmp_path / 'acc'}",
                                                      "--accum_steps=4"]))
    assert acc["micro_batch"] == 4 and full["micro_batch"] == 16
    assert _close(_weights(tmp_path / "full"), _weights(tmp_path / "acc"))


def test_accumulation_follows_a_memory_budget(digits_dir, tmp_path):
    """--device_memory_gb picks the fewest accumulation steps whose micro-batch fits (measured saved
    activations + weights, gradients, optimiser state), logs them, leaves the run's identity, its random
    stream and its update unchanged."""
    from vit.train import memory
    from vit import models

    assert [memory.accum_steps_for(16, 1, b * 2**20, 2**20, 0, headroom=1.0) for b in (16, 8, 5, 1)] == [1, 2, 4, 16]
    assert memory.accum_steps_for(16, 2, 5 * 2**20, 2**20, 0, headroom=1.0) == 2  # 8 per process -> 4 per micro
    with pytest.raises(ValueError, match="raise device_memory_gb"):
        memory.accum_steps_for(16, 1, 2**20, 2**20, 2**20)
    model = models.create(TINY_VIT, 10, 32)
    per_image = memory.saved_bytes_per_image(model, 32, torch.device("cpu"))
    big = models.create(TINY_VIT, 10, 64)
    assert memory.saved_bytes_per_image(big, 64, torch.device("cpu")) > 2 * per_image > 0  # 4x the tokens
    fixed = memory.state_bytes(model, "sgd")
    budget_gb = (fixed + 1.5 * 6 * per_image) / 2**30  # room for micro-batches of 4 of the 16, not of 8
    train.train(cli.parse(train.Config, ARGS + [f"--data={digits_dir}", f"--out={tmp_path / 'full'}"]))
    cfg = cli.parse(train.Config, ARGS + [f"--data={digits_dir}", f"--out={tmp_path / 'fit'}",
                                          f"--device_memory_gb={budget_gb}"])
    fit = train.train(cfg)
    assert (fit["accum_steps"], fit["micro_batch"], fit["config"]["accum_steps"]) == (4, 4, 4)
    # the same run, split differently: a state saved under one split resumes under another
    assert fit["config_hash"] == train.run_hash(dataclasses.replace(cfg, accum_steps=1, device_memory_gb=0.0))
    assert _close(_weights(tmp_path / "full"), _weights(tmp_path / "fit"))
    with pytest.raises(cli.ConfigError, match="device_memory_gb"):
        train.train(cli.parse(train.Config, ARGS + [f"--data={digits_dir}", f"--out={tmp_path / 'none'}",
                                                    "--device_memory_gb=0.000001"]))


@pytest.mark.form_dependent
@pytest.mark.slow
def test_torchrun_two_processes_match_one(digits_dir, tmp_path):
    train.train(cli.parse(train.Config, ARGS + [f"--data={digits_dir}", f"--out={tmp_path / 'one'}"]))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "vit.train",
           *ARGS, f"--data={digits_dir}", f"--out={tmp_path / 'two'}", "--accum_steps=2"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _close(_weights(tmp_path / "one"), _weights(tmp_path / "two"))
    summary = __import__("json").loads((tmp_path / "two" / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["micro_batch"] == 4 and summary["images_seen"] == 48


def test_batch_must_split_evenly(digits_dir, tmp_path):
    import pytest

    with pytest.raises(cli.ConfigError, match="accum_steps=3"):
        train.train(cli.parse(train.Config, ARGS + [f"--data={digits_dir}", f"--out={tmp_path / 'x'}",
                                                    "--accum_steps=3"]))


@pytest.mark.slow
def test_finetune_grid_with_lr_selection_under_torchrun(digits_dir, tmp_path):
    """The fine-tuning stage as the SLURM profile runs it: one torchrun process per GPU (2 on CPU with
    gloo), dev-split learning-rate choice included; every rank agrees and rank 0 writes runs.json."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "vit.train.finetune",
           "--model=vit", f"--model_args={cli.literal(TINY_VIT)}", "--tasks=['digits']", "--resolutions=[16]",
           "--seeds=[0]", f"--data_root={digits_dir.parent}", f"--out={tmp_path / 'ft'}", "--lr_grid=[0.0001, 0.3]",
           "--dev_fraction=0.25", "--steps=4", "--batch_size=16", "--optimizer=sgd", "--threads=1", "--ckpt_every=0",
           "--train_split=train", "--test_split=test", "--save_checkpoint=false"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = __import__("json").loads((tmp_path / "ft" / "runs.json").read_text())
    assert len(runs) == 1 and runs[0]["processes"] == 2
    assert runs[0]["config"]["lr"] == runs[0]["lr_selection"]["lr"]
