"""Paper-fidelity fine-tuning on CPU: dev splits and the learning-rate choice (Table 4), per-task
settings, released weights in the hub's formats, and data streamed from disk for sets beyond memory."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from conftest import TINY_VIT
from vit import cli, data, models
from vit.train import finetune, loop as train
from vit.models import weights


def test_percent_slices_are_disjoint_fixed_and_cover_the_split(digits_dir):
    x, y, _ = data.load_split(digits_dir, "train")
    xa, ya, _ = data.load_split(digits_dir, "train[:75%]")
    xb, yb, _ = data.load_split(digits_dir, "train[75%:]")
    assert len(xa) == 72 and len(xb) == 24
    rows = lambda part: {np.asarray(part)[i].tobytes() for i in range(len(part))}  # noqa: E731
    assert rows(xa).isdisjoint(rows(xb)) and rows(xa) | rows(xb) == rows(x)
    again, _, _ = data.load_split(digits_dir, "train[75%:]")
    assert np.array_equal(np.asarray(again), np.asarray(xb))  # independent of any run's seed
    assert data.to_tensor(xb, 16).shape == (24, 3, 16, 16)
    for bad in ("train[:x%]", "train[80%:20%]"):
        with pytest.raises(data.DataError, match="split"):
            data.load_split(digits_dir, bad)


def test_streamed_images_equal_the_in_memory_tensor(digits_dir):
    xs, _, _ = data.load_split(digits_dir, "test")
    full = data.images(xs, 24, max_gb=100)
    streamed = data.images(xs, 24, max_gb=0)
    assert isinstance(streamed, data.Streamed) and not isinstance(full, data.Streamed)
    idx = torch.tensor([5, 0, 63, 5, 17])
    assert torch.equal(streamed[idx], full[idx]) and torch.equal(streamed[3:40], full[3:40])
    assert streamed.shape == full.shape


ARGS = ["--steps=6", "--batch_size=16", "--lr=0.05", "--optimizer=sgd", "--img_size=16", "--threads=1",
        "--ckpt_every=0", "--val_split=val", "--test_split=test", "--augment=crop_flip", "--model=vit",
        f"--model_args={cli.literal(TINY_VIT)}"]


def test_training_streamed_from_disk_matches_in_memory(digits_dir, tmp_path):
    mem = train.train(cli.parse(train.Config, ARGS + [f"--data={digits_dir}", f"--out={tmp_path / 'mem'}"]))
    disk = train.train(cli.parse(train.Config, ARGS + [f"--data={digits_dir}", f"--out={tmp_path / 'disk'}",
                                                       "--memory_gb=0"]))
    cfg = cli.parse(train.Config, ARGS)
    assert train.run_hash(cfg) == train.run_hash(dataclasses.replace(cfg, memory_gb=0))  # a runtime setting
    assert disk["eval"] == mem["eval"]
    a, b = (torch.load(tmp_path / d / "checkpoint.pt", weights_only=False)["model"] for d in ("mem", "disk"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_lr_is_chosen_on_a_held_out_dev_split_then_all_seeds_train_on_everything(digits_dir, tmp_path):
    cfg = finetune.Config(model="vit", model_args=TINY_VIT, tasks=["digits"], resolutions=[16], seeds=[0, 1],
                          data_root=str(digits_dir.parent), out=str(tmp_path / "ft"),
                          per_task={"digits": {"lr_grid": [0.0001, 0.3], "dev_fraction": 0.25, "steps": 8}})
    tcfg = cli.parse(train.Config, ["--steps=2", "--batch_size=16", "--optimizer=sgd", "--threads=1", "--ckpt_every=0",
                                    "--train_split=train", "--test_split=test", "--save_checkpoint=false"])
    runs = finetune.finetune(cfg, tcfg)
    assert [r["config"]["seed"] for r in runs] == [0, 1]
    sel = runs[0]["lr_selection"]
    assert sel["fit_split"] == "train[:75%]" and sel["dev_split"] == "train[75%:]"
    best = max(sel["dev_top1"], key=sel["dev_top1"].get)
    assert all(r["config"]["lr"] == float(best) == sel["lr"] for r in runs)
    assert all(r["steps"] == 8 and r["config"]["train_split"] == "train" and r["train_examples"] == 96 for r in runs)
    dev = json.loads((tmp_path / "ft" / "digits" / "r16_dev" / "lr0.3" / "summary.json").read_text())
    assert dev["train_examples"] == 72 and dev["eval"]["train[75%:]"]["n"] == 24
    # a restarted grid reuses every finished run, dev runs included
    assert finetune.finetune(cfg, tcfg) == runs


def test_lr_grid_needs_a_dev_fraction_and_per_task_keys_are_checked(digits_dir, tmp_path):
    base = dict(model="vit", model_args=TINY_VIT, tasks=["digits"], resolutions=[16], seeds=[0],
                data_root=str(digits_dir.parent), out=str(tmp_path / "ft"))
    tcfg = cli.parse(train.Config, ["--steps=1", "--threads=1"])
    with pytest.raises(cli.ConfigError, match="dev_fraction"):
        finetune.finetune(finetune.Config(**base, lr_grid=[0.01, 0.03]), tcfg)
    with pytest.raises(cli.ConfigError, match="stpes"):
        finetune.finetune(finetune.Config(**base, per_task={"digits": {"stpes": 3}}), tcfg)


def test_hyperrule_recipe_sets_each_task_from_its_size_and_image_size(digits_dir, tmp_path):
    """--recipe=bit_hyperrule: the rule's schedule from the training split's size (train+val of digits),
    its resolution from the native image size (digits: 8 px -> 128), overrides on top, --resolutions
    replacing the rule's; the runs are tagged with the recipe."""
    manifest = data.read_manifest(digits_dir)
    n = data.split_size(manifest, "train+val")
    assert n == manifest["splits"]["train"] + manifest["splits"]["val"]
    assert data.split_size(manifest, "train[:75%]") == round(0.75 * manifest["splits"]["train"])
    cfg = finetune.Config(tasks=["digits"], seeds=[0], recipe="bit_hyperrule")
    tcfg = cli.parse(train.Config, ["--lr=0.1", "--schedule=cosine", "--grad_clip=1.0", "--train_split=train+val"])
    s, grid = finetune.task_settings(cfg, tcfg, "digits", manifest)
    assert (s.lr, s.steps, s.warmup_steps, s.schedule, s.decay_at, s.batch_size, s.grad_clip, s.mixup) == (
        0.003, 500, 100, "step", [0.4, 0.6, 0.8], 512, 0.0, 0.0)
    assert grid["resolutions"] == [128] and s.train_split == "train+val"
    s, grid = finetune.task_settings(dataclasses.replace(cfg, resolutions=[16], recipe_override={"batch_size": 8}),
                                     tcfg, "digits", manifest)
    assert (s.batch_size, s.steps, grid["resolutions"]) == (8, 500, [16])
    with pytest.raises(cli.ConfigError, match="bit_hyperule"):
        finetune.task_settings(dataclasses.replace(cfg, recipe="bit_hyperule"), tcfg, "digits", manifest)
    with pytest.raises(cli.ConfigError, match="batch_sise"):
        finetune.task_settings(dataclasses.replace(cfg, recipe_override={"batch_sise": 8}), tcfg, "digits", manifest)
    with pytest.raises(data.DataError, match="trainval"):
        data.split_size(manifest, "trainval")
    # a short end-to-end run: the rule's settings reach the run, with the steps overridden to stay fast
    run_cfg = dataclasses.replace(cfg, model="vit", model_args=TINY_VIT, resolutions=[16], data_root=str(digits_dir.parent),
                                  out=str(tmp_path / "hr"), recipe_override={"batch_size": 8, "steps": 4, "warmup_steps": 1})
    (run,) = finetune.finetune(run_cfg, dataclasses.replace(tcfg, threads=1, ckpt_every=0, save_checkpoint=False,
                                                            test_split="test"))
    assert (run["config"]["lr"], run["config"]["schedule"], run["steps"], run["config"]["tags"]["recipe"]) == (
        0.003, "step", 4, "bit_hyperrule")


# --------------------------------------------------------------------------- released weights
def test_import_vit_weights_from_a_hub_format_file_and_fine_tune_them(tmp_path):
    import safetensors.torch
    import timm

    hub = timm.create_model("vit_tiny_patch16_224", num_classes=21843)  # the architecture of the tag below
    safetensors.torch.save_file(hub.state_dict(), tmp_path / "model.safetensors")
    s = weights.import_weights(weights.Config(weights="vit_tiny_patch16_224.augreg_in21k",
                                              file=str(tmp_path / "model.safetensors"), out=str(tmp_path / "in21k")))
    assert s["num_classes"] == 21843 and s["grid_size"] == [14, 14] and s["img_size"] == 224
    ckpt = torch.load(tmp_path / "in21k" / "checkpoint.pt", weights_only=False)
    assert all(torch.equal(ckpt["model"][k], v) for k, v in hub.state_dict().items())
    model = models.create(models.transfer_spec(ckpt["model_args"]), 10, 384)
    info = models.load_pretrained(model, ckpt)
    assert info["grid_to"] == [24, 24] and info["posemb_resampled"]
    assert torch.equal(model.blocks[0].attn.qkv.weight, hub.blocks[0].attn.qkv.weight)
    assert not model.head.weight.any()


def test_import_vit_weights_from_the_original_npz_format(tmp_path):
    """The paper's release layout (gs://vit_models/imagenet21k/*.npz), written from random weights by
    vit_npz and read back through timm's converter: every tensor lands where it came from."""
    import timm

    hub = timm.create_model("vit_tiny_patch16_224", num_classes=21843)
    np.savez(tmp_path / "ViT-Ti_16.npz", **weights.vit_npz(hub))
    s = weights.import_weights(weights.Config(weights="vit_tiny_patch16_224.augreg_in21k",
                                              file=str(tmp_path / "ViT-Ti_16.npz"), out=str(tmp_path / "vit")))
    ckpt = torch.load(tmp_path / "vit" / "checkpoint.pt", weights_only=False)
    assert s["num_classes"] == 21843 and s["grid_size"] == [14, 14]
    assert all(torch.equal(ckpt["model"][k], v) for k, v in hub.state_dict().items())


@pytest.mark.slow
def test_import_bit_m_weights_from_the_original_npz_format(tmp_path):
    import timm

    hub = timm.create_model("resnetv2_50x1_bit", num_classes=21843)
    np.savez(tmp_path / "BiT-M-R50x1.npz", **weights.bit_npz(hub))
    s = weights.import_weights(weights.Config(weights="resnetv2_50x1_bit.goog_in21k",
                                              file=str(tmp_path / "BiT-M-R50x1.npz"), out=str(tmp_path / "bit")))
    ckpt = torch.load(tmp_path / "bit" / "checkpoint.pt", weights_only=False)
    assert s["num_classes"] == 21843 and ckpt["model_args"] == {"arch": "timm", "name": "resnetv2_50x1_bit"}
    assert all(torch.allclose(ckpt["model"][k], v) for k, v in hub.state_dict().items())
    model = models.create(models.transfer_spec(ckpt["model_args"]), 37, 128)
    assert models.load_pretrained(model, ckpt)["head_reset"] == ["head.fc.bias", "head.fc.weight"]


def test_weights_normalised_differently_get_their_inputs(tmp_path):
    import timm

    hub = timm.create_model("tf_efficientnet_b0", num_classes=1000)
    torch.save(hub.state_dict(), tmp_path / "b0.pth")
    s = weights.import_weights(weights.Config(weights="tf_efficientnet_b0.ns_jft_in1k", file=str(tmp_path / "b0.pth"),
                                              out=str(tmp_path / "ns")))
    mean, std = s["model_args"]["input_norm"]
    model = models.create(s["model_args"], 1000, 64).eval()
    hub.load_state_dict(model.state_dict())
    x = torch.rand(2, 3, 64, 64) * 2 - 1  # our [-1, 1] inputs
    expected = hub.eval()(((x + 1) / 2 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1))
    assert torch.allclose(model(x), expected, atol=1e-5)


def test_unknown_tag_names_the_known_ones(tmp_path):
    with pytest.raises(cli.ConfigError, match="vit_base_patch16_224.orig_in21k"):
        weights.import_weights(weights.Config(weights="vit_base_patch16_224.jft300m", out=str(tmp_path)))
