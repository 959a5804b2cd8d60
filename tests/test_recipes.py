"""The recipe tables against the paper fact sheet (vit/reference.yaml), key by key."""
from importlib import resources

import pytest
import yaml

from conftest import REPO
from vit.plan import recipes
from vit.train import loop as train

REF = yaml.safe_load(resources.files("vit").joinpath("reference.yaml").read_text())


def _models(text):
    """'ViT-B/16, ViT-B/32' -> our names (the paper writes R50x1 as R50 and BiT ResNets as R50x1...)."""
    names = []
    for n in (t.strip() for t in text.split(",")):
        if n.startswith("R50+"):
            n = "R50x1+" + n[4:]
        elif n.startswith("R") and "+" not in n:
            n = "BiT-" + n
        names.append(n)
    return names


def test_every_table3_row_is_encoded_exactly():
    rows = [r for r in REF["pretrain_hparams"]["rows"] if r["models"] != "ViT-* (all)"]
    assert len(rows) == len(recipes.PRETRAIN_TABLE) - 1
    for row in rows:
        epochs = row["epochs"] if isinstance(row["epochs"], list) else [row["epochs"]]
        for model in _models(row["models"]):
            dataset = row["dataset"]
            for ep in epochs:
                settings, kw = recipes.pretrain(model, dataset, ep)
                assert settings["lr"] == float(row["base_lr"]), (model, dataset)
                assert settings["schedule"] == row["decay"] and settings["weight_decay"] == row["weight_decay"]
                assert settings["epochs"] == ep
                if "ViT" in model:
                    assert kw == {"proj_drop_rate": row["dropout"], "pos_drop_rate": row["dropout"]}


def test_table3_common_settings():
    common = REF["pretrain_hparams"]["common"]
    s, _ = recipes.pretrain("ViT-H/14", "JFT-300M", 14)
    assert s["optimizer"] == "adam" and common["optimizer"] == "Adam"
    assert s["beta2"] == common["adam_beta2"] and s["batch_size"] == common["batch_size"]
    assert s["warmup_steps"] == common["warmup_steps"] and s["img_size"] == common["resolution"]
    assert s["grad_clip"] == common["grad_clip_global_norm"]["value"]
    imnet = next(r for r in REF["pretrain_hparams"]["rows"] if r["models"] == "ViT-* (all)")
    s, kw = recipes.pretrain("ViT-H/14", "ImageNet")
    assert (s["lr"], s["schedule"], s["weight_decay"], s["epochs"]) == (
        float(imnet["base_lr"]), imnet["decay"], imnet["weight_decay"], imnet["epochs"])


def test_every_table4_row_is_encoded_exactly():
    ref = REF["finetune_hparams"]
    for dataset, row in ref["per_dataset"].items():
        s = recipes.finetune(dataset)
        assert s["steps"] == row["steps"]
        assert s["lr_grid"] == row.get("lr_grid", [row.get("lr")])
        assert s["dev_fraction"] == row.get("dev_split_fraction")
    common = ref["common"]
    s = recipes.finetune("cifar10")
    assert s["optimizer"] == common["optimizer"].lower() and s["momentum"] == common["momentum"]
    assert s["batch_size"] == common["batch_size"] and s["schedule"] == common["lr_decay"]
    assert s["weight_decay"] == common["weight_decay"] and s["grad_clip"] == common["grad_clip_global_norm"]
    assert s["img_size"] == common["resolution"]
    assert s["warmup_steps"] == common["warmup_steps"]["vit_jax_default"]


def test_recipes_are_valid_training_settings():
    fields = set(train.Config.__dataclass_fields__)
    s, _ = recipes.pretrain("ViT-L/16", "ImageNet-21k", 90)
    assert set(s) <= fields
    assert set(recipes.finetune("pets")) - {"lr_grid", "dev_fraction"} <= fields


def test_unknown_rows_are_refused():
    with pytest.raises(ValueError, match="ViT-H/14 on ImageNet-21k"):
        recipes.pretrain("ViT-H/14", "ImageNet-21k")
    with pytest.raises(ValueError, match="ran for"):
        recipes.pretrain("ViT-B/16", "JFT-300M", 14)
    with pytest.raises(ValueError, match="rows"):
        recipes.finetune("svhn")


def test_dropout_goes_where_the_paper_puts_it():
    """After every dense layer except qkv, and after adding the position embeddings (App. B.1)."""
    import torch

    from vit import models

    _, kw = recipes.pretrain("ViT-B/16", "ImageNet-21k")
    with torch.device("meta"):
        m = models.create({"arch": "paper", "name": "ViT-B/16", **kw}, 21843, 224)
    block = m.blocks[0]
    assert m.pos_drop.p == 0.1 and block.attn.proj_drop.p == 0.1
    assert block.mlp.drop1.p == 0.1 and block.mlp.drop2.p == 0.1 and block.attn.attn_drop.p == 0.0


def test_bit_hyperrule_schedule_resolution_and_mixup():
    from vit.train import optim

    small = recipes.bit_hyperrule(1_000, (32, 32))
    assert (small["steps"], small["warmup_steps"], small["mixup"], small["img_size"]) == (500, 100, 0.0, 128)
    assert small["decay_at"] == [0.4, 0.6, 0.8]  # the code's small-task decays, not the text's 30/60/90 %
    assert recipes.bit_hyperrule(1_000, (32, 32), variant="paper")["decay_at"] == [0.3, 0.6, 0.9]
    medium = recipes.bit_hyperrule(20_000, (224, 224))
    assert (medium["steps"], medium["mixup"], medium["img_size"], medium["decay_at"]) == (10_000, 0.1, 480, [0.3, 0.6, 0.9])
    assert recipes.bit_hyperrule(499_999, (500, 375))["steps"] == 10_000
    assert recipes.bit_hyperrule(500_000, (500, 375))["steps"] == 20_000
    assert recipes.bit_hyperrule(19_999, (95, 96))["img_size"] == 128 and recipes.bit_hyperrule(19_999, (96, 96))["img_size"] == 480
    assert recipes.bit_hyperrule(5_000, (224, 224), variant="paper")["img_size"] == 384
    assert recipes.bit_hyperrule(5_000, (224, 224), variant="paper", big_model=True)["img_size"] == 480
    # the step schedule: warm-up, then /10 at each decay point
    lrs = [optim.lr_at(s, 500, 0.003, 100, "step", small["decay_at"]) for s in (50, 150, 250, 350, 450)]
    assert lrs == pytest.approx([0.003 * 51 / 100, 0.003, 3e-4, 3e-5, 3e-6])
    # BiT's own crop, whose precrop for the rule's crop is the rule's resize (vit.data.augment.bit_crop)
    from vit.data.augment import bit_precrop

    assert small["augment"] == medium["augment"] == "bit_crop"
    assert bit_precrop(small["img_size"]) == small["resize"] and bit_precrop(medium["img_size"]) == medium["resize"]
    # a task whose main grid is not augmented (labels a crop or flip would break) is not by the rule either
    from vit.plan import load
    from vit.plan.checks import read_config

    assert load(read_config(REPO / "config.yaml")).hyperrule_args()["per_task"] == {"dsprites_location": {"augment": "none"}}
    # every key is a vit.train setting (resize is informational)
    from vit.train import loop as train

    train.Config(**{k: v for k, v in small.items() if k != "resize"})
