"""Training and inference throughput of the UNet and YOLACT beside Mask R-CNN, same input size and device, as ratios.

Every family is built from ``params.yaml``'s sections (or loaded from trained runs with ``--runs
models``: ``models/<family>/best.pt``) and measured in this one process, one after the other, on the
same synthetic batch: first plain-view eval forwards of the model as built, each family's own
post-processing included (Mask R-CNN's and YOLACT's NMS and masks on their boxes, the UNet's connected
components), then optimizer steps (AdamW, the demo's). Each line gives the detections per image, since
post-processing grows with them: with random weights Mask R-CNN and YOLACT both find their maximum (100),
a worst case for both; the UNet's map is speckled into many components, so its figure is a pessimistic
one. ``--runs`` gives the trained figures (stage compare measures those too).

``--resnet50`` builds every family at the depth of the paper's 42.5 fps YOLACT with its schema's
defaults rather than params.yaml's: torchvision's ``maskrcnn_resnet50_fpn`` (1,000 proposals, four
256-channel mask convolutions), the paper's YOLACT (ResNet-50, 32 prototypes, anchors for 550 px) and
a UNet on a ResNet-50.

Examples:
  python benchmarks/family_throughput.py                       # CPU, 192 x 256, random weights
  python benchmarks/family_throughput.py --runs models --device cuda --batch 8
  python benchmarks/family_throughput.py --resnet50 --device cuda --height 550 --width 550
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pipeline.inference.trained import load_model  # noqa: E402
from pipeline.models import registry  # noqa: E402

#: Each family at ResNet-50 depth, with its schema's defaults (torchvision's Mask R-CNN, the papers' YOLACT and
#: Mask2Former).
RESNET50 = {name: registry.family(name).params(**settings) for name, settings in {
    "maskrcnn": {"architecture": "maskrcnn_resnet50_fpn"}, "unet": {"encoder": "resnet50"},
    "yolact": {"backbone": "resnet50"}, "mask2former": {"backbone": "resnet50"}}.items()}
FAMILIES = tuple(RESNET50)


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


def measure(model, images: list, targets: list, steps: int, device: torch.device) -> tuple[float, float, float]:
    """Training and inference images per second, and detections per image; inference first, on the weights given."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def train_step() -> None:
        losses = model.train()(images, targets)
        sum(losses.values()).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    @torch.inference_mode()
    def infer() -> list[dict]:
        return model.eval()(images)

    inference = len(images) / timed(infer, steps, device)
    found = sum(len(output["boxes"]) for output in infer()) / len(images)
    return len(images) / timed(train_step, steps, device), inference, found


def main() -> None:
    cli = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    cli.add_argument("--params", default="params.yaml")
    cli.add_argument("--runs", type=Path, help="folder of trained runs (<runs>/<family>/best.pt)")
    cli.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    cli.add_argument("--batch", type=int, default=4)
    cli.add_argument("--height", type=int, default=192)
    cli.add_argument("--width", type=int, default=256)
    cli.add_argument("--steps", type=int, default=3)
    cli.add_argument("--resnet50", action="store_true", help="every family on a ResNet-50")
    cli.add_argument("--json", type=Path, help="also write the rates and ratios here")
    args = cli.parse_args()
    device = torch.device(args.device)
    images, targets = batch(args.batch, args.height, args.width, device)
    rates = {}
    for name in FAMILIES:
        torch.manual_seed(0)
        config = registry.load(args.params, name)
        if args.resnet50:
            config = registry.ModelConfig(config.model, RESNET50[name])
        model = (load_model(args.runs / name / "best.pt", config, device, 92) if args.runs
                 else config.build(47, 92).to(device))
        rates[name] = measure(model, images, targets, args.steps, device)
        print(f"{name}: train {rates[name][0]:.2f} images/s, inference {rates[name][1]:.2f} images/s "
              f"({rates[name][2]:.0f} detections per image; {sum(p.numel() for p in model.parameters()) / 1e6:.1f} M "
              "parameters)")
    for name in FAMILIES[1:]:
        train, infer = (rates[name][k] / rates["maskrcnn"][k] for k in (0, 1))
        print(f"{name} / maskrcnn on {device} at {args.height}x{args.width}, batch {args.batch}, "
              f"{'ResNet-50, schema defaults' if args.resnet50 else 'params.yaml'}, "
              f"{'trained' if args.runs else 'random'} weights: train {train:.2f}x, inference {infer:.2f}x")
    if args.json:
        families = {name: {"train_images_per_second": round(train, 2), "inference_images_per_second": round(infer, 2),
                           "detections_per_image": round(found, 1)} for name, (train, infer, found) in rates.items()}
        args.json.write_text(json.dumps({
            "device": str(device), "batch": args.batch, "size": [args.height, args.width], "resnet50": args.resnet50,
            "trained": bool(args.runs), "torch": torch.__version__, "families": families}, indent=2) + "\n")


if __name__ == "__main__":
    main()
