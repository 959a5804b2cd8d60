import dataclasses
import json
import math

import pytest
import torch

from conftest import EXACT, FORM, TINY_VIT
from vit import cli
from vit.train import finetune, optim, loop as train


def _pretrain_cfg(digits_dir, out, **kw):
    """A tiny run; its step form fixed, as the tests compare runs bit for bit (tests/test_forms.py: auto)."""
    return train.Config(data=str(digits_dir), out=str(out), model="vit", model_args=TINY_VIT, img_size=32,
                        steps=4, batch_size=16, val_split="val", eval_every=2, log_every=1, threads=1,
                        tags={"model": "vit", "upstream": "digits"}, **{**EXACT, **kw})


def test_pretrain_then_finetune_at_higher_resolution(digits_dir, tmp_path):
    pre = train.train(_pretrain_cfg(digits_dir, tmp_path / "pre"))
    assert (tmp_path / "pre" / "checkpoint.pt").exists() and math.isfinite(pre["final_train_loss"])
    assert pre["images_seen"] == 64 and pre["train_flops_per_img"] > 2 * pre["fwd_flops_per_img"]
    lines = [json.loads(ln) for ln in (tmp_path / "pre" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines if r["split"] == "train"] == [1, 2, 3, 4]
    assert not list((tmp_path / "pre").glob("state-*.pt"))  # resumable state is removed once done

    ft_cfg = cli.parse(train.Config, ["--steps=2", "--batch_size=16", "--optimizer=sgd", "--lr=0.01",
                                      "--train_split=train+val", "--test_split=test", "--save_checkpoint=false",
                                      "--threads=1"])
    grid = finetune.Config(init=str(tmp_path / "pre" / "checkpoint.pt"), model="vit", upstream="digits",
                           tasks=[digits_dir.name], resolutions=[32, 48], seeds=[0], data_root=str(digits_dir.parent),
                           out=str(tmp_path / "ft"))
    runs = finetune.finetune(grid, ft_cfg)
    assert [r["config"]["img_size"] for r in runs] == [32, 48]
    assert runs[0]["init"]["posemb_resampled"] is False and runs[1]["init"]["posemb_resampled"] is True
    assert runs[1]["grid_size"] == [6, 6] and runs[1]["init"]["head_reset"] == ["head.bias", "head.weight"]
    assert all(0 <= r["eval"]["test"]["top1"] <= 100 and r["eval"]["test"]["n"] == 64 for r in runs)
    assert json.loads((tmp_path / "ft" / "runs.json").read_text())[1]["task"] == digits_dir.name
    # a restarted grid skips the finished runs, also when it runs on more threads
    mtime = (tmp_path / "ft" / "digits" / "r48_s0" / "summary.json").stat().st_mtime_ns
    finetune.finetune(grid, dataclasses.replace(ft_cfg, threads=2))
    assert (tmp_path / "ft" / "digits" / "r48_s0" / "summary.json").stat().st_mtime_ns == mtime


@pytest.mark.form_dependent
def test_interrupted_run_resumes_to_the_same_result(digits_dir, tmp_path, monkeypatch):
    full = train.train(_pretrain_cfg(digits_dir, tmp_path / "full", ckpt_every=2, augment="crop_flip"))
    real_lr_at = optim.lr_at

    def crash_at_step_3(step, *a):
        if step == 3:
            raise KeyboardInterrupt("simulated kill")
        return real_lr_at(step, *a)

    monkeypatch.setattr(optim, "lr_at", crash_at_step_3)
    cfg = _pretrain_cfg(digits_dir, tmp_path / "cut", ckpt_every=2, augment="crop_flip")
    with pytest.raises(KeyboardInterrupt):
        train.train(cfg)
    assert len(list((tmp_path / "cut").glob("state-*.pt"))) == 1
    monkeypatch.setattr(optim, "lr_at", real_lr_at)
    resumed = train.train(cfg)
    a = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=False)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed["eval"]["val"] == full["eval"]["val"]
    steps = [json.loads(ln)["step"] for ln in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()
             if json.loads(ln)["split"] == "train"]
    assert steps == [1, 2, 3, 4]  # history kept up to the checkpoint, nothing logged twice


def test_slurm_durations_parse():
    assert [train.parse_slurm_time(t) for t in ("2-03:04:05", "03:04:05", "04:05", "05", "1-00", "1-02:03")] == [
        183845, 11045, 245, 5, 86400, 93780]
    assert train.parse_slurm_time("UNLIMITED") is None and train.parse_slurm_time("") is None


def test_deadline_counts_from_the_process_start_and_asks_slurm_once(monkeypatch):
    from vit.train.deadline import Deadline

    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    assert Deadline(started=100.0).at(5.0) == 105.0 and Deadline().at(0.0) is None
    asked = []
    monkeypatch.setattr("vit.train.deadline.slurm_time_left", lambda: asked.append(1) or 60.0)
    clock = Deadline()
    assert clock.at(0.0) == clock.at(0.0) and len(asked) == 1  # one squeue call per process


@pytest.mark.form_dependent
def test_time_limit_stops_at_a_saved_state_and_retries_chain_to_the_unbroken_result(digits_dir, tmp_path):
    """A budget already spent: each attempt trains one step, saves its state and exits with EXIT_RESUME
    (what Snakemake's `retries` restart); the chain of attempts ends with the unbroken run's weights and
    metrics, and the budget settings do not change the run's identity."""
    full = train.train(_pretrain_cfg(digits_dir, tmp_path / "full", augment="crop_flip", ckpt_every=0))
    cfg = _pretrain_cfg(digits_dir, tmp_path / "cut", augment="crop_flip", ckpt_every=0, time_limit_s=1e-3,
                        time_margin_s=0.0)
    assert train.run_hash(cfg) == train.run_hash(dataclasses.replace(cfg, time_limit_s=0.0, time_margin_s=300.0))
    attempts = 0
    while True:
        attempts += 1
        try:
            resumed = train.train(cfg)
            break
        except train.Resumable as stop:
            assert stop.code == train.EXIT_RESUME and "the next attempt resumes" in str(stop)
            state = torch.load(next((tmp_path / "cut").glob("state-*.pt")), weights_only=False)
            assert state["step"] == attempts and not (tmp_path / "cut" / "summary.json").exists()
    assert attempts == 4  # one step per attempt: the first step always runs, so every attempt progresses
    a = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=False)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed["eval"] == full["eval"] and resumed["final_train_loss"] == full["final_train_loss"]
    steps = [json.loads(ln)["step"] for ln in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()
             if json.loads(ln)["split"] == "train"]
    assert steps == [1, 2, 3, 4]


@pytest.mark.slow
def test_time_limit_defaults_to_the_slurm_jobs(digits_dir, tmp_path, monkeypatch):
    """Under SLURM (SLURM_JOB_ID set) the limit is the job's time left, from squeue (a stop at the command
    line, its message and exit status 75: tests/test_faults.py)."""
    import os

    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "squeue").write_text("#!/bin/sh\necho '0:00:02'\n")
    (fake / "squeue").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("SLURM_JOB_ID", "123")
    assert train.slurm_time_left() == 2
    with pytest.raises(train.Resumable):  # 2 s left, a 2,000-step run: it stops early, at a saved state
        train.train(dataclasses.replace(_pretrain_cfg(digits_dir, tmp_path / "slurm", time_margin_s=0.0), steps=2000))
    assert 0 < torch.load(next((tmp_path / "slurm").glob("state-*.pt")), weights_only=False)["step"] < 2000


def test_lr_schedule():
    assert optim.lr_at(0, 100, 1.0, 10, "cosine") == pytest.approx(0.1)
    assert optim.lr_at(9, 100, 1.0, 10, "linear") == pytest.approx(1.0)
    assert optim.lr_at(10, 100, 1.0, 10, "cosine") == pytest.approx(1.0)
    assert optim.lr_at(55, 100, 1.0, 10, "cosine") == pytest.approx(0.5)
    assert optim.lr_at(55, 100, 1.0, 10, "linear") == pytest.approx(0.5)
    assert optim.to_steps(2.0, 0, 1000, 128) == 16 and optim.to_steps(0, 7, 1000, 128) == 7


def test_fewshot_probe_during_training(digits_dir, tmp_path):
    s = train.train(_pretrain_cfg(digits_dir, tmp_path / "pre", fewshot=[str(digits_dir)], fewshot_test=40))
    assert set(s["eval"]["fewshot"]) == {"digits/5shot"} and 0 <= s["eval"]["fewshot"]["digits/5shot"] <= 100
    probes = [json.loads(ln) for ln in (tmp_path / "pre" / "metrics.jsonl").read_text().splitlines()
              if json.loads(ln)["split"] == "fewshot"]
    assert [p["step"] for p in probes] == [2, 4]  # at the eval step and at the end


def test_polyak_averaging(digits_dir, tmp_path, monkeypatch):
    from vit import models

    def weights(d):
        return torch.load(d / "checkpoint.pt", weights_only=False)["model"]

    raw = train.train(_pretrain_cfg(digits_dir, tmp_path / "raw", lr=0.01))
    train.train(_pretrain_cfg(digits_dir, tmp_path / "tiny", lr=0.01, polyak=1e-12))  # average = last weights
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(weights(tmp_path / "raw").values(),
                                                                 weights(tmp_path / "tiny").values()))
    slow = train.train(_pretrain_cfg(digits_dir, tmp_path / "slow", lr=0.01, polyak=0.999999))
    torch.manual_seed(0)
    init = models.create(TINY_VIT, 10, 32).state_dict()
    moved = sum((weights(tmp_path / "raw")[k] - init[k]).abs().sum() for k in init)
    stayed = sum((weights(tmp_path / "slow")[k] - init[k]).abs().sum() for k in init)
    assert stayed < 1e-3 * moved and slow["eval"]["val"] != raw["eval"]["val"]

    # an interrupted run resumes its average too
    real_lr_at = optim.lr_at
    monkeypatch.setattr(optim, "lr_at", lambda step, *a: (_ for _ in ()).throw(RuntimeError("kill")) if step == 3
                        else real_lr_at(step, *a))
    cut = _pretrain_cfg(digits_dir, tmp_path / "cut", lr=0.01, polyak=0.5, ckpt_every=2)
    with pytest.raises(RuntimeError, match="kill"):
        train.train(cut)
    monkeypatch.setattr(optim, "lr_at", real_lr_at)
    train.train(cut)
    train.train(_pretrain_cfg(digits_dir, tmp_path / "whole", lr=0.01, polyak=0.5, ckpt_every=2))
    assert all(torch.equal(a, b) for a, b in zip(weights(tmp_path / "cut").values(),
                                                  weights(tmp_path / "whole").values()))


def test_bit_hyperrule_settings_train(digits_dir, tmp_path):
    """MixUp's soft targets and the step schedule through the real loop (BiT-HyperRule fine-tuning)."""
    s = train.train(_pretrain_cfg(digits_dir, tmp_path / "bit", optimizer="sgd", schedule="step", decay_at=[0.5],
                                  mixup=0.1, augment="crop_flip"))
    lrs = [json.loads(ln)["lr"] for ln in (tmp_path / "bit" / "metrics.jsonl").read_text().splitlines()
           if json.loads(ln)["split"] == "train"]
    assert lrs == pytest.approx([1e-3, 1e-3, 1e-4, 1e-4]) and math.isfinite(s["final_train_loss"])


def test_masked_patch_prediction_pretrains_and_fine_tunes(digits_dir, tmp_path):
    """Paper sec. 4.6 through the one loop: self-supervised pre-training, then supervised fine-tuning."""
    with pytest.raises(cli.ConfigError, match="val_split"):
        train.train(_pretrain_cfg(digits_dir, tmp_path / "bad", objective="mpp"))
    cfg = dataclasses.replace(_pretrain_cfg(digits_dir, tmp_path / "mpp", objective="mpp", lr=3e-3, ckpt_every=3),
                              val_split="", steps=6)
    s = train.train(cfg)
    losses = [json.loads(ln)["loss"] for ln in (tmp_path / "mpp" / "metrics.jsonl").read_text().splitlines()]
    assert losses[0] == pytest.approx(math.log(512), abs=0.3) and losses[-1] < losses[0]  # 512 colour classes
    ckpt = torch.load(tmp_path / "mpp" / "checkpoint.pt", weights_only=False)
    assert not any(k.startswith(("mask_token", "mpp_head", "vit.")) for k in ckpt["model"])  # a plain ViT
    ft = train.train(_pretrain_cfg(digits_dir, tmp_path / "ft", init=str(tmp_path / "mpp" / "checkpoint.pt"),
                                   optimizer="sgd", lr=0.01))
    assert ft["init"]["head_reset"] and 0 <= ft["eval"]["val"]["top1"] <= 100 and s["images_seen"] == 96


@pytest.mark.form_dependent
def test_choosing_the_step_form_leaves_the_random_stream_alone(digits_dir, tmp_path):
    """With dropout, a run that chose its form (precision=auto: the machine's rule, or VIT_STEP_FORM) draws the
    same dropout masks as one told that form."""
    spec = dict(TINY_VIT, drop_rate=0.3, proj_drop_rate=0.3)
    auto = train.train(dataclasses.replace(_pretrain_cfg(digits_dir, tmp_path / "auto", precision="auto", attention="auto"),
                                           model_args=spec))
    told = train.train(dataclasses.replace(_pretrain_cfg(digits_dir, tmp_path / "told"), model_args=spec))
    assert auto["form"] == str(FORM) == told["form"] and auto["eval"] == told["eval"]
    a, b = (torch.load(tmp_path / d / "checkpoint.pt", weights_only=False)["model"] for d in ("auto", "told"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def _scripted_val(monkeypatch, top1s):
    """scoring.split with the val top-1 of each call in turn taken from `top1s` (an overfitting curve made
    deterministic); records the weights each call scored, per split, to compare with checkpoint.pt."""
    from vit.train import scoring

    real = getattr(scoring.split, "real", scoring.split)  # a second script replaces the first
    seen, script = {"val": [], "test": []}, iter(top1s)

    def split(model, cfg, name, dev):
        seen[name].append({k: v.detach().clone() for k, v in model.state_dict().items()})
        result = real(model, cfg, name, dev)
        return {**result, "top1": next(script)} if name == "val" else result

    split.real = real
    monkeypatch.setattr(scoring, "split", split)
    return seen


def _keep_best_cfg(digits_dir, out, **kw):
    """Six steps (a validation at 2, 4 and the end), scored on test too, keeping the best validation's weights."""
    cfg = _pretrain_cfg(digits_dir, out, keep_best=True, test_split="test", lr=0.01, **kw)
    return dataclasses.replace(cfg, steps=6)


@pytest.mark.parametrize("top1s, kept, best_step, polyak", [
    ([50.0, 70.0, 60.0], "best", 4, 0.0),   # overfits after step 4: its weights are kept
    ([50.0, 70.0, 60.0], "best", 4, 0.5),   # ... the Polyak average's, which is what validation scored
    ([50.0, 70.0, 70.0], "last", 6, 0.0),   # a tie with the end keeps the last weights
])
def test_keep_best_keeps_the_best_validations_weights(digits_dir, tmp_path, monkeypatch, top1s, kept, best_step,
                                                      polyak):
    seen = _scripted_val(monkeypatch, top1s)
    s = train.train(_keep_best_cfg(digits_dir, tmp_path / "run", polyak=polyak))
    val_at = {2: 0, 4: 1, 6: 2}  # the val calls: every eval_every=2 steps, the last at the end
    assert s["kept"] == kept and s["best"]["step"] == best_step and s["last"]["step"] == 6
    assert s["best"]["val_top1"] == 70.0 and s["last"]["val_top1"] == top1s[-1]
    assert s["eval"]["val"]["top1"] == 70.0 and s["eval"]["val"]["loss"] == s["best"]["val_loss"]
    ckpt = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)["model"]
    kept_weights = seen["val"][val_at[best_step]]
    assert all(torch.equal(ckpt[k], kept_weights[k]) for k in ckpt)
    assert all(torch.equal(seen["test"][0][k], kept_weights[k]) for k in ckpt)  # test scored the kept weights
    if kept == "best":
        assert not all(torch.equal(ckpt[k], seen["val"][2][k]) for k in ckpt)
    # train vs val: the history keeps the train curve and each periodic validation's loss and top-1
    assert [h["step"] for h in s["history"] if h["split"] == "train"] == [1, 2, 3, 4, 5, 6]
    assert [(h["step"], h["top1"]) for h in s["history"] if h["split"] == "val"] == [(2, 50.0), (4, 70.0)]
    assert all(set(h) == {"step", "split", "loss", "top1"} for h in s["history"] if h["split"] == "val")


@pytest.mark.form_dependent
def test_keep_best_survives_a_resume_bit_for_bit(digits_dir, tmp_path, monkeypatch):
    """Best at step 2, a state saved at step 4, killed in step 5: the resumed run ends with the unbroken
    run's checkpoint (the step-2 weights, from the state) and summary."""
    def cfg(out):
        return _keep_best_cfg(digits_dir, tmp_path / out, ckpt_every=2, augment="crop_flip")

    _scripted_val(monkeypatch, [70.0, 50.0, 60.0])
    full = train.train(cfg("full"))
    _scripted_val(monkeypatch, [70.0, 50.0, 60.0])  # one script over both attempts: the same value per step
    real_lr_at = optim.lr_at
    monkeypatch.setattr(optim, "lr_at", lambda step, *a: (_ for _ in ()).throw(KeyboardInterrupt("kill"))
                        if step == 4 else real_lr_at(step, *a))
    with pytest.raises(KeyboardInterrupt):
        train.train(cfg("cut"))
    assert torch.load(next((tmp_path / "cut").glob("state-*.pt")), weights_only=False)["best"]["step"] == 2
    monkeypatch.setattr(optim, "lr_at", real_lr_at)
    resumed = train.train(cfg("cut"))
    assert full["kept"] == "best" and full["best"]["step"] == 2
    for key in ("best", "last", "kept", "eval", "history", "final_train_loss"):
        assert resumed[key] == full[key], key
    a, b = (torch.load(tmp_path / d / "checkpoint.pt", weights_only=False)["model"] for d in ("full", "cut"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_keep_best_needs_periodic_validation(digits_dir, tmp_path):
    for missing in ({"val_split": ""}, {"eval_every": 0}):
        with pytest.raises(cli.ConfigError, match=r"keep_best.*val_split.*eval_every"):
            train.train(dataclasses.replace(_keep_best_cfg(digits_dir, tmp_path / "bad"), **missing))
    cfg = _keep_best_cfg(digits_dir, tmp_path / "x")
    assert train.run_hash(cfg) != train.run_hash(dataclasses.replace(cfg, keep_best=False))  # a science setting


def test_arrays_batches_are_read_ahead_and_stay_uint8_for_a_gpu(digits_dir):
    """batches.Feed over in-memory arrays: the next step's batch is prepared in a thread while a step trains,
    and is the step's own; for a GPU (uint8=True) it stays uint8 and normalises on the device to exactly the
    floats a CPU run trains on."""
    from vit import data
    from vit.train import batches
    from vit.train.config import Config
    from vit.train.distributed import Dist

    x, y, _ = data.load_split(digits_dir, "train")
    cfg = Config(batch_size=16, img_size=32, augment="crop_flip", seed=1)
    feeds = [batches.Feed(data.images(x, 32, 1.0), torch.from_numpy(y), cfg, 10, batches.slices(8, 2, Dist()),
                          total=6, uint8=u) for u in (False, True)]
    try:
        assert all(f._pool is not None for f in feeds)
        for step in range(6):
            cpu, gpu = (f.get(step) for f in feeds)
            assert [g[0].dtype for g in gpu] == [torch.uint8] * 2 and cpu[0][0].dtype == torch.float32
            assert all(torch.equal(data.normalize(g[0]), c[0]) and torch.equal(g[1], c[1]) for g, c in zip(gpu, cpu))
            assert all(torch.equal(a[0], b[0]) for a, b in zip(cpu, feeds[0].read(step)))
    finally:
        for f in feeds:
            f.close()
