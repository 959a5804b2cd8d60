"""GPU slots on a workstation (vit.train.gpus), on CPU with a simulated device count: jobs get disjoint
devices, a device is free again when its job ends however it ends, and Snakemake with
`--resources gpu=N` runs GPU jobs side by side without sharing one."""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from conftest import REPO
from vit import cli
from vit.train import gpus


@pytest.mark.slow
def test_acquire_gives_disjoint_devices_and_frees_them_on_close(tmp_path):
    devices = gpus.machine_devices("0,1,2")
    a, fa = gpus.acquire(2, devices, tmp_path)
    b, fb = gpus.acquire(1, devices, tmp_path)
    assert a == ["0", "1"] and b == ["2"]
    with pytest.raises(TimeoutError, match="not available"):  # all taken: waits, then says so
        gpus.acquire(1, devices, tmp_path, wait_s=0.6)
    for fd in fa:
        os.close(fd)
    c, _ = gpus.acquire(2, devices, tmp_path)  # a partial grab is given back, so 2 fit again
    assert c == ["0", "1"]
    with pytest.raises(cli.ConfigError, match="needs 4 GPU"):
        gpus.acquire(4, devices, tmp_path)


def test_devices_come_from_the_allocation_or_the_machine(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,5")
    assert gpus.machine_devices() == ["2", "5"]  # a SLURM allocation: only its devices
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    monkeypatch.setenv("VIT_GPUS", "3")
    assert gpus.machine_devices() == ["0", "1", "2"]


def _wrapped(tmp_path, count, seconds):
    env = dict(os.environ, VIT_GPUS="4", VIT_GPU_LOCK_DIR=str(tmp_path / "locks"))
    code = f"import os, time; print(os.environ['CUDA_VISIBLE_DEVICES'], flush=True); time.sleep({seconds})"
    return subprocess.Popen([sys.executable, "-m", "vit.train.gpus", f"--count={count}", "--", sys.executable, "-c", code],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_the_command_holds_its_devices_until_it_ends_even_when_killed(tmp_path):
    first = _wrapped(tmp_path, 3, 30)
    assert first.stdout.readline().strip() == "0,1,2"
    second = _wrapped(tmp_path, 1, 0)
    assert second.communicate(timeout=60)[0].strip() == "3"
    first.send_signal(signal.SIGKILL)  # a killed job: the kernel drops its locks
    first.wait()
    third = _wrapped(tmp_path, 3, 0)
    assert third.communicate(timeout=60)[0].strip() == "0,1,2"


@pytest.mark.slow
def test_snakemake_resources_gpu_runs_jobs_side_by_side_on_their_own_devices(tmp_path):
    """Four 1-GPU jobs and one 2-GPU job through the workflow's launch prefix, 3 simulated GPUs:
    no two jobs that overlap in time share a device."""
    (tmp_path / "Snakefile").write_text(f'''
import sys
sys.path.insert(0, {str(REPO)!r})
rule all:
    input: expand("out/{{name}}.txt", name=["a", "b", "c", "d", "pair"])
rule job:
    output: "out/{{name}}.txt"
    resources: gpu=lambda w: 2 if w.name == "pair" else 1
    params: launch=lambda w, resources: f"{{sys.executable}} -m vit.train.gpus --count={{resources.gpu}} -- {{sys.executable}}"
    shell: "{{params.launch}} -c 'import os, time; t = time.time(); time.sleep(1.5); "
           "print(os.environ[\\"CUDA_VISIBLE_DEVICES\\"], t, time.time())' > {{output}}"
''')
    env = dict(os.environ, VIT_GPUS="3", VIT_GPU_LOCK_DIR=str(tmp_path / "locks"), PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "4", "--resources", "gpu=3", "-d",
                           str(tmp_path)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = []
    for f in (tmp_path / "out").glob("*.txt"):
        devs, start, end = f.read_text().split()
        runs.append((f.stem, set(devs.split(",")), float(start), float(end)))
    assert {n: len(d) for n, d, _, _ in runs} == {"a": 1, "b": 1, "c": 1, "d": 1, "pair": 2}
    overlapping = [(x, y) for i, x in enumerate(runs) for y in runs[i + 1:] if x[2] < y[3] and y[2] < x[3]]
    assert overlapping  # jobs did run side by side
    for x, y in overlapping:
        assert not x[1] & y[1], (x, y)
