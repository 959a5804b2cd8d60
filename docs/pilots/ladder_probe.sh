#!/usr/bin/env bash
# Pilot (issue 16): does a richer upstream label make the ladder's larger set transfer better? Prepares
# Contours-1k and -16k with generator knobs, pre-trains the default's main ViT on each exactly as the
# default does (438 steps of 128, inception crop, keep_best; 1 thread each, side by side), then probes
# the frozen features on the default's three tasks (few-shot ridge, vit.evaluate.fewshot). Needs the
# default's prepared downstream sets in results/data (make run, or snakemake results/data/<task>/manifest.json).
# An optional 4th argument multiplies the images seen (1: the default's 56k).
#   bash docs/pilots/ladder_probe.sh /tmp/p16 48 '{"palettes": 16}'
#   bash docs/pilots/ladder_probe.sh /tmp/long 24 '{}' 3
set -euo pipefail
out=$1 classes=$2 knobs=$3 times=${4:-1}
P=.venv/bin/python D=$out/data
$P docs/pilots/contours_set.py "$D/c${classes}_1k" 1000 "$classes" "$knobs" >/dev/null 2>&1 &
$P docs/pilots/contours_set.py "$D/c${classes}_16k" 16000 "$classes" "$knobs" >/dev/null 2>&1
wait
for s in 1k:56 16k:3.5; do n=${s%%:*} e=$(python3 -c "print(${s##*:} * $times)")
  $P -m vit.train --data="$D/c${classes}_$n" --out="$out/pre_$n" \
    --model_args='{"arch":"vit","depth":6,"embed_dim":64,"num_heads":2,"patch_size":4}' --img_size=32 --epochs="$e" \
    --batch_size=128 --optimizer=adam --lr=0.001 --weight_decay=0.05 --warmup_steps=100 --schedule=linear \
    --grad_clip=1.0 --augment=inception_crop --val_split=val --eval_every=125 --keep_best=true --threads=1 \
    --ckpt_every=0 --seed=0 > "$out/pre_$n.log" 2>&1 &
done
wait
for n in 1k 16k; do
  $P -m vit.evaluate.fewshot --checkpoint="$out/pre_$n/checkpoint.pt" \
    --data=results/data/flowers,results/data/landcover,results/data/dsprites_location --out="$out/fs_$n.json" > "$out/fs_$n.log" 2>&1
done
