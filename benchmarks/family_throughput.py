"""Training and inference throughput of the UNet beside Mask R-CNN, same input size and device, as a ratio.

Both families are built from ``params.yaml``'s sections (or loaded from trained runs with
``--runs models``: ``models/<family>/best.pt``) and measured in this one process, one after the
other, on the same synthetic batch: optimizer steps (AdamW, the demo's) and plain-view eval
forwards, each family's own post-processing included (the UNet's connected components). With
random weights the UNet's map is speckled into many components, so its inference figure is a
pessimistic one; ``--runs`` gives the trained figure (stage compare measures that too).

Examples:
  python benchmarks/family_throughput.py                       # CPU, 192 x 256, random weights
  python benchmarks/family_throughput.py --runs models --device cuda --batch 8
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pipeline.inference.predict import load_model  # noqa: E402
from pipeline.models import registry  # noqa: E402

FAMILIES = ("maskrcnn", "unet")


def batch(size: int, height: int, width: int, device: torch.device) -> tuple[list, list]:
    """Random images with three rectangles each: a garment, a part on it, an accessory."""
    generator = torch.Generator().manual_seed(0)
    images, targets = [], []
    for _ in range(size):
        masks = torch.zeros((3, height, width), dtype=torch.uint8)
        boxes = [(20, 20, width // 2, height - 20), (40, 40, 80, 90), (width // 2 + 10, 30, width - 20, 100)]
        for k, (x0, y0, x1, y1) in enumerate(boxes):
            masks[k, y0:y1, x0:x1] = 1
        images.append(torch.rand((3, height, width), generator=generator).to(device))
        targets.append({"boxes": torch.tensor(boxes, dtype=torch.float32, device=device),
                        "labels": torch.tensor([1, 30, 24], device=device), "masks": masks.to(device),
                        "attributes": torch.zeros((3, 92), device=device)})
    return images, targets


def timed(work, steps: int, device: torch.device) -> float:
    work()  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    for _ in range(steps):
        work()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - started) / steps


def measure(model, images: list, targets: list, steps: int, device: torch.device) -> tuple[float, float]:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def train_step() -> None:
        losses = model.train()(images, targets)
        sum(losses.values()).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def infer() -> None:
        with torch.inference_mode():
            model.eval()(images)

    return len(images) / timed(train_step, steps, device), len(images) / timed(infer, steps, device)


def main() -> None:
    cli = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    cli.add_argument("--params", default="params.yaml")
    cli.add_argument("--runs", type=Path, help="folder of trained runs (<runs>/<family>/best.pt)")
    cli.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    cli.add_argument("--batch", type=int, default=4)
    cli.add_argument("--height", type=int, default=192)
    cli.add_argument("--width", type=int, default=256)
    cli.add_argument("--steps", type=int, default=3)
    args = cli.parse_args()
    device = torch.device(args.device)
    images, targets = batch(args.batch, args.height, args.width, device)
    rates = {}
    for name in FAMILIES:
        torch.manual_seed(0)
        config = registry.load(args.params, name)
        model = (load_model(args.runs / name / "best.pt", config, device, 92) if args.runs
                 else config.build(47, 92).to(device))
        rates[name] = measure(model, images, targets, args.steps, device)
        print(f"{name}: train {rates[name][0]:.2f} images/s, inference {rates[name][1]:.2f} images/s "
              f"({sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters)")
    train, infer = (rates["unet"][k] / rates["maskrcnn"][k] for k in (0, 1))
    print(f"unet / maskrcnn on {device} at {args.height}x{args.width}, batch {args.batch}, "
          f"{'trained' if args.runs else 'random'} weights: train {train:.2f}x, inference {infer:.2f}x")


if __name__ == "__main__":
    main()
