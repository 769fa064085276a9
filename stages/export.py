"""Stage export (not in dvc.yaml: run on demand): the trained model as an ONNX file that runs without this project.

  python -m stages.export [--run-dir models/maskrcnn] --format onnx [--out exported/maskrcnn.onnx] [--photos ...]

Writes ``<out>`` (one image in, its detections out: boxes, labels, scores, masks pasted on the image,
attribute probabilities) and ``<out>.json`` (what goes in and comes out, the category and attribute
names, and the check). The file is kept only when onnxruntime finds PyTorch's detections on the photos
(default: the first three test images), at the size the model sees them. Which families export, and
why the others do not: docs/shop.md.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.utils.errors import PipelineError
from stages._cli import add_family, parser, run

DEFAULT_PHOTOS = Path("data/raw/test")


def main() -> None:
    cli = parser(__doc__)
    add_family(cli)
    cli.add_argument("--run-dir", type=Path, help="training run folder (default: models/<family>)")
    cli.add_argument("--format", choices=["onnx"], default="onnx",
                     help="onnx (no family that ONNX cannot express traces correctly as TorchScript either)")
    cli.add_argument("--out", type=Path, help="file to write (default: exported/<family>.onnx)")
    cli.add_argument("--photos", nargs="+", default=None,
                     help=f"photos to trace and check it on (default: the first three of {DEFAULT_PHOTOS})")
    args = cli.parse_args()
    from pipeline.config.model import ModelParams
    from pipeline.config.params import load_section
    from pipeline.data.labels import load_labels
    from pipeline.inference.export import description, export_onnx, require_onnx
    from pipeline.inference.trained import open_model
    from pipeline.models import registry
    from pipeline.shop.photos import photo_paths
    from pipeline.shop.segment import read_photo
    from pipeline.utils.io import write_json
    family = args.family or load_section(args.params, "model", ModelParams).family
    require_onnx(registry.family(family))
    if args.out is not None and args.out.is_dir():
        raise PipelineError(f"{args.out}: --out is a folder; give the file to write, e.g. {args.out / family}.onnx")
    if not args.photos and not DEFAULT_PHOTOS.is_dir():
        raise PipelineError(f"{DEFAULT_PHOTOS} does not exist (stage download makes it): give photos to check the "
                            "export on with --photos")
    photos = photo_paths(args.photos or [str(DEFAULT_PHOTOS)])[:None if args.photos else 3]
    config = registry.load(args.params, family)
    labels = load_labels()
    trained = open_model(args.run_dir or Path("models") / family, config, len(labels.attributes), "cpu",
                         doing="exporting")
    images = [read_photo(p, config.model, 1.0).pixels.float() / 255 for p in photos]
    out = args.out or Path("exported") / f"{family}.onnx"
    written = export_onnx(trained.model, registry.family(family), out, images)
    write_json(out.with_name(out.name + ".json"), description(family, trained.checkpoint, written, config.model,
                                                              labels))
    check = written["check"]
    print(f"{out}: {out.stat().st_size / 1e6:.1f} MB; onnxruntime finds PyTorch's {check['detections']} detections "
          f"on {check['images']} photo(s), largest differences " +
          ", ".join(f"{k} {v:.1e}" for k, v in check["max_difference"].items()))


if __name__ == "__main__":
    run(main)
