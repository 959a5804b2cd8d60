"""The form of a training step: its precision and attention, by a fixed rule per device kind, never by timing.

  precision  fp32, or bf16 autocast (matmuls and convolutions in bf16; weights, gradients and optimiser
             state stay fp32, as on GPUs; evaluation runs in the step's precision)
  attention  explicit matmul-softmax-matmul, or PyTorch's fused scaled_dot_product_attention ("sdpa");
             "" for a model without attention layers (a convnet)

The rule (`rule`), from docs/cpu_performance.md#the-steps-form:
  CUDA                               bf16 + sdpa, every model (tensor cores, flash attention)
  CPU with bf16 units (AMX tiles or  bf16 + explicit for models with attention (1.9x fp32's step on an AMD EPYC
    AVX-512 BF16)                    with avx512_bf16, 1.75-2.1x with AMX); convnets fp32 (their bf16
                                     convolutions ran at 0.67x fp32's speed on the EPYC)
  other CPUs                         fp32 + explicit (bf16 matmuls are hundreds of times slower there; sdpa
                                     0.3-0.9x explicit on short sequences)

Why a rule and not the fastest by timing: a timed choice follows the noise of the moment and the jobs
beside it, so two runs of one config on one machine trained in different forms and differed by up to 2
points (issue 27). With a rule, the same commit and config give the same numbers on the same machine.

The form is chosen once per run; a resumed run keeps the form of its state, and under torchrun every rank
takes rank 0's. Precedence: the run's --precision / --attention when not `auto`, then the environment's
VIT_STEP_FORM (to reproduce here what a machine of another kind computes, and to test every form:
`VIT_STEP_FORM=fp32/explicit` is a CPU without bf16 units; `bf16`, `fp32`, `bf16/sdpa`, ... also work),
then the rule. Every run records its form (summary.json: precision, attention) and the report shows it.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch

from vit.errors import ConfigError

ENV = "VIT_STEP_FORM"
PRECISIONS = ("fp32", "bf16")
ATTENTIONS = ("explicit", "sdpa")


@dataclass(frozen=True)
class Form:
    precision: str  # fp32 | bf16
    attention: str  # explicit | sdpa | "" (no attention layers: a convnet)

    def __str__(self) -> str:
        return f"{self.precision}/{self.attention or 'conv'}"


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


def bf16_units() -> bool:
    """Whether this CPU multiplies bf16 in hardware: AMX tiles (Intel Sapphire Rapids on) or AVX-512 BF16
    (AMD Zen 4 on, Intel Cooper Lake). Read from the CPU's feature flags, so the answer never varies."""
    cpu = getattr(torch, "cpu", None)
    try:
        return bool(cpu._is_amx_tile_supported() or cpu._is_avx512_bf16_supported())
    except AttributeError:  # a torch without these probes: the kernel's flags say the same
        try:
            with open("/proc/cpuinfo") as f:
                flags = next((ln.split(":", 1)[1].split() for ln in f if ln.startswith("flags")), [])
        except OSError:
            return False
        return "amx_bf16" in flags or "avx512_bf16" in flags


def rule(dev: torch.device, attention_model: bool) -> Form:
    """The form a device of this kind trains in (module doc)."""
    if dev.type == "cuda":
        return Form("bf16", "sdpa" if attention_model else "")
    precision = "bf16" if attention_model and bf16_units() else "fp32"
    return Form(precision, "explicit" if attention_model else "")


def forced() -> tuple[str, str]:
    """The environment's VIT_STEP_FORM as (precision, attention), "" where it leaves a part to the rule."""
    value = os.environ.get(ENV, "").strip()
    if not value:
        return "", ""
    parts = value.split("/")
    precision = parts[0] if parts[0] in PRECISIONS else ""
    attention = parts[-1] if parts[-1] in ATTENTIONS else ""
    if len(parts) > 2 or (len(parts) == 2 and not (precision and attention)) or not (precision or attention):
        raise ConfigError(f"{ENV}={value!r}: expected a precision ({' | '.join(PRECISIONS)}), an attention form "
                          f"({' | '.join(ATTENTIONS)}) or both as precision/attention, e.g. fp32/explicit; "
                          f"unset it for this machine's rule (vit.train.forms)")
    return precision, attention


def choose(model: torch.nn.Module, dev: torch.device, precision: str = "auto", attention: str = "auto") -> Form:
    """The form of `model`'s steps on `dev`: the settings where they are not `auto`, else VIT_STEP_FORM's
    parts, else the rule."""
    if precision not in ("auto",) + PRECISIONS or attention not in ("auto",) + ATTENTIONS:
        raise ConfigError(f"--precision={precision!r} --attention={attention!r}: expected auto | "
                          f"{' | '.join(PRECISIONS)} and auto | {' | '.join(ATTENTIONS)}")
    attention_model = has_attention(model)
    base, env = rule(dev, attention_model), forced()
    precision = precision if precision != "auto" else env[0] or base.precision
    attention = attention if attention != "auto" else env[1] or base.attention
    return Form(precision, attention if attention_model else "")
