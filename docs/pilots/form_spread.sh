#!/usr/bin/env bash
# Pilot (issue 27): how much the step form moves the default's main ViT and BiT, beside what another
# pre-training seed moves. Four arms of config.yaml's main pair (ViT-mini/4, BiT-mini) on the whole
# ladder (Contours-1k/4k/16k) and from scratch, each fine-tuned on the 3 tasks x 3 seeds:
#   rule   this machine's rule (vit.train.forms): `make run`'s results/ (on an AVX-512 BF16 CPU: ViT bf16, BiT fp32)
#   fp32   VIT_STEP_FORM=fp32: both families in fp32 (the ViT as a CPU without bf16 units trains it)
#   bf16   VIT_STEP_FORM=bf16: both in bf16 autocast (the BiT as the rule never trains it on a CPU)
#   seed1  the rule, pretrain.seed: 1 (every checkpoint drawn again; the fine-tuning seeds stay 0-2)
# Then: .venv/bin/python docs/pilots/form_spread.py results runs/form-fp32 runs/form-bf16 runs/pretrain-seed1
set -euo pipefail
cd "$(dirname "$0")/../.."
TARGETS=()
for m in vit bit; do
  for u in contours_s contours_m contours_l scratch; do TARGETS+=("results/finetune/$m/$u/runs.json"); done
done
arm() {  # arm <dir> [VAR=value ...] [-- config edit in python]
  local dir=$1 edit=$2; shift 2
  mkdir -p "$dir"
  .venv/bin/python -c "import yaml,sys; c=yaml.safe_load(open('config.yaml')); $edit; yaml.safe_dump(c, open('$dir/config.yaml','w'), sort_keys=False)"
  env "$@" .venv/bin/snakemake --cores all --directory "$dir" "${TARGETS[@]}" > "$dir/snakemake.log" 2>&1
}
arm runs/form-fp32 "pass" VIT_STEP_FORM=fp32
arm runs/form-bf16 "pass" VIT_STEP_FORM=bf16
arm runs/pretrain-seed1 "c['pretrain']['seed'] = 1" VIT_STEP_FORM=
