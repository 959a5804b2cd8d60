"""Pilot (issue 15): one training step of a ViT at 32 px, batch 128, 1 thread, in fp32 and bf16 autocast, with
the explicit and the fused (SDPA) attention; alternating, median of 3 rounds of 8 steps. Also times a
2048^3 matmul in fp32 and bf16. Run from the repository root:

    .venv/bin/python docs/pilots/step_forms.py 8 128    # patch size, width
"""
import time, statistics, torch, torch.nn.functional as F, sys
from vit import models
torch.set_num_threads(1)
spec = {"arch": "vit", "patch_size": int(sys.argv[1]), "embed_dim": int(sys.argv[2]), "depth": 6, "num_heads": int(sys.argv[2]) // 32}
def make(bf16, fused_attn):
    torch.manual_seed(0)
    m = models.create(spec, 64, 32)
    for mod in m.modules():
        if hasattr(mod, "fused_attn"): mod.fused_attn = fused_attn
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3, fused=True)
    x = torch.randn(128, 3, 32, 32); y = torch.randint(0, 64, (128,))
    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(m(x), y)
        opt.zero_grad(); loss.backward(); opt.step()
        return loss.item()
    step(); step()
    return step
a = torch.randn(2048, 2048); b = torch.randn(2048, 2048)
for dt in (torch.float32, torch.bfloat16):
    A, B = a.to(dt), b.to(dt); A @ B
    t = time.perf_counter(); [A @ B for _ in range(5)]; print(dt, 2 * 2048**3 * 5 / (time.perf_counter() - t) / 1e9, "GFLOP/s")
variants = {"fp32_explicit": make(False, False), "fp32_sdpa": make(False, True), "bf16_explicit": make(True, False), "bf16_sdpa": make(True, True)}
res = {k: [] for k in variants}
for r in range(3):
    for k, f in variants.items():
        t = time.perf_counter()
        for _ in range(8): f()
        res[k].append(128 * 8 / (time.perf_counter() - t))
for k, v in res.items(): print(sys.argv[1:], k, round(statistics.median(v)), [round(x) for x in v])
