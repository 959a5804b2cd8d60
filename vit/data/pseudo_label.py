"""Noisy Student's pseudo-labelling step (Xie et al. 2020; vit/reference.yaml: baselines.NoisyStudent) as a prepared-dataset stage.

    python -m vit.data.pseudo_label --teacher=results/pretrain/effnet/shapes_l/checkpoint.pt \
        --labelled=results/data/shapes_l --unlabelled=results/data/shapes_pool --out=results/data/ns1_shapes_l \
        --threshold=0.3 --per_class=0 --labels=hard --threads=1

The un-noised teacher (eval mode: no dropout or stochastic depth, no augmentation) predicts on the
unlabelled pool's `train` split at its own resolution. Images whose top probability is >= threshold are
kept and class-balanced (`balance`), and the result is an ordinary prepared dataset: `train` = the
labelled train split followed by the selected pool images with their pseudo labels; `val` / `test` =
the labelled set's own files, byte for byte, so the student is scored on real labels. The student then
trains with the one training loop (`vit.train --data=<out>`), and iterations chain as rules: student
checkpoint -> next teacher.

The pool's labels never reach the selection or the written dataset: our pools are generated, and the
generator makes labels, but unlabelled data must not leak its labels into the student. Only after the
dataset's files are staged and checksummed does `audit_pseudo_labels` (an audit that never feeds back)
read them, to record in the manifest's `info.audit` how often the pseudo labels are right: precision of
the kept (confident) ones before balancing, of the selected (balanced) rows as written, and the teacher's
argmax accuracy over the whole pool. A pool without usable labels (none on disk, a checksum mismatch,
other classes than the labelled set's) records nulls and the reason; the dataset is the same either way.

Choices:
- Pool images are resized to the labelled set's size (antialiased bilinear, `vit.data.to_tensor`) when
  the two differ, rather than refused: the labelled splits must stay unchanged, and `vit.train` resizes
  every image to its `img_size` anyway; the manifest records the pool's original size.
- `--per_class=0` means the mean kept count over the classes with at least one kept image, so balancing
  reshapes the kept set without growing or shrinking it much (the paper fixes 130k per class for
  ImageNet's 1000 classes, about its kept count per class). The mean over all classes would shrink it
  when a weak teacher leaves most classes empty: our shapes_l EfficientNet teacher (5 % val top-1) keeps
  109 of 20,000 pool images, in 4 of 64 classes, which would give 2 per class.
- `--labels=soft` also writes `train_soft.npy`, float16 (N, K): the teacher's probabilities for pool rows,
  one-hot vectors for labelled rows; hard labels stay in `train_labels.npy` (argmax). A student trains on
  it with `vit.train --soft_targets=true` (the workflow sets it when noisy_student.labels is soft):
  cross-entropy against the teacher's distribution, -sum(q * log_softmax(logits)).
- An existing output is kept when its data files are identical to what this run computes and refused
  otherwise (unlike `vit.data.prepare`, which rewrites in place): a pseudo-labelled set depends on a teacher,
  and silently replacing the data a student was trained on would orphan that student's results.
  Snakemake deletes a job's outputs before rerunning it, so this only guards hand-made runs.
"""
from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from vit import cli, data, models
from vit.data import MANIFEST, split_files
from vit.logs import sha256_file

LABEL_MODES = ("hard", "soft")
POOL_SPLIT = "train"


@dataclass
class Config:
    teacher: str = ""        # checkpoint.pt of the teacher (vit.train writes it)
    labelled: str = ""       # prepared dataset with real labels (train, val, [test])
    unlabelled: str = ""     # prepared dataset whose train images are the pool (its labels: audit only)
    out: str = ""            # the new prepared dataset, results/data/<name>
    name: str = ""           # dataset name in the manifest ("" = the out folder's name)
    threshold: float = 0.3   # keep pool images whose top teacher probability is >= this (NS: 0.3)
    per_class: int = 0       # images per class after balancing (0 = the mean kept count per class)
    labels: str = "hard"     # hard | soft (soft also writes train_soft.npy, for vit.train --soft_targets)
    seed: int = 0            # draws the duplicated copies of under-full classes
    batch_size: int = 256    # teacher inference batch
    threads: int = 0         # torch CPU threads (0 = torch's default); Snakemake passes {threads}


# ----------------------------------------------------------------------------- pure selection
def pseudo_labels(probs: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hard labels (argmax), their confidence (max probability), and which rows pass the threshold."""
    probs = np.asarray(probs)
    if probs.ndim != 2:
        raise ValueError(f"probs: expected (N, K), got shape {probs.shape}")
    labels = probs.argmax(1).astype(np.int64)
    confidence = probs.max(1)
    return labels, confidence, confidence >= threshold


def per_class_target(kept_per_class: np.ndarray) -> int:
    """The `per_class=0` rule: the mean kept count over the classes that kept any image (0 if none did)."""
    counts = np.asarray(kept_per_class)
    counts = counts[counts > 0]
    return max(1, round(float(counts.mean()))) if len(counts) else 0


def balance(labels: np.ndarray, confidence: np.ndarray, keep: np.ndarray, num_classes: int, per_class: int,
            rng: np.random.Generator) -> np.ndarray:
    """Pool indices after NS class balancing, sorted (sequential reads; the training loop shuffles).

    A class with more than `per_class` kept images keeps its `per_class` most confident (ties: lower
    index); one with fewer keeps all of them once plus `per_class - m` copies drawn with replacement;
    a class with none stays empty. `per_class=0` applies `per_class_target`.
    """
    labels, confidence, keep = np.asarray(labels), np.asarray(confidence), np.asarray(keep, bool)
    if per_class < 0:
        raise ValueError(f"per_class={per_class}: must be >= 0")
    kept = np.flatnonzero(keep)
    if per_class == 0:
        per_class = per_class_target(np.bincount(labels[kept], minlength=num_classes))
    picked = []
    for c in range(num_classes):
        idx = kept[labels[kept] == c]
        if len(idx) >= per_class:
            picked.append(idx[np.argsort(-confidence[idx], kind="stable")[:per_class]])
        elif len(idx):
            picked.append(np.concatenate([idx, rng.choice(idx, per_class - len(idx), replace=True)]))
    return np.sort(np.concatenate(picked)) if picked else np.empty(0, np.int64)


# ----------------------------------------------------------------------------- teacher and pool
def load_teacher(path: str, num_classes: int, labelled: str):
    """The teacher in eval mode (the paper's un-noised teacher) and its checkpoint dict."""
    if not Path(path).is_file():
        raise cli.ConfigError(f"--teacher={path}: no such checkpoint file")
    ckpt = models.load_checkpoint(path)  # a damaged file or another torch file: a DataError naming it
    if ckpt["num_classes"] != num_classes:
        raise cli.ConfigError(f"--teacher={path} predicts {ckpt['num_classes']} classes but --labelled={labelled} "
                              f"has {num_classes} ({Path(labelled) / MANIFEST}): pseudo labels would not be its classes")
    model = models.create(ckpt["model_args"], ckpt["num_classes"], ckpt["img_size"])
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as e:
        raise cli.ConfigError(f"--teacher={path}: weights do not fit its model_args: {e}") from None
    return model.eval(), ckpt


def pool_images(pool_dir: str) -> tuple[np.ndarray, dict]:
    """The pool's train images, memory-mapped and checksummed; its labels file is deliberately not touched
    (only `audit_pseudo_labels` reads it, after the dataset is written)."""
    manifest = data.read_manifest(pool_dir)
    if POOL_SPLIT not in manifest["splits"]:
        raise cli.ConfigError(f"--unlabelled={pool_dir}: {Path(pool_dir) / MANIFEST} has no {POOL_SPLIT!r} split "
                              f"(splits: {', '.join(manifest['splits']) or 'none'})")
    fx = split_files(POOL_SPLIT)[0]
    data.verify(pool_dir, [fx], manifest)
    images = np.load(Path(pool_dir) / fx, mmap_mode="r")
    if len(images) == 0:
        raise cli.ConfigError(f"--unlabelled={pool_dir}: its {POOL_SPLIT!r} split has no images")
    return images, manifest


def predict(model, images: np.ndarray, img_size: int, batch_size: int, device) -> np.ndarray:
    """Teacher probabilities (N, K) float32 over uint8 (N,H,W,3) images, at the teacher's resolution."""
    out = []
    with torch.no_grad():
        for i in tqdm(range(0, len(images), batch_size), desc="teacher", unit="batch", mininterval=2):
            xb = data.normalize(data.to_tensor(images[i:i + batch_size], img_size)).to(device)
            out.append(torch.softmax(model(xb).float(), -1).cpu().numpy())
    return np.concatenate(out) if out else np.empty((0, 0), np.float32)


# ----------------------------------------------------------------------------- writing
def _copy_rows(dst: np.ndarray, start: int, src: np.ndarray, rows: np.ndarray, size: int, chunk: int = 2048) -> None:
    """dst[start:] = src[rows] resized to size x size, a chunk at a time (memory stays bounded)."""
    for i in range(0, len(rows), chunk):
        xb = src[rows[i:i + chunk]]
        if xb.shape[1:3] != (size, size):
            xb = data.to_tensor(xb, size).permute(0, 2, 3, 1).numpy()
        dst[start + i:start + i + len(xb)] = xb


def _stage_train(stage: Path, cfg: Config, pool_x: np.ndarray, pool_labels: np.ndarray, probs: np.ndarray,
                 selected: np.ndarray, num_classes: int) -> int:
    """train_images / train_labels (/ train_soft) = labelled train rows, then the selected pool rows."""
    from numpy.lib.format import open_memmap

    x_lab, y_lab, _ = data.load_split(cfg.labelled, "train")  # verified against the labelled manifest
    size = x_lab.shape[1]
    fx, fy = split_files("train")
    xs = open_memmap(stage / fx, mode="w+", dtype=np.uint8, shape=(len(y_lab) + len(selected), size, size, 3))
    _copy_rows(xs, 0, x_lab, np.arange(len(y_lab)), size)
    _copy_rows(xs, len(y_lab), pool_x, selected, size)
    xs.flush()
    del xs
    np.save(stage / fy, np.concatenate([y_lab, pool_labels[selected]]).astype(np.int64))
    if cfg.labels == "soft":
        soft = np.concatenate([np.eye(num_classes, dtype=np.float32)[y_lab], probs[selected]]).astype(np.float16)
        np.save(stage / "train_soft.npy", soft)
    return size


def _stage_other_splits(stage: Path, labelled_dir: str, manifest: dict) -> None:
    """The labelled set's non-train splits, copied after their checksums verify: unchanged real labels."""
    for split in manifest["splits"]:
        if split == "train":
            continue
        names = [f for f in manifest["files"] if f.startswith(f"{split}_")]  # images, labels, ReaL names
        data.verify(labelled_dir, names, manifest)
        for name in names:
            shutil.copyfile(Path(labelled_dir) / name, stage / name)


def _publish(stage: Path, out: Path, manifest: dict) -> dict:
    """Rename the finished stage to `out`; keep an identical existing output, refuse a different one."""
    if out.exists():
        old = out / MANIFEST
        if old.exists() and data.read_manifest(out).get("files") == manifest["files"]:
            shutil.rmtree(stage)
            print(f"{out}: already holds these exact files; kept as it is")
            return data.read_manifest(out)
        if old.exists():
            shutil.rmtree(stage)
            raise cli.ConfigError(f"--out={out}: exists and differs from what this run computes; "
                                  f"delete it to regenerate it (a student trained on it would be orphaned)")
        # no manifest: never published whole (publishing is one rename), or invalidated by Snakemake,
        # which deletes a job's declared output (the manifest) before rerunning it
        shutil.rmtree(out)
    os.rename(stage, out)  # atomic: readers see the whole dataset or none of it
    return manifest


# ----------------------------------------------------------------------------- audit (never feeds back)
def _precision(correct: np.ndarray) -> float | None:
    return float(correct.mean()) if len(correct) else None


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.1f} %"


def audit_pseudo_labels(pool_dir: str, pool_manifest: dict, classes: list, pseudo: np.ndarray, keep: np.ndarray,
                        selected: np.ndarray) -> dict:
    """AUDIT ONLY, NEVER FEEDS BACK: how often the teacher's pseudo labels match the pool's true labels.

    Called after the new dataset's files are staged and checksummed, and its result only goes into the
    manifest's `info.audit`: nothing the stage selects or writes depends on it. `pseudo` is the teacher's
    argmax per pool image, `keep` its confidence mask, `selected` the balanced pool indices as written
    (duplicated copies count once per copy, as the student sees them). Precisions are fractions; each is
    null where its set is empty, and all are null, with the reason, where the pool has no usable labels."""
    n = len(pseudo)
    fy = split_files(POOL_SPLIT)[1]
    null = {"labels_read": False, "pool_top1": None, "kept_precision": None, "selected_precision": None,
            "selected_unique_precision": None, "pool_correct": None, "kept_correct": None,
            "selected_correct": None}
    if fy not in pool_manifest.get("files", {}) or not (Path(pool_dir) / fy).exists():
        return {**null, "note": f"no labels to audit: the pool has no {fy}"}
    if list(pool_manifest.get("classes", [])) != list(classes):
        return {**null, "note": "no labels to audit: the pool's classes are not the labelled set's"}
    try:
        data.verify(pool_dir, [fy], pool_manifest)
    except data.DataError:
        return {**null, "note": f"no labels to audit: the pool's {fy} does not match its manifest's checksum"}
    truth = np.load(Path(pool_dir) / fy)
    if truth.shape != (n,) or truth.min() < 0 or truth.max() >= len(classes):
        return {**null, "note": f"no labels to audit: {fy} holds no label in [0, {len(classes)}) per pool image"}
    right = np.asarray(pseudo) == truth
    keep, selected = np.asarray(keep, bool), np.asarray(selected, np.int64)
    unique = np.unique(selected)
    return {"labels_read": True, "pool_top1": _precision(right), "kept_precision": _precision(right[keep]),
            "selected_precision": _precision(right[selected]),
            "selected_unique_precision": _precision(right[unique]), "pool_correct": int(right.sum()),
            "kept_correct": int(right[keep].sum()), "selected_correct": int(right[selected].sum()),
            "note": f"pool's {fy} read after the dataset was written, for this audit only"}


# ----------------------------------------------------------------------------- stage
def _check(cfg: Config) -> None:
    for key in ("teacher", "labelled", "unlabelled", "out"):
        if not getattr(cfg, key):
            raise cli.ConfigError(f"--{key} is required")
    if not 0.0 <= cfg.threshold <= 1.0:
        raise cli.ConfigError(f"--threshold={cfg.threshold}: a probability, expected 0 <= threshold <= 1")
    if cfg.per_class < 0:
        raise cli.ConfigError(f"--per_class={cfg.per_class}: expected >= 0 (0 = mean kept count per class)")
    if cfg.labels not in LABEL_MODES:
        raise cli.ConfigError(f"--labels={cfg.labels!r}: expected one of {', '.join(LABEL_MODES)}")
    if cfg.batch_size <= 0:
        raise cli.ConfigError(f"--batch_size={cfg.batch_size}: expected > 0")


def noisy_student(cfg: Config) -> dict:
    _check(cfg)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    t0 = time.time()
    labelled = data.read_manifest(cfg.labelled)
    if "train" not in labelled["splits"]:
        raise cli.ConfigError(f"--labelled={cfg.labelled}: {Path(cfg.labelled) / MANIFEST} has no 'train' split "
                              f"(splits: {', '.join(labelled['splits'])})")
    k = labelled["num_classes"]
    teacher, ckpt = load_teacher(cfg.teacher, k, cfg.labelled)
    pool_x, pool_manifest = pool_images(cfg.unlabelled)

    # ---------------------------------------------------------------- teacher predictions and selection
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    probs = predict(teacher.to(device), pool_x, ckpt["img_size"], cfg.batch_size, device)
    labels, confidence, keep = pseudo_labels(probs, cfg.threshold)
    kept_hist = np.bincount(labels[keep], minlength=k)
    target = cfg.per_class or per_class_target(kept_hist)
    selected = balance(labels, confidence, keep, k, target, np.random.default_rng(cfg.seed))
    empty = [int(c) for c in np.flatnonzero(kept_hist == 0)]

    # ---------------------------------------------------------------- new prepared dataset
    out = Path(cfg.out)
    stage = out.with_name(out.name + ".partial")  # prepare's convention: a killed run leaves `out` untouched
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    size = _stage_train(stage, cfg, pool_x, labels, probs, selected, k)
    _stage_other_splits(stage, cfg.labelled, labelled)
    files = {f: sha256_file(stage / f) for f in sorted(os.listdir(stage))}  # the dataset is final here

    # ---------------------------------------------------------------- audit: the pool's labels, read only now
    audit = audit_pseudo_labels(cfg.unlabelled, pool_manifest, labelled["classes"], labels, keep, selected)
    n_labelled = int(labelled["splits"]["train"])
    info = {
        "teacher": cfg.teacher, "teacher_sha256": sha256_file(cfg.teacher), "teacher_img_size": ckpt["img_size"],
        "teacher_model_args": ckpt["model_args"], "labelled": cfg.labelled, "unlabelled": cfg.unlabelled,
        "unlabelled_name": pool_manifest.get("name", ""), "pool_labels_used": False,
        "threshold": cfg.threshold, "per_class": cfg.per_class, "per_class_effective": target,
        "labels": cfg.labels, "seed": cfg.seed, "pool_image_size": list(pool_x.shape[1:3]),
        "pool_resized": list(pool_x.shape[1:3]) != [size, size],
        "train_layout": f"rows [0, {n_labelled}) labelled train; the rest pseudo-labelled pool rows",
        "counts": {"pool": len(pool_x), "kept": int(keep.sum()), "selected": len(selected),
                   "selected_unique": len(np.unique(selected)), "labelled_train": n_labelled,
                   "kept_per_class": kept_hist.tolist(),
                   "selected_per_class": np.bincount(labels[selected], minlength=k).tolist(),
                   "empty_classes": empty},
        "audit": audit,  # after the fact, from the pool's true labels; never used above
    }
    # last: a stage without a manifest is never published
    manifest = data.write_manifest(stage, name=cfg.name or out.name, source="noisy_student",
                                   group=labelled.get("group", ""), seed=cfg.seed, task=labelled.get("task", ""),
                                   classes=labelled["classes"], splits=list(labelled["splits"]), files=files,
                                   info=info, started=t0)
    manifest = _publish(stage, out, manifest)
    c = info["counts"]
    print(f"noisy student {manifest['name']}: pool {c['pool']}, kept {c['kept']} (>= {cfg.threshold}), selected "
          f"{c['selected']} ({c['selected_unique']} unique, {target}/class) + {n_labelled} labelled -> {out}")
    if empty:
        print(f"  classes with no kept pool image: {[labelled['classes'][i] for i in empty]}")
    a = manifest["info"].get("audit") or {}
    if a.get("labels_read"):
        print(f"  audit (pool labels, never fed back): pseudo-label precision kept {_pct(a['kept_precision'])}, "
              f"selected {_pct(a['selected_precision'])}; teacher top-1 on the pool {_pct(a['pool_top1'])}")
    elif a:
        print(f"  audit: {a['note']}")
    return manifest


if __name__ == "__main__":
    cli.main_guard(noisy_student, Config)
