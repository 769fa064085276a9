"""Training throughput of a Mask R-CNN: images/s, peak memory, FLOPs per image and the fraction of device peak.

Needs torch >= 2.11 and torchvision only (plus this repository's ``pipeline/models/families/maskrcnn/``, found
from the script's own location), so it runs on a bare GPU box without installing the project.
Batches are synthetic (random images with eight elliptical instances each) and live on the
device, so the number is the model's own speed; data loading is measured by
``benchmarks/data_loading.py``. ``--profile`` prints where a step's time goes (and adds its top
entries to the JSON).

The speed options of ``train`` params (docs/gpu.md) each have a flag, so that one run compares
them with the plain path: ``--channels-last``, ``--compile-backbone``, ``--fused-optimizer``,
``--no-host-sync`` (the loss is not read on the host every step, as ``train.sync_every`` > 1);
``--deterministic`` measures the plain path as ``train.deterministic: true`` runs it, and
``--no-attribute-head`` the detector without its attribute head.

Examples:
  python benchmarks/train_throughput.py --arch maskrcnn_resnet18_fpn --size 256 --batch 4
  python benchmarks/train_throughput.py --arch maskrcnn_resnet50_fpn_v2 --size 1024 --batch auto \
      --precision bf16 --device cuda --profile
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import resource
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode
from torchvision.ops import masks_to_boxes

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pipeline.config.model import ModelParams  # noqa: E402
from pipeline.models.families.maskrcnn.detector import build  # noqa: E402
from pipeline.models.families.maskrcnn.params import MASKRCNN_ARCHITECTURES as ARCHITECTURES  # noqa: E402
from pipeline.models.families.maskrcnn.params import MaskRCNNParams  # noqa: E402
from pipeline.models.layout import speed_up  # noqa: E402

OPTIONS = ("channels_last", "compile_backbone", "fused_optimizer", "no_host_sync", "deterministic",
           "no_attribute_head")
NUM_CLASSES = 47
NUM_ATTRIBUTES = 92
# Dense peak TFLOP/s by GPU name (vendor data sheets): (bf16/fp16 tensor cores, fp32 without TF32).
PEAK_TFLOPS = {"H200": (989, 67), "H100 PCIe": (756, 51), "H100": (989, 67), "A100": (312, 19.5),
               "L40S": (362, 91.6), "L4": (121, 30.3), "A10G": (70, 31.2), "T4": (65, 8.1), "V100": (125, 15.7),
               "P100": (18.7, 9.3)}


def synthetic_batch(batch: int, size: int, device: torch.device, seed: int = 0) -> tuple[list, list]:
    """Random images, each with eight elliptical instances of random classes."""
    generator = torch.Generator().manual_seed(seed)
    ys, xs = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    images, targets = [], []
    for _ in range(batch):
        centre = torch.rand(8, 2, generator=generator) * size * 0.8 + size * 0.1
        radius = torch.rand(8, 2, generator=generator) * size * 0.15 + size * 0.03
        masks = (((xs[None] - centre[:, 0, None, None]) / radius[:, 0, None, None]) ** 2
                 + ((ys[None] - centre[:, 1, None, None]) / radius[:, 1, None, None]) ** 2 <= 1).to(torch.uint8)
        boxes = masks_to_boxes(masks) + torch.tensor([0.0, 0.0, 1.0, 1.0])
        images.append(torch.rand(3, size, size, generator=generator).to(device))
        labels = torch.randint(1, NUM_CLASSES, (8,), generator=generator)
        attributes = (torch.rand(8, NUM_ATTRIBUTES, generator=generator) < 0.07).float()
        targets.append({"boxes": boxes.to(device), "labels": labels.to(device), "masks": masks.to(device),
                        "attributes": attributes.to(device)})
    return images, targets


def autocast(device: torch.device, precision: str):
    enabled = device.type == "cuda" and precision != "fp32"
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16,
                          enabled=enabled)


def train_step(model, optimizer, scaler, images, targets, device, precision, host_sync: bool = True) -> None:
    """One step; with ``host_sync`` the loss is read on the host, as the training loop's default does."""
    with autocast(device, precision):
        loss = sum(model(images, targets).values())
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    if host_sync:
        loss.item()


def flops_per_image(model, images, targets, device, precision) -> float:
    """Forward + backward FLOPs of one training step over one image (convolutions and matmuls, as torch counts)."""
    counter = FlopCounterMode(display=False)
    with counter, autocast(device, precision):
        loss = sum(model(images[:1], targets[:1]).values())
        loss.backward()
    model.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def peak_tflops(device: torch.device, precision: str, override: float | None) -> float | None:
    if override:
        return override
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, (tensor, fp32) in PEAK_TFLOPS.items():
        if key in name:
            return tensor if precision != "fp32" else fp32
    return None


def setup(args, device: torch.device):
    torch.manual_seed(0)
    family = MaskRCNNParams(architecture=args.arch, attribute_head=not args.no_attribute_head)
    model = build(family, ModelParams(min_size=args.size, max_size=args.size), NUM_CLASSES,
                  NUM_ATTRIBUTES).to(device).train()
    speed_up(model, args.channels_last, args.compile_backbone)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, fused=args.fused_optimizer or None)
    scaler = torch.amp.GradScaler("cuda", enabled=args.precision == "fp16" and device.type == "cuda")
    return model, optimizer, scaler


def fits(args, device: torch.device, batch: int) -> bool:
    """Whether two steps of ``batch`` run; eagerly (compiling at every size would take minutes each)."""
    try:
        model, optimizer, scaler = setup(argparse.Namespace(**{**vars(args), "compile_backbone": False}), device)
        images, targets = synthetic_batch(batch, args.size, device)
        for _ in range(2):
            train_step(model, optimizer, scaler, images, targets, device, args.precision)
        return True
    except torch.cuda.OutOfMemoryError:
        return False
    finally:
        torch.cuda.empty_cache()


def largest_batch(args, device: torch.device) -> int:
    """Doubling, then bisection, up to the first batch size that runs out of memory (with 10% headroom)."""
    good, bad = 0, None
    batch = 2
    while bad is None and batch <= 256:
        if fits(args, device, batch):
            good, batch = batch, batch * 2
        else:
            bad = batch
    while bad is not None and bad - good > 1:
        middle = (good + bad) // 2
        good, bad = (middle, bad) if fits(args, device, middle) else (good, middle)
    if good == 0:
        raise SystemExit(f"{args.arch} at {args.size}px does not fit one batch of 2 on this device")
    return max(1, math.floor(good * 0.9))


def profile(model, optimizer, scaler, images, targets, device, args, steps: int = 3) -> list[dict]:
    """Print the ops that take a step's time; return the top 15 as (name, calls, self milliseconds per step)."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as prof:
        for _ in range(steps):
            train_step(model, optimizer, scaler, images, targets, device, args.precision, not args.no_host_sync)
    averages = prof.key_averages()
    sort = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    print(averages.table(sort_by=sort, row_limit=25))
    busy = (lambda e: e.self_device_time_total) if device.type == "cuda" else (lambda e: e.self_cpu_time_total)
    top = sorted(averages, key=busy, reverse=True)[:15]
    return [{"name": e.key, "calls_per_step": e.count / steps, "self_ms_per_step": round(busy(e) / steps / 1e3, 2)}
            for e in top]


def main() -> None:
    cli = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_argument("--arch", choices=ARCHITECTURES, default="maskrcnn_resnet18_fpn")
    cli.add_argument("--size", type=int, default=256, help="square image side in pixels")
    cli.add_argument("--batch", default="4", help="images per step, or 'auto': the largest that fits (CUDA)")
    cli.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32")
    cli.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    cli.add_argument("--steps", type=int, default=10, help="timed steps")
    cli.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    cli.add_argument("--peak-tflops", type=float, help="device peak, when the built-in table does not know it")
    cli.add_argument("--profile", action="store_true", help="print the ops that take the time")
    cli.add_argument("--channels-last", action="store_true", help="train.channels_last")
    cli.add_argument("--compile-backbone", action="store_true", help="train.compile_backbone")
    cli.add_argument("--fused-optimizer", action="store_true", help="train.fused_optimizer")
    cli.add_argument("--no-host-sync", action="store_true", help="no loss read every step (train.sync_every > 1)")
    cli.add_argument("--deterministic", action="store_true", help="deterministic kernels, no cuDNN autotuning")
    cli.add_argument("--no-attribute-head", action="store_true", help="the detector without its attribute head")
    cli.add_argument("--json", type=Path, help="also write the result here")
    args = cli.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = not args.deterministic
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    if args.deterministic:  # as pipeline.training.loop sets it for train.deterministic
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
    if args.batch == "auto" and device.type != "cuda":
        raise SystemExit("--batch auto searches GPU memory; give a number on CPU")
    batch = largest_batch(args, device) if args.batch == "auto" else int(args.batch)

    model, optimizer, scaler = setup(args, device)
    images, targets = synthetic_batch(batch, args.size, device)
    flops = flops_per_image(model, images, targets, device, args.precision)
    step = functools.partial(train_step, model, optimizer, scaler, images, targets, device, args.precision,
                             not args.no_host_sync)
    warmup_started = time.perf_counter()
    for _ in range(args.warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    warmup_seconds = time.perf_counter() - warmup_started
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    speed = batch * args.steps / seconds
    memory = (torch.cuda.max_memory_allocated(device) if device.type == "cuda"
              else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    peak = peak_tflops(device, args.precision, args.peak_tflops)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    result = {
        "arch": args.arch, "size": args.size, "batch": batch, "precision": args.precision, "device": name,
        "torch": torch.__version__, "images_per_second": round(speed, 2), "peak_memory_gib": round(memory / 2**30, 2),
        "gflops_per_image": round(flops / 1e9, 1), "achieved_tflops": round(flops * speed / 1e12, 2),
        "fraction_of_peak": round(flops * speed / 1e12 / peak, 4) if peak else None,
        "warmup_seconds": round(warmup_seconds, 1),  # includes compilation with --compile-backbone
        "options": {name: getattr(args, name) for name in OPTIONS},
    }
    print(json.dumps(result, indent=2))
    if args.profile:
        result["profile_top"] = profile(model, optimizer, scaler, images, targets, device, args)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
