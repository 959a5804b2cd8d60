"""The paper's training recipes as `vit.train` settings (Table 3: pre-training; Table 4 and App. B.1.1:
fine-tuning). Paper presets build their runs from these; tests/test_recipes.py checks every value
against the fact sheet (vit/reference.yaml), key by key.
"""
from __future__ import annotations

from importlib import resources

from vit.logs import read_yaml


# The fact sheet's sections: a copy cut short at a line boundary can still parse, without the later ones.
REFERENCE_SECTIONS = (
    "meta", "model_variants", "table2", "vtab_table9", "vtab_groups", "objectnet", "pretrain_hparams",
    "finetune_hparams", "fewshot", "compute", "model_flops", "pos_embed_interpolation", "figure3_data",
    "table5_full", "figure4_data", "figure5_data", "ablations", "baselines", "vtab_tasks", "discrepancies")


def load_reference(path: str = "") -> dict:
    """The paper fact sheet: vit/reference.yaml as shipped in the package, or a copy at `path`; a damaged
    one is a DataError that names it and the fix."""
    shipped = resources.files("vit").joinpath("reference.yaml")
    fix = (f"copy {shipped} over it again" if path else
           "restore it with `git checkout vit/reference.yaml` (or reinstall the package: `pip install -e .`)")
    return read_yaml(path or shipped, fix, keys=REFERENCE_SECTIONS)

# Table 3 rows: (models, dataset, epochs, base lr, decay, weight decay, dropout).
# ViT-L/16 and R50+ViT-L/16 on JFT were run for 7 and 14 epochs; ViT-L on ImageNet-21k for 30 and 90.
PRETRAIN_TABLE = [
    (("ViT-B/16", "ViT-B/32"), "JFT-300M", (7,), 8e-4, "linear", 0.1, 0.0),
    (("ViT-L/32",), "JFT-300M", (7,), 6e-4, "linear", 0.1, 0.0),
    (("ViT-L/16",), "JFT-300M", (7, 14), 4e-4, "linear", 0.1, 0.0),
    (("ViT-H/14",), "JFT-300M", (14,), 3e-4, "linear", 0.1, 0.0),
    (("BiT-R50x1", "BiT-R50x2"), "JFT-300M", (7,), 1e-3, "linear", 0.1, 0.0),
    (("BiT-R101x1",), "JFT-300M", (7,), 8e-4, "linear", 0.1, 0.0),
    (("BiT-R152x1", "BiT-R152x2"), "JFT-300M", (7,), 6e-4, "linear", 0.1, 0.0),
    (("R50x1+ViT-B/16", "R50x1+ViT-B/32"), "JFT-300M", (7,), 8e-4, "linear", 0.1, 0.0),
    (("R50x1+ViT-L/32",), "JFT-300M", (7,), 2e-4, "linear", 0.1, 0.0),
    (("R50x1+ViT-L/16",), "JFT-300M", (7, 14), 4e-4, "linear", 0.1, 0.0),
    (("ViT-B/16", "ViT-B/32"), "ImageNet-21k", (90,), 1e-3, "linear", 0.03, 0.1),
    (("ViT-L/16", "ViT-L/32"), "ImageNet-21k", (30, 90), 1e-3, "linear", 0.03, 0.1),
    (("ViT-B/16", "ViT-B/32", "ViT-L/16", "ViT-L/32", "ViT-H/14"), "ImageNet", (300,), 3e-3, "cosine", 0.3, 0.1),
]
PRETRAIN_COMMON = {"optimizer": "adam", "beta2": 0.999, "batch_size": 4096, "warmup_steps": 10_000,
                   "img_size": 224, "grad_clip": 1.0}

# Table 4 / App. B.1.1: steps and learning-rate grid per dataset; the grid is searched on a dev split
# held out of the training set (dev_fraction), then the chosen rate retrains on the full training set.
FINETUNE_TABLE = {
    "imagenet": {"steps": 20_000, "lr_grid": [0.003, 0.01, 0.03, 0.06], "dev_fraction": 0.01},
    "cifar100": {"steps": 10_000, "lr_grid": [0.001, 0.003, 0.01, 0.03], "dev_fraction": 0.02},
    "cifar10": {"steps": 10_000, "lr_grid": [0.001, 0.003, 0.01, 0.03], "dev_fraction": 0.02},
    "pets": {"steps": 500, "lr_grid": [0.001, 0.003, 0.01, 0.03], "dev_fraction": 0.10},
    "flowers102": {"steps": 500, "lr_grid": [0.001, 0.003, 0.01, 0.03], "dev_fraction": 0.10},
    "vtab": {"steps": 2_500, "lr_grid": [0.01], "dev_fraction": None},
}
# warm-up is not in the paper; 500 is the original code's default (vit_jax configs/common.py)
FINETUNE_COMMON = {"optimizer": "sgd", "momentum": 0.9, "batch_size": 512, "schedule": "cosine",
                   "weight_decay": 0.0, "grad_clip": 1.0, "img_size": 384, "warmup_steps": 500}


def pretrain(model: str, dataset: str, epochs: float | None = None) -> tuple[dict, dict]:
    """(training settings, model keyword arguments) of the Table 3 row for `model` on `dataset`.
    Dropout goes where the paper puts it: after every dense layer but qkv, and after the position
    embeddings (timm's proj_drop_rate and pos_drop_rate)."""
    for models, data, epochs_run, lr, decay, wd, dropout in PRETRAIN_TABLE:
        if model in models and data == dataset:
            if epochs is not None and epochs not in epochs_run:
                raise ValueError(f"{model} on {dataset} ran for {epochs_run} epochs in Table 3, not {epochs}")
            settings = dict(PRETRAIN_COMMON, lr=lr, schedule=decay, weight_decay=wd,
                            epochs=float(epochs or epochs_run[0]))
            model_kwargs = {"proj_drop_rate": dropout, "pos_drop_rate": dropout} if "ViT" in model else {}
            return settings, model_kwargs
    raise ValueError(f"no Table 3 row for {model} on {dataset}")


def finetune(dataset: str) -> dict:
    """Table 4 settings for `dataset`, with its learning-rate grid and dev-split fraction."""
    if dataset not in FINETUNE_TABLE:
        raise ValueError(f"no Table 4 row for {dataset!r}; rows: {', '.join(FINETUNE_TABLE)}")
    return dict(FINETUNE_COMMON, **FINETUNE_TABLE[dataset])


# BiT-HyperRule (Kolesnikov et al. 2020, sec. 3.3), the fine-tuning rule of the BiT baseline. The paper
# text and the released code (big_transfer bit_hyperrule.py) differ: the code decays small tasks at
# 40/60/80 % of 500 steps (text: 30/60/90 %) and resizes every large-image task to 512 -> 480 px (text:
# 448 -> 384, 512 -> 480 only for R152x4). We follow the code on purpose: it is what runs, and the
# published BiT fine-tunes come from it; variant="paper" gives the text's rule.
# [warm-up end, decay 1, decay 2, decay 3, end] in steps, by training-set size
HYPERRULE_SCHEDULES = {"small": (100, 200, 300, 400, 500), "medium": (500, 3000, 6000, 9000, 10_000),
                       "large": (500, 6000, 12_000, 18_000, 20_000)}


def bit_hyperrule(n_train: int, image_hw: tuple[int, int], variant: str = "code", big_model: bool = False) -> dict:
    """vit.train settings for a downstream task of `n_train` examples whose images are `image_hw`.

    Resolution: tasks with images smaller than 96 x 96 in area train at 128 px (resize 160, random
    crop 128), others at 480 (resize 512, crop 480; the paper's text: 384 from 448, but 480 for
    R152x4, `big_model`), with `augment: bit_crop` (vit.data.augment: the resize to the precrop square, a
    random crop, a flip; its precrop for 128 / 384 / 480 is the `resize` returned here). MixUp alpha 0.1
    from 20k examples."""
    if variant not in ("code", "paper"):
        raise ValueError(f"variant={variant!r}: expected code or paper")
    size = "small" if n_train < 20_000 else "medium" if n_train < 500_000 else "large"
    warmup, *decays, end = HYPERRULE_SCHEDULES[size]
    decay_at = [d / end for d in decays] if variant == "code" else [0.3, 0.6, 0.9]
    if image_hw[0] * image_hw[1] < 96 * 96:
        resize, crop = 160, 128
    elif variant == "code" or big_model:
        resize, crop = 512, 480
    else:
        resize, crop = 448, 384
    # grad_clip 0: BiT's fine-tuning code does not clip gradients (the ViT recipe clips at norm 1)
    return {"optimizer": "sgd", "lr": 0.003, "momentum": 0.9, "batch_size": 512, "weight_decay": 0.0, "grad_clip": 0.0,
            "steps": end, "warmup_steps": warmup, "schedule": "step", "decay_at": decay_at,
            "mixup": 0.0 if n_train < 20_000 else 0.1, "img_size": crop, "resize": resize, "augment": "bit_crop"}
