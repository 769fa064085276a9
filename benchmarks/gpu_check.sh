#!/usr/bin/env bash
# The GPU figures of the training and inference issues, in one short run (about 7 minutes on an H100):
#   1. maskrcnn_resnet50_fpn_v2 at 1024x1024, bf16, the largest batch that fits: images/s, peak memory,
#      FLOPs per image and fraction of the device's peak; then a profile of where a step's time goes;
#   2. the same at batch 8 and in fp16, for comparison with other cards;
#   3. inference of the same model at 1024 on 1500x2000 JPEGs, plain and with flip x 2-scale TTA, plus
#      post-processing and encoding: images/s and the projected time for the 3,200 test images;
#   4. the UNet and YOLACT beside Mask R-CNN, training and inference, as ratios.
# Training needs only torch >= 2.11 and torchvision; inference needs the project's dependencies: run
# `bash benchmarks/gpu_wheels.sh` here first and carry .whl. Results land in $OUT (default benchmarks/results).
#   bash benchmarks/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks/results}
mkdir -p "$OUT"
export PYTHONPATH=.
if [ -d .whl ]; then
  python -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=.:/tmp/site
fi
python -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__, torch.cuda.get_device_name())" | tee "$OUT/device.txt"
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,power.limit --format=csv | tee -a "$OUT/device.txt"
python benchmarks/train_throughput.py --arch maskrcnn_resnet50_fpn_v2 --size 1024 --batch auto --precision bf16 \
  --steps 20 --profile --json "$OUT/r50v2_1024_bf16_auto.json" > "$OUT/r50v2_1024_bf16_auto.txt" 2>&1
head -20 "$OUT/r50v2_1024_bf16_auto.txt"
python benchmarks/train_throughput.py --arch maskrcnn_resnet50_fpn_v2 --size 1024 --batch 8 --precision bf16 \
  --steps 20 --json "$OUT/r50v2_1024_bf16_b8.json"
python benchmarks/train_throughput.py --arch maskrcnn_resnet50_fpn_v2 --size 1024 --batch 8 --precision fp16 \
  --steps 20 --json "$OUT/r50v2_1024_fp16_b8.json"
python benchmarks/inference_throughput.py --arch maskrcnn_resnet50_fpn_v2 --min-size 1024 --max-size 1024 \
  --images 96 --batch 8 --workers 12 --precision bf16 --json "$OUT/infer_r50v2_1024_bf16.json"
# The UNet and YOLACT beside Mask R-CNN (issues 13, 14): same device, input size and batch, random weights,
# each family's post-processing included; then as the YOLACT paper timed them: ResNet-50, 550 px, one image
# at a time (its 42.5 fps against Mask R-CNN's 8.6 on a Titan Xp).
python benchmarks/family_throughput.py --device cuda --batch 8 --height 1024 --width 1024 --steps 10 \
  | tee "$OUT/families_1024.txt"
python benchmarks/family_throughput.py --device cuda --batch 1 --height 550 --width 550 --steps 20 --resnet50 \
  | tee "$OUT/families_r50_550.txt"
