#!/usr/bin/env bash
# The volume recipe on embedded synthetic CT: NIfTI volumes -> import (abdomen window, 2.5-D) -> split by volume
# -> train -> per-volume scores in mm -> a predicted label NIfTI on the source's voxels. About 10 minutes on 2 cores.
# Uses `python` from PATH (the README puts .venv/bin first), or $PYTHON.
# Environment:
#   DEMO_QUICK=1    a tiny run that checks the set-up, not the model: 4 volumes of 32x32x16, 1 epoch, fp32 (a minute)
#   DEMO_OUT=DIR    where datasets/, logs/ and results/ go (default: this repository)
set -euo pipefail
OUT=
if [ -n "${DEMO_OUT:-}" ]; then
    mkdir -p "$DEMO_OUT"
    OUT="$(cd "$DEMO_OUT" && pwd)/"
fi
cd "$(dirname "$0")"
PY=${PYTHON:-python}
RAW=${OUT}datasets/SynthCT-nifti
DATA=${OUT}datasets/SynthCT
RUN=volumes-$(date +%Y%m%d-%H%M%S)
LOGS=${OUT}logs
RESULTS=${OUT}results/$RUN
if [ "${DEMO_QUICK:-0}" = 1 ]; then  # fp32 NCHW given: no speed probe
    COUNT=4 SIZE=32 SLICES=16 EPOCHS=1 SPEED="--no-amp --no-channels-last"
else
    COUNT=12 SIZE=128 SLICES=48 EPOCHS=5 SPEED=
fi

$PY -m utils.synthetic --volumes --out "$RAW" --count "$COUNT" --size "$SIZE" --slices "$SLICES" --overwrite
$PY import_dataset.py nifti "$RAW" --out "$DATA" --window abdomen --context 1 --merge 2:1 \
    --classes background,liver --keep-empty 0.3 --overwrite
$PY png2txt.py --data "$DATA" --val-ratio 0.25
$PY unet_bn_train_medical.py --data "$DATA" --input-size "$SIZE" --epochs "$EPOCHS" --batch-size 8 --lr 1e-3 \
    --workers 0 --log-dir "$LOGS" --run-name "$RUN" --no-progress $SPEED
$PY get_miou_prediction.py --checkpoint "$LOGS/unet_bn/$RUN/best.pt" --data "$DATA" --split val \
    --keep-largest --out "$RESULTS/val"
$PY miou.py --pred "$RESULTS/val" --data "$DATA" --split val --report
VOLUME=$(head -n 1 "$DATA/ImageSets/Segmentation/val.txt" | sed 's/_[0-9]*$//')
$PY predict.py --checkpoint "$LOGS/unet_bn/$RUN/best.pt" --out "$RESULTS/predict" --keep-largest \
    --overlay auto "$RAW/imagesTr/${VOLUME}_0000.nii.gz"
echo "label volumes: $RESULTS/val/volumes/*.nii.gz and $RESULTS/predict/${VOLUME}_0000_label.nii.gz"
