"""Shared fixtures: a small real dataset in the prepared format, and the repository root."""
from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

TINY_VIT = {"arch": "vit", "patch_size": 8, "embed_dim": 32, "depth": 1, "num_heads": 2}
# The step's form fixed: two separate runs compared for bit-identity must not time their way to different
# (equally valid) forms (vit.train.fastest)
EXACT = {"precision": "fp32", "attention": "explicit"}


@pytest.fixture(autouse=True)
def first_step_form(request, monkeypatch):
    """Tests compare runs bit for bit, and timing could pick different (equally valid) step forms for two
    runs of a comparison: in-process runs take the first candidate, fp32 (tests/test_fastest.py and the
    tests marked timed_forms time them)."""
    if request.node.get_closest_marker("timed_forms") is None:
        from vit.train import fastest

        monkeypatch.setattr(fastest, "_time", lambda module, loss, x_shape, num_classes, dev, cands: (cands[0], {}))


@pytest.fixture(scope="session")
def digits_dir(tmp_path_factory) -> Path:
    """scikit-learn's real digits in the prepared format (small splits, fast)."""
    from vit.data.prepare import Config, prepare

    out = tmp_path_factory.mktemp("data") / "digits"
    prepare(Config(name="digits", source="digits", group="natural", out=str(out), train=96, val=32, test=64))
    return out
