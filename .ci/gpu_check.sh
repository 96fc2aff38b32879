#!/usr/bin/env bash
# The GPU check, for a machine with a CUDA GPU whose python3 has torch (and most of requirements.txt): the CUDA
# tests, benchmark.py at 512 px, and the liver recipe's timing (seed 000: 512x512, batch 2; here UNet-BN) on
# synthetic liver slices. Everything it writes goes under $OUT (default results/gpu_check). At most 9 minutes.
#
#   .ci/gpu_check.sh prepare    here, with network to the package registry: wheels of the pure-Python
#                               requirements such a machine may lack (nibabel, pydicom) into .whl/ (git-ignored)
#   .ci/gpu_check.sh            there: installs .whl/*.whl into /tmp/site if present, then runs the checks
# Environment: GPU_CHECK_DEVICE (default cuda; cpu for a dry run), GPU_CHECK_QUICK=1 (tiny sizes, a dry run).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ "${1:-}" = prepare ]; then
    mkdir -p .whl
    exec "$PY" -m pip download --quiet --no-deps --only-binary=:all: -d .whl nibabel pydicom
fi
OUT=${OUT:-results/gpu_check}
DEVICE=${GPU_CHECK_DEVICE:-cuda}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if ls .whl/*.whl > /dev/null 2>&1; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH=/tmp/site
fi
if [ "${GPU_CHECK_QUICK:-0}" = 1 ]; then
    SIZE=64 COUNT=8 BATCH=2 STEPS=1 EPOCHS=1
else
    SIZE=512 COUNT=100 BATCH=2 STEPS=10 EPOCHS=2
fi
{ nvidia-smi || true; "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda,
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU')"; } > "$OUT/environment.txt" 2>&1
echo "== CUDA tests"
timeout 200 "$PY" -m pytest -m cuda -q -p no:cacheprovider tests/test_cuda.py 2>&1 | tee "$OUT/cuda_tests.txt"
echo "== benchmark"
timeout 180 "$PY" benchmark.py --device "$DEVICE" --input-size "$SIZE" --batch-size 8 --steps "$STEPS" \
    --warmup 2 --out "$OUT/bench" 2>&1 | tee "$OUT/benchmark.txt"
echo "== liver recipe timing"
DATA=$OUT/SynthLiver
START=$(date +%s)
{
    "$PY" -m utils.synthetic --out "$DATA" --count "$COUNT" --size "$SIZE" --overwrite &&
    "$PY" png2txt.py --data "$DATA" &&
    timeout 150 "$PY" unet_bn_train_medical.py --data "$DATA" --input-size "$SIZE" --epochs "$EPOCHS" \
        --batch-size "$BATCH" --workers 4 --device "$DEVICE" --no-progress --log-dir "$OUT/logs" --run-name liver &&
    "$PY" get_miou_prediction.py --checkpoint "$OUT/logs/unet_bn/liver/best.pt" --data "$DATA" \
        --device "$DEVICE" --out "$OUT/liver_val" &&
    "$PY" miou.py --pred "$OUT/liver_val" --data "$DATA"
} 2>&1 | tee "$OUT/liver.txt"
echo "liver recipe: $(( $(date +%s) - START )) s in all (data, split, training, prediction, scores)" | tee -a "$OUT/liver.txt"
rm -rf "$DATA"  # the images are large and made again in seconds
