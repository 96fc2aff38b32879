#!/usr/bin/env bash
# The main job on the embedded synthetic liver set: make data, split, train, score mIoU, predict one image.
# About 5 minutes on a 2-core CPU. Uses `python` from PATH (the README puts .venv/bin first), or $PYTHON.
# Environment:
#   DEMO_QUICK=1    a tiny run that checks the set-up, not the model: 16 images of 32 px, 1 epoch, fp32 (under a minute)
#   DEMO_OUT=DIR    where datasets/, logs/ and results/ go (default: this repository)
set -euo pipefail
OUT=
if [ -n "${DEMO_OUT:-}" ]; then
    mkdir -p "$DEMO_OUT"
    OUT="$(cd "$DEMO_OUT" && pwd)/"
fi
cd "$(dirname "$0")"
PY=${PYTHON:-python}
DATA=${OUT}datasets/SynthLiver
RUN=demo-$(date +%Y%m%d-%H%M%S)
LOGS=${OUT}logs
RESULTS=${OUT}results/$RUN
if [ "${DEMO_QUICK:-0}" = 1 ]; then  # fp32 NCHW given: no speed probe
    COUNT=16 SIZE=32 EPOCHS=1 SPEED="--no-amp --no-channels-last"
else
    COUNT=200 SIZE=64 EPOCHS=6 SPEED=
fi

$PY -m utils.synthetic --out "$DATA" --count "$COUNT" --size "$SIZE" --overwrite
$PY png2txt.py --data "$DATA"
$PY unet_bn_train_medical.py --data "$DATA" --input-size "$SIZE" --epochs "$EPOCHS" --batch-size 8 --lr 1e-3 \
    --workers 0 --log-dir "$LOGS" --run-name "$RUN" --no-progress $SPEED
$PY get_miou_prediction.py --checkpoint "$LOGS/unet_bn/$RUN/best.pt" --data "$DATA" --split val \
    --out "$RESULTS/val"
$PY miou.py --pred "$RESULTS/val" --data "$DATA" --split val --report
$PY predict.py --checkpoint "$LOGS/unet_bn/$RUN/best.pt" --out "$RESULTS/predict" \
    "$DATA/Images/$(head -n 1 "$DATA/ImageSets/Segmentation/val.txt").png"
echo "TensorBoard curves: tensorboard --logdir $LOGS/unet_bn/$RUN"
