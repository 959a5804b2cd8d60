"""The fastest form of a training step on this machine, chosen per shape by timing it (what
cudnn.benchmark does for convolutions), among forms that compute the same model:

  precision  fp32, or bf16 autocast (matmuls and convolutions in bf16; weights, gradients and optimiser
             state stay fp32, as on GPUs; evaluation runs in the step's precision). Tried on a CPU only
             where it multiplies bf16 matrices at least FAST_BF16 times faster than fp32 (AMX units);
             elsewhere bf16 is hundreds of times slower (docs/cpu_performance.md). On CUDA always bf16.
  attention  PyTorch's fused scaled_dot_product_attention, or the explicit matmul-softmax-matmul form,
             which is faster on some CPUs for short sequences and slower on others; on CUDA always fused.

`auto` (the default of both --precision and --attention) times forward + backward passes of each
candidate on a copy of the model at the run's micro-batch, with the random stream restored, and keeps the
fastest (in the order fp32 before bf16, explicit before fused, a later one only if clearly faster); a
process keeps its choice per shape (vit.train.finetune trains a grid in one process), the resumable state
keeps the run's, and under torchrun rank 0's choice is every rank's. The forms differ in rounding only;
give both settings explicitly where bit-identical runs on different machines or splits matter.
"""
from __future__ import annotations

import contextlib
import copy
import json
import time
from dataclasses import asdict, dataclass, field

import torch

FAST_BF16 = 1.5       # bf16 autocast is tried where bf16 matmuls are at least this much faster than fp32
TIMED_ROUNDS = 3      # timed forward + backward passes per candidate (after one untimed), best taken
MARGIN = 0.9          # a later candidate replaces an earlier one only when at least 10 % faster: a neighbour job
                      # on the other core makes single timings noisy (a BiT run took bf16 at 0.65x fp32's speed)


@dataclass(frozen=True)
class Form:
    precision: str  # fp32 | bf16
    attention: str  # explicit | sdpa | "" (no attention layers: a convnet)


def autocast(dev: torch.device, form: Form):
    """The step's autocast context for `form`."""
    if form.precision == "bf16":
        return torch.autocast(dev.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def apply(model: torch.nn.Module, form: Form) -> None:
    """Set the attention form on every timm attention layer of `model` (timm reads `fused_attn` per call)."""
    for m in model.modules():
        if hasattr(m, "fused_attn"):
            m.fused_attn = form.attention == "sdpa"


def has_attention(model: torch.nn.Module) -> bool:
    return any(hasattr(m, "fused_attn") for m in model.modules())


def bf16_speedup(dev: torch.device) -> float:
    """bf16 over fp32 matmul speed at a ViT-like shape (small, so that a CPU without bf16 units answers in
    a fraction of a second)."""
    rates = {}
    for dtype in (torch.float32, torch.bfloat16):
        # ones, not random draws: the run's random stream (dropout) must not depend on what was measured
        a, b = torch.ones(1024, 128, dtype=dtype, device=dev), torch.ones(128, 512, dtype=dtype, device=dev)
        a @ b
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            a @ b
            best = min(best, time.perf_counter() - t0)
        rates[dtype] = 1 / best
    return rates[torch.bfloat16] / rates[torch.float32]


@dataclass
class Chooser:
    """A process's choices: per shape key, the form and its timings; the bf16 speed-up, measured once."""
    choices: dict = field(default_factory=dict)
    speedup: float | None = None

    def candidates(self, model: torch.nn.Module, dev: torch.device, precision: str, attention: str) -> list[Form]:
        if dev.type == "cuda":  # bf16 tensor cores and flash attention: no contest
            precisions, attentions = ["bf16" if precision == "auto" else precision], [
                "sdpa" if attention == "auto" else attention]
        else:
            if precision == "auto" and self.speedup is None:
                self.speedup = bf16_speedup(dev)
            precisions = ((["fp32", "bf16"] if self.speedup >= FAST_BF16 else ["fp32"]) if precision == "auto"
                          else [precision])
            attentions = ["explicit", "sdpa"] if attention == "auto" else [attention]
        if not has_attention(model):
            attentions = [""]
        return [Form(p, a) for p in precisions for a in attentions]

    def choose(self, module: torch.nn.Module, loss, x_shape: tuple, num_classes: int, dev: torch.device,
               precision: str, attention: str, key: dict) -> tuple[Form, dict]:
        """The fastest candidate form for a step of `module` (what the optimiser trains) on inputs of
        `x_shape`, `loss(module, x, y)` its training loss; and each candidate's seconds (empty when there
        was one candidate)."""
        cands = self.candidates(module, dev, precision, attention)
        name = json.dumps({**key, "x": list(x_shape), "candidates": [asdict(c) for c in cands]}, sort_keys=True)
        if name not in self.choices:
            self.choices[name] = (cands[0], {}) if len(cands) == 1 else _time(module, loss, x_shape, num_classes,
                                                                               dev, cands)
        return self.choices[name]


def _time(module, loss, x_shape, num_classes, dev, cands) -> tuple[Form, dict]:
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):  # the run's random stream untouched
        probe = copy.deepcopy(module).train()
        memory_format = torch.channels_last if not has_attention(probe) else torch.contiguous_format
        x = torch.randn(x_shape, device=dev).contiguous(memory_format=memory_format)
        y = torch.randint(0, num_classes, (x_shape[0],), device=dev)
        best = {c: float("inf") for c in cands}
        for r in range(1 + TIMED_ROUNDS):  # round 0 warms each form up (allocation, kernel selection)
            for c in cands:
                apply(probe, c)
                t0 = time.perf_counter()
                with autocast(dev, c):
                    value = loss(probe, x, y)
                value.backward()
                probe.zero_grad(set_to_none=True)
                if r:
                    best[c] = min(best[c], time.perf_counter() - t0)
    del probe
    return pick(cands, best), {f"{c.precision}/{c.attention or 'conv'}": best[c] for c in cands}


def pick(cands: list[Form], seconds: dict) -> Form:
    """The fastest of `cands` in order, each later one taking over only when at least 1 - MARGIN faster."""
    form = cands[0]
    for c in cands[1:]:
        if seconds[c] < MARGIN * seconds[form]:
            form = c
    return form
