# Fine-tuning learning-rate pilot (issue 16; results: docs/pilots/finetune_lr_results.jsonl, docs/design.md).
# One pre-trained checkpoint per family, fine-tuned on each task's train split (800 images) and scored on its
# val split (200), seed 0, 40 SGD steps of batch 32, at 32 and 48 px, for each learning rate.
# Run from the repository root:
#   bash docs/pilots/finetune_lr.sh CHECKPOINT MODEL DATA_ROOT OUT
# DATA_ROOT holds flowers, landcover, dsprites_location and clevr_count prepared at 64 px
# (python -m vit.data.prepare --name=flowers --source=flowers --group=natural --size=64 --train=800 --val=200
#  --test=1000 --seed=5 --out=DATA_ROOT/flowers; the other tasks alike, with config.yaml's seeds).
# The checkpoints (48k images seen on Contours-16k, docs/pilots/contours_set.py):
#   python -m vit.train --data=DATA/g1_16k --out=OUT/vit_l '--model_args={"arch": "vit", "patch_size": 4,
#     "embed_dim": 64, "depth": 6, "num_heads": 2}' --img_size=32 --steps=375 --batch_size=128 --optimizer=adam
#     --lr=1e-3 --weight_decay=0.05 --warmup_steps=50 --schedule=linear --grad_clip=1.0 --augment=inception_crop
#     --val_split=val --eval_every=75 --keep_best=true --threads=1 --ckpt_every=0 --seed=0
#   (BiT: '--model_args={"arch": "bit", "layers": [1,1,1,1], "channels": [64,128,256,512], "groups": 16,
#     "stem": "cifar", "stem_stride": 2}' and --lr=1e-2)
set -euo pipefail
CK=$1; M=$2; DATA=$3; OUT=$4
for lr in 0.01 0.03 0.1; do
  OMP_NUM_THREADS=1 .venv/bin/python -m vit.train.finetune --init="$CK" --model="$M" --upstream=g1_16k \
    "--tasks=['flowers', 'landcover', 'dsprites_location', 'clevr_count']" --resolutions=[32,48] --seeds=[0] \
    --data_root="$DATA" --out="$OUT/$M/lr$lr" --steps=40 --batch_size=32 --lr=$lr --optimizer=sgd \
    --momentum=0.9 --weight_decay=0.0 --warmup_steps=4 --schedule=cosine --grad_clip=1.0 --train_split=train \
    --test_split=val --save_checkpoint=false --ckpt_every=0 --threads=1 \
    "--per_task={'flowers': {'augment': 'inception_crop'}, 'landcover': {'augment': 'inception_crop'}, 'clevr_count': {'augment': 'none'}}"
done
