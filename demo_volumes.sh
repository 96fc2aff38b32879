#!/usr/bin/env bash
# The volume recipe on embedded synthetic CT: NIfTI volumes -> import (abdomen window, 2.5-D) -> split by volume
# -> train -> per-volume scores in mm -> a predicted label NIfTI on the source's voxels. About 10 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python}
RAW=datasets/SynthCT-nifti
DATA=datasets/SynthCT
RUN=volumes-$(date +%Y%m%d-%H%M%S)

$PY -m utils.synthetic --volumes --out "$RAW" --count 12 --size 128 --slices 48 --overwrite
$PY import_dataset.py nifti "$RAW" --out "$DATA" --window abdomen --context 1 --merge 2:1 \
    --classes background,liver --keep-empty 0.3 --overwrite
$PY png2txt.py --data "$DATA" --val-ratio 0.25
$PY unet_bn_train_medical.py --data "$DATA" --input-size 128 --epochs 5 --batch-size 8 --lr 1e-3 \
    --workers 0 --run-name "$RUN" --no-progress
$PY get_miou_prediction.py --checkpoint "logs/unet_bn/$RUN/best.pt" --data "$DATA" --split val \
    --keep-largest --out "results/$RUN/val"
$PY miou.py --pred "results/$RUN/val" --data "$DATA" --split val --report
VOLUME=$(head -n 1 "$DATA/ImageSets/Segmentation/val.txt" | sed 's/_[0-9]*$//')
$PY predict.py --checkpoint "logs/unet_bn/$RUN/best.pt" --out "results/$RUN/predict" --keep-largest \
    --overlay auto "$RAW/imagesTr/${VOLUME}_0000.nii.gz"
echo "label volumes: results/$RUN/val/volumes/*.nii.gz and results/$RUN/predict/${VOLUME}_0000_label.nii.gz"
