#!/usr/bin/env bash
# The GPU figures of issue 15 (and of the family comparison), in one run of about 8 minutes on an H100/H200.
# Most important first, so that a run cut short still has the baseline and the optimised path:
#   1. training of maskrcnn_resnet50_fpn_v2 at 1024x1024, bf16, batch 8, the plain path (the code as the
#      pipeline runs it by default) with a profile of where a step's time goes;
#   2. inference of the same model at 1024 on 1500x2000 JPEGs, plain and flip x 2-scale TTA, then
#      post-processing and encoding: images/s and the projected minutes for the 3,200 test images;
#   3. the optimised paths: training with channels-last, fused optimizer and no per-step host sync at the
#      largest batch that fits, then the same plus the compiled backbone, profiled; inference with all views
#      in one forward, channels-last and post-processing on every core;
#   4. each training option alone at batch 8 (and the attribute head's cost, and deterministic kernels);
#   5. the UNet and YOLACT beside Mask R-CNN (issues 13, 14).
# Every figure lands in $OUT as JSON (default benchmarks/results); summary.json holds the before/after table.
# Training needs torch >= 2.11 and torchvision only; the rest needs the project's dependencies: run
# `bash benchmarks/gpu_wheels.sh` here first and carry .whl.
#   bash benchmarks/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks/results}
mkdir -p "$OUT"
export PYTHONPATH=.
if [ -d .whl ]; then
  python -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=.:/tmp/site
fi
python - <<'PY' | tee "$OUT/device.json"
import json, os, shutil, subprocess, torch, torchvision
query = ["nvidia-smi", "--query-gpu=name,memory.total,clocks.max.sm,power.limit", "--format=csv,noheader"]
smi = subprocess.run(query, capture_output=True, text=True).stdout.strip() if shutil.which("nvidia-smi") else None
name = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
print(json.dumps({"torch": torch.__version__, "torchvision": torchvision.__version__, "cuda": torch.version.cuda,
                  "device": name, "nvidia_smi": smi, "cpus": os.cpu_count()}, indent=2))
PY
train() {  # train NAME SECONDS ARGS...: one training measurement, its log beside its JSON
  local name=$1 limit=$2; shift 2
  timeout "$limit" python benchmarks/train_throughput.py --arch maskrcnn_resnet50_fpn_v2 --size 1024 \
    --precision bf16 --json "$OUT/train_$name.json" "$@" > "$OUT/train_$name.log" 2>&1 \
    || echo "train $name: failed or timed out (see $OUT/train_$name.log)"
  head -22 "$OUT/train_$name.log"
}
infer() {  # infer NAME SECONDS ARGS...
  local name=$1 limit=$2; shift 2
  timeout "$limit" python benchmarks/inference_throughput.py --arch maskrcnn_resnet50_fpn_v2 --min-size 1024 \
    --max-size 1024 --images 96 --batch 8 --workers 12 --precision bf16 --json "$OUT/infer_$name.json" "$@" \
    > "$OUT/infer_$name.log" 2>&1 || echo "infer $name: failed or timed out (see $OUT/infer_$name.log)"
  tail -12 "$OUT/infer_$name.log"
}
OPTIMISED=(--channels-last --fused-optimizer --no-host-sync)
train baseline 120 --batch 8 --steps 20 --profile
infer baseline 120 --post-workers 1
train optimised_auto 200 --batch auto --steps 20 "${OPTIMISED[@]}"
batch=$(python -c "import json; print(json.load(open('$OUT/train_optimised_auto.json'))['batch'])" 2>/dev/null || echo 8)
train optimised_compiled 200 --batch "$batch" --steps 20 "${OPTIMISED[@]}" --compile-backbone --profile
infer optimised 120 --stack-views --channels-last --post-workers 0
train channels_last 60 --batch 8 --steps 10 --channels-last
train fused_no_host_sync 60 --batch 8 --steps 10 --fused-optimizer --no-host-sync
train no_attribute_head 60 --batch 8 --steps 10 --no-attribute-head
train deterministic 60 --batch 8 --steps 10 --deterministic
python benchmarks/gpu_summary.py "$OUT"
timeout 90 python benchmarks/family_throughput.py --device cuda --batch 8 --height 1024 --width 1024 --steps 10 \
  --json "$OUT/families_1024.json" | tee "$OUT/families_1024.txt"
timeout 60 python benchmarks/family_throughput.py --device cuda --batch 1 --height 550 --width 550 --steps 20 \
  --resnet50 --json "$OUT/families_r50_550.json" | tee "$OUT/families_r50_550.txt"
