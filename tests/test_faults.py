"""The faults a job meets on shared machines, injected the way the world does: real signals to real
processes, a learning rate that really diverges, real damaged files, and a real kill -9. Each test names
what it guards; the README's "Reliability" section says what each fault does and how to recover.
Damaged metadata files of every kind the pipeline reads: tests/test_readers.py. The SLURM time limit:
tests/test_train.py and tests/test_distributed.py. A killed Snakemake job: tests/test_workflow.py."""
from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from conftest import FORM_ARGS, TINY_VIT
from vit import cli
from vit.train import loop as train

# Long enough to be signalled mid-way (a few seconds), tiny enough to be cheap; the step form fixed so
# that runs compare bit for bit
RUN = ["--steps=400", "--batch_size=16", "--lr=0.05", "--optimizer=adam", "--augment=crop_flip", "--img_size=16",
       "--threads=1", "--log_every=1", "--val_split=val", "--test_split=test", "--eval_every=100", "--model=vit",
       f"--model_args={cli.literal(TINY_VIT)}", *FORM_ARGS]
NOT_REPRODUCIBLE = {"time", "img_per_s"}  # wall-clock records in metrics.jsonl


def _train_cmd(data, out, *extra):
    return [sys.executable, "-m", "vit.train", f"--data={data}", f"--out={out}", *RUN, *extra]


def _steps_logged(metrics) -> int:
    return metrics.read_text().count('"split": "train"') if metrics.exists() else 0


def _wait(proc, ready, what: str, timeout: float = 120) -> None:
    """Poll until `ready()` while the process runs; fail if it ended first (too fast to be interrupted)."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if ready():
            return
        time.sleep(0.005)
    proc.kill()
    raise AssertionError(f"the process did not reach {what} (exit status {proc.poll()})")


def _curve(run_dir) -> list[dict]:
    return [{k: v for k, v in json.loads(ln).items() if k not in NOT_REPRODUCIBLE}
            for ln in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _weights(run_dir):
    return torch.load(run_dir / "checkpoint.pt", weights_only=False)["model"]


@pytest.fixture(scope="module")
def unbroken(digits_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("unbroken")
    summary = train.train(cli.parse(train.Config, RUN + [f"--data={digits_dir}", f"--out={out}", "--ckpt_every=0"]))
    return out, summary


# ----------------------------------------------------------------------------- signals
def _signalled(cmd, out, sig, after: int) -> int:
    """Run `cmd`, send `sig` once it has logged `after` steps; the step its saved state is at."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _wait(proc, lambda: _steps_logged(out / "metrics.jsonl") >= after, f"step {after}")
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 75, err[-2000:]
    stopped_at = torch.load(next(out.glob("state-*.pt")), weights_only=False)["step"]
    assert f"stopped before step {stopped_at + 1}/400, on {signal.Signals(sig).name}" in err
    assert "the next attempt resumes" in err and not (out / "summary.json").exists()
    assert not (out / "checkpoint.pt").exists()
    return stopped_at


@pytest.mark.slow
def test_signals_save_the_state_and_the_reruns_end_as_an_unbroken_run(digits_dir, tmp_path, unbroken):
    """SLURM's SIGTERM (preemption, scancel, requeue), then its advance SIGUSR1, then Ctrl-C's SIGINT, to
    the same run with no periodic saves (ckpt_every 0, as every fine-tune): each time the run saves its
    state at the next step boundary and exits 75; the last rerun ends with the unbroken run's weights,
    scores and logged curve, bit for bit."""
    out = tmp_path / "signalled"
    cmd = _train_cmd(digits_dir, out, "--ckpt_every=0")
    at = 0
    for sig in (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT):
        stopped_at = _signalled(cmd, out, sig, after=at + 20)
        assert at + 20 <= stopped_at < 400
        at = stopped_at
    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0 and "resuming" in rerun.stdout, rerun.stderr[-2000:]
    whole, summary = unbroken
    a, b = (json.loads((d / "summary.json").read_text()) for d in (out, whole))
    assert a["eval"] == b["eval"] and a["final_train_loss"] == b["final_train_loss"]
    wa, wb = _weights(out), _weights(whole)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert _curve(out) == _curve(whole)
    assert not list(out.glob("state-*.pt"))


@pytest.mark.form_dependent
@pytest.mark.slow
def test_sigterm_under_torchrun_stops_every_rank_at_one_step_and_resumes(digits_dir, tmp_path):
    """Rank 0 decides every stop for all processes (a broadcast; the time limit takes the same path,
    tests/test_train.py): SIGTERM, which torchrun's agent passes on to its workers, stops both ranks before
    the same step, rank 0 saves the state, and the relaunch ends as the unbroken run of the same split did,
    bit for bit in every step form (a single process's run agrees to rounding only, which 300 steps of
    bf16 amplify: tests/test_distributed.py compares those over 3 steps)."""
    from test_distributed import ARGS

    args = ARGS + ["--steps=300", f"--data={digits_dir}"]

    def cmd(out):
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "vit.train",
                *args, f"--out={out}", "--accum_steps=2"]
    whole = subprocess.Popen(cmd(tmp_path / "whole"), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    out = tmp_path / "two"
    proc = subprocess.Popen(cmd(out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _wait(proc, lambda: _steps_logged(out / "metrics.jsonl") >= 10, "step 10")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    # each rank that reports (the agent may stop rank 1 once rank 0 has exited) reports the same step
    stops = re.findall(r"stopped before step (\d+)/300, on SIGTERM", err)
    assert proc.returncode != 0 and len(set(stops)) == 1, err[-3000:]
    assert not (out / "summary.json").exists()
    assert 10 <= torch.load(next(out.glob("state-*.pt")), weights_only=False)["step"] < 300
    rerun = subprocess.run(cmd(out), capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    _, err = whole.communicate(timeout=300)
    assert whole.returncode == 0, err[-3000:]
    a, b = _weights(tmp_path / "whole"), _weights(out)
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_sigterm_stops_a_preparation_between_chunks_and_the_rerun_finishes_it(tmp_path):
    """A preparation signalled mid-split keeps every chunk it marked done, whole, and nothing else: the
    rerun decodes the rest, and the prepared set equals an unbroken preparation's byte for byte."""
    from PIL import Image

    from vit.data import prepare, read_manifest

    rng = np.random.default_rng(0)
    for i in range(800):  # photographs' size: decoding them is the slow part of a preparation
        folder = tmp_path / "src" / "tree" / "train" / f"class{i % 3}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (150, 200, 3), np.uint8)).save(folder / f"{i:05d}.jpg", quality=90)
    args = ["--name=tree", "--source=imagefolder", f"--data_root={tmp_path / 'src'}", "--task=tree", "--size=16",
            "--chunk=4", "--workers=2", "--group=natural"]
    out = tmp_path / "signalled"
    cmd = [sys.executable, "-m", "vit.data.prepare", *args, f"--out={out}"]
    done = tmp_path / "signalled.partial" / "train.done.npy"

    def some_done() -> bool:
        try:
            return done.exists() and np.load(done, mmap_mode="r").sum() >= 3
        except ValueError:  # the header is being written
            return False

    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _wait(proc, some_done, "3 chunks")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 75 and "stopped by SIGTERM" in err, err[-2000:]
    marked = np.load(done)
    assert 3 <= marked.sum() < len(marked) and not (out / "manifest.json").exists()
    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    prepare.prepare(cli.parse(prepare.Config, args + [f"--out={tmp_path / 'whole'}"]))
    assert read_manifest(out)["files"] == read_manifest(tmp_path / "whole")["files"]
    assert not done.parent.exists()


# ----------------------------------------------------------------------------- divergence
@pytest.mark.slow
def test_a_diverging_run_stops_at_the_step_and_its_retries_stop_at_once(digits_dir, tmp_path):
    """A learning rate that sends the loss to NaN: the run stops at that step, names the run, the step,
    the learning rate and the last finite loss, writes no summary or checkpoint, keeps its last state;
    Snakemake's retries of the same settings stop before training (the marker), a changed setting trains."""
    out = tmp_path / "run"
    # clipped, a step moves the weights by at most lr: only an absurd rate overflows them
    cmd = _train_cmd(digits_dir, out, "--optimizer=sgd", "--lr=1e30", "--warmup_steps=3", "--grad_clip=1",
                     "--ckpt_every=1")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == train.EXIT_DIVERGED, proc.stderr[-2000:]
    marker = json.loads(next(out.glob("diverged-*.json")).read_text())
    step = marker["step"]
    assert f"{out}: diverged at step {step}/400" in proc.stderr and "learning rate" in proc.stderr
    assert "last finite loss" in proc.stderr and isinstance(marker["last_finite_loss"], float)
    assert not (out / "summary.json").exists() and not (out / "checkpoint.pt").exists()
    assert torch.load(next(out.glob("state-*.pt")), weights_only=False)["step"] == step - 1  # the last finite step's
    t0 = time.time()
    retry = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert retry.returncode == train.EXIT_DIVERGED and "diverged before, at step" in retry.stderr
    assert "resuming" not in retry.stdout and time.time() - t0 < 60
    lines = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
    assert lines[-1]["split"] == "diverged" and lines[-1]["step"] == step


def test_a_diverging_run_under_bf16_autocast_stops_the_same_way(digits_dir, tmp_path):
    with pytest.raises(train.Diverged, match=r"diverged at step \d+/400: loss nan, learning rate"):
        train.train(cli.parse(train.Config, RUN + [f"--data={digits_dir}", f"--out={tmp_path}", "--optimizer=sgd",
                                                    "--lr=1e5", "--grad_clip=0", "--precision=bf16"]))
    assert not (tmp_path / "summary.json").exists() and list(tmp_path.glob("diverged-*.json"))


def test_a_nan_gradient_after_a_finite_loss_stops_the_run(digits_dir, tmp_path, monkeypatch):
    """The gradient norm is checked too: a NaN gradient (an overflow in backward) stops the run before
    the update reaches the weights."""
    real = torch.nn.utils.clip_grad_norm_
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", lambda params, max_norm: real(params, max_norm) * float("nan"))
    with pytest.raises(train.Diverged, match="diverged at step 1/400: loss .*, gradient norm nan"):
        train.train(cli.parse(train.Config, RUN + [f"--data={digits_dir}", f"--out={tmp_path}", "--grad_clip=1"]))
    assert not (tmp_path / "summary.json").exists()


@pytest.mark.slow
def test_a_diverging_run_under_torchrun_stops_every_rank(digits_dir, tmp_path):
    """All ranks stop at the same step (an all-reduce of the check), so none waits forever in a collective."""
    from test_distributed import ARGS

    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "vit.train",
           *ARGS, "--steps=50", "--lr=1e5", "--grad_clip=0", f"--data={digits_dir}", f"--out={tmp_path}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert proc.returncode != 0 and "diverged at step" in proc.stderr, proc.stderr[-3000:]
    assert not (tmp_path / "summary.json").exists() and list(tmp_path.glob("diverged-*.json"))


# ----------------------------------------------------------------------------- what was handled before
@pytest.mark.slow
def test_run_killed_with_sigkill_resumes_to_the_same_final_metrics(digits_dir, tmp_path, unbroken):
    """A real kill (SIGKILL, no chance to clean up) after the first saved state, then a rerun: the run
    continues from the state file and ends with the weights and metrics of an uninterrupted run."""
    killed = tmp_path / "killed"
    cmd = _train_cmd(digits_dir, killed, "--ckpt_every=20")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait(proc, lambda: bool(list(killed.glob("state-*.pt"))), "the first saved state")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL and not (killed / "summary.json").exists()
    assert 0 < torch.load(next(killed.glob("state-*.pt")), weights_only=False)["step"] < 400
    subprocess.run(cmd, check=True, capture_output=True, timeout=300)
    whole, _ = unbroken  # periodic saves change nothing of a run's result
    a, b = (json.loads((d / "summary.json").read_text()) for d in (killed, whole))
    assert a["eval"] == b["eval"] and a["final_train_loss"] == b["final_train_loss"]
    wa, wb = _weights(killed), _weights(whole)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not list(killed.glob("state-*.pt"))  # removed once the run finished


def test_corrupted_prepared_data_and_an_unknown_setting_stop_the_cli_with_one_line(digits_dir, tmp_path):
    """A flipped bit in a prepared array (a half-copied file) and a misspelt setting: exit status 2 and
    one line naming the file or the key, no traceback."""
    bad = tmp_path / "digits"
    shutil.copytree(digits_dir, bad)
    with open(bad / "train_images.npy", "r+b") as f:
        f.seek(-1, 2)
        last = f.read(1)
        f.seek(-1, 2)
        f.write(bytes([last[0] ^ 1]))
    proc = subprocess.run(_train_cmd(bad, tmp_path / "run"), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "train_images.npy" in proc.stderr and "SHA-256" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    proc = subprocess.run(_train_cmd(digits_dir, tmp_path / "run", "--learning_rate=0.1"), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 2 and "unknown setting --learning_rate" in proc.stderr and "--lr" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_damaged_staged_file_of_a_stopped_preparation_is_named(tmp_path):
    """A preparation stopped in a split (a signal already received: it stops before its first chunk) leaves
    its progress staged; a damaged progress file is named, with the fix, instead of a numpy traceback."""
    from PIL import Image

    from vit.data import prepare
    from vit.errors import DataError
    from vit.stops import Resumable, Signals

    for i in range(8):
        folder = tmp_path / "src" / "tree" / "train" / f"class{i % 2}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (20, 20), (30 * i, 0, 0)).save(folder / f"{i}.png")
    cfg = prepare.Config(name="tree", source="imagefolder", data_root=str(tmp_path / "src"), task="tree", size=8,
                         chunk=2, workers=1, out=str(tmp_path / "tree"))
    with pytest.raises(Resumable, match="4 of 4 chunks to decode"):
        prepare.prepare(cfg, Signals(received=signal.SIGTERM))
    done = tmp_path / "tree.partial" / "train.done.npy"
    done.write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(DataError, match=r"train\.done\.npy: damaged .* delete .*tree\.partial"):
        prepare.prepare(cfg)
    shutil.rmtree(tmp_path / "tree.partial")
    assert prepare.prepare(cfg)["splits"]["train"] == 8


@pytest.mark.form_dependent
@pytest.mark.slow
def test_a_signal_stops_a_fine_tuning_grid_and_the_rerun_finishes_it(digits_dir, tmp_path):
    """A fine-tuning grid (one process, many runs) signalled before its first step: the run in progress
    saves its state and the grid exits 75 without runs.json; the rerun resumes it and ends as an unbroken
    grid."""
    from vit.stops import Signals
    from vit.train import finetune

    grid = dict(model="vit", model_args=TINY_VIT, tasks=["digits"], resolutions=[16], seeds=[0, 1],
                data_root=str(digits_dir.parent))
    settings = cli.parse(train.Config, ["--steps=4", "--batch_size=16", "--optimizer=sgd", "--lr=0.1", "--threads=1",
                                        "--train_split=train", "--test_split=test", "--save_checkpoint=false",
                                        "--ckpt_every=0", *FORM_ARGS])
    out = tmp_path / "signalled"
    with pytest.raises(train.Resumable, match="stopped before step 1/4, on SIGTERM"):
        finetune.finetune(finetune.Config(out=str(out), **grid), settings,
                          train.Process(signals=Signals(received=signal.SIGTERM)))
    assert list((out / "digits" / "r16_s0").glob("state-*.pt")) and not (out / "runs.json").exists()
    resumed = finetune.finetune(finetune.Config(out=str(out), **grid), settings)
    whole = finetune.finetune(finetune.Config(out=str(tmp_path / "whole"), **grid), settings)
    assert [r["eval"] for r in resumed] == [r["eval"] for r in whole] and len(whole) == 2
