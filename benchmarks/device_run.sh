#!/usr/bin/env bash
# Every GPU measurement in one go (about 9 minutes on an H100/H200), written to results/device (or $RESULTS):
#   1. throughput: ResNet-50 / ResNet-18 fit on real LFW JPEGs against the synthetic-batch ceiling (bf16,
#      batch 256, 224 px), the PIL path's ratio, torch.compile for ResNet-50, the linear probe's feature pass;
#   2. the offline_lfw sweep (every method, N = 50 ... all), its table and plot.
# Run from the checkout's root. Without network, first pack gpu-bundle/ with benchmarks/stage_device_run.sh.
set -uo pipefail
RESULTS=${RESULTS:-results/device}
LFW=gpu-bundle/lfw
mkdir -p "$RESULTS"
if [ -d gpu-bundle ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site gpu-bundle/wheels/*.whl 2>/dev/null || true
  export PYTHONPATH=$PWD:/tmp/site TORCH_HOME=$PWD/gpu-bundle/torch FACETRANSFER_OFFLINE=1
else
  LFW=${LFW_ROOT:-data/lfw}
fi
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$RESULTS/device.txt"
python3 -c "import torch, torchvision, lightning; print(torch.__version__, torchvision.__version__, lightning.__version__)" | tee -a "$RESULTS/device.txt"
timeout 250 python3 benchmarks/throughput.py --root "$LFW" --backbones resnet50,resnet18 --batch-size 256 \
  --compile resnet50 --probe resnet50 --out "$RESULTS/throughput" 2>&1 | grep -v Warning | tee "$RESULTS/throughput.log"
timeout 300 python3 -m facetransfer.sweep --config configs/experiments/offline_lfw.yaml --data.root "$LFW" \
  --data.num_workers 12 --output_dir /tmp/offline_lfw --checkpoints none --no-progress 2>&1 | grep -v Warning | tee "$RESULTS/sweep.log"
python3 -m facetransfer.sweep report /tmp/offline_lfw > /dev/null 2>&1
cp /tmp/offline_lfw/results.csv /tmp/offline_lfw/report.md /tmp/offline_lfw/accuracy_vs_n.png "$RESULTS/" 2>/dev/null
ls -la "$RESULTS"
