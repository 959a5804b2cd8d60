"""Shared fixtures: a small real dataset in the prepared format, and the repository root."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]

TINY_VIT = {"arch": "vit", "patch_size": 8, "embed_dim": 32, "depth": 1, "num_heads": 2}


def _session_form():
    """The form this session's ViT tests train in: VIT_STEP_FORM's where it is set (`VIT_STEP_FORM=fp32/explicit
    make test` is a CPU without bf16 units), else this machine's rule (vit.train.forms)."""
    from vit import models
    from vit.train import forms

    return forms.choose(models.create(TINY_VIT, 2, 16), torch.device("cpu"))


FORM = _session_form()
# Tests that compare runs pass the form explicitly, to in-process runs and to every subprocess (torchrun,
# the stages): a comparison never mixes forms, and each form is tested where the suite runs under it
EXACT = {"precision": FORM.precision, "attention": FORM.attention}
FORM_ARGS = [f"--precision={FORM.precision}", f"--attention={FORM.attention}"]
# bf16 rounds to 3 significant digits: runs whose micro-batches differ in shape (accumulation, torchrun
# ranks) agree to float rounding in fp32, to bf16 rounding under bf16 autocast
ATOL, RTOL = (1e-6, 1e-5) if FORM.precision == "fp32" else (2e-3, 2e-2)


def pytest_report_header(config):
    return f"step form of the ViT tests: {FORM} (vit.train.forms; set VIT_STEP_FORM to force another)"


@pytest.fixture(scope="session")
def digits_dir(tmp_path_factory) -> Path:
    """scikit-learn's real digits in the prepared format (small splits, fast)."""
    from vit.data.prepare import Config, prepare

    out = tmp_path_factory.mktemp("data") / "digits"
    prepare(Config(name="digits", source="digits", group="natural", out=str(out), train=96, val=32, test=64))
    return out
