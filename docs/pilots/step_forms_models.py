"""Pilot (issue 27): the four step forms (fp32 / bf16 autocast x explicit / SDPA attention) of the default's
models at their pre-training shape (batch 128, 32 px) and the main pair at the fine-tuning shape (batch 32,
48 px), 1 thread, AdamW, alternating, median of 5 rounds of 5 steps. The measurements behind
vit.train.forms' rule (docs/cpu_performance.md#the-steps-form). Run from the repository root:

    .venv/bin/python docs/pilots/step_forms_models.py vit,vit_s,bit,bit_s 128 32
    .venv/bin/python docs/pilots/step_forms_models.py vit,bit 32 48

2026-12-07, 2-core AMD EPYC VM with avx512_bf16 (img/s):
    vit   128 32 {'fp32/explicit': 408, 'fp32/sdpa': 410, 'bf16/explicit': 772, 'bf16/sdpa': 363}
    vit_s 128 32 {'fp32/explicit': 946, 'fp32/sdpa': 1007, 'bf16/explicit': 1516, 'bf16/sdpa': 480}
    bit   128 32 {'fp32/conv': 802, 'bf16/conv': 534}
    bit_s 128 32 {'fp32/conv': 1894, 'bf16/conv': 1081}
    vit   32 48  {'fp32/explicit': 136, 'fp32/sdpa': 155, 'bf16/explicit': 262, 'bf16/sdpa': 132}
    bit   32 48  {'fp32/conv': 351, 'bf16/conv': 225}
"""
import statistics
import sys
import time

import torch
import torch.nn.functional as F
import yaml

from vit import models

torch.set_num_threads(1)
cfg = yaml.safe_load(open("config.yaml"))


def make(spec, bf16, fused, batch, size):
    torch.manual_seed(0)
    m = models.create(spec, 24, size)
    conv = models.is_convnet(m)
    for mod in m.modules():
        if hasattr(mod, "fused_attn"):
            mod.fused_attn = fused
    if conv:
        m = m.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
    x, y = torch.randn(batch, 3, size, size), torch.randint(0, 24, (batch,))
    if conv:
        x = x.contiguous(memory_format=torch.channels_last)

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(m(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    step()
    step()
    return step


for name in sys.argv[1].split(","):
    batch, size = int(sys.argv[2]), int(sys.argv[3])
    spec = {k: v for k, v in cfg["models"][name].items() if k not in ("label", "paper_row")}
    attentions = ["conv"] if spec["arch"] != "vit" else ["explicit", "sdpa"]
    forms = {f"{p}/{a}": (p == "bf16", a == "sdpa") for p in ("fp32", "bf16") for a in attentions}
    steps = {k: make(spec, *v, batch, size) for k, v in forms.items()}
    res = {k: [] for k in forms}
    for r in range(5):
        for k, f in steps.items():
            t = time.perf_counter()
            for _ in range(5):
                f()
            res[k].append(batch * 5 / (time.perf_counter() - t))
    print(name, batch, size, {k: round(statistics.median(v)) for k, v in res.items()}, flush=True)
