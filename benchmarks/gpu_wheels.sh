#!/usr/bin/env bash
# Wheels for the packages this project needs that the lent GPU machine's image lacks (it has torch,
# torchvision, numpy, pandas, pyarrow, Pillow, PyYAML and tqdm, but no pydantic, pycocotools,
# segmentation-models-pytorch or scipy, and cannot reach PyPI). Run here, before the GPU run; the run carries .whl and installs from it offline.
#   bash benchmarks/gpu_wheels.sh
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo /.whl/ >> .git/info/exclude
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
  platforms+=(--platform "$p")
done
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  "${platforms[@]}" -d .whl pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 \
  typing-inspection==0.4.5 pycocotools==2.0.11 segmentation_models_pytorch==0.6.0 timm==1.0.31 \
  huggingface_hub==2.4.0 safetensors==0.8.0 hf-xet==1.8.0 httpx2==2.16.2 httpcore2==2.16.2 h11==0.16.0 \
  anyio==4.16.0 scipy==1.17.1
ls -la .whl
