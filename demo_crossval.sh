#!/usr/bin/env bash
# Cross-validation on the embedded synthetic liver set: folds with a held-out test part, two cross-validated
# configurations, the choice between them (and their ensemble), then the chosen one scored on the test part with
# uncertainty maps. About 10 minutes on a 2-core CPU (12 measured while another job shared it). Uses `python`
# from PATH (the README puts .venv/bin first), or $PYTHON.
# Environment:
#   DEMO_QUICK=1    a tiny run that checks the set-up, not the models: 12 images of 32 px, 1 epoch, fp32
#   DEMO_OUT=DIR    where datasets/, logs/ and results/ go (default: this repository)
set -euo pipefail
OUT=
if [ -n "${DEMO_OUT:-}" ]; then
    mkdir -p "$DEMO_OUT"
    OUT="$(cd "$DEMO_OUT" && pwd)/"
fi
cd "$(dirname "$0")"
PY=${PYTHON:-python}
DATA=${OUT}datasets/SynthLiverCV
NAME=cv-$(date +%Y%m%d-%H%M%S)
LOGS=${OUT}logs
RESULTS=${OUT}results/$NAME
if [ "${DEMO_QUICK:-0}" = 1 ]; then  # fp32 NCHW given: no speed probe
    COUNT=12 SIZE=32 EPOCHS=1 TEST=3 SPEED="--no-amp --no-channels-last"
else
    COUNT=100 SIZE=64 EPOCHS=4 TEST=10 SPEED=
fi
TRAIN="--input-size $SIZE --epochs $EPOCHS --batch-size 8 --lr 1e-3 --workers 0 --no-progress --overlays 0 $SPEED"

$PY -m utils.synthetic --out "$DATA" --count "$COUNT" --size "$SIZE" --overwrite
$PY png2txt.py --data "$DATA" --folds 3 --test "$TEST"
# shellcheck disable=SC2086  # $TRAIN is a list of options
$PY crossval.py --model unet_bn --folds 3 --data "$DATA" --log-dir "$LOGS" --name "$NAME" --flip-tta $TRAIN
# shellcheck disable=SC2086
$PY crossval.py --model unet_bn --folds 3 --data "$DATA" --log-dir "$LOGS" --name "$NAME-ce" --flip-tta \
    --loss ce $TRAIN
$PY choose_config.py "$LOGS/unet_bn/$NAME-cv" "$LOGS/unet_bn/$NAME-ce-cv" --out "$RESULTS/choice.json"
# The chosen configuration (one run or an ensemble of two, with the post-processing chosen for it) on the test
# part no fold has seen, then on one image as predict.py would be run on new data:
mapfile -t CHOSEN < <($PY -c "import json, sys; print('\n'.join(json.load(open(sys.argv[1]))['predict_arguments']))" \
    "$RESULTS/choice.json")
$PY get_miou_prediction.py "${CHOSEN[@]}" --data "$DATA" --split test --save-uncertainty --out "$RESULTS/test"
$PY miou.py --pred "$RESULTS/test" --data "$DATA" --split test --report
$PY predict.py "${CHOSEN[@]}" --save-uncertainty --out "$RESULTS/predict" \
    "$DATA/Images/$(head -n 1 "$DATA/ImageSets/Segmentation/test.txt").png"
echo "cross-validation summaries: $LOGS/unet_bn/$NAME-cv/summary.txt and $LOGS/unet_bn/$NAME-ce-cv/summary.txt"
