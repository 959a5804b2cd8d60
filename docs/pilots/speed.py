"""Pilots (issue 16): training throughput of model specs on this machine, 1 thread, batch 128, 32 px, fp32,
the explicit attention form, AdamW; best of 4 timed steps after 2 warm-up steps. Run from the repository root:

    OMP_NUM_THREADS=1 .venv/bin/python docs/pilots/speed.py '{"vit64d6": {"arch": "vit", "patch_size": 4,
        "embed_dim": 64, "depth": 6, "num_heads": 2}}'
"""
import json
import sys
import time

import torch

from vit import models
from vit.train import fastest

torch.set_num_threads(1)
for name, spec in json.loads(sys.argv[1]).items():
    m = models.create(dict(spec), num_classes=24, img_size=32)
    fastest.apply(m, fastest.Form("fp32", "explicit"))
    opt = torch.optim.AdamW(m.parameters(), 1e-3)
    x, y = torch.randn(128, 3, 32, 32), torch.randint(0, 24, (128,))
    times = []
    for _ in range(6):
        t0 = time.perf_counter()
        torch.nn.functional.cross_entropy(m(x), y).backward()
        opt.step()
        opt.zero_grad()
        times.append(time.perf_counter() - t0)
    print(name, round(128 / min(times[2:])), "img/s", flush=True)
