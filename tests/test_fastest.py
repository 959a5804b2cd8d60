"""The step's form (vit.train.fastest): candidates, the timed choice, and what a run keeps of it."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from conftest import TINY_VIT
from vit import models
from vit.train import fastest
from vit.train import loop as train

pytestmark = pytest.mark.timed_forms
CPU = torch.device("cpu")
TINY_BIT = {"arch": "bit", "layers": [1, 1, 1, 1], "channels": [8, 16, 32, 64], "groups": 4}


def ce(m, x, y):
    return F.cross_entropy(m(x), y)


def test_candidates_follow_the_hardware_and_the_settings(monkeypatch):
    vit, bit = models.create(TINY_VIT, 10, 32), models.create(TINY_BIT, 10, 32)
    slow = fastest.Chooser(speedup=0.01)  # a CPU without bf16 units: bf16 is never tried
    assert slow.candidates(vit, CPU, "auto", "auto") == [fastest.Form("fp32", "explicit"), fastest.Form("fp32", "sdpa")]
    fast = fastest.Chooser(speedup=4.0)  # AMX
    assert len(fast.candidates(vit, CPU, "auto", "auto")) == 4
    assert fast.candidates(bit, CPU, "auto", "auto") == [fastest.Form("fp32", ""), fastest.Form("bf16", "")]
    assert fast.candidates(vit, CPU, "fp32", "sdpa") == [fastest.Form("fp32", "sdpa")]
    assert fast.candidates(vit, torch.device("cuda"), "auto", "auto") == [fastest.Form("bf16", "sdpa")]
    rng = torch.get_rng_state()
    assert fastest.bf16_speedup(CPU) > 0 and torch.equal(torch.get_rng_state(), rng)  # draws no random numbers
    measured = fastest.Chooser()
    monkeypatch.setattr(fastest, "bf16_speedup", lambda dev: 0.5)
    assert [c.precision for c in measured.candidates(vit, CPU, "auto", "explicit")] == ["fp32"]
    assert measured.speedup == 0.5


def test_the_fastest_candidate_is_chosen_once_per_shape_without_touching_the_run(monkeypatch):
    model = models.create(TINY_VIT, 10, 16)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    chooser = fastest.Chooser(speedup=0.01)
    slow_sdpa = fastest.autocast  # make sdpa look slow: its forward sleeps

    def autocast(dev, form):
        if form.attention == "sdpa":
            import time
            time.sleep(0.05)
        return slow_sdpa(dev, form)

    monkeypatch.setattr(fastest, "autocast", autocast)
    rng = torch.get_rng_state()
    form, times = chooser.choose(model, ce, (4, 3, 16, 16), 10, CPU, "auto", "auto", key={"m": 1})
    assert form == fastest.Form("fp32", "explicit") and times["fp32/sdpa"] > times["fp32/explicit"]
    assert torch.equal(torch.get_rng_state(), rng)  # the random stream is the run's
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
    monkeypatch.setattr(fastest, "_time", lambda *a: (_ for _ in ()).throw(AssertionError("timed twice")))
    assert chooser.choose(model, ce, (4, 3, 16, 16), 10, CPU, "auto", "auto", key={"m": 1})[0] == form


def test_a_later_form_must_be_clearly_faster():
    a, b, c = fastest.Form("fp32", "explicit"), fastest.Form("fp32", "sdpa"), fastest.Form("bf16", "explicit")
    assert fastest.pick([a, b, c], {a: 1.0, b: 0.95, c: 0.5}) == c
    assert fastest.pick([a, b, c], {a: 1.0, b: 0.95, c: 0.97}) == a  # 3-5 % is within a neighbour job's noise
    assert fastest.pick([a, b, c], {a: 1.0, b: 0.8, c: 0.75}) == b


def test_the_forms_compute_the_same_step():
    torch.manual_seed(0)
    model = models.create(TINY_VIT, 10, 32)
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    losses = {}
    for form in (fastest.Form("fp32", "explicit"), fastest.Form("fp32", "sdpa"), fastest.Form("bf16", "explicit")):
        fastest.apply(model, form)
        with fastest.autocast(CPU, form):
            losses[form] = ce(model, x, y).item()
    explicit, sdpa, bf16 = losses.values()
    assert abs(explicit - sdpa) < 1e-5 and abs(explicit - bf16) < 0.05 * explicit


def test_a_run_records_its_form_and_keeps_it_when_resumed(digits_dir, tmp_path, monkeypatch):
    cfg = train.Config(data=str(digits_dir), out=str(tmp_path / "a"), model_args=TINY_VIT, img_size=16, steps=4,
                       batch_size=16, threads=1, precision="fp32", attention="sdpa")
    s = train.train(cfg)
    assert (s["precision"], s["attention"], s["form_times_s"]) == ("fp32", "sdpa", {})
    assert s["config_hash"] == train.run_hash(train.Config(**{**cfg.__dict__, "attention": "explicit"}))
    # a state saved with one form resumes with it, whatever the new process would choose
    from vit.train import state
    progress = state.Progress(form={"precision": "fp32", "attention": "explicit"})
    monkeypatch.setattr(state, "resume", lambda *a, **k: progress)
    s = train.train(train.Config(**{**cfg.__dict__, "out": str(tmp_path / "b"), "attention": "auto"}))
    assert s["attention"] == "explicit"
