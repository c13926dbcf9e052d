#!/usr/bin/env bash
# Stage what a GPU machine without network needs, into git-ignored folders of this checkout (< 64 MiB):
#   .carry/lfw    LFW identities with >= 10 images (3,264 JPEGs, 35 MB) - the split is identical
#                 to the one made from the whole folder (same split digest in sweep.json)
#   .carry/torch  torch hub cache holding ImageNet MobileNetV2 (14 MB)
#   .whl          pure-Python wheels the device image may lack (jsonargparse and its deps)
# Then run benchmarks/device_run.sh there (see docs/performance.md).
set -euo pipefail
cd "$(dirname "$0")/.."
LFW=${1:-../shared/data/lfw-devtrain}
mkdir -p .carry/lfw/lfw-deepfunneled .carry/torch/hub/checkpoints .whl
for d in "$LFW"/lfw-deepfunneled/*/; do
  [ "$(ls "$d" | wc -l)" -ge 10 ] && cp -r "$d" .carry/lfw/lfw-deepfunneled/
done
cp ~/.cache/torch/hub/checkpoints/mobilenet_v2-b0353104.pth .carry/torch/hub/checkpoints/
.venv/bin/pip download -q --no-deps -d .whl jsonargparse==4.53.0 docstring_parser typeshed_client filelock PyYAML
du -sh .carry .whl
