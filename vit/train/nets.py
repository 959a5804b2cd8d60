"""The model of a run in its roles: the classifier, what the optimiser trains, what is scored, what a
step calls. Built from the model spec, or from a pre-training checkpoint for fine-tuning (paper sec. 3.2:
the head is replaced by a zero-initialised layer, position embeddings resampled in 2D)."""
from __future__ import annotations

import copy
import os
from dataclasses import dataclass

import torch
from timm.utils import ModelEmaV3

from vit import models
from vit.errors import ConfigError
from vit.logs import sha256_file
from vit.models import mpp
from vit.train import distributed, forms, memory
from vit.train.config import Config
from vit.train.distributed import Dist


@dataclass
class Nets:
    """One module per role. `classifier` is the plain model: its size, FLOPs and patch grid are the
    run's records. `optimised` is what the optimiser updates and the state saves: the classifier, or for
    masked patch prediction the wrapper with a mask token and a colour head around it. `scored` is what
    evaluation, few-shot probes and checkpoint.pt see: the classifier in the Polyak average (`ema`) if
    any, else the trained one. `forward` is what a training step calls: `optimised`, inside DDP's
    wrapper under torchrun."""
    classifier: torch.nn.Module
    optimised: torch.nn.Module
    ema: ModelEmaV3 | None
    scored: torch.nn.Module
    forward: torch.nn.Module


def classifier(cfg: Config, num_classes: int, dev: torch.device, file_hashes: dict) -> tuple[torch.nn.Module, dict]:
    """The classifier, fresh or initialised from cfg.init; and what the initialisation did (records)."""
    spec = models.transfer_spec(cfg.model_args) if cfg.init else cfg.model_args
    model = models.create(spec, num_classes, cfg.img_size)
    init_info = {}
    if cfg.init:
        ckpt = models.load_checkpoint(cfg.init)
        init_info = models.load_pretrained(model, ckpt, cfg.posemb_interp)
        init_info["init"] = cfg.init
        init_info["init_sha256"] = file_sha256(cfg.init, file_hashes)  # which weights, not only which path
    return models.to_device(model, dev), init_info


def file_sha256(path: str, cache: dict) -> str:
    """sha256 of a file, once per process and file version in `cache` (a fine-tuning grid loads one
    checkpoint per run)."""
    st = os.stat(path)
    key = (os.path.realpath(path), st.st_size, st.st_mtime_ns)
    if key not in cache:
        cache[key] = sha256_file(path)
    return cache[key]


def for_objective(cfg: Config, model: torch.nn.Module, dev: torch.device) -> torch.nn.Module:
    """The module the optimiser trains for `cfg.objective`."""
    if cfg.objective == "classify":
        return model
    if cfg.objective != "mpp":
        raise ConfigError(f"--objective={cfg.objective!r}: expected classify or mpp")
    if models.grid_size(model) is None:
        raise ConfigError("--objective=mpp needs a ViT (patch tokens); the model spec builds a convnet")
    if cfg.val_split or cfg.test_split or cfg.mixup:
        raise ConfigError("--objective=mpp trains no classifier, so there is nothing to score on val_split / "
                          "test_split (set them to \"\"; use `fewshot` probes) and no labels to mix (mixup=0)")
    for p in model.get_classifier().parameters():  # unused by MPP: frozen, so DDP and the optimiser skip it
        p.requires_grad_(False)
    return mpp.MaskedPatchPrediction(model).to(dev)


def roles(cfg: Config, model: torch.nn.Module, optimised: torch.nn.Module, ema: ModelEmaV3 | None,
          dist: Dist, dev: torch.device) -> Nets:
    scored = ema.module if ema is not None else optimised
    if cfg.objective == "mpp":
        scored = scored.vit
    return Nets(classifier=model, optimised=optimised, ema=ema, scored=scored,
                forward=distributed.wrap(optimised, dist, dev))


def accum_for_budget(cfg: Config, optimised: torch.nn.Module, dev: torch.device, dist: Dist) -> int:
    """The fewest accumulation steps whose micro-batch fits cfg.device_memory_gb (vit.train.memory), measured
    on a copy of the model under the run's autocast, with the RNG state restored: the probe changes
    neither the weights, nor BatchNorm statistics, nor the random stream of the run."""
    rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if dev.type == "cuda" else None
    probe = copy.deepcopy(optimised)
    forward = (lambda m, x: m(x, mpp=True)[0]) if cfg.objective == "mpp" else None
    # the step's precision on a GPU, bf16 (vit.train.forms); on a CPU fp32, the larger of the forms there
    with forms.autocast(dev, forms.Form("bf16" if dev.type == "cuda" else "fp32", "")):
        per_image = memory.saved_bytes_per_image(probe, cfg.img_size, dev, forward)
    del probe
    torch.set_rng_state(rng)
    if cuda_rng is not None:
        torch.cuda.set_rng_state_all(cuda_rng)
    try:
        accum = memory.accum_steps_for(cfg.batch_size, dist.world, cfg.device_memory_gb * 2**30, per_image,
                                       memory.state_bytes(optimised, cfg.optimizer))
    except ValueError as e:
        raise ConfigError(f"--device_memory_gb={cfg.device_memory_gb}: {e}") from None
    if dist.main:
        print(f"memory budget {cfg.device_memory_gb:g} GB per device: {per_image / 2**20:.3f} MiB saved per image "
              f"({per_image} B) -> accum_steps={accum}, micro-batch {cfg.batch_size // (dist.world * accum)}",
              flush=True)
    return accum
