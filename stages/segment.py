"""Stage segment (not in dvc.yaml: run on demand): any photos in, each item's category, attributes and mask out.

  python -m stages.segment PHOTO [PHOTO ...] [--run-dir models/maskrcnn] [--out segmented]

Uses the trained model of ``model.family`` (or ``--family``) with ``predict``'s TTA views and the
family's tuned post-processing, through the Python API (``pipeline.load``). Writes ``<out>/<name>.png``
(the items drawn over the photo) and ``<out>/<name>.json`` (category and attribute ids and names, score,
box in photo pixels, mask as Kaggle and COCO RLE on the grid of ``segment.max_side``). A photo that
cannot be read is reported and skipped; the others still run, and the exit status is 1 when any failed.
"""

from __future__ import annotations

from pathlib import Path

from stages._cli import add_family, parser, run
from stages._photos import add_arguments, for_each_photo, open_model, output_folder


def main() -> None:
    cli = parser(__doc__)
    add_family(cli)
    add_arguments(cli)
    cli.add_argument("--out", type=Path, default=Path("segmented"), help="folder to write (default: segmented)")
    args = cli.parse_args()
    from pipeline.shop.photos import photo_paths
    from pipeline.utils.io import atomic_path, write_json
    photos = photo_paths(args.photos)  # before any model loads: a wrong folder or pattern fails at once
    output_folder(args.out, make=False)
    model = open_model(args, args.family)
    output_folder(args.out)

    def work(path: Path, name: str) -> str:
        result = model(path)
        with atomic_path(args.out / f"{name}.png") as tmp:
            result.plot().save(tmp, format="PNG")
        write_json(args.out / f"{name}.json", result.to_dict())
        return f"{len(result.found)} item(s) -> {args.out / name}.png, .json"

    for_each_photo(photos, work, "segmented")

if __name__ == "__main__":
    run(main)
