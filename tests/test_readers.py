"""Every kind of file the pipeline reads, damaged: the stage's own reader stops with a vit.errors.DataError
that names the file and the fix (vit.logs' readers), never with a parser's traceback.

Each case writes a real valid file with the project's own writer, then damages it two ways: its first
half (a killed copy, a full disk) and random bytes. No training: the files are made directly.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import REPO, TINY_VIT
from vit import data, models
from vit.account import compute, cost
from vit.data import pseudo_label, sources
from vit.errors import DataError
from vit.evaluate import classify, collect, fewshot, inspect
from vit.logs import MetricWriter, atomic_write_bytes, save_torch, write_json, write_parquet
from vit.plan import checks, recipes
from vit.report import plots, results, summary
from vit.train import finetune, loop, state


def truncate(path: Path) -> None:
    """The first half of the file's bytes."""
    atomic_write_bytes(path, path.read_bytes()[:path.stat().st_size // 2])


def garbage(path: Path) -> None:
    atomic_write_bytes(path, np.random.default_rng(0).bytes(2048))


DAMAGE = {"truncated": truncate, "garbage": garbage}


# ----------------------------------------------------------------------------- the valid files
def _manifest(digits_dir, tmp_path):
    d = tmp_path / "results" / "data" / "digits"
    shutil.copytree(digits_dir, d)
    return d / data.MANIFEST


def _checkpoint(tmp_path) -> Path:
    path = tmp_path / "results" / "pretrain" / "vit" / "digits" / "checkpoint.pt"
    save_torch(path, models.checkpoint(models.create(TINY_VIT, 10, 32), TINY_VIT, 10, 32, {}))
    return path


def _state(tmp_path, step: int = 4) -> Path:
    """A run's resumable state after `step` steps, as vit.train.state.save writes it."""
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    path = tmp_path / "run" / "state-0123456789ab.pt"
    state.save(path, step, state.Progress(), model, opt, None, loop.Config(), "0123456789ab", torch.device("cpu"))
    return path


def _resume(path: Path):
    model = torch.nn.Linear(3, 2)
    return state.resume(path, model, torch.optim.SGD(model.parameters(), lr=0.1), None,
                        path.with_name("metrics.jsonl"), main=True)


def _metrics(path: Path, steps: int = 4) -> None:
    log = MetricWriter(path)
    for step in range(1, steps + 1):
        log.write(step=step, split="train", loss=1.0 / step, loss_ema=1.0 / step, lr=0.1)
    log.close()


def _summary(run_dir: Path) -> dict:
    """Enough of vit.train's summary.json for the readers' first look."""
    return {"model": "vit", "upstream": "digits", "config": {"out": str(run_dir), "threads": 1, "batch_size": 16,
            "test_split": "test", "img_size": 32, "seed": 0}, "eval": {}, "steps": 4, "images_seen": 64,
            "train_time_s": 1.0, "config_hash": "0123456789ab", "env": {}, "history": []}


def _json(path: Path, obj) -> Path:
    write_json(path, obj)
    return path


def _finetune_grid(tmp_path, digits_dir, **kw) -> finetune.Config:
    return finetune.Config(model="vit", model_args=TINY_VIT, upstream="scratch", tasks=[digits_dir.name],
                           resolutions=[32], seeds=[0], data_root=str(digits_dir.parent),
                           out=str(tmp_path / "results" / "finetune" / "vit" / "scratch"), **kw)


def _benchmark(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("s\th:m:s\tmax_rss\tcpu_time\n12.31\t0:00:12\t1514.29\t11.57\n")
    return path


def _parquet(path: Path) -> Path:
    write_parquet(path, pd.DataFrame({"model": ["vit"], "top1": [50.0]}))
    return path


def _npz(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, images=np.zeros((2, 8, 8, 3), np.uint8), rollout=np.ones((2, 8, 8)), labels=np.arange(2))
    return path


def _copy(src, dst: Path) -> Path:
    dst.write_bytes(Path(src).read_bytes())
    return dst


# Each case: (make the valid file -> its path, read it as the stage does, what the fix must say).
# The fix's text is checked with the path where it names one ({path}, {parent}: formatted per case).
CASES = {
    "manifest": (lambda t, d: _manifest(d, t), lambda p, t, d: data.read_manifest(p.parent),
                 ["delete {parent} and run `snakemake --cores all`", "prepare rule"]),
    "manifest_load_split": (lambda t, d: _manifest(d, t), lambda p, t, d: data.load_split(p.parent, "train"),
                            ["delete {parent}", "prepare rule"]),
    "checkpoint_fewshot": (lambda t, d: _checkpoint(t), lambda p, t, d: fewshot.load_model(str(p)),
                           ["delete {path} and run `snakemake --cores all`", "pretrain rule"]),
    "checkpoint_inspect": (lambda t, d: _checkpoint(t), lambda p, t, d: inspect.load_vit(str(p)), ["pretrain rule"]),
    "checkpoint_classify": (lambda t, d: _checkpoint(t),
                            lambda p, t, d: classify.score_checkpoint(classify.Config(checkpoint=str(p), data=str(d))),
                            ["pretrain rule"]),
    "checkpoint_teacher": (lambda t, d: _checkpoint(t), lambda p, t, d: pseudo_label.load_teacher(str(p), 10, str(d)),
                           ["pretrain rule"]),
    "checkpoint_finetune": (lambda t, d: _checkpoint(t),
                            lambda p, t, d: finetune.finetune(_finetune_grid(t, d, init=str(p)), loop.Config()),
                            ["pretrain rule"]),
    "checkpoint_cost_mmap": (lambda t, d: _checkpoint(t), lambda p, t, d: models.load_checkpoint(str(p), mmap=True),
                             ["pretrain rule"]),
    "state": (lambda t, d: _state(t), lambda p, t, d: _resume(p), ["delete it to restart this run from step 0"]),
    "runs_json": (lambda t, d: _json(t / "results" / "finetune" / "vit" / "digits" / "runs.json", [_summary(t)]),
                  lambda p, t, d: collect.run_rows([str(p)]), ["delete {path}", "finetune rule"]),
    "runs_json_account": (lambda t, d: _json(t / "results" / "finetune" / "vit" / "digits" / "runs.json", [_summary(t)]),
                          lambda p, t, d: compute.account(compute.Config(out=str(t / "c.parquet"), inputs=[str(p)])),
                          ["finetune rule"]),
    "finetune_run_summary": (
        lambda t, d: _json(t / "results" / "finetune" / "vit" / "scratch" / "digits" / "r32_s0" / "summary.json",
                           _summary(t)),
        lambda p, t, d: finetune.finetune(_finetune_grid(t, d), loop.Config()),
        ["delete {parent} and run `snakemake --cores all`", "finetune rule"]),
    "pretrain_summary_report": (
        lambda t, d: _json(t / "results" / "pretrain" / "vit" / "digits" / "summary.json", _summary(t)),
        lambda p, t, d: summary.pretrain_table([str(p)], None), ["delete {path}", "pretrain rule"]),
    "released_summary_account": (
        lambda t, d: _json(t / "results" / "released" / "vit" / "i21k" / "summary.json", _summary(t)),
        lambda p, t, d: compute.account(compute.Config(out=str(t / "c.parquet"), inputs=[str(p)])),
        ["import_weights rule"]),
    "settings_file": (lambda t, d: _json(t / "results" / "vtab" / "vit" / "selected.json", {"settings": {"lr": 0.1}}),
                      lambda p, t, d: finetune.finetune(_finetune_grid(t, d, settings_file=str(p)), loop.Config()),
                      ["delete {path}", "vtab_select rule"]),
    "peak_json": (lambda t, d: _json(t / "results" / "compute" / "peak.json", {"cpu_fp32_gflops": {"1": 50.0}}),
                  lambda p, t, d: compute.account(compute.Config(out=str(t / "c.parquet"), peak=str(p))),
                  ["peak rule"]),
    "benchmark_tsv": (lambda t, d: _benchmark(t / "results" / "benchmarks" / "pretrain" / "vit-digits.tsv"),
                      lambda p, t, d: compute.account(compute.Config(out=str(t / "c.parquet"), inputs=[str(p)])),
                      ["delete it", "reruns the pretrain job"]),
    "runs_parquet": (lambda t, d: _parquet(t / "results" / "eval" / "runs.parquet"),
                     lambda p, t, d: summary.summarize(summary.Config(runs=str(p), out=str(t / "s.parquet"),
                                                                      config=checks.read_config(REPO / "config.yaml"))),
                     ["delete {path}", "evaluate rule"]),
    "measured_parquet_cost": (lambda t, d: _parquet(t / "results" / "compute" / "compute.parquet"),
                              lambda p, t, d: cost.main(cost.Config(configfile=str(REPO / "config.yaml"), device="cpu",
                                                                    measured=str(p))),
                              ["account rule"]),
    "inspect_npz": (lambda t, d: _npz(t / "results" / "inspect" / "vit" / "digits" / "inspect.npz"),
                    lambda p, t, d: plots.rollout(p, t / "rollout.png"), ["delete {path}", "inspect rule"]),
    "inspect_json": (lambda t, d: _json(t / "results" / "inspect" / "vit" / "digits" / "inspect.json", {"a": 1}),
                     lambda p, t, d: results.load_inspect([str(p.with_name("inspect.npz"))], None), ["inspect rule"]),
    "reference_yaml": (lambda t, d: _copy(recipes.resources.files("vit").joinpath("reference.yaml"), t / "ref.yaml"),
                       lambda p, t, d: recipes.load_reference(str(p)), ["over it again"]),
    "config_yaml": (lambda t, d: _copy(REPO / "config.yaml", t / "config.yaml"),
                    lambda p, t, d: checks.read_config(str(p)), ["git checkout {path}"]),
    "real_labels": (lambda t, d: _json(t / "real.json", [[1], [2, 3], []]), lambda p, t, d: sources.real_labels(str(p)),
                    ["download real.json again"]),
}


@pytest.mark.parametrize("damage", DAMAGE)
@pytest.mark.parametrize("case", CASES)
def test_a_damaged_file_is_named_with_its_fix(case, damage, tmp_path, digits_dir):
    make, read, fixes = CASES[case]
    path = make(tmp_path, digits_dir)
    DAMAGE[damage](path)
    before = path.read_bytes()
    with pytest.raises(DataError) as err:
        read(path, tmp_path, digits_dir)
    message = str(err.value)
    assert message.startswith(f"{path}: damaged or truncated (") or message.startswith(f"{path}: damaged or not the")
    for fix in fixes:
        assert fix.format(path=path, parent=path.parent) in message
    assert "\n" not in message
    assert path.read_bytes() == before  # never deleted or rewritten by the reader (a damaged state least of all)


@pytest.mark.parametrize("case, content, says", [
    ("manifest", {"name": "digits"}, "not a prepared dataset's manifest"),
    ("runs_json", {"not": "a list"}, "holds a dict, expected a list"),
    ("settings_file", {"lr": 0.1}, "no 'settings'"),
    ("pretrain_summary_report", [1, 2], "holds a list, expected a dict"),
])
def test_a_file_of_the_wrong_shape_is_named(case, content, says, tmp_path, digits_dir):
    make, read, fixes = CASES[case]
    path = make(tmp_path, digits_dir)
    write_json(path, content)
    with pytest.raises(DataError, match=says) as err:
        read(path, tmp_path, digits_dir)
    assert str(err.value).startswith(str(path)) and fixes[-1] in str(err.value)


def test_another_torch_file_in_place_of_a_checkpoint_or_a_state_is_named(tmp_path):
    with pytest.raises(DataError, match=r"not a checkpoint of this project \(no model_args, num_classes, img_size\)"):
        models.load_checkpoint(str(_state(tmp_path)))
    wrong = tmp_path / "other" / "state-0123456789ab.pt"
    save_torch(wrong, {"model": {}})
    with pytest.raises(DataError, match="not a run's resumable state .*restart this run from step 0"):
        _resume(wrong)


def test_a_missing_file_is_named(tmp_path, digits_dir):
    with pytest.raises(DataError, match=f"{tmp_path / 'results' / 'eval' / 'runs.json'}: missing; delete"):
        collect.run_rows([str(tmp_path / "results" / "eval" / "runs.json")])


def test_a_reference_cut_at_a_line_boundary_still_parses_but_is_refused(tmp_path):
    text = recipes.resources.files("vit").joinpath("reference.yaml").read_text()
    cut = tmp_path / "reference.yaml"
    cut.write_text(text[:text.index("\nfewshot:") + 1])
    with pytest.raises(DataError, match=rf"{cut}: .*no 'fewshot', 'compute', .*'discrepancies'"):
        recipes.load_reference(str(cut))


def test_the_shipped_reference_and_schema_read_and_say_how_to_restore_them(tmp_path, monkeypatch):
    assert set(recipes.load_reference()) == set(recipes.REFERENCE_SECTIONS)
    assert checks.schema()["type"] == "object"
    garbage(_copy(recipes.resources.files("vit").joinpath("reference.yaml"), tmp_path / "reference.yaml"))
    monkeypatch.setattr(recipes.resources, "files", lambda package: tmp_path)
    with pytest.raises(DataError, match=r"restore it with `git checkout vit/reference.yaml`"):
        recipes.load_reference()


def test_metrics_cut_in_its_last_line_resumes_without_that_line(tmp_path):
    path = _state(tmp_path, step=4)
    metrics = path.with_name("metrics.jsonl")
    _metrics(metrics, steps=4)
    whole = metrics.read_text()
    metrics.write_text(whole[:whole.rindex("\n", 0, len(whole) - 1) + 12])  # kill -9 in the middle of line 4
    progress = _resume(path)
    assert [h["step"] for h in progress.history] == [1, 2, 3] and progress.start == 4
    assert metrics.read_text() == whole[:whole.rindex("\n", 0, len(whole) - 1) + 1]  # the 3 whole lines
    assert path.exists()


def test_metrics_damaged_before_its_last_line_is_named(tmp_path):
    path = _state(tmp_path, step=4)
    metrics = path.with_name("metrics.jsonl")
    _metrics(metrics, steps=4)
    lines = metrics.read_text().splitlines(keepends=True)
    metrics.write_text("".join(lines[:1] + [lines[1][:10] + "\n"] + lines[2:]))
    with pytest.raises(DataError, match=rf"{metrics}, line 2: damaged or truncated .*delete it and {path.name} "
                                        rf"beside it to restart this run from step 0"):
        _resume(path)


def test_the_cli_reports_a_truncated_manifest_in_one_line_and_exit_status_2(tmp_path, digits_dir):
    manifest = _manifest(digits_dir, tmp_path)
    truncate(manifest)
    proc = subprocess.run([sys.executable, "-m", "vit.train", f"--data={manifest.parent}", f"--out={tmp_path / 'run'}",
                           "--threads=1"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert f"error: {manifest}: damaged or truncated" in proc.stderr and "Traceback" not in proc.stderr


def test_snakemake_names_a_damaged_config_yaml(tmp_path):
    """Snakemake's own message names neither the file nor the reason: the Snakefile reads it first."""
    config = _copy(REPO / "config.yaml", tmp_path / "config.yaml")
    truncate(config)
    proc = subprocess.run([str(Path(sys.executable).with_name("snakemake")), "-n", "--cores", "1", "--snakefile",
                           str(REPO / "workflow" / "Snakefile"), "--directory", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    said = proc.stdout + proc.stderr  # Snakemake logs its errors to either, by version
    assert proc.returncode != 0
    assert "config.yaml: damaged or truncated (" in said and "restore it with `git checkout config.yaml`" in said, said
