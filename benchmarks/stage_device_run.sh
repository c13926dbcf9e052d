#!/usr/bin/env bash
# Pack what a GPU machine without network needs to run benchmarks/device_run.sh, into gpu-bundle/ of this
# checkout (git-ignored, about 50 MB); copy the checkout with it to the GPU machine.
#   gpu-bundle/lfw      LFW people with >= 10 images (3,264 JPEGs of DevTrain, 35 MB): the same split as the
#                       whole folder gives (the split digest in sweep.json is the same)
#   gpu-bundle/torch    a torch hub cache holding the ImageNet MobileNetV2 file (14 MB)
#   gpu-bundle/wheels   pure-Python packages a bare PyTorch image may lack (jsonargparse and what it needs)
# Usage: bash benchmarks/stage_device_run.sh [LFW_FOLDER]   (default data/lfw: the folder holding lfw-deepfunneled/)
set -euo pipefail
cd "$(dirname "$0")/.."
LFW=${1:-data/lfw}
mkdir -p gpu-bundle/lfw/lfw-deepfunneled gpu-bundle/torch/hub/checkpoints gpu-bundle/wheels
for d in "$LFW"/lfw-deepfunneled/*/; do
  [ "$(ls "$d" | wc -l)" -ge 10 ] && cp -r "$d" gpu-bundle/lfw/lfw-deepfunneled/
done
cp "$(.venv/bin/facetransfer weights where)/mobilenet_v2-b0353104.pth" gpu-bundle/torch/hub/checkpoints/
.venv/bin/pip download -q --no-deps -d gpu-bundle/wheels jsonargparse==4.53.0 docstring_parser typeshed_client filelock PyYAML
du -sh gpu-bundle
