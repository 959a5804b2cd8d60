"""What a finished run writes (vit.train.loop's `job` and `trainset`): the final scores, with keep_best's
choice of weights, summary.json (results, measured cost, provenance) and checkpoint.pt; then the resumable
state goes."""
from __future__ import annotations

import dataclasses
import resource
import time

import torch

from vit import models
from vit.logs import environment, save_torch, write_json
from vit.train import distributed, forms, scoring


def records(job, trainset, init_info: dict, cost: dict) -> dict:
    """Rank 0's final evaluation, summary.json and checkpoint.pt; the resumable state is then removed."""
    run, cfg, t0 = job.run, job.run.cfg, time.perf_counter()
    scores, choice = _final_scores(job)
    summary = _summary(job, trainset, init_info, cost, scores, final_eval_time=time.perf_counter() - t0)
    summary.update(choice)
    if cfg.save_checkpoint:
        save_torch(run.out / "checkpoint.pt", models.checkpoint(job.nets.scored, cfg.model_args,
                                                                trainset.manifest["num_classes"], cfg.img_size,
                                                                dataclasses.asdict(cfg)))
    write_json(run.out / "summary.json", summary)
    run.state_path.unlink(missing_ok=True)
    distributed.barrier(run.dist)
    return summary


def _final_scores(job) -> tuple[dict, dict]:
    """The scores at the end, and with keep_best the choice of weights ({} without): val on the last
    weights; then test and the few-shot probes on the weights kept."""
    run, cfg, results = job.run, job.run.cfg, {}
    with forms.autocast(run.device, job.form):  # scored in the precision it trained in
        if cfg.val_split:
            _score(job, cfg.val_split, results)
        choice = _keep(job, results) if cfg.keep_best else {}
        if choice:  # says, before them, whose weights the lines that follow scored
            job.log.write(step=job.steps, split="keep_best", **choice)
        if cfg.test_split and cfg.test_split != cfg.val_split:
            _score(job, cfg.test_split, results)
        if job.probe_sets:
            results["fewshot"] = scoring.probes(job.nets.scored, job.probe_sets, cfg, run.device)
            job.log.write(step=job.steps, split="fewshot", **results["fewshot"])
    job.log.close()
    return results, choice


def _score(job, split: str, results: dict) -> None:
    results[split] = scoring.split(job.nets.scored, job.run.cfg, split, job.run.device)
    job.log.write(step=job.steps, split=split, **results[split])


def _keep(job, results: dict) -> dict:
    """keep_best: where an earlier validation beat the final one (a tie keeps the last weights), its weights
    go into the scored module (training is over) and its result becomes the val result; returns the
    summary's record of the choice."""
    val, best = job.run.cfg.val_split, job.progress.best
    last = {"step": job.steps, "val_top1": results[val]["top1"], "val_loss": results[val]["loss"]}
    if best is None or best.result["top1"] <= results[val]["top1"]:
        return {"best": last, "last": last, "kept": "last"}
    job.nets.scored.load_state_dict(best.weights)
    results[val] = best.result
    return {"best": {"step": best.step, "val_top1": best.result["top1"], "val_loss": best.result["loss"]},
            "last": last, "kept": "best"}


def _summary(job, trainset, init_info: dict, cost: dict, results: dict, final_eval_time: float) -> dict:
    run, cfg, p, model = job.run, job.run.cfg, job.progress, job.nets.classifier
    manifest, cuda = trainset.manifest, run.device.type == "cuda"
    return {
        "config": dataclasses.asdict(cfg), "config_hash": run.chash, "dataset": manifest["name"],
        "dataset_files": manifest["files"], "num_classes": manifest["num_classes"],
        "steps": job.steps, "images_seen": job.steps * cfg.batch_size, "train_examples": len(trainset.x),
        "train_time_s": p.train_time, "timed_images": p.timed_images,
        "img_per_s": p.timed_images / p.train_time if p.train_time else None,
        # where the run's wall time went (vit.account.timeline): the timed steps above, the same iterations
        # with logging, validation and state saves, validation alone, and this process's set-up and final scoring
        "loop_time_s": p.loop_time, "eval_time_s": p.eval_time, "setup_time_s": job.setup_time,
        "final_eval_time_s": final_eval_time,
        "final_train_loss": p.loss_ema, "params": models.num_params(model),
        "params_backbone": models.num_params(model, exclude_head=True), **cost,
        "grid_size": models.grid_size(model), "init": init_info, "eval": results, "history": p.history,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_gpu_mem_mb": torch.cuda.max_memory_allocated() / 2**20 if cuda else None,
        "processes": run.dist.world, "accum_steps": cfg.accum_steps, "micro_batch": run.micro,
        "checkpoint_time_s": p.ckpt_time, "checkpoints_saved": p.ckpt_saves,
        "precision": "bf16 autocast, fp32 weights" if job.form.precision == "bf16" else "fp32",
        "attention": job.form.attention, "form": str(job.form),
        "env": environment(), **cfg.tags,
    }
