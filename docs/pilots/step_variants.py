"""Pilot (issue 15): step variants of one model against the plain timm step, 1 thread, batch 128, 32 px:
explicit attention, fused AdamW, torch.compile, channels_last; alternating, median of N rounds of 10 steps.

    .venv/bin/python docs/pilots/step_variants.py vit8_d128 plain,explicit,explicit_fused,explicit_fused_compile 3
"""
import sys, time, statistics, torch, torch.nn.functional as F
from vit import models
torch.set_num_threads(1)
SPECS = {
 "vit8_d128": {"arch": "vit", "patch_size": 8, "embed_dim": 128, "depth": 6, "num_heads": 4},
 "vit4_d128": {"arch": "vit", "patch_size": 4, "embed_dim": 128, "depth": 6, "num_heads": 4},
 "vit4_d64": {"arch": "vit", "patch_size": 4, "embed_dim": 64, "depth": 6, "num_heads": 2},
 "bit": {"arch": "bit", "layers": [1, 1, 1, 1], "channels": [64, 128, 256, 512], "groups": 16},
 "effnet": {"arch": "efficientnet", "variant": "tinynet_e"},
}
VARIANTS = sys.argv[2].split(",")
name = sys.argv[1]; spec = SPECS[name]
B, S = 128, 32
def make(variant):
    torch.manual_seed(0)
    m = models.create(spec, 64, S)
    conv = models.is_convnet(m)
    if "explicit" in variant or "ours" in variant:
        for mod in m.modules():
            if hasattr(mod, "fused_attn"): mod.fused_attn = False
    if conv and ("cl" in variant or "ours" in variant):
        m = m.to(memory_format=torch.channels_last)
    kw = {"fused": True} if "fused" in variant else ({"foreach": True} if "foreach" in variant else {})
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3, **kw)
    f = torch.compile(m) if "compile" in variant else m
    x = torch.randn(B, 3, S, S); y = torch.randint(0, 64, (B,))
    if conv and ("cl" in variant or "ours" in variant): x = x.contiguous(memory_format=torch.channels_last)
    def step():
        loss = F.cross_entropy(f(x), y); opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
    t = time.perf_counter(); step(); step(); print(variant, "warm", round(time.perf_counter() - t, 1), "s", flush=True)
    return step
if "denormal" in sys.argv[3:]: torch.set_flush_denormal(True)
steps = {v: make(v) for v in VARIANTS}
res = {v: [] for v in VARIANTS}
for r in range(int(sys.argv[3]) if len(sys.argv) > 3 and sys.argv[3].isdigit() else 3):
    for v, fn in steps.items():
        t = time.perf_counter()
        for _ in range(10): fn()
        res[v].append(B * 10 / (time.perf_counter() - t))
base = statistics.median(res[VARIANTS[0]])
for v in VARIANTS:
    print(f"{name:10s} {v:28s} {statistics.median(res[v]):7.0f} img/s  x{statistics.median(res[v]) / base:.2f}  {[round(a) for a in res[v]]}")
