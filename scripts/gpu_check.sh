#!/bin/bash
# The GPU checks of the series-activation kernel and the backbone figures, in
# one run: the kernel tests on CUDA, then tools/benchmark_fps.py at 800x1344 in
# fp32 / tf32 / bf16, channels_last and NCHW. Needs a CUDA GPU and an env with
# vanillanet_mm's imports (the .venv, or -- backbone mode needs no mmdet -- torch,
# timm, triton, mmengine and mmcv-lite: `MMCV_WITH_OPS=0 pip wheel mmcv==2.1.0`).
# Writes OUT_DIR/gpu_{cl,nchw}.json (OUT_DIR defaults to work_dirs/gpu).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT_DIR=${OUT_DIR:-work_dirs/gpu}
PY=${PYTHON:-python3}
mkdir -p "$OUT_DIR"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
$PY -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
$PY -m pytest -q -p no:cacheprovider tests/test_series_act.py
for fmt in cl nchw; do
  extra=(); [[ $fmt == cl ]] && extra=(--channels-last)
  $PY tools/benchmark_fps.py --mode backbone --device cuda --dtype fp32 tf32 bf16 \
    --shape 800 1344 --iters 30 --warmup 10 --no-gmacs "${extra[@]}" \
    --out "$OUT_DIR/gpu_$fmt.json"
done
