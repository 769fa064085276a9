"""Inference throughput with and without TTA, and the cost of post-processing + encoding a submission.

Writes synthetic JPEGs of a real-like size (default 1500x2000: the test photos are several
megapixels) so that decoding is part of the number, predicts them with a randomly initialised
model built as ``params.yaml``'s ``maskrcnn`` section would build it (with no score threshold, so
it returns the full ``box_detections_per_img`` per view, like a trained one), then
post-processes and RLE-encodes each image on the 512x512 grid (``stages.submission``'s code, with
``--post-workers`` processes). Prints images/s per setting and the projected wall time for the 3,200
test images: prediction (stage predict, GPU) plus post-processing and encoding (stage submission, CPU).

The speed options of ``predict`` params (docs/gpu.md) have flags: ``--stack-views`` (all TTA views
in one forward) and ``--channels-last``.

Needs the project's dependencies (``pip install -e .``; on a bare GPU box the missing ones
travel as wheels, see ``benchmarks/gpu_check.sh``).

Examples:
  python benchmarks/inference_throughput.py --arch maskrcnn_resnet18_fpn --min-size 192 --max-size 256
  python benchmarks/inference_throughput.py --arch maskrcnn_resnet50_fpn_v2 --min-size 1024 --max-size 1024 \
      --images 64 --batch 8 --workers 8 --precision bf16 --json result.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pipeline.config.inference import PostprocessParams  # noqa: E402
from pipeline.config.model import ModelParams  # noqa: E402
from pipeline.data.labels import load_labels  # noqa: E402
from pipeline.inference.detections import ImageRecord  # noqa: E402
from pipeline.inference.predict import Inference, make_views, predict_files  # noqa: E402
from pipeline.inference.trained import resolve_device  # noqa: E402
from pipeline.models.families.maskrcnn.detector import build  # noqa: E402
from pipeline.models.families.maskrcnn.params import MASKRCNN_ARCHITECTURES as ARCHITECTURES  # noqa: E402
from pipeline.models.families.maskrcnn.params import MaskRCNNParams  # noqa: E402
from pipeline.models.layout import speed_up  # noqa: E402
from pipeline.submission.encode import encoded_rows  # noqa: E402

TEST_IMAGES = 3200
POSTPROCESS = PostprocessParams(tta=True, score_thresh=0.0, nms_iou=0.5, mask_thresh=0.5, min_area=20,
                                max_detections=20, attribute_policy="category", grid="512x512")


def write_images(folder: Path, count: int, height: int, width: int) -> list[ImageRecord]:
    """Smooth random colour fields (compress like photos, unlike white noise), saved as JPEG quality 90."""
    rng = np.random.default_rng(0)
    records = []
    for k in range(count):
        small = rng.integers(0, 256, (height // 32 + 1, width // 32 + 1, 3), dtype=np.uint8)
        image = Image.fromarray(small).resize((width, height), Image.Resampling.BICUBIC)
        name = f"{k:05d}.jpg"
        image.save(folder / name, quality=90)
        records.append(ImageRecord(name, height, width))
    return records


def predict_rate(model, model_params, records, folder, scales, hflip, args, device) -> tuple[float, list]:
    inference = Inference(model, make_views(scales, hflip), model_params, device, args.precision, args.stack_views)
    run = predict_files(inference, args.batch, args.workers)
    next(run(records[: args.batch], folder))  # warm-up: cuDNN autotuning, allocator, worker start
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    found = [d for _, batch in run(records, folder) for d in batch]
    if device.type == "cuda":
        torch.cuda.synchronize()
    return len(records) / (time.perf_counter() - started), found


def main() -> None:
    cli = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_argument("--arch", choices=ARCHITECTURES, default="maskrcnn_resnet18_fpn")
    cli.add_argument("--min-size", type=int, default=192)
    cli.add_argument("--max-size", type=int, default=256)
    cli.add_argument("--original", default="1500x2000", help="HEIGHTxWIDTH of the synthetic JPEGs")
    cli.add_argument("--images", type=int, default=16)
    cli.add_argument("--batch", type=int, default=4)
    cli.add_argument("--workers", type=int, default=0)
    cli.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    cli.add_argument("--precision", default="bf16", choices=["fp32", "bf16", "fp16"])
    cli.add_argument("--scales", type=float, nargs="+", default=[1.0, 1.25], help="TTA scales (flip doubles)")
    cli.add_argument("--stack-views", action="store_true", help="predict.stack_views: all views in one forward")
    cli.add_argument("--channels-last", action="store_true", help="predict.channels_last")
    cli.add_argument("--post-workers", type=int, default=1, help="processes post-processing and encoding "
                                                                     "(submission.workers; 0: one per core)")
    cli.add_argument("--json", type=Path, help="also write the results here")
    args = cli.parse_args()
    torch.manual_seed(0)
    device = resolve_device(args.device)
    # A random model scores almost everything below the usual 0.05: without a threshold it returns the
    # full box_detections_per_img per view, as a trained model on busy photos does (the demo's: ~80).
    model_params = ModelParams(min_size=args.min_size, max_size=args.max_size)
    model = build(MaskRCNNParams(architecture=args.arch, box_score_thresh=0.0), model_params, 47, 92).to(device).eval()
    speed_up(model, args.channels_last, compile_backbone=False)
    height, width = (int(v) for v in args.original.split("x"))
    results: dict = {"arch": args.arch, "size": [args.min_size, args.max_size], "original": [height, width],
                     "images": args.images, "batch": args.batch, "workers": args.workers, "device": str(device),
                     "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                     "precision": args.precision if device.type == "cuda" else "fp32",
                     "torch": torch.__version__, "threads": torch.get_num_threads(),
                     "options": {"stack_views": args.stack_views, "channels_last": args.channels_last,
                                 "post_workers": args.post_workers}}
    with tempfile.TemporaryDirectory() as tmp:
        records = write_images(Path(tmp), args.images, height, width)
        plain, _ = predict_rate(model, model_params, records, tmp, (1.0,), False, args, device)
        tta, found = predict_rate(model, model_params, records, tmp, tuple(args.scales), True, args, device)
    views, labels = len(make_views(tuple(args.scales), True)), load_labels()
    started = time.perf_counter()
    by_image = {r.image_id: d for r, d in zip(records, found, strict=True)}
    rows = len(encoded_rows(by_image, records, POSTPROCESS, labels, args.post_workers))
    post = (time.perf_counter() - started) / len(records)
    results.update(images_per_second_plain=round(plain, 2), images_per_second_tta=round(tta, 2), tta_views=views,
                   detections_per_image_tta=round(sum(len(d) for d in found) / len(found), 1),
                   postprocess_and_encode_seconds_per_image=round(post, 4), rows_per_image=round(rows / len(found), 1),
                   seconds_per_image_tta=round(1 / tta + post, 4),
                   projected_test_minutes_tta=round(TEST_IMAGES * (1 / tta + post) / 60, 1),
                   projected_test_minutes_plain=round(TEST_IMAGES * (1 / plain + post) / 60, 1))
    for key, value in results.items():
        print(f"{key:42s} {value}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
