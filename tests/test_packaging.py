"""pyproject.toml and environment.yml pin the same versions (conda users get what pip users get)."""
import re
import tomllib

import pytest
import yaml

from conftest import REPO


def _pins(requirements):
    out = {}
    for req in requirements:
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)(\[[^\]]+\])?==([^\s;]+)", req.strip())
        assert m, f"not an exact pin: {req!r}"
        out[m.group(1).lower()] = (m.group(2) or "", m.group(3))
    return out


@pytest.mark.parametrize("env_file", ["environment.yml", "workflow/envs/vit.yaml"])
def test_pyproject_and_conda_envs_agree(env_file):
    py = _pins(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"])
    env = yaml.safe_load((REPO / env_file).read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert _pins(pip) == py
    assert "python=3.11" in env["dependencies"]


def test_torch_pins_are_the_cuda_builds_that_work_with_torchvision():
    py = _pins(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"])
    assert py["torch"][1] == "2.14.1" and py["torchvision"][1] == "0.29.1"
