#!/usr/bin/env bash
# Pilot (issue 16): does a richer upstream label make the ladder's larger set transfer better? Prepares
# Contours-1k and -16k with generator knobs, pre-trains the default's main ViT on each exactly as the
# default does (438 steps of 128, inception crop, keep_best; 1 thread each, side by side), then probes
# the frozen features on the default's three tasks (few-shot ridge, vit.evaluate.fewshot) and fine-tunes
# each checkpoint on them with the default's recipe at 32 px (40 SGD steps, 3 seeds; the command is the
# one `snakemake -n -p` prints for the default's finetune rule). Needs the default's prepared downstream
# sets in results/data (make run, or snakemake results/data/<task>/manifest.json).
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
    --data=results/data/flowers,results/data/landcover,results/data/dsprites_location --out="$out/fs_$n.json" > "$out/fs_$n.log" 2>&1 &
  $P -m vit.train.finetune --model=vit --upstream="c${classes}_$n" --out="$out/ft_$n" --threads=1 \
    '--tasks=["flowers", "landcover", "dsprites_location"]' '--resolutions=[32]' '--seeds=[0, 1, 2]' \
    '--per_task={"flowers": {"augment": "inception_crop"}, "landcover": {"augment": "inception_crop"}}' \
    --init="$out/pre_$n/checkpoint.pt" --optimizer=sgd --lr=0.03 --momentum=0.9 --weight_decay=0.0 --steps=40 \
    --batch_size=32 --warmup_steps=4 --schedule=cosine --grad_clip=1.0 --train_split=train+val --test_split=test \
    --posemb_interp=bicubic --save_checkpoint=false --ckpt_every=0 > "$out/ft_$n.log" 2>&1
  wait
done
