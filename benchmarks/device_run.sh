#!/usr/bin/env bash
# All GPU measurements in one go (~9 min on an H100/H200), results under $OUT:
#   1. throughput: ResNet-50 / ResNet-18 fit on real LFW JPEGs vs the synthetic ceiling (bf16, batch 256,
#      224 px), the PIL path's ratio, torch.compile for ResNet-50, and the linear-probe feature pass;
#   2. the offline_lfw sweep (every method, N = 50 ... all), its table and plot.
# Needs what benchmarks/stage_device_run.sh puts into .carry/ and .whl/; run from the checkout's root:
#   bash benchmarks/device_run.sh
set -uo pipefail
OUT=${OUT:-results/device}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl 2>/dev/null || true
export PYTHONPATH=$PWD:/tmp/site PYTHONUNBUFFERED=1 TORCH_HOME=$PWD/.carry/torch FACETRANSFER_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/device.txt"
python3 -c "import torch, torchvision, lightning; print(torch.__version__, torchvision.__version__, lightning.__version__)" | tee -a "$OUT/device.txt"
timeout 250 python3 benchmarks/throughput.py --root .carry/lfw --backbones resnet50,resnet18 --batch-size 256 \
  --compile resnet50 --probe resnet50 --out "$OUT/throughput" 2>&1 | grep -v Warning | tee "$OUT/throughput.log"
timeout 300 python3 -m facetransfer.sweep --config configs/experiments/offline_lfw.yaml --data.root .carry/lfw \
  --data.num_workers 12 --output_dir /tmp/offline_lfw --checkpoints none --no-progress 2>&1 | grep -v Warning | tee "$OUT/sweep.log"
python3 -m facetransfer.sweep report /tmp/offline_lfw > /dev/null 2>&1
cp /tmp/offline_lfw/results.csv /tmp/offline_lfw/report.md /tmp/offline_lfw/accuracy_vs_n.png "$OUT/" 2>/dev/null
ls -la "$OUT"
