#!/usr/bin/env bash
# The main job on the embedded synthetic liver set: make data, split, train, score mIoU, predict one image.
# About 5 minutes on a 2-core CPU. Uses `python` from PATH (the README puts .venv/bin first).
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python}
DATA=datasets/SynthLiver
RUN=demo-$(date +%Y%m%d-%H%M%S)

$PY -m utils.synthetic --out "$DATA" --count 200 --size 64 --overwrite
$PY png2txt.py --data "$DATA"
$PY unet_bn_train_medical.py --data "$DATA" --input-size 64 --epochs 6 --batch-size 8 --lr 1e-3 \
    --workers 0 --run-name "$RUN" --no-progress
$PY get_miou_prediction.py --checkpoint "logs/unet_bn/$RUN/best.pt" --data "$DATA" --split val \
    --out "results/$RUN/val"
$PY miou.py --pred "results/$RUN/val" --data "$DATA" --split val --report
$PY predict.py --checkpoint "logs/unet_bn/$RUN/best.pt" --out "results/$RUN/predict" \
    "$DATA/Images/$(head -n 1 "$DATA/ImageSets/Segmentation/val.txt").png"
echo "TensorBoard curves: tensorboard --logdir logs/unet_bn/$RUN"
