"""Give a job its own GPUs on a workstation, then start it.

    python -m vit.train.gpus --count=2 -- torchrun --standalone --nproc_per_node=2 -m vit.train ...

`snakemake --cores all --resources gpu=N` runs GPU jobs side by side but only counts GPUs; it does not
say which device a job may use, so every job would start on GPU 0. The workflow's `launch` prefix
runs GPU jobs through this wrapper: it takes `count` free devices, sets CUDA_VISIBLE_DEVICES to them
and replaces itself with the command (exec), which keeps the devices for its whole life.

A device is taken by holding an exclusive `flock` on `<lock_dir>/gpu<i>.lock`. The lock belongs to
the open file, which the command inherits through exec, so it is released by the kernel when the job
ends, however it ends (also SIGKILL): no stale claims. Devices are those in CUDA_VISIBLE_DEVICES when
it is set (a SLURM allocation), else 0..n-1 with n from `--devices`, the VIT_GPUS environment
variable (tests simulate a machine with it), or nvidia-smi. The lock folder is per machine and user
(`/tmp/vit-gpus-<uid>`), so two Snakemake runs on one workstation do not share a device either.
"""
from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from vit import cli
from vit.errors import ConfigError


@dataclass
class Config:
    count: int = 1          # devices this job needs (Snakemake's resources.gpu)
    devices: str = ""       # the machine's devices, "0,1,2,3" ("" = CUDA_VISIBLE_DEVICES, VIT_GPUS, nvidia-smi)
    lock_dir: str = ""      # "" = VIT_GPU_LOCK_DIR or /tmp/vit-gpus-<uid>
    wait_s: float = 3600.0  # how long to wait for free devices before giving up


def machine_devices(given: str = "") -> list[str]:
    """The device ids this process may hand out (see the module doc)."""
    if given:
        return [d.strip() for d in given.split(",") if d.strip()]
    if os.environ.get("CUDA_VISIBLE_DEVICES", "").strip():
        return [d.strip() for d in os.environ["CUDA_VISIBLE_DEVICES"].split(",") if d.strip()]
    if os.environ.get("VIT_GPUS"):
        return [str(i) for i in range(int(os.environ["VIT_GPUS"]))]
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [str(i) for i, line in enumerate(out.splitlines()) if line.startswith("GPU ")]


def acquire(count: int, devices: list[str], lock_dir: Path, wait_s: float = 0.0) -> tuple[list[str], list[int]]:
    """Take `count` free devices: (their ids, the open lock files, which hold them until closed)."""
    if count > len(devices):
        raise ConfigError(f"a job needs {count} GPU(s) but this machine has {len(devices)} "
                              f"({', '.join(devices) or 'none found'}); lower the rule's gpu resource")
    lock_dir.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + wait_s
    while True:
        taken, fds = [], []
        for dev in devices:
            fd = os.open(lock_dir / f"gpu{dev}.lock", os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            taken.append(dev)
            fds.append(fd)
            if len(taken) == count:
                return taken, fds
        for fd in fds:  # not enough free now: give back what we took, so that no two jobs deadlock
            os.close(fd)
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{count} free GPU(s) of {', '.join(devices)} not available within {wait_s:.0f} s "
                               f"(locks in {lock_dir}); another job or user holds them")
        time.sleep(0.5)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if any(a in cli.HELP for a in (argv[:argv.index("--")] if "--" in argv else argv)):
        print(cli.usage(Config))
        raise SystemExit(0)
    if "--" not in argv:
        print("usage: python -m vit.train.gpus --count=N -- <command ...>", file=sys.stderr)
        raise SystemExit(2)
    split = argv.index("--")
    try:
        cfg = cli.parse(Config, argv[:split])
        lock_dir = Path(cfg.lock_dir or os.environ.get("VIT_GPU_LOCK_DIR") or f"/tmp/vit-gpus-{os.getuid()}")
        taken, fds = acquire(cfg.count, machine_devices(cfg.devices), lock_dir, cfg.wait_s)
    except (ConfigError, TimeoutError) as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    for fd in fds:  # the command inherits the locks: they last as long as it runs
        os.set_inheritable(fd, True)
    os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(taken)
    print(f"vit.train.gpus: CUDA_VISIBLE_DEVICES={os.environ['CUDA_VISIBLE_DEVICES']}", file=sys.stderr, flush=True)
    command = argv[split + 1:]
    os.execvp(command[0], command)


if __name__ == "__main__":
    main()
