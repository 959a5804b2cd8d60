"""The step's form (vit.train.forms): the rule per device kind, the environment's override, what a run
keeps of it, and the form-dependent cases of the suite under every forced form."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from conftest import FORM, REPO, TINY_VIT
from vit import models
from vit.errors import ConfigError
from vit.train import forms
from vit.train import loop as train

CPU, CUDA = torch.device("cpu"), torch.device("cuda")
TINY_BIT = {"arch": "bit", "layers": [1, 1, 1, 1], "channels": [8, 16, 32, 64], "groups": 4}


@pytest.fixture
def no_forced_form(monkeypatch):
    monkeypatch.delenv(forms.ENV, raising=False)


def test_the_rule_follows_the_device_kind_and_the_family(monkeypatch, no_forced_form):
    vit, bit = models.create(TINY_VIT, 10, 32), models.create(TINY_BIT, 10, 32)
    for units, vit_form in ((False, forms.Form("fp32", "explicit")), (True, forms.Form("bf16", "explicit"))):
        monkeypatch.setattr(forms, "bf16_units", lambda u=units: u)
        assert forms.choose(vit, CPU) == vit_form
        assert forms.choose(bit, CPU) == forms.Form("fp32", "")  # bf16 convolutions were slower on every CPU
        assert forms.choose(vit, CUDA) == forms.Form("bf16", "sdpa") and forms.choose(bit, CUDA) == forms.Form("bf16", "")
    # the settings beat the rule, part by part
    assert forms.choose(vit, CPU, "fp32", "auto") == forms.Form("fp32", "explicit")
    assert forms.choose(vit, CPU, "auto", "sdpa") == forms.Form("bf16", "sdpa")
    assert forms.choose(bit, CPU, "bf16", "sdpa") == forms.Form("bf16", "")  # no attention to set


def test_the_answer_never_varies_and_draws_no_random_numbers(no_forced_form):
    rng = torch.get_rng_state()
    vit = models.create(TINY_VIT, 10, 32)
    first = forms.choose(vit, CPU)
    assert all(forms.choose(vit, CPU) == first for _ in range(20))  # no timing, so no noise
    torch.manual_seed(0)
    rng = torch.get_rng_state()
    forms.choose(vit, CPU)
    assert torch.equal(torch.get_rng_state(), rng)


def test_the_environment_forces_a_form_and_a_bad_value_is_named(monkeypatch):
    vit, bit = models.create(TINY_VIT, 10, 32), models.create(TINY_BIT, 10, 32)
    monkeypatch.setattr(forms, "bf16_units", lambda: True)
    monkeypatch.setenv(forms.ENV, "fp32/explicit")  # a CPU without bf16 units
    assert forms.choose(vit, CPU) == forms.Form("fp32", "explicit")
    monkeypatch.setenv(forms.ENV, "bf16")  # precision only: the attention stays the rule's
    assert forms.choose(vit, CPU) == forms.Form("bf16", "explicit") and forms.choose(bit, CPU) == forms.Form("bf16", "")
    monkeypatch.setenv(forms.ENV, "sdpa")
    assert forms.choose(vit, CPU) == forms.Form("bf16", "sdpa")
    assert forms.choose(vit, CPU, "fp32", "explicit") == forms.Form("fp32", "explicit")  # a run's settings beat it
    for bad in ("fp16", "bf16/flash", "fp32/bf16", "a/b/c"):
        monkeypatch.setenv(forms.ENV, bad)
        with pytest.raises(ConfigError, match=f"VIT_STEP_FORM='{bad}'.*fp32/explicit"):
            forms.choose(vit, CPU)


def test_the_forms_compute_the_same_step():
    torch.manual_seed(0)
    model = models.create(TINY_VIT, 10, 32)
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    losses = {}
    for form in (forms.Form("fp32", "explicit"), forms.Form("fp32", "sdpa"), forms.Form("bf16", "explicit")):
        forms.apply(model, form)
        with forms.autocast(CPU, form):
            losses[form] = F.cross_entropy(model(x), y).item()
    explicit, sdpa, bf16 = losses.values()
    assert abs(explicit - sdpa) < 1e-5 and abs(explicit - bf16) < 0.05 * explicit


@pytest.mark.form_dependent
def test_a_run_records_its_form_and_keeps_it_when_resumed(digits_dir, tmp_path, monkeypatch):
    cfg = train.Config(data=str(digits_dir), out=str(tmp_path / "a"), model_args=TINY_VIT, img_size=16, steps=4,
                       batch_size=16, threads=1, precision="fp32", attention="sdpa")
    s = train.train(cfg)
    assert (s["precision"], s["attention"], s["form"]) == ("fp32", "sdpa", "fp32/sdpa")
    assert s["config_hash"] == train.run_hash(train.Config(**{**cfg.__dict__, "attention": "explicit"}))
    # a state saved with one form resumes with it, whatever this machine's rule or the environment says
    from vit.train import state
    progress = state.Progress(form={"precision": "fp32", "attention": "explicit"})
    monkeypatch.setattr(state, "resume", lambda *a, **k: progress)
    monkeypatch.setenv(forms.ENV, "bf16/sdpa")
    s = train.train(train.Config(**{**cfg.__dict__, "out": str(tmp_path / "b"), "attention": "auto",
                                    "precision": "auto"}))
    assert s["form"] == "fp32/explicit"


@pytest.mark.slow
def test_the_form_dependent_cases_pass_under_every_forced_form():
    """The suite's cases whose outcome depends on the form (marked form_dependent: runs compared bit for bit
    or to rounding across resumes, signals, accumulation and torchrun ranks) again under each forced form:
    fp32/explicit is a CPU without bf16 units, bf16/explicit one with them, fp32/sdpa the fused attention.
    The whole suite runs in the session's form, so that one is not repeated; nor is bf16 on a CPU without
    bf16 units, where it is emulated hundreds of times slower and no rule ever trains in it
    (`VIT_STEP_FORM=bf16/explicit make test` runs it there all the same). One fresh pytest per form, so that
    the form reaches every process a case starts; side by side, as the cases mostly wait on one thread."""
    others = [f for f in ("fp32/explicit", "bf16/explicit", "fp32/sdpa")
            if f != str(FORM) and (forms.bf16_units() or not f.startswith("bf16"))]
    procs = {f: subprocess.Popen([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-m", "form_dependent"],
                                 cwd=REPO, env={**os.environ, forms.ENV: f}, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True) for f in others}
    outs = {f: p.communicate(timeout=900)[0] for f, p in procs.items()}
    assert len(others) == 2
    for f, out in outs.items():
        assert procs[f].returncode == 0, f"under {f}:\n{out[-4000:]}"
        assert f"step form of the ViT tests: {f}" in out and " passed" in out, f


def test_the_report_shows_forms_and_warns_where_comparisons_mix_them():
    from test_scorecard import CONFIG, runs

    from vit.report import forms as report_forms
    from vit.report import scorecard

    s = runs(lambda *a: 50.0)
    one_kind = s.assign(form=s.model.map(lambda m: "fp32/explicit" if m.startswith("vit") else "fp32/conv"),
                        machine="AMD EPYC (avx2)")
    one_kind = one_kind.assign(pretrain_form=one_kind.form, pretrain_machine=one_kind.machine)
    assert report_forms.warnings(one_kind, CONFIG, scorecard.family) == []  # a CPU without bf16 units: one form each
    table = report_forms.form_table(one_kind, CONFIG)
    assert list(table["fine-tuning form"]) == ["fp32/explicit", "fp32/conv"] * 2 and table["fine-tuned runs"].sum() == len(s)
    # a machine with bf16 units: the ViTs in bf16, the BiTs in fp32 (its rule): the family comparison mixes them
    bf16 = one_kind.assign(form=one_kind.form.str.replace("fp32/explicit", "bf16/explicit"))
    bf16 = bf16.assign(pretrain_form=bf16.form)
    [line] = report_forms.warnings(bf16, CONFIG, scorecard.family)
    assert "ViT-BiT comparisons mix precisions" in line and "ViTs in bf16, BiTs in fp32" in line
    # one checkpoint pre-trained on another machine kind, in another form
    other = one_kind.copy()
    moved = (other.model == "vit") & (other.upstream == "big")
    other.loc[moved, ["pretrain_form", "pretrain_machine"]] = ["bf16/explicit", "Intel Xeon (amx_bf16)"]
    lines = report_forms.warnings(other, CONFIG, scorecard.family)
    assert any("Machines of 2 kinds" in ln for ln in lines) and any("ViT mixes step forms" in ln for ln in lines)
    # runs made before forms were recorded say so
    assert "do not record" in report_forms.warnings(s, CONFIG, scorecard.family)[0]
