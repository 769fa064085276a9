"""Stage similar (not in dvc.yaml: run on demand): a photo's items and the most similar catalogue items of each.

  python -m stages.similar PHOTO [PHOTO ...] [--k 8] [--index index] [--out similar]

Segments each photo as stage segment does, with the catalogue's model (``index.family``),
describes each item as the catalogue's items were described, and searches the catalogue
within the item's category. Writes ``<out>/<name>.json`` (each item with its k results: image,
box, ClassId, similarity) and ``<out>/<name>.png`` (a contact sheet: per item its crop from the
photo, then the results' crops). A catalogue made with other weights or model params is refused.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.config.params import load_section
from pipeline.config.shop import IndexParams
from stages._cli import parser, positive, run
from stages._photos import add_arguments, for_each_photo, open_segmenter, output_folder


def main() -> None:
    cli = parser(__doc__)
    cli.add_argument("--k", type=positive, default=8, help="similar items per item (default 8)")
    cli.add_argument("--index", type=Path, default=Path("index"), help="catalogue folder (stage index)")
    add_arguments(cli)
    cli.add_argument("--out", type=Path, default=Path("similar"), help="folder to write (default: similar)")
    args = cli.parse_args()
    from pipeline.models import registry
    from pipeline.shop.build import catalogue_key
    from pipeline.shop.catalogue import load_catalogue
    from pipeline.shop.features import require_features
    from pipeline.shop.photos import photo_paths
    from pipeline.shop.render import contact_sheet, items_json
    from pipeline.shop.segment import photo_on_grid
    from pipeline.shop.similar import item_vectors, sheet_rows, similar_items
    from pipeline.utils.io import atomic_path, write_json
    photos = photo_paths(args.photos)  # before any model loads: a wrong folder or pattern fails at once
    output_folder(args.out, make=False)
    family = load_section(args.params, "index", IndexParams).family
    segment, model_info = open_segmenter(args, family)
    require_features(segment.inference.model, family)
    catalogue = load_catalogue(args.index, catalogue_key(model_info["checkpoint"], registry.load(args.params, family)))
    kind, image_dir = catalogue.manifest["features"], Path(catalogue.manifest["image_dir"])
    output_folder(args.out)

    def work(path: Path, name: str) -> str:
        photo, items = segment(path)
        vectors = item_vectors(segment.inference, photo, items, kind)
        results = similar_items(catalogue, vectors, items, args.k, segment.labels)
        found = items_json(photo, items, segment.labels, {**model_info, "catalogue": str(args.index)})
        for item, result in zip(found["items"], results, strict=True):
            item["similar"] = result
        write_json(args.out / f"{name}.json", found)
        rows = sheet_rows(photo_on_grid(photo, segment.max_side), photo, items, results, image_dir, segment.labels)
        with atomic_path(args.out / f"{name}.png") as tmp:
            contact_sheet(rows).save(tmp, format="PNG")
        return f"{len(items)} item(s), up to {args.k} similar each -> {args.out / name}.json, .png"

    for_each_photo(photos, work, "searched")

if __name__ == "__main__":
    run(main)
