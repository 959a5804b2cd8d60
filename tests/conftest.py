"""Shared fixtures: a small real dataset in the prepared format, and the repository root."""
from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

TINY_VIT = {"arch": "vit", "patch_size": 8, "embed_dim": 32, "depth": 1, "num_heads": 2}


@pytest.fixture(scope="session")
def digits_dir(tmp_path_factory) -> Path:
    """scikit-learn's real digits in the prepared format (small splits, fast)."""
    from vit.data.prepare import Config, prepare

    out = tmp_path_factory.mktemp("data") / "digits"
    prepare(Config(name="digits", source="digits", group="natural", out=str(out), train=96, val=32, test=64))
    return out
