"""A training run's settings and its identity (the hash that names its resumable state)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from vit.logs import config_hash


@dataclass
class Config:
    data: str = ""                  # prepared dataset directory (results/data/<name>)
    train_split: str = "train"      # "train+val" = VTAB-1k's final 1000-example training set
    val_split: str = ""             # evaluated every eval_every steps and at the end ("" = never)
    test_split: str = ""            # evaluated once, at the end ("" = never)
    out: str = ""                   # run directory
    model: str = "vit"              # short name, for the records
    model_args: dict = field(default_factory=dict)  # spec for vit.models.create
    init: str = ""                  # pre-training checkpoint to fine-tune from ("" = from scratch)
    posemb_interp: str = "bicubic"  # bicubic (timm) | bilinear_corners (original JAX code)
    img_size: int = 32
    epochs: float = 0.0             # duration: epochs, or steps if > 0
    steps: int = 0
    batch_size: int = 128           # the global batch: split over processes (torchrun) and accumulation steps
    accum_steps: int = 1            # gradient accumulation: micro-batches per optimiser step
    device_memory_gb: float = 0.0   # per-device budget: accum_steps becomes the fewest whose micro-batch fits
                                    # (vit.train.memory; 0 = accum_steps as given); batch, lr and steps do not change
    optimizer: str = "adam"         # adam (pre-training, Table 3) | sgd (fine-tuning, Table 4)
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9
    beta2: float = 0.999
    warmup_steps: int = 0
    schedule: str = "cosine"        # cosine | linear | constant | step, after linear warm-up
    decay_at: list = field(default_factory=list)  # schedule=step: fractions of the steps where lr /= 10
    mixup: float = 0.0              # MixUp alpha (BiT-HyperRule: 0.1 from 20k training examples)
    soft_targets: bool = False      # train on <train_split>_soft.npy, target distributions (Noisy Student's
                                    # soft pseudo-labels), instead of the hard labels; cross-entropy takes both
    objective: str = "classify"     # classify | mpp: masked patch prediction, self-supervised (paper sec. 4.6)
    grad_clip: float = 1.0          # global norm (0 = off)
    polyak: float = 0.0             # Polyak averaging of the weights (0.9999 for Table 2's ImageNet fine-tunes);
                                    # evaluation, few-shot probes and the checkpoint use the average
    label_smoothing: float = 0.0
    time_limit_s: float = 0.0       # the process's wall-clock budget (0 = the SLURM job's time limit, if any): the
                                    # run saves its state and exits with EXIT_RESUME before the budget runs out
    time_margin_s: float = 300.0    # ... this long before it (plus twice the slowest step): room for the state save
    augment: str = "none"           # none | crop_flip | inception_crop (+ flip; zooms into the stored image) |
                                    # randaugment (crop_flip + RandAugment: Noisy Student) | inception_crop+randaugment
    randaugment_skip: list = field(default_factory=list)  # RandAugment ops left out (torchvision's names, e.g.
                                    # Solarize): those that change what the labels are about ([] = all 14 ops)
    seed: int = 0
    eval_every: int = 0
    keep_best: bool = False         # keep the weights of the best val top-1 (of the evaluations every eval_every steps
                                    # and at the end) as checkpoint.pt and the val/test results: where a run overfits
    log_every: int = 25
    ckpt_every: int = 200           # resumable state every N steps (0 = never)
    save_checkpoint: bool = True    # write the final weights (pre-training: yes; grid fine-tunes: optional)
    eval_batch_size: int = 500
    threads: int = 0                # torch CPU threads (0 = leave torch's default); Snakemake passes {threads}
    precision: str = "auto"         # auto | fp32 | bf16 (autocast, fp32 weights); auto: the device's rule (bf16 on
                                    # CUDA and for ViTs on CPUs with bf16 units; vit.train.forms)
    attention: str = "auto"         # auto | explicit | sdpa: the attention form; auto: sdpa on CUDA, explicit on CPUs
    memory_gb: float = 8.0          # a split larger than this (resized, uint8) is streamed from disk per batch
    loader_workers: int = 0         # DataLoader processes decoding a sharded store's images (0 = the node's cores /
                                    # its torchrun processes, minus one)
    fewshot: list = field(default_factory=list)  # prepared datasets for a 5-shot linear probe at each eval (sec. 4.1)
    fewshot_test: int = 500         # test images per few-shot dataset (a subset keeps the probe cheap)
    tags: dict = field(default_factory=dict)  # copied into summary.json (upstream, task, ...)


# Settings that change how a run executes, not what it computes: kept out of the run's identity, so a
# resumed or re-launched run with other threads or logging still finds its state and finished results.
# accum_steps too: accumulation gives the full batch's update (tests/test_distributed.py), so a run resumed
# on other hardware with another split is the same run; and the step's form (precision, attention), which
# differs in rounding only and follows the hardware (vit.train.forms); each run records the form it took.
RUNTIME_KEYS = ("threads", "log_every", "eval_batch_size", "ckpt_every", "memory_gb", "loader_workers", "time_limit_s",
                "time_margin_s", "accum_steps", "device_memory_gb", "precision", "attention")


def run_hash(cfg: Config) -> str:
    return config_hash({k: v for k, v in dataclasses.asdict(cfg).items() if k not in RUNTIME_KEYS})
